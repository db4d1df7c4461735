"""CKV_PHI_42 "Ensure the organization has the platform's OUs: Security, Infrastructure,
Workloads/NonProd, Workloads/Prod, Research-EU".

The OU tree is where the guard rails attach: the PHI SCPs on Workloads and Research-EU, the
EU-only region allow-list on Research-EU, Control Tower's Security OU for the log archive and
audit accounts. An OU missing or moved (Prod directly under the root, outside Workloads) takes
its accounts out from under those SCPs. HIPAA 45 CFR 164.308(a)(4)(ii)(A) (isolating PHI
functions), 164.308(a)(3) (workforce access); GDPR Art. 25 and 32; EHDS Art. 73 (secure
processing environment).

Judged, with the stack in view: every `aws_organizations_organization`. It passes when the
stack declares an `aws_organizations_organizational_unit` named Security, Infrastructure,
Workloads and Research-EU whose `parent_id` is that organization's root
(`roots[0].id`), and one named NonProd and one named Prod whose `parent_id` is the Workloads
OU; otherwise it fails, naming each OU missing or under another parent.
"""

from __future__ import annotations

from collections.abc import Iterable

from checkov.common.models.enums import CheckCategories

from policies.checks._organizations import ORGANIZATION, ROOT, Organization
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

# (OU name, name of its parent OU or None for the root), parents first.
PLATFORM_UNITS = (
    ("Security", None),
    ("Infrastructure", None),
    ("Workloads", None),
    ("NonProd", "Workloads"),
    ("Prod", "Workloads"),
    ("Research-EU", None),
)


class OrganizationHasPlatformOus(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure the organization has the platform's OUs: Security, Infrastructure, "
                "Workloads/NonProd, Workloads/Prod, Research-EU"
            ),
            id="CKV_PHI_42",
            category=CheckCategories.IAM,
            judged_types=[ORGANIZATION],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        organization = Organization.of(stack)
        by_name: dict[str, list[str]] = {}
        for unit in sorted(organization.units):
            by_name.setdefault(organization.unit_name(unit), []).append(unit)
        problems = []
        for name, parent_name in PLATFORM_UNITS:
            units = by_name.get(name, [])
            if not units:
                problems.append(f"no OU {name}")
                continue
            parents = set(by_name.get(parent_name, [])) if parent_name else {ROOT}
            if not any(organization.parent(organization.units[u]) in parents for u in units):
                problems.append(f"OU {name} is not under {parent_name or 'the root'}")
        for name in sorted(organization.organizations):
            yield Verdict(address(ORGANIZATION, name), not problems, "; ".join(problems))


check = register(OrganizationHasPlatformOus())
