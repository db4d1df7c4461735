"""CKV_PHI_37 "Ensure Model Monitor runs that complete with violations invoke a function through
EventBridge, with retries and a dead-letter queue".

A model whose inputs drift away from its baseline may no longer be safe or effective: the
platform acts on drift at once (the rollback function returns the endpoint to the previous
approved version) instead of waiting for a person. FDA's predetermined change control plan
expectations (performance monitoring and a defined response), EU AI Act Art. 9 (risk management)
and Art. 72 (post-market monitoring), HIPAA 45 CFR 164.308(a)(1)(ii)(B) (risk management).

SageMaker reports each monitoring run as a processing job: "SageMaker Processing Job State
Change" events from `aws.sagemaker` whose detail carries the `MonitoringScheduleArn`, and a run
that finds violations ends `Completed` with an `ExitMessage` starting `CompletedWithViolations`.
Judged, with the stack in view: each `aws_cloudwatch_event_rule` whose `event_pattern` selects
those events for named monitoring schedules and admits completed runs (`ProcessingJobStatus`
absent or listing `Completed`). It passes when the rule is enabled; its pattern matches
`Completed` runs only, and only those whose `ExitMessage` has the prefix
`CompletedWithViolations` (a clean run never acts); and an `aws_cloudwatch_event_target` of the
stack attaches it to an `aws_lambda_function` of the stack with a retry policy (at least one
retry) and a dead-letter queue, and an `aws_lambda_permission` lets `events.amazonaws.com`
invoke that function from this rule (`source_arn`). Rules for failed or stopped runs are judged
by CKV_PHI_38, which also fails a stack whose schedule has no violations rule at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._event_routes import (
    COMPLETED,
    VIOLATIONS_EXIT_MESSAGE,
    admits_status,
    event_pattern,
    exit_message_filter,
    function_target_problem,
    job_statuses,
    monitoring_schedules,
    rule_enabled,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, register


def rule_problem(
    stack: Stack, name: str, rule: dict[str, Any], pattern: dict[str, Any]
) -> str | None:
    """Why a rule acting on completed monitoring runs does not roll back on violations only."""
    if not rule_enabled(rule):
        return "the rule is disabled"
    if job_statuses(pattern) != [COMPLETED]:
        return f"the rule does not match {COMPLETED} runs only"
    if exit_message_filter(pattern) != VIOLATIONS_EXIT_MESSAGE:
        return "the rule does not match runs that completed with violations only"
    return function_target_problem(stack, name)


class ModelMonitorViolationsInvokeAFunction(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure Model Monitor runs that complete with violations invoke a function "
                "through EventBridge, with retries and a dead-letter queue"
            ),
            id="CKV_PHI_37",
            category=CheckCategories.GENERAL_SECURITY,
            judged_types=["aws_cloudwatch_event_rule"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for name, rule in stack.resources("aws_cloudwatch_event_rule").items():
            pattern = event_pattern(rule)
            if pattern is None or not monitoring_schedules(pattern):
                continue
            if not admits_status(pattern, COMPLETED):
                continue
            problem = rule_problem(stack, name, rule, pattern)
            yield Verdict(
                address("aws_cloudwatch_event_rule", name), problem is None, problem or ""
            )


check = register(ModelMonitorViolationsInvokeAFunction())
