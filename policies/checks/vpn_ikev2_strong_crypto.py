"""CKV_PHI_16 "Ensure both VPN tunnels use IKEv2 only, AES-256, SHA-2 and DH groups 14-21".

Clinical sites send PHI over the site-to-site VPN: HIPAA 45 CFR 164.312(e)(1) and (e)(2)(ii)
(transmission security, encryption), GDPR Art. 32. Unset tunnel options fall back to AWS's
defaults, which admit IKEv1, AES-128, SHA-1 and DH groups 2 and 5. For `tunnel1_` and
`tunnel2_` each, `aws_vpn_connection` must set:
- `ike_versions` to `ikev2` only;
- phase 1 and phase 2 `encryption_algorithms` within AES256, AES256-GCM-16;
- phase 1 and phase 2 `integrity_algorithms` within SHA2-256, SHA2-384, SHA2-512;
- phase 1 and phase 2 `dh_group_numbers` within 14-21 (MODP >= 2048 bits and the ECP groups;
  not 22-24, whose small subgroups RFC 8247 deprecates).
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import scalars

IKE_VERSIONS = frozenset({"ikev2"})
ENCRYPTION_ALGORITHMS = frozenset({"AES256", "AES256-GCM-16"})
INTEGRITY_ALGORITHMS = frozenset({"SHA2-256", "SHA2-384", "SHA2-512"})
DH_GROUPS = frozenset(range(14, 22))
TUNNELS = ("tunnel1", "tunnel2")
PHASES = ("phase1", "phase2")


def _within(conf: dict[str, Any], key: str, allowed: frozenset[Any]) -> str | None:
    """Why `key` is not a non-empty subset of `allowed`, or None when it is."""
    values = scalars(conf, key)
    if not values:
        return f"{key} unset (AWS defaults admit weak choices)"
    weak = sorted(str(v) for v in values if v not in allowed)
    return f"{key} admits {', '.join(weak)}" if weak else None


class VpnIkev2StrongCrypto(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure both VPN tunnels use IKEv2 only, AES-256, SHA-2 and DH groups 14-21",
            id="CKV_PHI_16",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["aws_vpn_connection"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        rules: list[tuple[str, frozenset[Any]]] = []
        for tunnel in TUNNELS:
            rules.append((f"{tunnel}_ike_versions", IKE_VERSIONS))
            for phase in PHASES:
                rules.append((f"{tunnel}_{phase}_encryption_algorithms", ENCRYPTION_ALGORITHMS))
                rules.append((f"{tunnel}_{phase}_integrity_algorithms", INTEGRITY_ALGORITHMS))
                rules.append((f"{tunnel}_{phase}_dh_group_numbers", DH_GROUPS))
        self.evaluated_keys = [key for key, _ in rules]
        for key, allowed in rules:
            if (problem := _within(conf, key, allowed)) is not None:
                self.details.append(problem)
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = VpnIkev2StrongCrypto()
