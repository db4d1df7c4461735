"""CKV_PHI_39 "Ensure every Lambda function runs one invocation at a time (reserved concurrency
1)".

The platform's functions change what serves or runs in production: the deployer switches the
endpoint to an approved version, the rollback function returns it to the previous one, the
quarantine function isolates an instance. Two invocations at once race (two approvals, or an
approval and a rollback, could leave either configuration serving, and the registry's history
would not say which), so each runs alone; reserved concurrency 1 also keeps a burst of events
from exhausting the account's concurrency. FDA change control expectations (one controlled
change at a time), EU AI Act Art. 15 (robustness), HIPAA 45 CFR 164.312(c)(1) (integrity).
checkov's CKV_AWS_115 only asks that a limit is set; this check asks for exactly 1.

Judged: every `aws_lambda_function`; it passes when `reserved_concurrent_executions` is 1.
Unset (-1, unreserved), 0 (throttled: the function never runs) or any other number fails. A
future function that must run in parallel takes a written exemption.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import scalar

ONE_AT_A_TIME = 1


class LambdaReservedConcurrencyOne(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every Lambda function runs one invocation at a time "
                "(reserved concurrency 1)"
            ),
            id="CKV_PHI_39",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["aws_lambda_function"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["reserved_concurrent_executions"]
        value = scalar(conf, "reserved_concurrent_executions")
        if isinstance(value, bool) or str(value).strip() != str(ONE_AT_A_TIME):
            self.details.append(f"reserved_concurrent_executions is {value!r}, not 1")
            return CheckResult.FAILED
        return CheckResult.PASSED


check = LambdaReservedConcurrencyOne()
