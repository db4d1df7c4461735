"""CKV_PHI_46 "Ensure every top-level OU has a region allow-list SCP, and Research-EU allows
only EU regions".

Data residency: a resource created outside the regions an OU may use is data outside the
jurisdiction its controls were written for. EU patient data must stay in the EU (GDPR Chapter V,
Art. 44-49; EHDS Art. 87 and Art. 73 secure processing environment); US PHI stays where its
risk analysis and BAA coverage were made (HIPAA 45 CFR 164.308(a)(1)(ii)(A)). Each OU's
region allow-list SCP denies every regional action requested elsewhere.

Judged, with the stack in view: every `aws_organizations_organizational_unit` whose `parent_id`
is the organization root (OUs below inherit their parent's SCPs). Among the statements of the
SCPs attached to it or to the root, a region allow-list statement is a Deny on Resource "*" of
Action "*" or of NotAction entries that are all global-service actions (GLOBAL_SERVICE_ACTIONS,
AWS's "deny access based on the requested Region" example), conditioned on StringNotEquals
aws:RequestedRegion [regions], and otherwise only exempting principals by aws:PrincipalArn (at
most AWSControlTowerExecution and ONE break-glass role, each by its exact name). The OU fails
without one. The OU named Research-EU also fails when a region its allow-lists admit (the
intersection of their regions) is not one of EU_REGIONS (EU member states: not London,
Zurich or any region outside the EU).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._documents import as_list, condition_values
from policies.checks._organizations import (
    UNIT,
    Organization,
    exemption_problem,
    governing_statements,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, register
from requirements import residency
from requirements.residency import EU_RESIDENCY_REGIONS

EU_ONLY_UNITS = frozenset({"Research-EU"})
EU_REGIONS = EU_RESIDENCY_REGIONS
REQUESTED_REGION = "aws:RequestedRegion"
_REGION_CONDITION = frozenset({"stringnotequals aws:requestedregion"})
# Actions of global services (requests go to us-east-1 or name no region): the only ones a
# region allow-list may leave out.
GLOBAL_SERVICE_ACTIONS = frozenset(action.lower() for action in residency.GLOBAL_SERVICE_ACTIONS)


def allowed_regions(statement: dict[str, Any]) -> set[str] | None:
    """The regions a region allow-list statement admits, or None if it is not one."""
    if statement.get("Effect") != "Deny" or "NotResource" in statement:
        return None
    if "*" not in [str(r) for r in as_list(statement.get("Resource"))]:
        return None
    if "NotAction" in statement:
        left_out = [str(a).lower() for a in as_list(statement["NotAction"])]
        if not all(a in GLOBAL_SERVICE_ACTIONS for a in left_out):
            return None
    elif "*" not in [str(a) for a in as_list(statement.get("Action"))]:
        return None
    regions = condition_values(statement, "StringNotEquals", REQUESTED_REGION)
    if not regions or exemption_problem(statement, allowed_keys=_REGION_CONDITION):
        return None
    return {str(r) for r in regions}


class TopLevelOusRegionAllowList(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every top-level OU has a region allow-list SCP, and Research-EU allows "
                "only EU regions"
            ),
            id="CKV_PHI_46",
            category=CheckCategories.GENERAL_SECURITY,
            judged_types=[UNIT],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        organization = Organization.of(stack)
        for unit in organization.top_level_units():
            lists = [
                regions
                for _, statement in governing_statements(organization, unit)
                if (regions := allowed_regions(statement)) is not None
            ]
            if not lists:
                yield Verdict(address(UNIT, unit), False, "no region allow-list SCP")
                continue
            admitted = set.intersection(*lists)
            outside = sorted(admitted - EU_REGIONS)
            if organization.unit_name(unit) in EU_ONLY_UNITS and outside:
                reason = f"allows regions outside the EU: {', '.join(outside)}"
                yield Verdict(address(UNIT, unit), False, reason)
            else:
                yield Verdict(address(UNIT, unit), True, "")


check = register(TopLevelOusRegionAllowList())
