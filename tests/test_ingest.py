"""Ingest layer: IPsec tunnels pinned to strong algorithms and logged encrypted, routes learnt
over BGP, Direct Connect advertising only the VPC, and sites admitted on HTTPS only."""

from __future__ import annotations

from typing import Any

import pytest

from modules import aws
from modules.ingest import Ingest as IngestLayer
from modules.ingest import IngestConfig, VpnPeerConfig, tunnel_options
from modules.keys import CustomerManagedKey, CustomerManagedKeyConfig, KeyPurpose
from tests.synth import only, resources, synth_stack

ACCOUNT = "123456789012"
REGION = "eu-west-1"
VPC_CIDR = "10.42.0.0/16"
ONPREM = ("192.168.16.0/20", "172.20.0.0/16")
PEER_IP = "203.0.113.77"
PEER_ASN = 65077
AMAZON_ASN = 64513
DX_ASN = 64600
RETENTION = 2192
TUNNELS = (1, 2)
PHASES = ("phase1", "phase2")

STRONG_ENCRYPTION = {"AES256", "AES256-GCM-16"}
STRONG_INTEGRITY = {"SHA2-256", "SHA2-384", "SHA2-512"}
# Security strength in bits of each IKE Diffie-Hellman group AWS offers (NIST SP 800-57 pt 1,
# RFC 3526 / 5114 / 5903). 112 bits is the floor: what group 14 (2048-bit MODP) provides.
# Group 22 is a 1024-bit MODP group despite its number.
DH_GROUP_STRENGTH = {
    2: 80, 5: 96, 14: 112, 15: 128, 16: 152, 17: 176, 18: 200,
    19: 128, 20: 192, 21: 256, 22: 80, 23: 112, 24: 112,
}  # fmt: skip
MINIMUM_DH_STRENGTH = 112


def weak_tunnel_settings(connection: dict[str, Any], tunnel: int) -> dict[str, list[str]]:
    """Per category, what in one tunnel's settings is weak. An unpinned list is weak too:
    AWS then offers its defaults, which include IKEv1, AES-128, SHA-1 and DH group 2."""
    prefix = f"tunnel{tunnel}_"

    def pinned(setting: str) -> list[Any]:
        values = connection.get(prefix + setting)
        return list(values) if values else ["<unpinned>"]

    problems: dict[str, list[str]] = {
        "ike_versions": [v for v in pinned("ike_versions") if v != "ikev2"],
        "encryption": [],
        "integrity": [],
        "dh_groups": [],
    }
    for phase in PHASES:
        problems["encryption"] += [
            f"{phase}:{v}"
            for v in pinned(f"{phase}_encryption_algorithms")
            if v not in STRONG_ENCRYPTION
        ]
        problems["integrity"] += [
            f"{phase}:{v}"
            for v in pinned(f"{phase}_integrity_algorithms")
            if v not in STRONG_INTEGRITY
        ]
        problems["dh_groups"] += [
            f"{phase}:{v}"
            for v in pinned(f"{phase}_dh_group_numbers")
            if DH_GROUP_STRENGTH.get(v, 0) < MINIMUM_DH_STRENGTH
        ]
    return problems


def build_ingest(*, vpn: bool, direct_connect: bool) -> dict[str, Any]:
    def build(stack: Any) -> None:
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
        vpc = aws.Vpc(stack, "vpc", cidr_block=VPC_CIDR)
        routes = aws.RouteTable(stack, "routes", vpc_id=vpc.id)
        IngestLayer(
            stack,
            "ingest",
            config=IngestConfig(
                environment="unit",
                region=REGION,
                account_id=ACCOUNT,
                amazon_side_asn=AMAZON_ASN,
                vpn=VpnPeerConfig(peer_ip=PEER_IP, bgp_asn=PEER_ASN, onprem_cidrs=ONPREM)
                if vpn
                else None,
                direct_connect_asn=DX_ASN if direct_connect else None,
                vpc_cidr=VPC_CIDR,
                tunnel_log_retention_days=RETENTION,
            ),
            vpc_id=vpc.id,
            route_table_id=routes.id,
            logs_key=logs_key,
        )

    return synth_stack(build)


@pytest.fixture(scope="module")
def both() -> dict[str, Any]:
    return build_ingest(vpn=True, direct_connect=True)


@pytest.fixture(scope="module")
def vpn_only() -> dict[str, Any]:
    return build_ingest(vpn=True, direct_connect=False)


@pytest.fixture(scope="module")
def direct_connect_only() -> dict[str, Any]:
    return build_ingest(vpn=False, direct_connect=True)


def reference(synthesized: dict[str, Any], type_: str, attribute: str) -> str:
    (name,) = resources(synthesized, type_)
    return f"${{{type_}.{name}.{attribute}}}"


# --- tunnel cryptography ------------------------------------------------------------------


@pytest.mark.parametrize(
    "category",
    [
        "ike_versions",
        "encryption",
        "integrity",
        "dh_groups",
    ],
)
@pytest.mark.parametrize("tunnel", TUNNELS, ids=lambda t: f"tunnel{t}")
def test_tunnel_negotiates_only_strong_algorithms(
    both: dict[str, Any], tunnel: int, category: str
) -> None:
    connection = only(both, "aws_vpn_connection")
    assert weak_tunnel_settings(connection, tunnel)[category] == []


@pytest.mark.parametrize("tunnel", TUNNELS, ids=lambda t: f"tunnel{t}")
def test_tunnel_dh_group_numbers_are_all_at_least_14(both: dict[str, Any], tunnel: int) -> None:
    """The numeric rule the module states; the strength rule above is the stricter one."""
    connection = only(both, "aws_vpn_connection")
    for phase in PHASES:
        groups = connection[f"tunnel{tunnel}_{phase}_dh_group_numbers"]
        assert groups and min(groups) >= 14, (phase, groups)


def test_weak_tunnel_settings_are_caught() -> None:
    weak = tunnel_options(1, "arn:aws:logs:eu-west-1:123456789012:log-group:x")
    weak["tunnel1_ike_versions"] = ["ikev1", "ikev2"]
    weak["tunnel1_phase1_encryption_algorithms"] = ["AES128", "AES256"]
    weak["tunnel1_phase2_encryption_algorithms"] = ["AES128-GCM-16"]
    weak["tunnel1_phase1_integrity_algorithms"] = ["SHA1", "SHA2-256"]
    weak["tunnel1_phase1_dh_group_numbers"] = [14, 19]
    weak["tunnel1_phase2_dh_group_numbers"] = [2, 14, 22]
    del weak["tunnel1_phase2_integrity_algorithms"]
    assert weak_tunnel_settings(weak, 1) == {
        "ike_versions": ["ikev1"],
        "encryption": ["phase1:AES128", "phase2:AES128-GCM-16"],
        "integrity": ["phase1:SHA1", "phase2:<unpinned>"],
        "dh_groups": ["phase2:2", "phase2:22"],
    }


def test_strong_tunnel_settings_pass_the_checker() -> None:
    """Twin of the weak case: a config limited to the strong set yields no problem."""
    strong = {
        "tunnel2_ike_versions": ["ikev2"],
        **{f"tunnel2_{p}_encryption_algorithms": ["AES256-GCM-16"] for p in PHASES},
        **{f"tunnel2_{p}_integrity_algorithms": ["SHA2-384"] for p in PHASES},
        **{f"tunnel2_{p}_dh_group_numbers": [14, 19, 20, 21] for p in PHASES},
    }
    assert weak_tunnel_settings(strong, 2) == {
        "ike_versions": [],
        "encryption": [],
        "integrity": [],
        "dh_groups": [],
    }


@pytest.mark.parametrize("tunnel", TUNNELS, ids=lambda t: f"tunnel{t}")
def test_tunnel_activity_is_logged_to_the_encrypted_tunnel_log_group(
    both: dict[str, Any], tunnel: int
) -> None:
    connection = only(both, "aws_vpn_connection")
    assert connection[f"tunnel{tunnel}_log_options"] == {
        "cloudwatch_log_options": {
            "log_enabled": True,
            "log_group_arn": reference(both, "aws_cloudwatch_log_group", "arn"),
            "log_output_format": "json",
        }
    }


def test_tunnel_log_group_is_encrypted_with_the_logs_key(both: dict[str, Any]) -> None:
    group = only(both, "aws_cloudwatch_log_group")
    assert group["kms_key_id"] == reference(both, "aws_kms_key", "arn")
    assert group["retention_in_days"] == RETENTION


# --- routing ------------------------------------------------------------------------------


def test_vpn_connects_the_site_over_bgp(both: dict[str, Any]) -> None:
    connection = only(both, "aws_vpn_connection")
    assert connection["static_routes_only"] is False
    assert connection["type"] == "ipsec.1"
    assert connection["vpn_gateway_id"] == reference(both, "aws_vpn_gateway", "id")
    assert connection["customer_gateway_id"] == reference(both, "aws_customer_gateway", "id")
    site = only(both, "aws_customer_gateway")
    assert (site["ip_address"], site["bgp_asn"], site["type"]) == (
        PEER_IP,
        str(PEER_ASN),
        "ipsec.1",
    )


def test_vpn_gateway_is_in_the_vpc_with_the_amazon_side_asn(both: dict[str, Any]) -> None:
    gateway = only(both, "aws_vpn_gateway")
    assert gateway["vpc_id"] == reference(both, "aws_vpc", "id")
    assert gateway["amazon_side_asn"] == str(AMAZON_ASN)


def test_routes_propagate_into_the_given_route_table(both: dict[str, Any]) -> None:
    propagation = only(both, "aws_vpn_gateway_route_propagation")
    assert propagation["route_table_id"] == reference(both, "aws_route_table", "id")
    assert propagation["vpn_gateway_id"] == reference(both, "aws_vpn_gateway", "id")


def test_direct_connect_advertises_only_the_vpc(both: dict[str, Any]) -> None:
    association = only(both, "aws_dx_gateway_association")
    assert association["allowed_prefixes"] == [VPC_CIDR]
    assert association["dx_gateway_id"] == reference(both, "aws_dx_gateway", "id")
    assert association["associated_gateway_id"] == reference(both, "aws_vpn_gateway", "id")
    assert only(both, "aws_dx_gateway")["amazon_side_asn"] == str(DX_ASN)


# --- what exists when -----------------------------------------------------------------------

VPN_TYPES = ("aws_vpn_connection", "aws_customer_gateway", "aws_cloudwatch_log_group")
DX_TYPES = ("aws_dx_gateway", "aws_dx_gateway_association")


def present(synthesized: dict[str, Any], types: tuple[str, ...]) -> dict[str, int]:
    return {t: len(resources(synthesized, t)) for t in types if resources(synthesized, t)}


def test_both_paths_exist_when_both_are_configured(both: dict[str, Any]) -> None:
    """Twin of the two tests below: the same check sees VPN and DX resources."""
    assert present(both, VPN_TYPES) == dict.fromkeys(VPN_TYPES, 1)
    assert present(both, DX_TYPES) == dict.fromkeys(DX_TYPES, 1)


def test_no_vpn_resources_without_a_vpn(direct_connect_only: dict[str, Any]) -> None:
    assert present(direct_connect_only, VPN_TYPES) == {}
    assert present(direct_connect_only, DX_TYPES) == dict.fromkeys(DX_TYPES, 1)


def test_no_direct_connect_resources_without_an_asn(vpn_only: dict[str, Any]) -> None:
    assert present(vpn_only, DX_TYPES) == {}
    assert present(vpn_only, VPN_TYPES) == dict.fromkeys(VPN_TYPES, 1)


# --- site security group ------------------------------------------------------------------


def non_https_or_foreign(rules: list[dict[str, Any]], allowed_cidrs: tuple[str, ...]) -> list[str]:
    """Ingress rules that admit anything but TCP 443 from an allowed on-premises range."""
    return [
        f"{r.get('ip_protocol')}:{r.get('from_port')}-{r.get('to_port')} from {r.get('cidr_ipv4')}"
        for r in rules
        if (r.get("ip_protocol"), r.get("from_port"), r.get("to_port")) != ("tcp", 443, 443)
        or r.get("cidr_ipv4") not in allowed_cidrs
    ]


def test_sites_reach_the_vpc_on_https_only(both: dict[str, Any]) -> None:
    group = only(both, "aws_security_group")
    assert group["egress"] == [] and "ingress" not in group
    rules = list(resources(both, "aws_vpc_security_group_ingress_rule").values())
    assert {r["security_group_id"] for r in rules} == {reference(both, "aws_security_group", "id")}
    assert non_https_or_foreign(rules, ONPREM) == []
    assert sorted(r["cidr_ipv4"] for r in rules) == sorted(ONPREM)


def test_https_check_catches_other_ports_and_foreign_ranges() -> None:
    rules = [
        {"ip_protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_ipv4": ONPREM[0]},
        {"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_ipv4": ONPREM[0]},
        {"ip_protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_ipv4": "0.0.0.0/0"},
        {"ip_protocol": "-1", "cidr_ipv4": ONPREM[1]},
    ]
    assert non_https_or_foreign(rules, ONPREM) == [
        f"tcp:22-22 from {ONPREM[0]}",
        "tcp:443-443 from 0.0.0.0/0",
        f"-1:None-None from {ONPREM[1]}",
    ]


def test_without_a_vpn_no_site_range_is_admitted(direct_connect_only: dict[str, Any]) -> None:
    assert resources(direct_connect_only, "aws_vpc_security_group_ingress_rule") == {}
    assert only(direct_connect_only, "aws_security_group")["egress"] == []
