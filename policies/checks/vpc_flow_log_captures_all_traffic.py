"""CKV_PHI_23 "Ensure a PHI VPC has a flow log capturing all traffic (accepted and rejected)".

Flow logs are the network's audit trail: HIPAA 45 CFR 164.312(b) (audit controls) and
164.308(a)(1)(ii)(D) (information system activity review), GDPR Art. 32(1)(b), EHDS Art.
73(1)(e). A flow log of rejected traffic only (`REJECT`) misses every connection that did
reach PHI; one of accepted traffic only (`ACCEPT`) misses the probing. checkov's CKV2_AWS_11
asks only that some flow log exists.

Judged, with the stack in view: every `aws_vpc` (the platform creates VPCs for PHI workloads
only). It passes when an `aws_flow_log` of the stack whose `vpc_id` refers to it has
`traffic_type` `ALL` and a destination (`log_destination`, or the deprecated
`log_group_name`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import is_set
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

ALL_TRAFFIC = "ALL"


def captures_all_traffic(conf: dict[str, Any]) -> bool:
    has_destination = is_set(conf.get("log_destination")) or is_set(conf.get("log_group_name"))
    return str(conf.get("traffic_type", "")).upper() == ALL_TRAFFIC and has_destination


class VpcFlowLogCapturesAllTraffic(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a PHI VPC has a flow log capturing all traffic (accepted and rejected)",
            id="CKV_PHI_23",
            category=CheckCategories.LOGGING,
            judged_types=["aws_vpc"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        flow_logs = stack.resources("aws_flow_log")
        for vpc in sorted(stack.resources("aws_vpc")):
            own = [c for c in flow_logs.values() if refers_to(c.get("vpc_id"), "aws_vpc", vpc)]
            if any(captures_all_traffic(c) for c in own):
                yield Verdict(address("aws_vpc", vpc), True, "")
            else:
                kinds = sorted(str(c.get("traffic_type")) for c in own) or ["no flow log"]
                yield Verdict(address("aws_vpc", vpc), False, ", ".join(kinds))


check = register(VpcFlowLogCapturesAllTraffic())
