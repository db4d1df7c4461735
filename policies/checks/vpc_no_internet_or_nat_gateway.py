"""CKV_PHI_9 "Ensure no internet, egress-only internet or NAT gateway serves a PHI VPC".

PHI never leaves the VPC except to AWS services through endpoints and to clinical sites
through the VPN (HIPAA 45 CFR 164.312(e)(1), GDPR Art. 32 and Chapter V, EHDS secure processing
environment). An internet gateway, an egress-only internet gateway or a NAT gateway is a path
to anywhere.

Judged, with the stack in view: every `aws_vpc` (the platform creates VPCs for PHI workloads
only) fails when an `aws_internet_gateway`, `aws_internet_gateway_attachment` or
`aws_egress_only_internet_gateway` refers to it by `vpc_id`, or an `aws_nat_gateway` sits in
one of its subnets; otherwise it passes. A gateway whose VPC is not in its own stack (it
refers to one through remote state, or to none) is judged itself and fails: every VPC of the
platform is a PHI VPC. An internet gateway attached by an `aws_internet_gateway_attachment` of
its stack is judged through that attachment.
"""

from __future__ import annotations

from collections.abc import Iterable

from checkov.common.models.enums import CheckCategories

from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    register,
)

VPC_GATEWAYS = (
    "aws_internet_gateway",
    "aws_internet_gateway_attachment",
    "aws_egress_only_internet_gateway",
)
NAT_GATEWAY = "aws_nat_gateway"


class VpcNoInternetOrNatGateway(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure no internet, egress-only internet or NAT gateway serves a PHI VPC",
            id="CKV_PHI_9",
            category=CheckCategories.NETWORKING,
            judged_types=["aws_vpc", *VPC_GATEWAYS, NAT_GATEWAY],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        vpcs = set(stack.resources("aws_vpc"))
        vpcs_of_subnet = {
            name: referenced_names(conf.get("vpc_id"), "aws_vpc")
            for name, conf in stack.resources("aws_subnet").items()
        }
        # An internet gateway attached through an attachment is judged by that attachment.
        attached_by_attachment = {
            name
            for attachment in stack.resources("aws_internet_gateway_attachment").values()
            for name in referenced_names(
                attachment.get("internet_gateway_id"), "aws_internet_gateway"
            )
        }
        gateways_of: dict[str, list[str]] = {vpc: [] for vpc in vpcs}
        for gateway_type in (*VPC_GATEWAYS, NAT_GATEWAY):
            for name, conf in stack.resources(gateway_type).items():
                if gateway_type == "aws_internet_gateway" and name in attached_by_attachment:
                    continue
                if gateway_type == NAT_GATEWAY:
                    subnets = referenced_names(conf.get("subnet_id"), "aws_subnet")
                    attached = {v for s in subnets for v in vpcs_of_subnet.get(s, set())} & vpcs
                else:
                    attached = referenced_names(conf.get("vpc_id"), "aws_vpc") & vpcs
                for vpc in attached:
                    gateways_of[vpc].append(address(gateway_type, name))
                if not attached:
                    yield Verdict(
                        address(gateway_type, name), False, "gateway of a VPC in another stack"
                    )
        for vpc, gateways in sorted(gateways_of.items()):
            yield Verdict(address("aws_vpc", vpc), not gateways, ", ".join(gateways))


check = register(VpcNoInternetOrNatGateway())
