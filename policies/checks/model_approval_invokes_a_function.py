"""CKV_PHI_40 "Ensure every Model Registry approval rule invokes a function through
EventBridge, with retries and a dead-letter queue".

Only a person's decision in the registry puts a model version in service (FDA change control:
a reviewed, recorded release; EU AI Act Art. 14, human oversight; Art. 12, record-keeping): the
registry's approval rule starts the deployer, which re-reads the version and serves only an
Approved one. An approval event lost between the rule and the function would leave the decision
unapplied with no trace, so the delivery is retried and, failing that, kept in a dead-letter
queue (HIPAA 45 CFR 164.312(c)(1), integrity; 164.312(b), audit controls).

Judged, with the stack in view: each `aws_cloudwatch_event_rule` whose `event_pattern` selects
`aws.sagemaker` "SageMaker Model Package State Change" events. It passes when the rule is
enabled; its pattern admits `Approved` versions (`detail.ModelApprovalStatus` absent or listing
`Approved`) of named model package groups (`detail.ModelPackageGroupName`); and an
`aws_cloudwatch_event_target` of the stack attaches it to an `aws_lambda_function` of the stack
with a retry policy (at least one retry) and a dead-letter queue, and an `aws_lambda_permission`
lets `events.amazonaws.com` invoke that function from this rule (`source_arn`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._documents import as_list, get_path
from policies.checks._event_routes import (
    event_pattern,
    function_target_problem,
    matches_events,
    rule_enabled,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

# Written out here, not imported from the module that builds the rule: a check never imports
# the code it judges.
SOURCE = "aws.sagemaker"
DETAIL_TYPE = "SageMaker Model Package State Change"
APPROVED = "Approved"


def rule_problem(
    stack: Stack, name: str, rule: dict[str, Any], pattern: dict[str, Any]
) -> str | None:
    if not rule_enabled(rule):
        return "the rule is disabled"
    statuses = as_list(get_path(pattern, "detail", "ModelApprovalStatus"))
    if statuses and APPROVED not in statuses:
        return f"the rule does not match {APPROVED} versions"
    groups = as_list(get_path(pattern, "detail", "ModelPackageGroupName"))
    if not groups or not all(isinstance(g, str) and g for g in groups):
        return "the rule does not name the model package groups"
    return function_target_problem(stack, name)


class ModelApprovalInvokesAFunction(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every Model Registry approval rule invokes a function through "
                "EventBridge, with retries and a dead-letter queue"
            ),
            id="CKV_PHI_40",
            category=CheckCategories.GENERAL_SECURITY,
            judged_types=["aws_cloudwatch_event_rule"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for name, rule in stack.resources("aws_cloudwatch_event_rule").items():
            pattern = event_pattern(rule)
            if pattern is None or not matches_events(pattern, SOURCE, DETAIL_TYPE):
                continue
            problem = rule_problem(stack, name, rule, pattern)
            yield Verdict(
                address("aws_cloudwatch_event_rule", name), problem is None, problem or ""
            )


check = register(ModelApprovalInvokesAFunction())
