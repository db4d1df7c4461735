"""CKV_PHI_8 "Ensure a PHI VPC has every required PrivateLink endpoint, each with a restricting
endpoint policy".

A PHI VPC has no route to the internet (CKV_PHI_9), so workloads reach AWS APIs only through
VPC endpoints: a missing endpoint breaks them or invites a NAT gateway. Endpoint policies are
the data perimeter: only the account's principals (and named resources) pass. HIPAA 45 CFR
164.312(e)(1) transmission security, GDPR Art. 32, EHDS secure processing environment.

Judged: every `aws_vpc` (the platform creates VPCs for PHI workloads only), with the stack in
view. It passes when, among the stack's `aws_vpc_endpoint`s whose `vpc_id` refers to it, there
is an Interface endpoint for each of REQUIRED_INTERFACE_ENDPOINTS and a Gateway endpoint for each
of GATEWAY_ENDPOINTS (service names `com.amazonaws.<region>.<service>`), and every endpoint of
the VPC has a `policy` narrower than AWS's default full-access one (no statement allowing any
principal every action on every resource without a condition).

The two lists are modules/network.py's (a test asserts they are equal). They are repeated, not
imported: importing modules/network.py loads cdktf and starts Node.js (jsii) inside checkov.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from modules.endpoints import GATEWAY_ENDPOINTS, REQUIRED_INTERFACE_ENDPOINTS
from policies.checks._conf import json_document
from policies.checks._documents import (
    actions,
    as_list,
    names_anyone,
    statements,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

# com.amazonaws.<region>.<service>; the region may be an interpolation (with dots inside).
SERVICE_NAME = re.compile(r"^com\.amazonaws\.(?:\$\{[^}]*\}|[a-z0-9-]+)\.(?P<service>.+)$")


def endpoint_service(conf: dict[str, Any]) -> str | None:
    match = SERVICE_NAME.match(str(conf.get("service_name", "")))
    return match.group("service") if match else None


def endpoint_type(conf: dict[str, Any]) -> str:
    # The AWS provider's default for vpc_endpoint_type is Gateway.
    return str(conf.get("vpc_endpoint_type") or "Gateway")


def grants_full_access(statement: dict[str, Any]) -> bool:
    """AWS's default endpoint policy: anyone, every action, every resource, no condition."""
    every_action = any(a == "*" or a.endswith(":*") for a in actions(statement))
    return (
        statement.get("Effect") == "Allow"
        and names_anyone(statement)
        and every_action
        and "*" in [str(r) for r in as_list(statement.get("Resource"))]
        and not statement.get("Condition")
    )


def has_restricting_policy(conf: dict[str, Any]) -> bool:
    policy = json_document(conf.get("policy"))
    if policy is None:
        return False
    found = list(statements(policy))
    return bool(found) and not any(grants_full_access(s) for s in found)


class VpcRequiredPrivateLinkEndpoints(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a PHI VPC has every required PrivateLink endpoint, each with a "
                "restricting endpoint policy"
            ),
            id="CKV_PHI_8",
            category=CheckCategories.NETWORKING,
            judged_types=["aws_vpc"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        endpoints = stack.resources("aws_vpc_endpoint")
        for vpc_name in stack.resources("aws_vpc"):
            own = [e for e in endpoints.values() if refers_to(e.get("vpc_id"), "aws_vpc", vpc_name)]
            present = {(endpoint_type(e), endpoint_service(e)) for e in own}
            missing = [s for s in REQUIRED_INTERFACE_ENDPOINTS if ("Interface", s) not in present]
            missing += [s for s in GATEWAY_ENDPOINTS if ("Gateway", s) not in present]
            unrestricted = sorted(
                str(endpoint_service(e)) for e in own if not has_restricting_policy(e)
            )
            problems = []
            if missing:
                problems.append(f"missing endpoints: {', '.join(missing)}")
            if unrestricted:
                problems.append(f"no restricting policy: {', '.join(unrestricted)}")
            yield Verdict(address("aws_vpc", vpc_name), not problems, "; ".join(problems))


check = register(VpcRequiredPrivateLinkEndpoints())
