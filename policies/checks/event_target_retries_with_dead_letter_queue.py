"""CKV_PHI_33 "Ensure an EventBridge target that starts a pipeline or a function retries and
keeps undelivered events in a dead-letter queue".

The platform's automation runs on events: a succeeded feature build starts training, an
approval starts the deployer, a drift violation starts the rollback, a finding starts the
quarantine. An event EventBridge gives up on is work that silently never happens (a model
version never trained on the data that was built for it, an approved version never deployed, a
compromised instance never isolated). HIPAA 45 CFR 164.308(a)(7) (contingency: nothing lost
without trace) and 164.312(b) (audit controls), FDA's change control expectations and EU AI
Act Art. 12 (every run traceable, failures included) ask that each failed delivery is retried
and then kept where a person can see and replay it.

Judged: every `aws_cloudwatch_event_target` whose `arn` is a SageMaker pipeline or a Lambda
function (a `${aws_sagemaker_pipeline...}`, `${aws_lambda_function...}` or
`${aws_lambda_alias...}` reference, a literal pipeline or function ARN, or a target with a
`sagemaker_pipeline_target` block). It passes when `dead_letter_config.arn` names a queue and
EventBridge retries: a `retry_policy`, when given, must have a literal
`maximum_retry_attempts` of at least 1 (without one EventBridge's default applies: retries for
24 hours). Targets of topics, queues and other services are not judged here. That the queue
itself is encrypted is CKV_AWS_27's.
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import block, blocks, is_set, scalar

_STARTS_WORK = re.compile(
    r"\$\{(?:aws_sagemaker_pipeline|aws_lambda_function|aws_lambda_alias)\."
    r"|^arn:[^:]+:sagemaker:[^:]*:[^:]*:pipeline/"
    r"|^arn:[^:]+:lambda:[^:]*:[^:]*:function:"
)


def starts_work(conf: dict[str, Any]) -> bool:
    arn = scalar(conf, "arn")
    return bool(blocks(conf, "sagemaker_pipeline_target")) or (
        isinstance(arn, str) and _STARTS_WORK.search(arn) is not None
    )


class EventTargetRetriesWithDeadLetterQueue(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure an EventBridge target that starts a pipeline or a function retries and "
                "keeps undelivered events in a dead-letter queue"
            ),
            id="CKV_PHI_33",
            categories=[CheckCategories.LOGGING],
            supported_resources=["aws_cloudwatch_event_target"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["arn", "retry_policy", "dead_letter_config"]
        if not starts_work(conf):
            return CheckResult.UNKNOWN
        dead_letters = block(conf, "dead_letter_config")
        if dead_letters is None or not is_set(scalar(dead_letters, "arn")):
            self.details.append("no dead_letter_config queue: undelivered events are dropped")
        retry = block(conf, "retry_policy")
        if retry is not None:
            attempts = scalar(retry, "maximum_retry_attempts")
            if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
                self.details.append(
                    f"retry_policy.maximum_retry_attempts is {attempts!r}: failed deliveries are "
                    "not retried"
                )
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = EventTargetRetriesWithDeadLetterQueue()
