"""A mutant: one guarantee the README states, removed or weakened in a copy of one real stack.

The gate (`make scan`) must fail the mutant's check on exactly the resource the mutant changed,
while the same resource of the untouched stack passes that check: then the guarantee is enforced
before deploy, and a change that drops it cannot land unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Document = dict[str, Any]
# Edits a stack configuration in place; returns the Terraform address that must now fail.
Apply = Callable[[Document], str]

# The rows of the README's layer table, in its order, and the stacks paragraph below it.
LAYERS = (
    "keys",
    "storage",
    "network",
    "ingest",
    "fhir",
    "features",
    "pipelines",
    "registry",
    "inference",
    "governance",
    "audit",
    "detection",
    "monitoring",
    "deployment",
    "stacks",
)


@dataclass(frozen=True)
class RuntimeTwin:
    """The runtime evidence check that shows the same guarantee on a deployment, and the case of
    tests/test_runtime_checks.py that breaks it there (pass -> fail)."""

    check_id: str
    case: str


@dataclass(frozen=True)
class Mutant:
    name: str  # unique, kebab-case: also the mutant's stack directory in a run
    layer: str  # a row of the README's layer table (LAYERS)
    guarantee: str  # the clause of that row's guarantees, as the README words it
    check_id: str  # the check the gate must fail
    stack: str  # the real stack a copy of which is mutated
    change: str  # what the mutant removes or weakens, for the README table
    apply: Apply
    runtime: RuntimeTwin | None = None
