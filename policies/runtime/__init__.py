"""Read-only boto3 evidence checks of a deployed environment (see runner.run_runtime_checks)."""

from policies.runtime.clients import (
    AccountMismatchError,
    CredentialsError,
    RuntimeChecksError,
    UnreachableError,
)
from policies.runtime.guard import ReadOnlyViolation
from policies.runtime.runner import CHECKS, run_checks, run_runtime_checks

__all__ = [
    "CHECKS",
    "AccountMismatchError",
    "CredentialsError",
    "ReadOnlyViolation",
    "RuntimeChecksError",
    "UnreachableError",
    "run_checks",
    "run_runtime_checks",
]
