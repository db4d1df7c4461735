"""CKV_PHI_25 "Ensure site routes are learnt over BGP into every route table of the VPC and
Direct Connect advertises only the VPC".

Clinical sites reach PHI only through the VPC's virtual private gateway, and the two sides
learn exactly each other's ranges: the VPC's route tables take the sites' routes from BGP
(never hand-typed static routes, which go stale and misroute PHI when a site renumbers), and
the sites learn nothing of AWS beyond the VPC. HIPAA 45 CFR 164.312(a)(1) (access control) and
164.312(e)(1) (transmission security), GDPR Art. 32(1)(b), EHDS Art. 73(1).

Judged, with the stack in view:
- every `aws_vpn_gateway`: it passes when it is attached to a VPC of the stack (its `vpc_id`
  or an `aws_vpn_gateway_attachment`), every route table of that VPC (`aws_route_table` by
  `vpc_id`, `aws_default_route_table` by `default_route_table_id`) takes its routes, through
  an `aws_vpn_gateway_route_propagation` naming both or the table's `propagating_vgws`, and
  every `aws_vpn_connection` on it uses BGP (`static_routes_only` not true);
- every `aws_dx_gateway_association`: it passes when it associates a virtual private gateway
  of the stack (`associated_gateway_id` or `vpn_gateway_id`) and each of its
  `allowed_prefixes` lies within that gateway's VPC `cidr_block` (left unset, AWS advertises
  the VPC's CIDR). An association with a transit gateway or a gateway elsewhere fails: what
  it advertises cannot be told here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import is_true
from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    refers_to,
    register,
)

VPN_GATEWAY = "aws_vpn_gateway"
DX_ASSOCIATION = "aws_dx_gateway_association"


def _vpc_of(stack: Stack, gateway: str, vpcs: set[str]) -> str | None:
    """The VPC of the stack a virtual private gateway is attached to (by its own `vpc_id` or
    an `aws_vpn_gateway_attachment`)."""
    references = [stack.resources(VPN_GATEWAY)[gateway].get("vpc_id")]
    references += [
        attachment.get("vpc_id")
        for attachment in stack.resources("aws_vpn_gateway_attachment").values()
        if refers_to(attachment.get("vpn_gateway_id"), VPN_GATEWAY, gateway)
    ]
    found = sorted(set().union(*(referenced_names(r, "aws_vpc") for r in references)) & vpcs)
    return found[0] if found else None


def _route_tables(stack: Stack, vpc: str) -> dict[str, dict[str, Any]]:
    tables = {
        address("aws_route_table", name): conf
        for name, conf in stack.resources("aws_route_table").items()
        if refers_to(conf.get("vpc_id"), "aws_vpc", vpc)
    }
    tables.update(
        (address("aws_default_route_table", name), conf)
        for name, conf in stack.resources("aws_default_route_table").items()
        if refers_to(conf.get("default_route_table_id"), "aws_vpc", vpc)
    )
    return tables


def _propagated_tables(stack: Stack, gateway: str) -> set[str]:
    """Addresses of the route tables that take `gateway`'s routes."""
    propagated = set()
    for conf in stack.resources("aws_vpn_gateway_route_propagation").values():
        if refers_to(conf.get("vpn_gateway_id"), VPN_GATEWAY, gateway):
            for table_type in ("aws_route_table", "aws_default_route_table"):
                propagated |= {
                    address(table_type, name)
                    for name in referenced_names(conf.get("route_table_id"), table_type)
                }
    for table_type in ("aws_route_table", "aws_default_route_table"):
        for name, conf in stack.resources(table_type).items():
            if refers_to(conf.get("propagating_vgws"), VPN_GATEWAY, gateway):
                propagated.add(address(table_type, name))
    return propagated


def _gateway_problems(stack: Stack, gateway: str, vpc: str) -> list[str]:
    problems = []
    tables = _route_tables(stack, vpc)
    unpropagated = sorted(set(tables) - _propagated_tables(stack, gateway))
    if not tables:
        problems.append("its VPC has no route table")
    if unpropagated:
        problems.append(f"routes not propagated to {', '.join(unpropagated)}")
    static = sorted(
        name
        for name, conf in stack.resources("aws_vpn_connection").items()
        if refers_to(conf.get("vpn_gateway_id"), VPN_GATEWAY, gateway)
        and is_true(conf.get("static_routes_only"))
    )
    if static:
        problems.append(f"static routes only (no BGP): {', '.join(static)}")
    return problems


def _cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return None


def _association_problem(stack: Stack, conf: dict[str, Any], vpcs: set[str]) -> str:
    gateway_refs = [conf.get("associated_gateway_id"), conf.get("vpn_gateway_id")]
    gateways = sorted(
        set().union(*(referenced_names(ref, VPN_GATEWAY) for ref in gateway_refs))
        & set(stack.resources(VPN_GATEWAY))
    )
    if not gateways:
        return "associates no virtual private gateway of this stack"
    vpc = _vpc_of(stack, gateways[0], vpcs)
    if vpc is None:
        return "its gateway is attached to no VPC of this stack"
    vpc_cidr = _cidr(stack.resources("aws_vpc")[vpc].get("cidr_block"))
    if vpc_cidr is None:
        return "the VPC's CIDR is not a literal"
    prefixes = conf.get("allowed_prefixes")
    if prefixes is None:
        return ""  # AWS advertises the VPC's CIDR
    outside = sorted(
        str(prefix)
        for prefix in (prefixes if isinstance(prefixes, list) else [prefixes])
        if not (
            (network := _cidr(prefix)) is not None
            and network.version == vpc_cidr.version
            and network.subnet_of(vpc_cidr)  # type: ignore[arg-type]
        )
    )
    return f"advertises beyond the VPC ({vpc_cidr}): {', '.join(outside)}" if outside else ""


class VpnGatewayRoutesOverBgpAdvertisingOnlyTheVpc(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure site routes are learnt over BGP into every route table of the VPC and "
                "Direct Connect advertises only the VPC"
            ),
            id="CKV_PHI_25",
            category=CheckCategories.NETWORKING,
            judged_types=[VPN_GATEWAY, DX_ASSOCIATION],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        vpcs = set(stack.resources("aws_vpc"))
        for gateway in sorted(stack.resources(VPN_GATEWAY)):
            vpc = _vpc_of(stack, gateway, vpcs)
            problems = (
                ["attached to no VPC of this stack"]
                if vpc is None
                else _gateway_problems(stack, gateway, vpc)
            )
            yield Verdict(address(VPN_GATEWAY, gateway), not problems, "; ".join(problems))
        for name, conf in sorted(stack.resources(DX_ASSOCIATION).items()):
            problem = _association_problem(stack, conf, vpcs)
            yield Verdict(address(DX_ASSOCIATION, name), not problem, problem)


check = register(VpnGatewayRoutesOverBgpAdvertisingOnlyTheVpc())
