"""CKV_PHI_34 "Ensure security group egress allows only HTTPS to private addresses, AWS
prefix lists or security groups".

Every workload of the platform reaches AWS through the VPC's endpoints (PrivateLink interface
endpoints in the VPC, the S3 and DynamoDB gateway endpoints through their prefix lists), over
TLS. Egress on another port or to a public address is a path for PHI to leave unencrypted or to
leave the VPC at all (HIPAA 45 CFR 164.312(e)(1) transmission security and 164.312(a)(1) access
control, GDPR Art. 32 and Chapter V, EHDS secure processing environments); the VPC having no
internet gateway (CKV_PHI_9) is the second wall, not a reason to open the first.

Judged: every `aws_vpc_security_group_egress_rule`, every `aws_security_group_rule` of type
`egress` and every inline `egress` block of an `aws_security_group` (a group without one has no
egress: Terraform removes AWS's default allow-all rule). Each must allow TCP port 443 only
(`from_port` = `to_port` = 443) and name as its destination only: IPv4 ranges inside the
private address space (RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) or a VPC's
`cidr_block` by reference; AWS service prefix lists by reference to a `data.aws_prefix_list`
(how the S3 and DynamoDB gateway endpoints' lists are found); security groups by reference.
IPv6 destinations, literal prefix-list or security-group ids, and `self` fail: what they admit
cannot be read from the configuration.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import blocks, is_true, scalar, scalars

HTTPS = 443
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
TCP = {"tcp", "6"}
_VPC_CIDR = re.compile(r"^\$\{(?:data\.)?aws_vpc\.[A-Za-z0-9_-]+\.cidr_block\}$")
_PREFIX_LIST = re.compile(r"^\$\{data\.aws_prefix_list\.[A-Za-z0-9_-]+\.id\}$")
_SECURITY_GROUP = re.compile(r"^\$\{(?:data\.)?aws_security_group\.[A-Za-z0-9_-]+\.id\}$")


def _private_ipv4(value: Any) -> bool:
    if isinstance(value, str) and _VPC_CIDR.match(value):
        return True
    try:
        network = ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return False
    return any(network.subnet_of(private) for private in PRIVATE_RANGES)


def _aws_prefix_list(value: Any) -> bool:
    return isinstance(value, str) and _PREFIX_LIST.match(value) is not None


def _security_group(value: Any) -> bool:
    return isinstance(value, str) and _SECURITY_GROUP.match(value) is not None


def _port(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def rule_problems(
    protocol: Any,
    from_port: Any,
    to_port: Any,
    destinations: dict[str, list[Any]],
) -> list[str]:
    """Why an egress rule allows more than HTTPS to the VPC, prefix lists or groups."""
    problems = []
    if str(protocol).lower() not in TCP or _port(from_port) != HTTPS or _port(to_port) != HTTPS:
        problems.append(f"allows protocol {protocol!r} ports {from_port!r}-{to_port!r}, not HTTPS")
    rules: dict[str, Callable[[Any], bool]] = {
        "cidr": _private_ipv4,
        "prefix_list": _aws_prefix_list,
        "security_group": _security_group,
    }
    named = 0
    for kind, values in destinations.items():
        for value in values:
            named += 1
            rule = rules.get(kind)
            if rule is None or not rule(value):
                problems.append(f"allows {kind} destination {value!r}")
    if not named:
        problems.append("names no destination")
    return problems


def _destinations(conf: dict[str, Any], keys: dict[str, str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for key, kind in keys.items():
        values = [v for v in scalars(conf, key) if v not in (None, "")]
        if values:
            found.setdefault(kind, []).extend(values)
    if is_true(scalar(conf, "self")):
        found.setdefault("self", []).append(True)
    return found


RULE_KEYS = {
    "cidr_ipv4": "cidr",
    "cidr_ipv6": "ipv6",
    "prefix_list_id": "prefix_list",
    "referenced_security_group_id": "security_group",
}
BLOCK_KEYS = {
    "cidr_blocks": "cidr",
    "ipv6_cidr_blocks": "ipv6",
    "prefix_list_ids": "prefix_list",
    "security_groups": "security_group",
    "source_security_group_id": "security_group",
}


class SecurityGroupEgressHttpsWithinVpc(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure security group egress allows only HTTPS to private addresses, AWS "
                "prefix lists or security groups"
            ),
            id="CKV_PHI_34",
            categories=[CheckCategories.NETWORKING],
            supported_resources=[
                "aws_vpc_security_group_egress_rule",
                "aws_security_group_rule",
                "aws_security_group",
            ],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        if self.entity_type == "aws_vpc_security_group_egress_rule":
            self.evaluated_keys = ["ip_protocol", "from_port", "to_port", *RULE_KEYS]
            problems = rule_problems(
                scalar(conf, "ip_protocol"),
                scalar(conf, "from_port"),
                scalar(conf, "to_port"),
                _destinations(conf, RULE_KEYS),
            )
        elif self.entity_type == "aws_security_group_rule":
            if scalar(conf, "type") != "egress":
                return CheckResult.UNKNOWN
            self.evaluated_keys = ["protocol", "from_port", "to_port", *BLOCK_KEYS]
            problems = rule_problems(
                scalar(conf, "protocol"),
                scalar(conf, "from_port"),
                scalar(conf, "to_port"),
                _destinations(conf, BLOCK_KEYS),
            )
        else:
            self.evaluated_keys = ["egress"]
            problems = [
                f"egress {index}: {problem}"
                for index, egress in enumerate(blocks(conf, "egress"))
                for problem in rule_problems(
                    scalar(egress, "protocol"),
                    scalar(egress, "from_port"),
                    scalar(egress, "to_port"),
                    _destinations(egress, BLOCK_KEYS),
                )
            ]
        self.details.extend(problems)
        return CheckResult.FAILED if problems else CheckResult.PASSED


check = SecurityGroupEgressHttpsWithinVpc()
