"""What a runtime check is, what it sees, and what it returns.

A check is a function from a CheckContext to Outcomes (resource, status, detail); the runner
turns outcomes into policies.findings.Finding with the check's id, name and the catalog
controls it evidences. API failures are turned into outcomes here, per resource, so that one
refused call does not hide the verdict on every other resource:

- access denied                     -> error  (the check could not look)
- not implemented by the emulator   -> not emulated (local runs only; against AWS: error)
- missing or expired credentials    -> the whole run stops (CredentialsError)
- endpoint unreachable              -> the whole run stops (UnreachableError)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from policies.findings import Status
from policies.runtime.clients import (
    CONNECTION_ERRORS,
    ClientFactory,
    credentials_error,
    error_code,
    error_message,
    is_access_denied,
    is_credentials_problem,
    is_not_implemented,
    unreachable_error,
)
from policies.runtime.expected import ExpectedResources, RegionalResources

RUNTIME_CHECK_ID = r"^RT_[A-Z0-9_]+$"
Item = TypeVar("Item")


@dataclass(frozen=True)
class Outcome:
    resource: str
    status: Status
    detail: str


def passed(resource: str, detail: str) -> Outcome:
    return Outcome(resource, Status.PASSED, detail)


def failed(resource: str, detail: str) -> Outcome:
    return Outcome(resource, Status.FAILED, detail)


def not_emulated(resource: str, detail: str) -> Outcome:
    return Outcome(resource, Status.NOT_EMULATED, detail)


def not_demonstrated(resource: str, detail: str) -> Outcome:
    return Outcome(resource, Status.NOT_DEMONSTRATED, detail)


def error(resource: str, detail: str) -> Outcome:
    return Outcome(resource, Status.ERROR, detail)


class Missing(Exception):  # noqa: N818 (a verdict, not a failure of the check)
    """Raised inside an evaluation: the thing looked for does not exist -> a failed outcome."""


@dataclass
class CheckContext:
    """The environment's expected resources and read-only clients in its account and region."""

    expected: ExpectedResources
    clients: ClientFactory
    _key_arns: dict[str, str | None] = field(default_factory=dict)
    # The content reads the running check declared (RuntimeCheck.content_reads), if any.
    content_reads: frozenset[str] = frozenset()

    @property
    def emulated(self) -> bool:
        return self.clients.emulated

    @property
    def account(self) -> str:
        return self.expected.account_id

    @property
    def region(self) -> str:
        return self.expected.region

    def client(self, service: str) -> Any:
        return self.clients.client(service)

    def content_client(self, service: str) -> Any:
        """A client that may make the content reads the running check declared, and no other."""
        if not self.content_reads:
            raise ValueError("this check declares no content reads (RuntimeCheck.content_reads)")
        return self.clients.content_client(service, self.content_reads)

    def in_region(self, region: str) -> CheckContext:
        """The same environment seen from another of its regions (its FHIR datastore's): ARNs,
        clients and key aliases resolve there, since KMS keys and aliases are regional."""
        if region == self.region:
            return self
        return replace(
            self,
            expected=replace(self.expected, region=region),
            clients=self.clients.in_region(region),
            _key_arns={},  # an alias names another key in another region
        )

    def regions(self) -> Iterator[tuple[CheckContext, RegionalResources]]:
        """Each region's expected buckets and keys, the environment's own region first."""
        expected = self.expected
        yield self, RegionalResources(expected.region, expected.buckets, expected.key_aliases)
        for regional in expected.elsewhere:
            yield self.in_region(regional.region), regional

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def key_arn(self, reference: str) -> str | None:
        """The ARN of the KMS key that an id, key ARN, alias name or alias ARN designates, or
        None when no such key or alias exists."""
        if reference not in self._key_arns:
            try:
                metadata = self.client("kms").describe_key(KeyId=reference)["KeyMetadata"]
                self._key_arns[reference] = str(metadata["Arn"])
            except ClientError as problem:
                if error_code(problem) != "NotFoundException":
                    raise
                self._key_arns[reference] = None
        return self._key_arns[reference]

    def same_key(self, actual: str | None, expected_alias: str | None) -> tuple[bool, str]:
        """Whether `actual` (any key reference) is the key behind `expected_alias`, and why."""
        if not actual:
            return False, "no KMS key is configured"
        if expected_alias is None:
            return False, "the environment defines no key for this purpose"
        expected = self.key_arn(expected_alias)
        if expected is None:
            return False, f"the expected key {expected_alias} does not exist"
        resolved = self.key_arn(actual)
        if resolved == expected:
            return True, f"encrypted with {expected_alias} ({expected})"
        return False, f"encrypted with {actual}, not with {expected_alias} ({expected})"

    def discover(self, resource: str, find: Callable[[], list[Item]]) -> list[Item] | Outcome:
        """The resources `find` lists, or the outcome (error, not emulated) for `resource`
        when listing them failed."""
        found: list[Item] = []

        def listing() -> Outcome:
            found.extend(find())
            return passed(resource, "listed")

        outcome = self.judge(resource, listing)
        return found if outcome.status is Status.PASSED else outcome

    def judge(self, resource: str, evaluate: Callable[[], Outcome]) -> Outcome:
        """Run one resource's evaluation, turning API failures into its outcome."""
        try:
            return evaluate()
        except Missing as missing:
            return failed(resource, str(missing))
        except (ClientError, NotImplementedError) as problem:
            return self.api_problem(resource, problem)
        except CONNECTION_ERRORS as problem:
            raise unreachable_error(problem, self.clients.endpoint_url) from problem
        except BotoCoreError as problem:
            if is_credentials_problem(problem):
                raise credentials_error(problem) from problem
            return error(resource, f"{type(problem).__name__}: {problem}")

    def api_problem(self, resource: str, problem: ClientError | NotImplementedError) -> Outcome:
        if is_credentials_problem(problem):
            raise credentials_error(problem) from problem
        if is_not_implemented(problem):
            what = _operation(problem)
            if self.emulated:
                return not_emulated(resource, f"the emulator does not implement {what}")
            return error(resource, f"{what} is not available here: {problem}")
        assert isinstance(problem, ClientError)
        if is_access_denied(problem):
            return error(
                resource,
                f"access denied to {problem.operation_name} ({error_message(problem)}): the "
                "caller needs read access (e.g. the SecurityAudit managed policy)",
            )
        return error(
            resource,
            f"{problem.operation_name} failed ({error_code(problem)}: {error_message(problem)})",
        )


def _operation(problem: ClientError | NotImplementedError) -> str:
    if isinstance(problem, ClientError):
        return str(problem.operation_name)
    return str(problem)


@dataclass(frozen=True)
class RuntimeCheck:
    id: str
    name: str
    evaluate: Callable[[CheckContext], Iterable[Outcome]]
    workload_only: bool = False
    # Reads of data, not configuration, that the check cannot do without (guard.CONTENT_READS,
    # e.g. GetObject): allowed on its content clients only, never on the shared ones.
    content_reads: frozenset[str] = frozenset()

    def applies_to(self, expected: ExpectedResources) -> bool:
        return expected.is_workload or not self.workload_only
