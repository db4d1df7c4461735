"""Network layer: no path to the internet, AWS APIs only through endpoints confined to this
account, a default security group that admits nothing, and every flow logged encrypted."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest
from cdktf import TerraformResource

from modules.keys import CustomerManagedKey, CustomerManagedKeyConfig, KeyPurpose
from modules.network import Network, NetworkConfig, subnet_plan
from modules.policy import policy_document, statement
from tests.synth import only, resources, statement_by_sid, statements, synth_stack

ACCOUNT = "123456789012"
REGION = "eu-west-1"
VPC_CIDR = "10.42.0.0/16"
AZ_COUNT = 3
RETENTION = 2557
EXTRA_ENDPOINTS = ("healthlake", "kms", "healthlake", "glue")
# Written out, not imported: removing a service from the module must fail a test.
EXPECTED_REQUIRED_ENDPOINTS = (
    "sagemaker.api",
    "sagemaker.runtime",
    "kms",
    "sts",
    "logs",
    "events",
    "ecr.api",
    "ecr.dkr",
    "monitoring",
    "ssm",
    "ssmmessages",
    "ec2messages",
    "ec2",
    "xray",
)
INTERNET = ("0.0.0.0/0", "::/0")
INTERNET_GATEWAY_TYPES = (
    "aws_internet_gateway",
    "aws_nat_gateway",
    "aws_egress_only_internet_gateway",
)


def network_config(**overrides: Any) -> NetworkConfig:
    values: dict[str, Any] = {
        "environment": "unit",
        "account_id": ACCOUNT,
        "region": REGION,
        "vpc_cidr": VPC_CIDR,
        "az_count": AZ_COUNT,
        "extra_interface_endpoints": EXTRA_ENDPOINTS,
        "flow_log_retention_days": RETENTION,
    }
    values.update(overrides)
    return NetworkConfig(**values)


def build_network(stack: Any) -> Network:
    logs_key = CustomerManagedKey(
        stack,
        "logs-key",
        config=CustomerManagedKeyConfig(
            purpose=KeyPurpose.LOGS,
            alias="alias/unit/logs",
            account_id=ACCOUNT,
            region=REGION,
            administrators=(f"arn:aws:iam::{ACCOUNT}:role/key-admin",),
            users=(f"arn:aws:iam::{ACCOUNT}:role/data-engineer",),
        ),
    )
    return Network(stack, "network", config=network_config(), logs_key=logs_key)


@pytest.fixture(scope="module")
def network() -> dict[str, Any]:
    return synth_stack(build_network)


@pytest.fixture(scope="module")
def network_with_internet_paths() -> dict[str, Any]:
    """The same network plus every kind of internet path someone might add later."""

    def build(stack: Any) -> None:
        built = build_network(stack)

        def add(type_: str, id_: str, **attributes: Any) -> None:
            resource = TerraformResource(stack, id_, terraform_resource_type=type_)
            for key, value in attributes.items():
                resource.add_override(key, value)

        add("aws_internet_gateway", "igw", vpc_id=built.vpc_id)
        add("aws_nat_gateway", "nat", subnet_id=built.workload_subnet_ids[0])
        add("aws_egress_only_internet_gateway", "eigw", vpc_id=built.vpc_id)
        add(
            "aws_route",
            "default-route",
            route_table_id=built.route_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id="igw-123",
        )
        add(
            "aws_route",
            "default-route-v6",
            route_table_id=built.route_table.id,
            destination_ipv6_cidr_block="::/0",
            egress_only_gateway_id="eigw-123",
        )
        add(
            "aws_route_table",
            "public-routes",
            vpc_id=built.vpc_id,
            route=[{"cidr_block": "0.0.0.0/0", "gateway_id": "igw-123"}],
        )
        add("aws_subnet", "public-subnet", vpc_id=built.vpc_id, map_public_ip_on_launch=True)

    return synth_stack(build)


def internet_paths(synthesized: dict[str, Any]) -> set[str]:
    """Everything in the stack that would let traffic reach or come from the internet."""
    found = {
        f"{type_}.{name}"
        for type_ in INTERNET_GATEWAY_TYPES
        for name in resources(synthesized, type_)
    }
    for name, route in resources(synthesized, "aws_route").items():
        destinations = {
            route.get("destination_cidr_block"),
            route.get("destination_ipv6_cidr_block"),
        }
        if destinations & set(INTERNET):
            found.add(f"aws_route.{name}")
    for type_ in ("aws_route_table", "aws_default_route_table"):
        for name, table in resources(synthesized, type_).items():
            for route in table.get("route") or []:
                if {route.get("cidr_block"), route.get("ipv6_cidr_block")} & set(INTERNET):
                    found.add(f"{type_}.{name}")
    for name, subnet in resources(synthesized, "aws_subnet").items():
        if subnet.get("map_public_ip_on_launch") is not False:
            found.add(f"aws_subnet.{name}")
    return found


def reference(synthesized: dict[str, Any], type_: str, attribute: str) -> str:
    (name,) = resources(synthesized, type_)
    return f"${{{type_}.{name}.{attribute}}}"


def subnets_by_tier(synthesized: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    tiers: dict[str, dict[str, dict[str, Any]]] = {}
    for name, subnet in resources(synthesized, "aws_subnet").items():
        tiers.setdefault(subnet["tags"]["tier"], {})[name] = subnet
    return tiers


# --- no internet --------------------------------------------------------------------------


def test_network_has_no_internet_path(network: dict[str, Any]) -> None:
    assert internet_paths(network) == set()


def test_internet_path_detector_catches_each_kind_of_path(
    network_with_internet_paths: dict[str, Any],
) -> None:
    assert internet_paths(network_with_internet_paths) == {
        "aws_internet_gateway.igw",
        "aws_nat_gateway.nat",
        "aws_egress_only_internet_gateway.eigw",
        "aws_route.default-route",
        "aws_route.default-route-v6",
        "aws_route_table.public-routes",
        "aws_subnet.public-subnet",
    }


def test_the_private_route_table_has_no_routes(network: dict[str, Any]) -> None:
    table = only(network, "aws_route_table")
    assert table.get("route") in (None, [])
    assert resources(network, "aws_route") == {}


def test_every_subnet_uses_the_private_route_table(network: dict[str, Any]) -> None:
    table = reference(network, "aws_route_table", "id")
    associations = resources(network, "aws_route_table_association").values()
    assert sorted(a["subnet_id"] for a in associations) == sorted(
        f"${{aws_subnet.{name}.id}}" for name in resources(network, "aws_subnet")
    )
    assert {a["route_table_id"] for a in associations} == {table}


# --- subnets ------------------------------------------------------------------------------


def test_subnets_follow_the_plan_and_spread_across_zones(network: dict[str, Any]) -> None:
    workload, endpoint = subnet_plan(VPC_CIDR, AZ_COUNT)
    tiers = subnets_by_tier(network)
    assert sorted(s["cidr_block"] for s in tiers["workload"].values()) == sorted(workload)
    assert sorted(s["cidr_block"] for s in tiers["endpoint"].values()) == sorted(endpoint)
    for tier in tiers.values():
        zones = [s["availability_zone"] for s in tier.values()]
        assert len(set(zones)) == AZ_COUNT, zones
    vpc = reference(network, "aws_vpc", "id")
    assert all(s["vpc_id"] == vpc for tier in tiers.values() for s in tier.values())


def test_vpc_resolves_private_dns_names(network: dict[str, Any]) -> None:
    vpc = only(network, "aws_vpc")
    assert vpc["cidr_block"] == VPC_CIDR
    assert vpc["enable_dns_support"] is True and vpc["enable_dns_hostnames"] is True


def overlaps_or_escapes(vpc_cidr: str, subnets: list[str]) -> list[str]:
    """Subnets outside the VPC, and pairs of subnets that overlap."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    networks = [ipaddress.IPv4Network(s) for s in subnets]
    problems = [f"{n} outside {vpc}" for n in networks if not n.subnet_of(vpc)]
    problems += [
        f"{a} overlaps {b}" for a, b in itertools.combinations(networks, 2) if a.overlaps(b)
    ]
    return problems


@pytest.mark.parametrize("prefix", range(16, 25), ids=lambda p: f"/{p}")
@pytest.mark.parametrize("az_count", [2, 3, 4], ids=lambda n: f"{n}az")
def test_subnet_plan_gives_disjoint_subnets_inside_the_vpc(az_count: int, prefix: int) -> None:
    vpc_cidr = f"10.1.0.0/{prefix}"
    workload, endpoint = subnet_plan(vpc_cidr, az_count)
    assert len(workload) == len(endpoint) == az_count
    assert overlaps_or_escapes(vpc_cidr, workload + endpoint) == []
    assert {ipaddress.IPv4Network(s).prefixlen for s in workload + endpoint} == {prefix + 3}


def test_overlap_checker_catches_overlap_and_escape() -> None:
    assert overlaps_or_escapes("10.0.0.0/24", ["10.0.0.0/25", "10.0.0.64/26", "10.0.1.0/27"]) == [
        "10.0.1.0/27 outside 10.0.0.0/24",
        "10.0.0.0/25 overlaps 10.0.0.64/26",
    ]


# --- security groups ----------------------------------------------------------------------


def admits_traffic(security_group: dict[str, Any]) -> bool:
    return bool(security_group.get("ingress")) or bool(security_group.get("egress"))


def test_default_security_group_is_managed_and_admits_nothing(network: dict[str, Any]) -> None:
    default = only(network, "aws_default_security_group")
    assert default["vpc_id"] == reference(network, "aws_vpc", "id")
    assert not admits_traffic(default)


def test_admits_traffic_detects_rules() -> None:
    rule = {"from_port": 0, "to_port": 0, "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"]}
    assert admits_traffic({"ingress": [rule]}) and admits_traffic({"egress": [rule]})
    assert not admits_traffic({"ingress": [], "egress": []})


def test_endpoint_security_group_admits_only_https_from_the_vpc(network: dict[str, Any]) -> None:
    group = only(network, "aws_security_group")
    assert group["egress"] == [] and "ingress" not in group
    (rule,) = resources(network, "aws_vpc_security_group_ingress_rule").values()
    assert rule["security_group_id"] == reference(network, "aws_security_group", "id")
    assert (rule["ip_protocol"], rule["from_port"], rule["to_port"]) == ("tcp", 443, 443)
    assert rule["cidr_ipv4"] == VPC_CIDR


# --- endpoints ----------------------------------------------------------------------------


def endpoints(synthesized: dict[str, Any], endpoint_type: str) -> dict[str, dict[str, Any]]:
    """Service short name -> endpoint; fails on a duplicate service."""
    found: dict[str, dict[str, Any]] = {}
    prefix = f"com.amazonaws.{REGION}."
    for endpoint in resources(synthesized, "aws_vpc_endpoint").values():
        if endpoint["vpc_endpoint_type"] != endpoint_type:
            continue
        assert endpoint["service_name"].startswith(prefix), endpoint["service_name"]
        service = endpoint["service_name"].removeprefix(prefix)
        assert service not in found, f"duplicate endpoint {service}"
        found[service] = endpoint
    return found


def test_interface_endpoints_are_the_required_set_plus_deduplicated_extras(
    network: dict[str, Any],
) -> None:
    assert sorted(endpoints(network, "Interface")) == sorted(
        {*EXPECTED_REQUIRED_ENDPOINTS, "healthlake", "glue"}
    )


def test_interface_endpoint_list_puts_required_first_then_sorted_extras() -> None:
    assert network_config().interface_endpoints == (
        *EXPECTED_REQUIRED_ENDPOINTS,
        "glue",
        "healthlake",
    )


@pytest.mark.parametrize("service", [*EXPECTED_REQUIRED_ENDPOINTS, "healthlake", "glue"])
def test_interface_endpoint_is_private_in_endpoint_subnets_and_this_account_only(
    network: dict[str, Any], service: str
) -> None:
    endpoint = endpoints(network, "Interface")[service]
    assert endpoint["private_dns_enabled"] is True
    assert endpoint["vpc_id"] == reference(network, "aws_vpc", "id")
    endpoint_subnets = {f"${{aws_subnet.{n}.id}}" for n in subnets_by_tier(network)["endpoint"]}
    assert set(endpoint["subnet_ids"]) == endpoint_subnets
    assert len(endpoint["subnet_ids"]) == AZ_COUNT
    assert endpoint["security_group_ids"] == [reference(network, "aws_security_group", "id")]
    (only_this_account,) = statements(endpoint["policy"])
    assert only_this_account["Effect"] == "Allow"
    assert only_this_account["Condition"] == {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}


def unconfined_allows(policy_json: str, allowed_resources: set[str]) -> list[str]:
    """Sids of Allow statements not confined to this account's principals and resources
    (statements naming only `allowed_resources` are the exception)."""
    problems = []
    for candidate in statements(policy_json):
        if candidate["Effect"] != "Allow":
            continue
        named = candidate["Resource"]
        if isinstance(named, str) and named in allowed_resources:
            continue
        equals = candidate.get("Condition", {}).get("StringEquals", {})
        if equals.get("aws:PrincipalAccount") != ACCOUNT or (
            equals.get("aws:ResourceAccount") != ACCOUNT
        ):
            problems.append(candidate["Sid"])
    return problems


ECR_LAYERS = f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/*"
# Written out from the AL2023 user guide, not imported: a wrong bucket name must fail here.
AMAZON_LINUX_REPOSITORY = f"arn:aws:s3:::al2023-repos-{REGION}-de612dc2/*"


def test_s3_gateway_endpoint_admits_only_this_accounts_principals_and_buckets(
    network: dict[str, Any],
) -> None:
    s3 = endpoints(network, "Gateway")["s3"]
    assert s3["route_table_ids"] == [reference(network, "aws_route_table", "id")]
    assert unconfined_allows(s3["policy"], {ECR_LAYERS, AMAZON_LINUX_REPOSITORY}) == []
    layers = statement_by_sid(s3["policy"], "EcrImageLayers")
    assert (layers["Action"], layers["Resource"]) == ("s3:GetObject", ECR_LAYERS)
    repository = statement_by_sid(s3["policy"], "AmazonLinuxPackageRepositories")
    assert (repository["Action"], repository["Resource"]) == (
        "s3:GetObject",
        AMAZON_LINUX_REPOSITORY,
    )


def test_dynamodb_gateway_endpoint_admits_only_this_accounts_principals_and_tables(
    network: dict[str, Any],
) -> None:
    dynamodb = endpoints(network, "Gateway")["dynamodb"]
    assert dynamodb["route_table_ids"] == [reference(network, "aws_route_table", "id")]
    assert unconfined_allows(dynamodb["policy"], set()) == []


def test_gateway_endpoints_are_exactly_s3_and_dynamodb(network: dict[str, Any]) -> None:
    assert sorted(endpoints(network, "Gateway")) == ["dynamodb", "s3"]


def test_endpoint_policy_checker_catches_unconfined_statements() -> None:
    policy = policy_document(
        statement("Open", effect="Allow", principal="*", actions="s3:*", resources="*"),
        statement(
            "PrincipalOnly",
            effect="Allow",
            principal="*",
            actions="s3:*",
            resources="*",
            condition={"StringEquals": {"aws:PrincipalAccount": ACCOUNT}},
        ),
        statement(
            "OtherLayers",
            effect="Allow",
            principal="*",
            actions="s3:GetObject",
            resources="arn:aws:s3:::someone-elses-bucket/*",
        ),
    )
    assert unconfined_allows(policy, {ECR_LAYERS}) == ["Open", "PrincipalOnly", "OtherLayers"]


# --- flow logs ----------------------------------------------------------------------------


def test_flow_log_records_all_traffic_of_the_vpc_into_its_log_group(
    network: dict[str, Any],
) -> None:
    flow_log = only(network, "aws_flow_log")
    assert flow_log["traffic_type"] == "ALL"
    assert flow_log["vpc_id"] == reference(network, "aws_vpc", "id")
    assert flow_log["log_destination_type"] == "cloud-watch-logs"
    assert flow_log["log_destination"] == reference(network, "aws_cloudwatch_log_group", "arn")
    assert flow_log["iam_role_arn"] == reference(network, "aws_iam_role", "arn")


def test_flow_log_group_is_encrypted_with_the_logs_key_and_kept_as_configured(
    network: dict[str, Any],
) -> None:
    group = only(network, "aws_cloudwatch_log_group")
    assert group["kms_key_id"] == reference(network, "aws_kms_key", "arn")
    assert group["retention_in_days"] == RETENTION
    assert group["name"] == "/phi-ml/unit/vpc-flow-logs"


def test_flow_log_role_is_assumable_only_by_flow_logs_for_this_account(
    network: dict[str, Any],
) -> None:
    (trust,) = statements(only(network, "aws_iam_role")["assume_role_policy"])
    assert trust["Effect"] == "Allow"
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_flow_log_role_writes_only_to_its_log_group(network: dict[str, Any]) -> None:
    role_policy = only(network, "aws_iam_role_policy")
    assert role_policy["role"] == reference(network, "aws_iam_role", "id")
    (deliver,) = statements(role_policy["policy"])
    group = reference(network, "aws_cloudwatch_log_group", "arn")
    assert deliver["Resource"] == [group, f"{group}:*"]
    assert all(action.startswith("logs:") and "*" not in action for action in deliver["Action"])
