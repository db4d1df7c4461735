"""EventBridge routes in a stack: a rule, its targets, and what they deliver to.

The checks that say "this event reaches that function (or topic)" read the same things: whether
a rule is enabled, its event pattern, the targets of the stack naming it, and whether a target
invokes a function of the stack with retries, a dead-letter queue and a permission that lets
only that rule invoke it. Everything is read from the stack's raw Terraform JSON
(`_stack.Stack`), where a reference is an interpolation such as `${aws_lambda_function.x.arn}`.
"""

from __future__ import annotations

from typing import Any

from policies.checks._conf import block, is_set, json_document
from policies.checks._documents import as_list, get_path
from policies.checks._stack import Stack, referenced_names, refers_to

EVENTS_PRINCIPAL = "events.amazonaws.com"
INVOKE = "lambda:InvokeFunction"


def rule_enabled(rule: dict[str, Any]) -> bool:
    return str(rule.get("state", "ENABLED")).upper() == "ENABLED" and rule.get("is_enabled") in (
        None,
        True,
        "true",
    )


def event_pattern(rule: dict[str, Any]) -> dict[str, Any] | None:
    return json_document(rule.get("event_pattern"))


def matches_events(pattern: dict[str, Any], source: str, detail_type: str) -> bool:
    """The pattern selects exactly these events (one source, one detail type)."""
    return as_list(pattern.get("source")) == [source] and as_list(pattern.get("detail-type")) == [
        detail_type
    ]


def targets_of(stack: Stack, rule_name: str) -> list[dict[str, Any]]:
    """The stack's targets attached to the rule `rule_name`."""
    return [
        target
        for target in stack.resources("aws_cloudwatch_event_target").values()
        if refers_to(target.get("rule"), "aws_cloudwatch_event_rule", rule_name)
    ]


def delivery_problem(target: dict[str, Any]) -> str | None:
    """Why a target may lose events (no retries, no dead-letter queue), or None."""
    retry = block(target, "retry_policy")
    attempts = retry.get("maximum_retry_attempts") if retry else None
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        return "its target has no retry policy with at least one retry"
    dead_letters = block(target, "dead_letter_config")
    if dead_letters is None or not is_set(dead_letters.get("arn")):
        return "its target has no dead-letter queue"
    return None


def function_target_problem(stack: Stack, rule_name: str) -> str | None:
    """None when one of the rule's targets invokes a function of the stack, with retries and a
    dead-letter queue, and a permission lets EventBridge invoke that function from this rule;
    otherwise why not (the first problem of each function target, joined)."""
    functions = stack.resources("aws_lambda_function")
    problems: list[str] = []
    for target in targets_of(stack, rule_name):
        invoked = referenced_names(target.get("arn"), "aws_lambda_function") & set(functions)
        if not invoked:
            continue
        function = sorted(invoked)[0]
        problem = delivery_problem(target) or permission_problem(stack, function, rule_name)
        if problem is None:
            return None
        problems.append(problem)
    return "; ".join(problems) or "no target of it invokes a function of the stack"


def permission_problem(stack: Stack, function: str, rule_name: str) -> str | None:
    for permission in stack.resources("aws_lambda_permission").values():
        if (
            permission.get("action") == INVOKE
            and permission.get("principal") == EVENTS_PRINCIPAL
            and refers_to(permission.get("function_name"), "aws_lambda_function", function)
            and refers_to(permission.get("source_arn"), "aws_cloudwatch_event_rule", rule_name)
        ):
            return None
    return "no permission lets EventBridge invoke its function from this rule"


def encrypted_topic(stack: Stack, target: dict[str, Any]) -> bool:
    """The target publishes to an SNS topic of the stack encrypted with a customer managed key
    (not SNS's AWS managed `alias/aws/sns`)."""
    for name in referenced_names(target.get("arn"), "aws_sns_topic"):
        topic = stack.resources("aws_sns_topic").get(name)
        key = topic.get("kms_master_key_id") if topic else None
        if is_set(key) and str(key).strip() != "alias/aws/sns":
            return True
    return False


# --- Model Monitor runs ----------------------------------------------------------------------
# SageMaker reports each monitoring run as a processing job: "SageMaker Processing Job State
# Change" events whose detail carries the MonitoringScheduleArn of the schedule that ran it.
# Written out here, not imported from the module that builds the rules: a check never imports
# the code it judges.
SAGEMAKER = "aws.sagemaker"
PROCESSING_JOB_STATE_CHANGE = "SageMaker Processing Job State Change"
COMPLETED = "Completed"
VIOLATIONS_EXIT_MESSAGE = [{"prefix": "CompletedWithViolations"}]


def monitoring_schedules(pattern: dict[str, Any]) -> list[str]:
    """The monitoring schedule ARNs a processing-job pattern names (empty: not a monitor's)."""
    if not matches_events(pattern, SAGEMAKER, PROCESSING_JOB_STATE_CHANGE):
        return []
    schedules = as_list(get_path(pattern, "detail", "MonitoringScheduleArn"))
    return [str(s) for s in schedules] if all(isinstance(s, str) and s for s in schedules) else []


def job_statuses(pattern: dict[str, Any]) -> list[Any]:
    """The ProcessingJobStatus values a pattern lists (empty: any status)."""
    return as_list(get_path(pattern, "detail", "ProcessingJobStatus"))


def admits_status(pattern: dict[str, Any], status: str) -> bool:
    statuses = job_statuses(pattern)
    return not statuses or status in statuses


def exit_message_filter(pattern: dict[str, Any]) -> list[Any]:
    return as_list(get_path(pattern, "detail", "ExitMessage"))
