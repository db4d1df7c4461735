"""The PHI VPC: no path to or from the internet, every flow logged, AWS APIs through the
required PrivateLink and gateway endpoints, each with a policy narrower than "anyone, anything".

The environment's VPCs are those tagged `environment=<name>` (the providers' default tags); an
environment whose account holds none fails every check here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from policies.runtime import policy_documents as documents
from policies.runtime.clients import pages
from policies.runtime.expected import ENVIRONMENT_TAG
from policies.runtime.model import (
    CheckContext,
    Outcome,
    RuntimeCheck,
    failed,
    passed,
)

ANYWHERE = ("0.0.0.0/0", "::/0")
# NAT gateways in these states no longer route anything.
GONE = ("deleted", "deleting", "failed")


def _vpc_filter(vpc_id: str) -> list[dict[str, Any]]:
    return [{"Name": "vpc-id", "Values": [vpc_id]}]


def _each_vpc(
    context: CheckContext, evaluate: Callable[[Any, str, str], Outcome]
) -> Iterator[Outcome]:
    ec2 = context.client("ec2")
    name = context.expected.environment
    placeholder = context.arn("ec2", f"vpc/{ENVIRONMENT_TAG}={name}")
    tagged = [{"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [name]}]
    vpcs = context.discover(
        placeholder, lambda: list(pages(ec2, "describe_vpcs", "Vpcs", Filters=tagged))
    )
    if isinstance(vpcs, Outcome):
        yield vpcs
        return
    if not vpcs:
        yield failed(placeholder, f"no VPC tagged {ENVIRONMENT_TAG}={name} in {context.region}")
        return
    for vpc in vpcs:
        vpc_id = str(vpc["VpcId"])
        arn = context.arn("ec2", f"vpc/{vpc_id}")
        yield context.judge(arn, partial(evaluate, ec2, vpc_id, arn))


def no_internet_path(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(ec2: Any, vpc_id: str, arn: str) -> Outcome:
        attached = [{"Name": "attachment.vpc-id", "Values": [vpc_id]}]
        gateways = [
            str(g["InternetGatewayId"])
            for g in pages(ec2, "describe_internet_gateways", "InternetGateways", Filters=attached)
        ]
        gateways += [
            str(g["NatGatewayId"])
            for g in pages(ec2, "describe_nat_gateways", "NatGateways", Filter=_vpc_filter(vpc_id))
            if g.get("State") not in GONE
        ]
        # This API has no VPC filter: the attachments say where each gateway is.
        gateways += [
            str(g["EgressOnlyInternetGatewayId"])
            for g in pages(
                ec2, "describe_egress_only_internet_gateways", "EgressOnlyInternetGateways"
            )
            if any(a.get("VpcId") == vpc_id for a in g.get("Attachments", []))
        ]
        if gateways:
            return failed(arn, f"internet path through {', '.join(sorted(gateways))}")
        return passed(arn, "no internet, NAT or egress-only internet gateway")

    return _each_vpc(context, evaluate)


def no_open_ingress(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(ec2: Any, vpc_id: str, arn: str) -> Outcome:
        groups = pages(
            ec2, "describe_security_groups", "SecurityGroups", Filters=_vpc_filter(vpc_id)
        )
        open_groups = sorted(str(group["GroupId"]) for group in groups if _open_to_anywhere(group))
        if open_groups:
            return failed(arn, f"ingress from anywhere allowed by {', '.join(open_groups)}")
        return passed(arn, "no security group admits traffic from 0.0.0.0/0 or ::/0")

    return _each_vpc(context, evaluate)


def _open_to_anywhere(group: dict[str, Any]) -> bool:
    for permission in group.get("IpPermissions", []):
        sources = [r.get("CidrIp") for r in permission.get("IpRanges", [])]
        sources += [r.get("CidrIpv6") for r in permission.get("Ipv6Ranges", [])]
        if any(source in ANYWHERE for source in sources):
            return True
    return False


def flow_logs(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(ec2: Any, vpc_id: str, arn: str) -> Outcome:
        of_vpc = [{"Name": "resource-id", "Values": [vpc_id]}]
        logs = list(pages(ec2, "describe_flow_logs", "FlowLogs", Filters=of_vpc))
        delivering = [
            log
            for log in logs
            if log.get("FlowLogStatus") == "ACTIVE"
            and log.get("TrafficType") == "ALL"
            and log.get("DeliverLogsStatus", "SUCCESS") != "FAILED"
        ]
        if delivering:
            names = ", ".join(str(log["FlowLogId"]) for log in delivering)
            return passed(arn, f"all traffic logged by {names}")
        if not logs:
            return failed(arn, "the VPC has no flow log")
        states = "; ".join(
            f"{log.get('FlowLogId')}: {log.get('FlowLogStatus')}, traffic "
            f"{log.get('TrafficType')}, delivery {log.get('DeliverLogsStatus')} "
            f"{log.get('DeliverLogsErrorMessage', '')}".strip()
            for log in logs
        )
        return failed(arn, f"no active flow log of all traffic that delivers: {states}")

    return _each_vpc(context, evaluate)


def endpoints(context: CheckContext) -> Iterator[Outcome]:
    required = context.expected.vpc_endpoint_services

    def evaluate(ec2: Any, vpc_id: str, arn: str) -> Outcome:
        found = list(
            pages(ec2, "describe_vpc_endpoints", "VpcEndpoints", Filters=_vpc_filter(vpc_id))
        )
        available = {
            str(e["ServiceName"]): e
            for e in found
            if str(e.get("State", "")).lower() == "available"
        }
        missing = [service for service in required if service not in available]
        unrestricted = sorted(
            service
            for service, endpoint in available.items()
            if service in required and _admits_anyone_to_anything(endpoint)
        )
        problems = []
        if missing:
            problems.append(f"missing or not available: {', '.join(missing)}")
        if unrestricted:
            problems.append(f"full-access endpoint policy on {', '.join(unrestricted)}")
        if problems:
            return failed(arn, "; ".join(problems))
        return passed(arn, f"all {len(required)} required endpoints available, each with a policy")

    return _each_vpc(context, evaluate)


def _admits_anyone_to_anything(endpoint: dict[str, Any]) -> bool:
    """The default endpoint policy: Allow, Principal *, Action *, no condition."""
    text = endpoint.get("PolicyDocument")
    if not text:
        return True
    try:
        policy = documents.parse(str(text))
    except ValueError:
        return False
    return any(
        statement.get("Effect") == "Allow"
        and documents.is_anyone(statement)
        and "*" in documents.as_list(statement.get("Action"))
        and not statement.get("Condition")
        for statement in documents.statements(policy)
    )


CHECKS = (
    RuntimeCheck(
        "RT_PHI_VPC_NO_INTERNET_GATEWAY",
        "PHI VPC has no internet, NAT or egress-only internet gateway",
        no_internet_path,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_VPC_NO_OPEN_INGRESS",
        "No security group in a PHI VPC admits traffic from anywhere",
        no_open_ingress,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_VPC_FLOW_LOGS",
        "PHI VPC flow logs active for all traffic and delivering",
        flow_logs,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_VPC_ENDPOINTS",
        "PHI VPC has the required PrivateLink and gateway endpoints, with policies",
        endpoints,
        workload_only=True,
    ),
)
