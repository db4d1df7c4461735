"""CKV_PHI_24 "Ensure both VPN tunnels log their activity to a CloudWatch log group".

Tunnel logs record every IKE and IPsec negotiation, rekey and dead-peer event of the link
clinical sites send PHI over: HIPAA 45 CFR 164.312(b) (audit controls) and
164.308(a)(1)(ii)(D) (activity review), 164.308(a)(6)(ii) (security incidents), GDPR Art.
32(1)(b). AWS keeps no tunnel logs unless asked.

Judged: every `aws_vpn_connection`. For `tunnel1_` and `tunnel2_` each, `log_options` must hold
`cloudwatch_log_options` with `log_enabled` true and a `log_group_arn`.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import block, is_set, is_true, scalar

TUNNELS = ("tunnel1", "tunnel2")


def _logging_problem(conf: dict[str, Any], tunnel: str) -> str | None:
    """Why a tunnel's activity is not logged, or None when it is."""
    options = block(block(conf, f"{tunnel}_log_options") or {}, "cloudwatch_log_options")
    if options is None:
        return f"{tunnel}: no cloudwatch_log_options"
    if not is_true(scalar(options, "log_enabled")):
        return f"{tunnel}: log_enabled is not true"
    if not is_set(scalar(options, "log_group_arn")):
        return f"{tunnel}: no log_group_arn"
    return None


class VpnTunnelsLogToCloudwatch(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure both VPN tunnels log their activity to a CloudWatch log group",
            id="CKV_PHI_24",
            categories=[CheckCategories.LOGGING],
            supported_resources=["aws_vpn_connection"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = [f"{tunnel}_log_options" for tunnel in TUNNELS]
        for tunnel in TUNNELS:
            if (problem := _logging_problem(conf, tunnel)) is not None:
                self.details.append(problem)
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = VpnTunnelsLogToCloudwatch()
