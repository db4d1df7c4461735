"""Mutants of the network layer (modules/network.py)."""

from __future__ import annotations

import json

from tools.mutants.edits import (
    address,
    delete_attribute,
    delete_resource,
    edit_json,
    named,
    set_attribute,
)
from tools.mutants.model import Document, Mutant, RuntimeTwin


def vpc_of(document: Document) -> str:
    name, _ = named(document, "aws_vpc", "network/vpc")
    return address("aws_vpc", name)


def without_kms_endpoint(document: Document) -> str:
    delete_resource(document, "aws_vpc_endpoint", "interface-endpoint-kms")
    return vpc_of(document)


def without_dynamodb_endpoint(document: Document) -> str:
    delete_resource(document, "aws_vpc_endpoint", "gateway-endpoint-dynamodb")
    return vpc_of(document)


def sts_endpoint_full_access(document: Document) -> str:
    _, conf = named(document, "aws_vpc_endpoint", "interface-endpoint-sts")
    statement = {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}
    conf["policy"] = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    return vpc_of(document)


def sts_endpoint_foreign_account(document: Document) -> str:
    """The STS endpoint's account condition names another account (staging's, copied into
    production's VPC)."""
    name, conf = named(document, "aws_vpc_endpoint", "interface-endpoint-sts")

    def change(policy: Document) -> None:
        for statement in policy["Statement"]:
            statement["Condition"]["StringEquals"]["aws:PrincipalAccount"] = "222222222222"

    edit_json(conf, "policy", change)
    return address("aws_vpc_endpoint", name)


def dynamodb_endpoint_any_account(document: Document) -> str:
    """The DynamoDB endpoint's principal condition dropped: any account's principals may use it
    on this account's tables (only `aws:ResourceAccount` is left)."""
    name, conf = named(document, "aws_vpc_endpoint", "gateway-endpoint-dynamodb")

    def change(policy: Document) -> None:
        for statement in policy["Statement"]:
            del statement["Condition"]["StringEquals"]["aws:PrincipalAccount"]

    edit_json(conf, "policy", change)
    return address("aws_vpc_endpoint", name)


def with_internet_gateway(document: Document) -> str:
    vpc = vpc_of(document)
    document["resource"]["aws_internet_gateway"] = {
        "igw": {"//": {"metadata": {"path": "mutant/igw"}}, "vpc_id": f"${{{vpc}.id}}"}
    }
    return vpc


def with_nat_gateway(document: Document) -> str:
    subnet, _ = named(document, "aws_subnet", "workload-subnet-0")
    document["resource"]["aws_nat_gateway"] = {
        "nat": {
            "//": {"metadata": {"path": "mutant/nat"}},
            "subnet_id": f"${{aws_subnet.{subnet}.id}}",
            "connectivity_type": "public",
        }
    }
    return vpc_of(document)


def subnets_in_one_zone(document: Document) -> str:
    """Every subnet placed in the zone of the first one (a copy-pasted availability_zone)."""
    _, first = named(document, "aws_subnet", "workload-subnet-0")
    for conf in document["resource"]["aws_subnet"].values():
        conf["availability_zone"] = first["availability_zone"]
    return vpc_of(document)


def default_security_group_with_aws_defaults(document: Document) -> str:
    """The default security group given back AWS's own rules: all traffic from members of the
    group, all traffic out."""
    _, conf = named(document, "aws_default_security_group", "network/default-security-group")
    every = {"from_port": 0, "to_port": 0, "protocol": "-1"}
    conf["ingress"] = [{**every, "self": True}]
    conf["egress"] = [{**every, "cidr_blocks": ["0.0.0.0/0"]}]
    return vpc_of(document)


def without_flow_log(document: Document) -> str:
    delete_resource(document, "aws_flow_log", "network/flow-log")
    return vpc_of(document)


def flow_log_rejected_only(document: Document) -> str:
    _, conf = named(document, "aws_flow_log", "network/flow-log")
    conf["traffic_type"] = "REJECT"
    return vpc_of(document)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="network-subnets-in-one-zone",
        layer="network",
        guarantee="VPC across 2-4 AZs",
        check_id="CKV_PHI_22",
        stack="prod-network",
        change="every subnet placed in the first availability zone",
        apply=subnets_in_one_zone,
    ),
    Mutant(
        name="network-subnet-public-ip",
        layer="network",
        guarantee="private-only VPC",
        check_id="CKV_AWS_130",
        stack="staging-network",
        change="a workload subnet assigns public IPs on launch",
        apply=set_attribute("aws_subnet", "workload-subnet-1", "map_public_ip_on_launch", True),
    ),
    Mutant(
        name="internet-gateway",
        layer="network",
        guarantee="no internet gateway",
        check_id="CKV_PHI_9",
        stack="dev-network",
        change="an internet gateway attached to the VPC",
        apply=with_internet_gateway,
        runtime=RuntimeTwin("RT_PHI_VPC_NO_INTERNET_GATEWAY", "internet gateway"),
    ),
    Mutant(
        name="nat-gateway",
        layer="network",
        guarantee="no NAT gateway",
        check_id="CKV_PHI_9",
        stack="eu-research-network",
        change="a public NAT gateway in a workload subnet",
        apply=with_nat_gateway,
        runtime=RuntimeTwin("RT_PHI_VPC_NO_INTERNET_GATEWAY", "NAT gateway"),
    ),
    Mutant(
        name="network-default-security-group-open",
        layer="network",
        guarantee="locked default security group",
        check_id="CKV2_AWS_12",
        stack="dev-network",
        change="the default security group given AWS's default rules (all from itself, all out)",
        apply=default_security_group_with_aws_defaults,
    ),
    Mutant(
        name="network-without-dynamodb-endpoint",
        layer="network",
        guarantee="S3/DynamoDB gateway endpoints",
        check_id="CKV_PHI_8",
        stack="staging-network",
        change="the DynamoDB gateway endpoint removed",
        apply=without_dynamodb_endpoint,
    ),
    Mutant(
        name="without-kms-endpoint",
        layer="network",
        guarantee="PrivateLink interface endpoints",
        check_id="CKV_PHI_8",
        stack="dev-network",
        change="the KMS interface endpoint removed",
        apply=without_kms_endpoint,
        runtime=RuntimeTwin("RT_PHI_VPC_ENDPOINTS", "KMS endpoint missing"),
    ),
    Mutant(
        name="sts-endpoint-full-access",
        layer="network",
        guarantee="endpoint policies admit only the account's principals",
        check_id="CKV_PHI_8",
        stack="eu-research-network",
        change="the STS endpoint's policy replaced by AWS's full-access default",
        apply=sts_endpoint_full_access,
        runtime=RuntimeTwin("RT_PHI_VPC_ENDPOINTS", "endpoint with the default full-access policy"),
    ),
    Mutant(
        name="network-sts-endpoint-foreign-account",
        layer="network",
        guarantee="endpoint policies admit only the account's principals",
        check_id="CKV_PHI_55",
        stack="prod-network",
        change="the STS endpoint's aws:PrincipalAccount condition names another account",
        apply=sts_endpoint_foreign_account,
    ),
    Mutant(
        name="network-dynamodb-endpoint-any-account",
        layer="network",
        guarantee="endpoint policies admit only the account's principals",
        check_id="CKV_PHI_55",
        stack="dev-network",
        change="the DynamoDB gateway endpoint's aws:PrincipalAccount condition dropped",
        apply=dynamodb_endpoint_any_account,
    ),
    Mutant(
        name="network-without-flow-log",
        layer="network",
        guarantee="flow logs",
        check_id="CKV2_AWS_11",
        stack="eu-research-network",
        change="the VPC's flow log removed",
        apply=without_flow_log,
        runtime=RuntimeTwin("RT_PHI_VPC_FLOW_LOGS", "flow log deleted"),
    ),
    Mutant(
        name="network-flow-log-rejected-only",
        layer="network",
        guarantee="flow logs of all traffic",
        check_id="CKV_PHI_23",
        stack="prod-network",
        change="the flow log records rejected traffic only",
        apply=flow_log_rejected_only,
    ),
    Mutant(
        name="network-flow-log-group-unencrypted",
        layer="network",
        guarantee="to a CMK-encrypted log group",
        check_id="CKV_AWS_158",
        stack="dev-network",
        change="the flow-log group's KMS key removed (CloudWatch Logs' own encryption)",
        apply=delete_attribute("aws_cloudwatch_log_group", "network/flow-log-group", "kms_key_id"),
    ),
    Mutant(
        name="flow-logs-one-year",
        layer="network",
        guarantee="flow logs kept >= 6 years",
        check_id="CKV_PHI_12",
        stack="dev-network",
        change="the flow-log group kept 365 days",
        apply=set_attribute(
            "aws_cloudwatch_log_group", "network/flow-log-group", "retention_in_days", 365
        ),
    ),
)
