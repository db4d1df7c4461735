"""Private ingest from clinical sites: IPsec site-to-site VPN and/or Direct Connect."""

from __future__ import annotations

from typing import Any

from constructs import Construct
from pydantic import Field

from modules import aws
from modules.config import LayerConfig
from modules.keys import CustomerManagedKey

# Both tunnels negotiate only these. IKEv1, AES-128, SHA-1 and every Diffie-Hellman group
# below 112-bit strength are refused (NIST SP 800-77r1, SP 800-57). RFC 8247 advises against
# groups 22-24 (MODP with small prime-order subgroups; 22 is only 1024-bit), so they are out too.
IKE_VERSIONS = ["ikev2"]
ENCRYPTION_ALGORITHMS = ["AES256", "AES256-GCM-16"]
INTEGRITY_ALGORITHMS = ["SHA2-256", "SHA2-384", "SHA2-512"]
DH_GROUP_NUMBERS = [14, 15, 16, 17, 18, 19, 20, 21]
HTTPS = 443


class VpnPeerConfig(LayerConfig):
    peer_ip: str
    bgp_asn: int
    onprem_cidrs: tuple[str, ...] = Field(min_length=1)


class IngestConfig(LayerConfig):
    environment: str
    region: str
    account_id: str
    amazon_side_asn: int = Field(ge=64512, le=65534)
    vpn: VpnPeerConfig | None = None
    direct_connect_asn: int | None = Field(default=None, ge=64512, le=65534)
    vpc_cidr: str
    tunnel_log_retention_days: int = Field(ge=1)


def tunnel_options(tunnel: int, log_group_arn: str) -> dict[str, Any]:
    """The IPsec parameters of one tunnel, as aws_vpn_connection arguments."""
    prefix = f"tunnel{tunnel}_"
    options: dict[str, Any] = {
        "ike_versions": IKE_VERSIONS,
        "phase1_encryption_algorithms": ENCRYPTION_ALGORITHMS,
        "phase2_encryption_algorithms": ENCRYPTION_ALGORITHMS,
        "phase1_integrity_algorithms": INTEGRITY_ALGORITHMS,
        "phase2_integrity_algorithms": INTEGRITY_ALGORITHMS,
        "phase1_dh_group_numbers": DH_GROUP_NUMBERS,
        "phase2_dh_group_numbers": DH_GROUP_NUMBERS,
        "dpd_timeout_action": "restart",
        "startup_action": "start",
        "log_options": {
            "cloudwatch_log_options": {
                "log_enabled": True,
                "log_group_arn": log_group_arn,
                "log_output_format": "json",
            }
        },
    }
    return {prefix + key: value for key, value in options.items()}


class Ingest(Construct):
    """Clinical data arrives only over private, encrypted paths: an IPsec VPN with IKEv2,
    AES-256, SHA-2 and DH groups 14-21 on both tunnels (tunnel activity logged), and/or
    a Direct Connect gateway. Sites reach the VPC on HTTPS only (TLS 1.2+ is enforced by
    the services behind it)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: IngestConfig,
        vpc_id: str,
        route_table_id: str,
        logs_key: CustomerManagedKey,
    ) -> None:
        super().__init__(scope, id_)
        name = f"phi-ml-{config.environment}"
        self.vpn_gateway = aws.VpnGateway(
            self,
            "vpn-gateway",
            vpc_id=vpc_id,
            amazon_side_asn=str(config.amazon_side_asn),
            tags={"Name": f"{name}-vgw"},
        )
        # Routes to the sites are learnt over BGP, never typed in by hand.
        aws.VpnGatewayRoutePropagation(
            self,
            "route-propagation",
            vpn_gateway_id=self.vpn_gateway.id,
            route_table_id=route_table_id,
        )
        self.vpn_connection: Any = None
        if config.vpn is not None:
            self._vpn(name, config, config.vpn, logs_key)
        self.direct_connect_gateway: Any = None
        if config.direct_connect_asn is not None:
            self.direct_connect_gateway = aws.DxGateway(
                self,
                "dx-gateway",
                name=f"{name}-dxgw",
                amazon_side_asn=str(config.direct_connect_asn),
            )
            aws.DxGatewayAssociation(
                self,
                "dx-gateway-association",
                dx_gateway_id=self.direct_connect_gateway.id,
                associated_gateway_id=self.vpn_gateway.id,
                # Advertise the VPC only: the sites learn nothing else of the AWS network.
                allowed_prefixes=[config.vpc_cidr],
            )
        self.site_security_group = aws.SecurityGroup(
            self,
            "site-ingress",
            name=f"{name}-clinical-site-ingress",
            description="HTTPS from clinical sites over the VPN or Direct Connect only",
            vpc_id=vpc_id,
            egress=[],
            tags={"Name": f"{name}-clinical-site-ingress"},
        )
        onprem = config.vpn.onprem_cidrs if config.vpn is not None else ()
        for index, cidr in enumerate(onprem):
            aws.VpcSecurityGroupIngressRule(
                self,
                f"site-https-{index}",
                security_group_id=self.site_security_group.id,
                description=f"HTTPS from clinical site range {cidr}",
                ip_protocol="tcp",
                from_port=HTTPS,
                to_port=HTTPS,
                cidr_ipv4=cidr,
            )

    def _vpn(
        self, name: str, config: IngestConfig, peer: VpnPeerConfig, logs_key: CustomerManagedKey
    ) -> None:
        self.customer_gateway = aws.CustomerGateway(
            self,
            "customer-gateway",
            bgp_asn=str(peer.bgp_asn),
            ip_address=peer.peer_ip,
            type="ipsec.1",
            tags={"Name": f"{name}-clinical-site"},
        )
        tunnel_logs = aws.CloudwatchLogGroup(
            self,
            "tunnel-log-group",
            name=f"/phi-ml/{config.environment}/vpn-tunnels",
            retention_in_days=config.tunnel_log_retention_days,
            kms_key_id=logs_key.key_arn,
        )
        self.vpn_connection = aws.VpnConnection(
            self,
            "vpn-connection",
            vpn_gateway_id=self.vpn_gateway.id,
            customer_gateway_id=self.customer_gateway.id,
            type="ipsec.1",
            static_routes_only=False,
            tunnel_inside_ip_version="ipv4",
            tags={"Name": f"{name}-clinical-site"},
            **tunnel_options(1, tunnel_logs.arn),
            **tunnel_options(2, tunnel_logs.arn),
        )
