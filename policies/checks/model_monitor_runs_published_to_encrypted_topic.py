"""CKV_PHI_38 "Ensure failed, stopped and violating Model Monitor runs are published to an
encrypted SNS topic".

Monitoring must never fail silently: a run that cannot judge the traffic (no captures, no
baseline, a broken image) leaves drift unseen while every dashboard stays green, and a rollback
on drift is a change to a regulated model that a person must know of. FDA's predetermined
change control plan expectations and EU AI Act Art. 14 (human oversight) and Art. 72
(post-market monitoring); HIPAA 45 CFR 164.308(a)(1)(ii)(D) (information system activity
review). The alert names the job and its exit message, so the topic is encrypted (HIPAA
164.312(a)(2)(iv), GDPR Art. 32).

SageMaker reports each monitoring run as a "SageMaker Processing Job State Change" event from
`aws.sagemaker` whose detail carries the `MonitoringScheduleArn`. Judged, with the stack in
view: each `aws_cloudwatch_event_rule` whose `event_pattern` selects those events for named
monitoring schedules. It passes when
- it is enabled, and an `aws_cloudwatch_event_target` of the stack attaches it to an
  `aws_sns_topic` of the stack whose `kms_master_key_id` is set and is not SNS's AWS managed
  `alias/aws/sns`; and
- for every schedule it names, the stack's enabled rules of that schedule together match
  `Failed` runs, `Stopped` runs and runs that complete with violations (`Completed` with an
  `ExitMessage` prefix `CompletedWithViolations`, or any completed run): so removing the rule
  of one outcome fails the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._event_routes import (
    COMPLETED,
    VIOLATIONS_EXIT_MESSAGE,
    admits_status,
    encrypted_topic,
    event_pattern,
    exit_message_filter,
    monitoring_schedules,
    rule_enabled,
    targets_of,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

FAILED, STOPPED, VIOLATIONS = "Failed", "Stopped", "completed with violations"
OUTCOMES = (FAILED, STOPPED, VIOLATIONS)


def outcomes_matched(pattern: dict[str, Any]) -> set[str]:
    matched = {status for status in (FAILED, STOPPED) if admits_status(pattern, status)}
    exit_messages = exit_message_filter(pattern)
    if admits_status(pattern, COMPLETED) and exit_messages in ([], VIOLATIONS_EXIT_MESSAGE):
        matched.add(VIOLATIONS)
    return matched


class ModelMonitorRunsPublishedToEncryptedTopic(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure failed, stopped and violating Model Monitor runs are published to an "
                "encrypted SNS topic"
            ),
            id="CKV_PHI_38",
            category=CheckCategories.LOGGING,
            judged_types=["aws_cloudwatch_event_rule"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        monitoring: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for name, rule in stack.resources("aws_cloudwatch_event_rule").items():
            pattern = event_pattern(rule)
            schedules = monitoring_schedules(pattern) if pattern is not None else []
            if pattern is not None and schedules:
                monitoring[name] = (pattern, schedules)
        covered: dict[str, set[str]] = {}
        for name, (pattern, schedules) in monitoring.items():
            if rule_enabled(stack.resources("aws_cloudwatch_event_rule")[name]):
                for schedule in schedules:
                    covered.setdefault(schedule, set()).update(outcomes_matched(pattern))
        for name, (_, schedules) in monitoring.items():
            rule = stack.resources("aws_cloudwatch_event_rule")[name]
            problems = []
            if not rule_enabled(rule):
                problems.append("the rule is disabled")
            elif not any(encrypted_topic(stack, t) for t in targets_of(stack, name)):
                problems.append("no target of it publishes to an encrypted SNS topic of the stack")
            for schedule in schedules:
                missing = [o for o in OUTCOMES if o not in covered.get(schedule, set())]
                if missing:
                    problems.append(f"no rule of {schedule} matches {', '.join(missing)} runs")
            yield Verdict(
                address("aws_cloudwatch_event_rule", name), not problems, "; ".join(problems)
            )


check = register(ModelMonitorRunsPublishedToEncryptedTopic())
