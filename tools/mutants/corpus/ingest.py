"""Mutants of the ingest layer (modules/ingest.py)."""

from __future__ import annotations

from tools.mutants.edits import address, delete_resource, named, set_attribute
from tools.mutants.model import Document, Mutant, RuntimeTwin

VPN = "ingest/vpn-connection"


def tunnel_logging_off(document: Document) -> str:
    name, conf = named(document, "aws_vpn_connection", VPN)
    conf["tunnel2_log_options"]["cloudwatch_log_options"]["log_enabled"] = False
    return address("aws_vpn_connection", name)


def without_route_propagation(document: Document) -> str:
    delete_resource(document, "aws_vpn_gateway_route_propagation", "ingest/route-propagation")
    name, _ = named(document, "aws_vpn_gateway", "ingest/vpn-gateway")
    return address("aws_vpn_gateway", name)


def direct_connect_advertises_the_network(document: Document) -> str:
    """The association advertises a supernet of every environment's VPC (10.0.0.0/8)."""
    name, conf = named(document, "aws_dx_gateway_association", "ingest/dx-gateway-association")
    conf["allowed_prefixes"] = ["10.0.0.0/8"]
    return address("aws_dx_gateway_association", name)


def site_ingress_all_ports(document: Document) -> str:
    name, conf = named(document, "aws_vpc_security_group_ingress_rule", "ingest/site-https-0")
    conf["from_port"], conf["to_port"] = 0, 65535
    return address("aws_vpc_security_group_ingress_rule", name)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="vpn-ikev1",
        layer="ingest",
        guarantee="both tunnels IKEv2 only",
        check_id="CKV_PHI_16",
        stack="dev-network",
        change="tunnel 1 admits IKEv1",
        apply=set_attribute("aws_vpn_connection", VPN, "tunnel1_ike_versions", ["ikev1", "ikev2"]),
    ),
    Mutant(
        name="ingest-vpn-aes128",
        layer="ingest",
        guarantee="AES-256",
        check_id="CKV_PHI_16",
        stack="prod-network",
        change="tunnel 1's phase 2 admits AES-128",
        apply=set_attribute(
            "aws_vpn_connection", VPN, "tunnel1_phase2_encryption_algorithms", ["AES128", "AES256"]
        ),
    ),
    Mutant(
        name="ingest-vpn-sha1",
        layer="ingest",
        guarantee="SHA-2",
        check_id="CKV_PHI_16",
        stack="staging-network",
        change="tunnel 2's phase 1 admits SHA-1",
        apply=set_attribute(
            "aws_vpn_connection", VPN, "tunnel2_phase1_integrity_algorithms", ["SHA1", "SHA2-256"]
        ),
    ),
    Mutant(
        name="vpn-dh-group-2",
        layer="ingest",
        guarantee="DH groups 14-21",
        check_id="CKV_PHI_16",
        stack="eu-research-network",
        change="tunnel 2 admits Diffie-Hellman group 2",
        apply=set_attribute("aws_vpn_connection", VPN, "tunnel2_phase1_dh_group_numbers", [2, 14]),
    ),
    Mutant(
        name="ingest-tunnel-logs-off",
        layer="ingest",
        guarantee="tunnel logs",
        check_id="CKV_PHI_24",
        stack="dev-network",
        change="tunnel 2's CloudWatch logging disabled",
        apply=tunnel_logging_off,
    ),
    Mutant(
        name="ingest-without-route-propagation",
        layer="ingest",
        guarantee="BGP route propagation",
        check_id="CKV_PHI_25",
        stack="eu-research-network",
        change="the VPN gateway's route propagation to the private route table removed",
        apply=without_route_propagation,
    ),
    Mutant(
        name="ingest-direct-connect-advertises-10-8",
        layer="ingest",
        guarantee="optional Direct Connect gateway advertising only the VPC",
        check_id="CKV_PHI_25",
        stack="prod-network",
        change="the Direct Connect association advertises 10.0.0.0/8 instead of the VPC's CIDR",
        apply=direct_connect_advertises_the_network,
    ),
    Mutant(
        name="ingest-site-ingress-all-ports",
        layer="ingest",
        guarantee="HTTPS-only ingress from site ranges",
        check_id="CKV_PHI_26",
        stack="dev-network",
        change="the clinical-site ingress rule opened to every TCP port",
        apply=site_ingress_all_ports,
        runtime=RuntimeTwin("RT_PHI_VPC_NO_OPEN_INGRESS", "open security group"),
    ),
)
