"""CKV_PHI_22 "Ensure a PHI VPC's subnets name at least two distinct availability zones".

PHI workloads and the PrivateLink endpoints that serve them stay reachable when one
availability zone fails: HIPAA 45 CFR 164.308(a)(7)(ii)(B) and (C) (disaster recovery and
emergency mode operation), GDPR Art. 32(1)(b) (availability and resilience of processing
systems). A subnet lives in exactly one zone, so a VPC whose subnets all share one zone goes
down with it; a subnet that names no zone is placed wherever AWS likes, possibly beside the
others.

Judged, with the stack in view: every `aws_vpc` (the platform creates VPCs for PHI workloads
only). It passes when it has subnets (`aws_subnet`s of the stack whose `vpc_id` refers to it),
every one of them names its zone (`availability_zone` or `availability_zone_id`, a literal or
an expression such as `${element(data.aws_availability_zones.zones.names, 1)}`), and they
name at least two distinct zones (compared as written: two different expressions or names).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

MINIMUM_ZONES = 2
ZONE_KEYS = ("availability_zone", "availability_zone_id")


def zone_of(conf: dict[str, Any]) -> str | None:
    """The zone a subnet names, as written, or None when it leaves the choice to AWS."""
    for key in ZONE_KEYS:
        value = conf.get(key)
        if isinstance(value, str) and value.strip():
            return f"{key}={value.strip()}"
    return None


class VpcSubnetsSpanTwoAvailabilityZones(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a PHI VPC's subnets name at least two distinct availability zones",
            id="CKV_PHI_22",
            category=CheckCategories.NETWORKING,
            judged_types=["aws_vpc"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        subnets = stack.resources("aws_subnet")
        for vpc in sorted(stack.resources("aws_vpc")):
            own = {
                name: conf
                for name, conf in subnets.items()
                if refers_to(conf.get("vpc_id"), "aws_vpc", vpc)
            }
            unplaced = sorted(name for name, conf in own.items() if zone_of(conf) is None)
            zones = {zone for conf in own.values() if (zone := zone_of(conf)) is not None}
            if not own:
                problem = "no subnets"
            elif unplaced:
                problem = f"subnets naming no availability zone: {', '.join(unplaced)}"
            elif len(zones) < MINIMUM_ZONES:
                problem = f"every subnet in one availability zone ({', '.join(sorted(zones))})"
            else:
                problem = ""
            yield Verdict(address("aws_vpc", vpc), not problem, problem)


check = register(VpcSubnetsSpanTwoAvailabilityZones())
