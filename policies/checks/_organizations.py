"""An organization as its stack declares it: OUs, accounts, service control policies and where
they are attached, read from the raw Terraform JSON a `StackCheck` sees.

Targets and parents are Terraform references: `${aws_organizations_organization.<org>.roots[0]
.id}` is the organization root, `${aws_organizations_organizational_unit.<ou>.id}` an OU. A
literal id (`r-...`, `ou-...`) names something outside the stack, which no check can verify, so
it counts as nothing. An SCP's `content` is a JSON string (or, in hand-written JSON, an object);
one that is not JSON (a `jsonencode` interpolation, a file) counts as no document.

The SCPs that govern an OU are those attached to it, to each OU above it and to the root: SCPs
are inherited, and an action is allowed only if no SCP on the path denies it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from policies.checks._conf import json_document
from policies.checks._documents import as_list, conditions, statements
from policies.checks._stack import Stack, referenced_names

ORGANIZATION = "aws_organizations_organization"
UNIT = "aws_organizations_organizational_unit"
ACCOUNT = "aws_organizations_account"
POLICY = "aws_organizations_policy"
ATTACHMENT = "aws_organizations_policy_attachment"
SERVICE_CONTROL_POLICY = "SERVICE_CONTROL_POLICY"
ROOT = "<root>"  # the organization root, as a target or a parent

# The tag the platform gives each member account to say what it is for; `workload` accounts
# hold PHI.
ACCOUNT_ROLE_TAG = "account-role"
WORKLOAD_ROLE = "workload"
# The OUs where PHI lives by design (their subtrees hold the workload accounts).
PHI_UNIT_NAMES = frozenset({"Workloads", "Research-EU"})

# Roles a guard rail may exempt: Control Tower's execution role (it deploys and repairs the
# baselines) and ONE break-glass role, each by an exact role name (any account: `*`).
CONTROL_TOWER_EXECUTION_ROLE = "AWSControlTowerExecution"
_EXEMPTED_ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}|\*):role/(?P<name>[A-Za-z0-9+=,.@_-]+)$")
_PRINCIPAL_EXEMPTION_OPERATORS = frozenset(
    {"arnnotlike", "arnnotequals", "stringnotlike", "stringnotequals"}
)


def _tags(conf: dict[str, Any]) -> dict[str, Any]:
    tags = conf.get("tags")
    return tags if isinstance(tags, dict) else {}


@dataclass(frozen=True)
class Organization:
    """The organization resources of one stack, by Terraform name."""

    organizations: dict[str, dict[str, Any]]
    units: dict[str, dict[str, Any]]
    accounts: dict[str, dict[str, Any]]
    policies: dict[str, dict[str, Any] | None]  # SCPs only: name -> parsed document or None
    attachments: dict[str, list[str]]  # target (ROOT or OU name) -> names of SCPs attached

    @classmethod
    def of(cls, stack: Stack) -> Organization:
        policies = {
            name: json_document(conf.get("content"))
            for name, conf in stack.resources(POLICY).items()
            if conf.get("type", SERVICE_CONTROL_POLICY) == SERVICE_CONTROL_POLICY
        }
        attachments: dict[str, list[str]] = {}
        for conf in stack.resources(ATTACHMENT).values():
            target = target_of(conf.get("target_id"))
            if target is None:
                continue
            for policy in sorted(referenced_names(conf.get("policy_id"), POLICY)):
                if policy in policies:
                    attachments.setdefault(target, []).append(policy)
        return cls(
            organizations=stack.resources(ORGANIZATION),
            units=stack.resources(UNIT),
            accounts=stack.resources(ACCOUNT),
            policies=policies,
            attachments=attachments,
        )

    def unit_name(self, unit: str) -> str:
        """The `name` attribute of an OU (its name in Organizations)."""
        return str(self.units[unit].get("name", ""))

    def parent(self, conf: dict[str, Any]) -> str | None:
        """ROOT, the Terraform name of the parent OU, or None when it is not in the stack."""
        return target_of(conf.get("parent_id"), units=self.units)

    def path(self, unit: str) -> list[str]:
        """The OU, the OUs above it and ROOT if the chain reaches the root (cycle-safe)."""
        chain: list[str] = []
        current: str | None = unit
        while current is not None and current not in chain:
            chain.append(current)
            if current == ROOT:
                break
            current = self.parent(self.units[current]) if current in self.units else None
        return chain

    def top_level_units(self) -> list[str]:
        return sorted(u for u, conf in self.units.items() if self.parent(conf) == ROOT)

    def governing(self, unit: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(policy name, document) of every parsed SCP on the OU's path to the root."""
        seen: set[str] = set()
        for target in [*self.path(unit), ROOT]:
            for policy in self.attachments.get(target, []):
                document = self.policies.get(policy)
                if policy not in seen and document is not None:
                    seen.add(policy)
                    yield policy, document

    def accounts_with_role(self, role: str) -> set[str]:
        return {a for a, conf in self.accounts.items() if _tags(conf).get(ACCOUNT_ROLE_TAG) == role}

    def phi_units(self) -> list[str]:
        """The top-level OUs where PHI lives: Workloads and Research-EU, and any other OU under
        the root whose subtree holds a workload account."""
        holding = {
            unit
            for account in self.accounts_with_role(WORKLOAD_ROLE)
            for unit in self.path_of_account(account)
        }
        return [
            unit
            for unit in self.top_level_units()
            if self.unit_name(unit) in PHI_UNIT_NAMES or unit in holding
        ]

    def path_of_account(self, account: str) -> list[str]:
        parent = self.parent(self.accounts[account])
        return [] if parent is None else self.path(parent)


def target_of(value: Any, *, units: dict[str, dict[str, Any]] | None = None) -> str | None:
    """ROOT for a reference to an organization's root, an OU's Terraform name for a reference
    to it (one of `units` when given), else None."""
    if referenced_names(value, ORGANIZATION):
        return ROOT
    found = sorted(referenced_names(value, UNIT))
    if len(found) == 1 and (units is None or found[0] in units):
        return found[0]
    return None


def _matches(patterns: list[Any], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in patterns)


def denies(statement: dict[str, Any], action: str) -> bool:
    """The statement is a Deny of `action` on every resource (its conditions aside)."""
    if statement.get("Effect") != "Deny" or "NotResource" in statement:
        return False
    if "*" not in [str(r) for r in as_list(statement.get("Resource"))]:
        return False
    if "NotAction" in statement:
        return not _matches(as_list(statement["NotAction"]), action)
    return _matches(as_list(statement.get("Action")), action)


def exemption_problem(statement: dict[str, Any], *, allowed_keys: frozenset[str]) -> str | None:
    """Why the statement's Condition makes it less than a guard rail on every principal, or
    None. It may exempt principals by `aws:PrincipalArn` (ArnNotLike and kin) only: at most
    Control Tower's execution role and one other (break-glass) role, each an exact role ARN
    (account `*` allowed, no wildcard in the name). Other conditions must use `allowed_keys`
    ((operator, key) pairs as 'operator key', lower case)."""
    exempted: list[str] = []
    for operator, key, values in conditions(statement):
        if operator in _PRINCIPAL_EXEMPTION_OPERATORS and key == "aws:principalarn":
            exempted += [str(v) for v in values]
        elif f"{operator} {key}" not in allowed_keys:
            return f"{operator} {key} narrows it"
    names = []
    for arn in exempted:
        match = _EXEMPTED_ROLE_ARN.match(arn)
        if match is None:
            return f"it exempts {arn}, not one role by its exact name"
        names.append(match["name"])
    others = sorted({n for n in names if n != CONTROL_TOWER_EXECUTION_ROLE})
    if len(others) > 1:
        return f"it exempts {len(others)} roles besides Control Tower's ({', '.join(others)})"
    return None


def governing_statements(
    organization: Organization, unit: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(policy name, statement) of every SCP on the OU's path to the root."""
    for policy, document in organization.governing(unit):
        for statement in statements(document):
            yield policy, statement
