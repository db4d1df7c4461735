"""Private-only VPC for PHI: no internet path, AWS services through PrivateLink only."""

from __future__ import annotations

import ipaddress

from cdktf import Fn
from constructs import Construct
from pydantic import Field

from modules import aws
from modules.config import LayerConfig
from modules.endpoints import GATEWAY_ENDPOINTS, REQUIRED_INTERFACE_ENDPOINTS
from modules.keys import CustomerManagedKey
from modules.policy import assume_role_policy, policy_document, statement

HTTPS = 443


class NetworkConfig(LayerConfig):
    environment: str
    account_id: str
    region: str
    vpc_cidr: str
    az_count: int = Field(ge=2, le=4)
    extra_interface_endpoints: tuple[str, ...] = ()
    flow_log_retention_days: int = Field(ge=1)

    @property
    def interface_endpoints(self) -> tuple[str, ...]:
        extras = [
            s for s in self.extra_interface_endpoints if s not in REQUIRED_INTERFACE_ENDPOINTS
        ]
        return REQUIRED_INTERFACE_ENDPOINTS + tuple(sorted(set(extras)))


def subnet_plan(vpc_cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """Workload and endpoint subnets: eight equal slices, workloads first, endpoints from 4."""
    slices = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=3))
    workload = [str(s) for s in slices[:az_count]]
    endpoint = [str(s) for s in slices[4 : 4 + az_count]]
    return workload, endpoint


def interface_endpoint_policy(account_id: str) -> str:
    """Only this account's principals may use the endpoint (a data-perimeter control)."""
    return policy_document(
        statement(
            "OnlyThisAccountsPrincipals",
            effect="Allow",
            principal="*",
            actions="*",
            resources="*",
            condition={"StringEquals": {"aws:PrincipalAccount": account_id}},
        )
    )


def ecr_image_layer_objects(region: str) -> str:
    """ECR's image-layer bucket, which image pulls through the ECR endpoints read from."""
    return f"arn:aws:s3:::prod-{region}-starport-layer-bucket/*"


def amazon_linux_repository_objects(region: str) -> str:
    """The regional Amazon Linux 2023 package repository bucket `dnf` reads from (AWS names
    it in the AL2023 user guide's "accessing repositories from a VPC without internet").

    Its requests are anonymous, so no principal condition can confine them; the statement
    grants reads of that one AWS-owned bucket and nothing else."""
    return f"arn:aws:s3:::al2023-repos-{region}-de612dc2/*"


def s3_gateway_endpoint_policy(account_id: str, region: str) -> str:
    """This account's principals, this account's buckets; plus the two AWS-owned buckets
    the VPC's hosts must read without an internet path: ECR's image layers (image pulls)
    and the Amazon Linux 2023 package repository (the enclave hosts' `dnf install`)."""
    return policy_document(
        statement(
            "OnlyThisAccountsPrincipalsAndBuckets",
            effect="Allow",
            principal="*",
            actions="s3:*",
            resources="*",
            condition={
                "StringEquals": {
                    "aws:PrincipalAccount": account_id,
                    "aws:ResourceAccount": account_id,
                }
            },
        ),
        statement(
            "EcrImageLayers",
            effect="Allow",
            principal="*",
            actions="s3:GetObject",
            resources=ecr_image_layer_objects(region),
        ),
        statement(
            "AmazonLinuxPackageRepositories",
            effect="Allow",
            principal="*",
            actions="s3:GetObject",
            resources=amazon_linux_repository_objects(region),
        ),
    )


def dynamodb_gateway_endpoint_policy(account_id: str) -> str:
    return policy_document(
        statement(
            "OnlyThisAccountsPrincipalsAndTables",
            effect="Allow",
            principal="*",
            actions="dynamodb:*",
            resources="*",
            condition={
                "StringEquals": {
                    "aws:PrincipalAccount": account_id,
                    "aws:ResourceAccount": account_id,
                }
            },
        )
    )


class Network(Construct):
    """PHI never leaves the VPC: there is no internet or NAT gateway, the default security
    group allows nothing, AWS APIs are reached through endpoints that admit only this
    account, and every flow is logged to an encrypted log group kept six years or more."""

    def __init__(
        self, scope: Construct, id_: str, *, config: NetworkConfig, logs_key: CustomerManagedKey
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        name = f"phi-ml-{config.environment}"
        self.vpc = aws.Vpc(
            self,
            "vpc",
            cidr_block=config.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # private DNS names of interface endpoints need both
            tags={"Name": name},
        )
        self.vpc_id: str = self.vpc.id
        # Managed with no rules: anything placed in the default group can talk to nothing. The
        # default network ACL stays open on purpose: without an internet gateway it admits only
        # the VPC, the VPN and the gateway endpoints (whose S3 answers come from public ranges).
        aws.DefaultSecurityGroup(self, "default-security-group", vpc_id=self.vpc.id)
        zones = aws.DataAwsAvailabilityZones(self, "zones", state="available")
        workload_cidrs, endpoint_cidrs = subnet_plan(config.vpc_cidr, config.az_count)
        self.route_table = aws.RouteTable(
            self, "private-routes", vpc_id=self.vpc.id, tags={"Name": f"{name}-private"}
        )
        self.workload_subnet_ids: list[str] = []
        self.endpoint_subnet_ids: list[str] = []
        for tier, cidrs, ids in (
            ("workload", workload_cidrs, self.workload_subnet_ids),
            ("endpoint", endpoint_cidrs, self.endpoint_subnet_ids),
        ):
            for index, cidr in enumerate(cidrs):
                subnet = aws.Subnet(
                    self,
                    f"{tier}-subnet-{index}",
                    vpc_id=self.vpc.id,
                    cidr_block=cidr,
                    availability_zone=Fn.element(zones.names, index),
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{name}-{tier}-{index}", "tier": tier},
                )
                aws.RouteTableAssociation(
                    self,
                    f"{tier}-subnet-{index}-routes",
                    subnet_id=subnet.id,
                    route_table_id=self.route_table.id,
                )
                ids.append(subnet.id)

        self.endpoint_security_group = aws.SecurityGroup(
            self,
            "endpoint-security-group",
            name=f"{name}-privatelink-endpoints",
            description="HTTPS from inside the VPC to PrivateLink endpoints; no egress",
            vpc_id=self.vpc.id,
            egress=[],
            tags={"Name": f"{name}-privatelink-endpoints"},
        )
        aws.VpcSecurityGroupIngressRule(
            self,
            "endpoint-https-from-vpc",
            security_group_id=self.endpoint_security_group.id,
            description="HTTPS from the VPC",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4=config.vpc_cidr,
        )

        gateway_policies = {
            "s3": s3_gateway_endpoint_policy(config.account_id, config.region),
            "dynamodb": dynamodb_gateway_endpoint_policy(config.account_id),
        }
        for service in GATEWAY_ENDPOINTS:
            aws.VpcEndpoint(
                self,
                f"gateway-endpoint-{service}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{config.region}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=[self.route_table.id],
                policy=gateway_policies[service],
                tags={"Name": f"{name}-{service}"},
            )
        self.interface_endpoints: dict[str, object] = {}
        for service in config.interface_endpoints:
            self.interface_endpoints[service] = aws.VpcEndpoint(
                self,
                f"interface-endpoint-{service.replace('.', '-')}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{config.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=self.endpoint_subnet_ids,
                security_group_ids=[self.endpoint_security_group.id],
                policy=interface_endpoint_policy(config.account_id),
                tags={"Name": f"{name}-{service}"},
            )

        self._flow_logs(name, config, logs_key)

    def _flow_logs(self, name: str, config: NetworkConfig, logs_key: CustomerManagedKey) -> None:
        log_group = aws.CloudwatchLogGroup(
            self,
            "flow-log-group",
            name=f"/phi-ml/{config.environment}/vpc-flow-logs",
            retention_in_days=config.flow_log_retention_days,
            kms_key_id=logs_key.key_arn,
        )
        role = aws.IamRole(
            self,
            "flow-log-role",
            name=f"{name}-vpc-flow-logs",
            assume_role_policy=assume_role_policy("vpc-flow-logs.amazonaws.com", config.account_id),
        )
        aws.IamRolePolicy(
            self,
            "flow-log-delivery",
            name="deliver-to-its-log-group-only",
            role=role.id,
            policy=policy_document(
                statement(
                    "DeliverFlowLogs",
                    effect="Allow",
                    actions=[
                        "logs:CreateLogStream",
                        "logs:DescribeLogStreams",
                        "logs:PutLogEvents",
                    ],
                    resources=[log_group.arn, f"{log_group.arn}:*"],
                )
            ),
        )
        self.flow_log = aws.FlowLog(
            self,
            "flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags={"Name": f"{name}-flow-log"},
        )
        self.flow_log_group_name: str = log_group.name
