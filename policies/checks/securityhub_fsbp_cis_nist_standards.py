"""CKV_PHI_53 "Ensure every Security Hub account subscribes to AWS Foundational Security Best
Practices, CIS AWS Foundations 3.0 or later and NIST SP 800-53 Rev. 5".

HIPAA 45 CFR 164.308(a)(1)(ii)(A) and (B) (risk analysis and management), 164.308(a)(8)
(evaluation); GDPR Art. 32(1)(d) (regularly testing and evaluating the measures). Security Hub
evaluates only the standards an account subscribes to, and the HIPAA Security Rule crosswalk
the compliance team uses runs through NIST SP 800-53 Rev. 5; CIS 3.0.0 is the first CIS version
whose controls Security Hub evaluates with consolidated control findings.

Judged, with the stack in view: each `aws_securityhub_account` passes when the stack has an
`aws_securityhub_standards_subscription` whose `standards_arn` is
`arn:<partition>:securityhub:<region>::standards/<standard>/v/<version>` (any partition and
region; an interpolated region counts) for each of
- `aws-foundational-security-best-practices`, version 1.0.0 or later;
- `cis-aws-foundations-benchmark`, version 3.0.0 or later (not the 1.2.0 `ruleset`, not 1.4.0);
- `nist-800-53`, version 5.0.0 or later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import scalar
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

ACCOUNT = "aws_securityhub_account"
SUBSCRIPTION = "aws_securityhub_standards_subscription"
STANDARD_ARN = re.compile(
    r"^arn:[a-z-]+:securityhub:[^:]*::standards/(?P<standard>[a-z0-9-]+)/v/"
    r"(?P<version>\d+(?:\.\d+)*)$"
)
FSBP = "aws-foundational-security-best-practices"
CIS = "cis-aws-foundations-benchmark"
NIST = "nist-800-53"
# standard -> (name in a message, lowest version accepted)
REQUIRED: dict[str, tuple[str, tuple[int, ...]]] = {
    FSBP: ("AWS Foundational Security Best Practices", (1, 0, 0)),
    CIS: ("CIS AWS Foundations Benchmark 3.0", (3, 0, 0)),
    NIST: ("NIST SP 800-53 Rev. 5", (5, 0, 0)),
}


def subscribed(stack: Stack) -> dict[str, tuple[int, ...]]:
    """Each standard the stack subscribes to -> the highest version subscribed."""
    found: dict[str, tuple[int, ...]] = {}
    for conf in stack.resources(SUBSCRIPTION).values():
        match = STANDARD_ARN.match(str(scalar(conf, "standards_arn") or ""))
        if match is None:
            continue
        version = tuple(int(part) for part in match["version"].split("."))
        standard = match["standard"]
        found[standard] = max(found.get(standard, version), version)
    return found


class SecurityhubFsbpCisNistStandards(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every Security Hub account subscribes to AWS Foundational Security Best "
                "Practices, CIS AWS Foundations 3.0 or later and NIST SP 800-53 Rev. 5"
            ),
            id="CKV_PHI_53",
            category=CheckCategories.GENERAL_SECURITY,
            judged_types=[ACCOUNT],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        standards = subscribed(stack)
        missing = [
            label
            for standard, (label, lowest) in REQUIRED.items()
            if standards.get(standard, ()) < lowest
        ]
        for name in sorted(stack.resources(ACCOUNT)):
            yield Verdict(
                address(ACCOUNT, name), not missing, "not subscribed: " + ", ".join(missing)
            )


check = register(SecurityhubFsbpCisNistStandards())
