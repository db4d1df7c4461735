"""CKV_PHI_26 "Ensure security group ingress admits only HTTPS (TCP 443) from private ranges".

Clinical sites, and workloads inside the VPC, reach PHI services on HTTPS only, where TLS 1.2+
protects the data end to end; any other port is a plaintext or management path the platform
never opens. Sources are private address ranges (the VPC, clinical sites over the VPN or
Direct Connect), never the internet. HIPAA 45 CFR 164.312(a)(1) (access control) and
164.312(e)(1) (transmission security), GDPR Art. 32(1)(b), EHDS Art. 73(1). checkov's own
checks flag 0.0.0.0/0 on a few ports (22, 80, 3389, all) only.

Judged: every ingress rule the platform can write:
- `aws_vpc_security_group_ingress_rule`;
- `aws_security_group_rule` with `type` `ingress`;
- each inline `ingress` block of an `aws_security_group` (none passes).
A rule passes when its protocol is TCP (`tcp` or `6`), its port range is 443 to 443, and its
every source is a private range: a literal IPv4 CIDR within 10.0.0.0/8, 172.16.0.0/12,
192.168.0.0/16 or 100.64.0.0/10 (RFC 1918, RFC 6598), an IPv6 CIDR within fc00::/7, another
security group, the group itself, or a managed prefix list. A source given by an expression
(which could be anything) fails.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import blocks, is_set, is_true, scalar, scalars

HTTPS = 443
TCP = frozenset({"tcp", "6"})
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# Sources that name AWS objects of the account rather than address ranges.
OBJECT_SOURCE_KEYS = (
    "referenced_security_group_id",
    "source_security_group_id",
    "security_groups",
    "prefix_list_id",
    "prefix_list_ids",
)
CIDR_KEYS = ("cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks")


def _private(cidr: Any) -> bool:
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False
    return any(
        network.version == private.version and network.subnet_of(private)  # type: ignore[arg-type]
        for private in PRIVATE_RANGES
    )


def _rule_problems(rule: dict[str, Any], protocol_key: str) -> list[str]:
    problems = []
    protocol = str(scalar(rule, protocol_key)).lower()
    if protocol not in TCP:
        problems.append(f"protocol {protocol}")
    ports = (scalar(rule, "from_port"), scalar(rule, "to_port"))
    if ports != (HTTPS, HTTPS):
        problems.append(f"ports {ports[0]}-{ports[1]}")
    cidrs = [c for key in CIDR_KEYS for c in scalars(rule, key)]
    public = sorted(str(c) for c in cidrs if not _private(c))
    if public:
        problems.append(f"from {', '.join(public)}")
    has_object_source = is_true(scalar(rule, "self")) or any(
        is_set(v) for key in OBJECT_SOURCE_KEYS for v in scalars(rule, key)
    )
    if not cidrs and not has_object_source:
        problems.append("no source")
    return problems


class SecurityGroupIngressHttpsFromPrivateRanges(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure security group ingress admits only HTTPS (TCP 443) from private ranges",
            id="CKV_PHI_26",
            categories=[CheckCategories.NETWORKING],
            supported_resources=[
                "aws_vpc_security_group_ingress_rule",
                "aws_security_group_rule",
                "aws_security_group",
            ],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        if self.entity_type == "aws_vpc_security_group_ingress_rule":
            rules, protocol_key = [conf], "ip_protocol"
        elif self.entity_type == "aws_security_group_rule":
            if str(scalar(conf, "type")).lower() != "ingress":
                return CheckResult.UNKNOWN
            rules, protocol_key = [conf], "protocol"
        else:
            rules, protocol_key = blocks(conf, "ingress"), "protocol"
        self.evaluated_keys = ["ingress"] if self.entity_type == "aws_security_group" else []
        for index, rule in enumerate(rules):
            for problem in _rule_problems(rule, protocol_key):
                self.details.append(f"rule {index}: {problem}" if len(rules) > 1 else problem)
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = SecurityGroupIngressHttpsFromPrivateRanges()
