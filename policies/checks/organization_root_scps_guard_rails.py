"""CKV_PHI_44 "Ensure the organization root's SCPs deny leaving the organization, the root
user, and stopping the security services except for a break-glass role".

Guard rails no member account may shed, so they sit at the root (every account inherits them).
An account that leaves the organization escapes every SCP, the organization trail and the
delegated detection at once; the root user bypasses IAM and leaves no role session in the
trail; stopping CloudTrail, Config, GuardDuty, Security Hub or flow logs, or scheduling a key's
deletion, blinds the audit or destroys the PHI the key decrypts. HIPAA 45 CFR 164.312(b) (audit
controls), 164.308(a)(1)(ii)(D) (activity review), 164.312(a)(1) (access control), 164.312(c)(1)
(integrity); GDPR Art. 32; EHDS Art. 73.

Judged, with the stack in view: every `aws_organizations_organization`, by the statements of
the SCPs (`aws_organizations_policy`, type SERVICE_CONTROL_POLICY, `content` a JSON document)
that an `aws_organizations_policy_attachment` attaches to its root (`target_id` its
`roots[0].id`). It passes when
- a Deny statement on Resource "*" with no Condition covers organizations:LeaveOrganization;
- a Deny statement on Resource "*" covering every action ("*") applies to the root user of every
  account: its only Condition is ArnLike/StringLike/ArnEquals/StringEquals aws:PrincipalArn
  including "arn:aws:iam::*:root";
- each action of PROTECTED_ACTIONS is covered by a Deny statement on Resource "*" whose
  Condition, if any, only exempts principals by aws:PrincipalArn (ArnNotLike and kin): at most
  AWSControlTowerExecution and ONE other (break-glass) role, each an exact role ARN with no
  wildcard in the role name (any account, `*`, allowed).
("covers": an Action pattern matches the action, or a NotAction list does not.) Otherwise it
fails, naming what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._documents import as_list, conditions, statements
from policies.checks._organizations import (
    ORGANIZATION,
    ROOT,
    Organization,
    denies,
    exemption_problem,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

LEAVE_ORGANIZATION = "organizations:LeaveOrganization"
ROOT_USER_ARN = "arn:aws:iam::*:root"
_ROOT_USER_OPERATORS = frozenset({"arnlike", "arnequals", "stringlike", "stringequals"})

# What switches off or deletes the audit trail, the recorder, threat detection, posture
# management, flow logs and keys: each service's own stop/delete/detach actions.
PROTECTED_ACTIONS = {
    "CloudTrail": (
        "cloudtrail:DeleteTrail",
        "cloudtrail:PutEventSelectors",
        "cloudtrail:StopLogging",
        "cloudtrail:UpdateTrail",
    ),
    "Config": (
        "config:DeleteConfigurationRecorder",
        "config:DeleteDeliveryChannel",
        "config:StopConfigurationRecorder",
    ),
    "GuardDuty": (
        "guardduty:DeleteDetector",
        "guardduty:DisassociateFromAdministratorAccount",
        "guardduty:DisassociateMembers",
    ),
    "Security Hub": (
        "securityhub:BatchDisableStandards",
        "securityhub:DisableSecurityHub",
        "securityhub:DisassociateFromAdministratorAccount",
    ),
    "VPC flow logs": ("ec2:DeleteFlowLogs",),
    "KMS keys": ("kms:DisableKey", "kms:ScheduleKeyDeletion"),
}


def _applies_to_root_user_only(statement: dict[str, Any]) -> bool:
    found = list(conditions(statement))
    return bool(found) and all(
        operator in _ROOT_USER_OPERATORS
        and key == "aws:principalarn"
        and ROOT_USER_ARN in [str(v) for v in values]
        for operator, key, values in found
    )


def guard_rail_problems(root_statements: list[dict[str, Any]]) -> list[str]:
    problems = []
    if not any(denies(s, LEAVE_ORGANIZATION) and "Condition" not in s for s in root_statements):
        problems.append(f"no unconditional Deny of {LEAVE_ORGANIZATION}")
    if not any(
        denies(s, "*")
        and "*" in [str(a) for a in as_list(s.get("Action"))]
        and _applies_to_root_user_only(s)
        for s in root_statements
    ):
        problems.append(f"no Deny of every action to {ROOT_USER_ARN}")
    for service, actions in PROTECTED_ACTIONS.items():
        undenied: list[str] = []
        narrowed: list[str] = []
        reasons: set[str] = set()
        for action in actions:
            covering = [s for s in root_statements if denies(s, action)]
            why = [exemption_problem(s, allowed_keys=frozenset()) for s in covering]
            if not covering:
                undenied.append(action)
            elif all(why):
                narrowed.append(action)
                reasons.update(str(w) for w in why)
        if undenied:
            problems.append(f"{service}: {', '.join(undenied)} not denied")
        if narrowed:
            problems.append(
                f"{service}: {', '.join(narrowed)} denied only with more exceptions than a "
                f"break-glass role ({'; '.join(sorted(reasons))})"
            )
    return problems


class OrganizationRootScpsGuardRails(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure the organization root's SCPs deny leaving the organization, the root "
                "user, and stopping the security services except for a break-glass role"
            ),
            id="CKV_PHI_44",
            category=CheckCategories.IAM,
            judged_types=[ORGANIZATION],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        organization = Organization.of(stack)
        root_statements = [
            statement
            for _, document in organization.governing(ROOT)
            for statement in statements(document)
        ]
        problems = guard_rail_problems(root_statements)
        for name in sorted(organization.organizations):
            yield Verdict(address(ORGANIZATION, name), not problems, "; ".join(problems))


check = register(OrganizationRootScpsGuardRails())
