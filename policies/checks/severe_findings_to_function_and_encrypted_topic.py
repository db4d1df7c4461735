"""CKV_PHI_54 "Ensure GuardDuty findings of severity 7 or more and Security Hub CRITICAL and HIGH
findings go to a Lambda function and an encrypted SNS topic".

HIPAA 45 CFR 164.308(a)(6)(ii) (identify and respond to suspected security incidents, mitigate
their harmful effects), 164.308(a)(1)(ii)(D); GDPR Art. 33 (breach notification within 72
hours) and 32(1)(b). A severe finding must both start the automated response (the quarantine
function isolates the instance) and reach the person on call, over a topic encrypted with a CMK
because findings name resources and principals.

Judged, with the stack in view: each `aws_guardduty_detector` and each `aws_securityhub_account`
passes when enabled `aws_cloudwatch_event_rule`s of its stack that match all its severe findings
together have an `aws_cloudwatch_event_target` whose `arn` refers to an `aws_lambda_function` of
the stack and one whose `arn` refers to an `aws_sns_topic` of the stack with a
`kms_master_key_id`. A rule matches all severe findings of
- GuardDuty when its `event_pattern` has `source` [aws.guardduty], `detail-type` absent or
  naming "GuardDuty Finding", no top-level key but those and `detail`, no `detail` key but
  `severity`, and `detail.severity` absent or holding a `numeric` matcher admitting every
  severity from 7 up to 10 (`>=` at most 7 or `>` below 7; no upper bound below 10);
- Security Hub when its `event_pattern` has `source` [aws.securityhub], `detail-type` absent or
  naming "Security Hub Findings - Imported", and `detail.findings.Severity.Label` absent or
  naming both CRITICAL and HIGH. Its other filters (record state, workflow status, product:
  GuardDuty's own findings arrive through the GuardDuty rule) are not judged here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import is_set, json_document, scalar
from policies.checks._documents import as_list, get_path
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

DETECTOR = "aws_guardduty_detector"
HUB = "aws_securityhub_account"
RULE = "aws_cloudwatch_event_rule"
TARGET = "aws_cloudwatch_event_target"
FUNCTION = "aws_lambda_function"
TOPIC = "aws_sns_topic"

GUARDDUTY_SOURCE, GUARDDUTY_DETAIL_TYPE = "aws.guardduty", "GuardDuty Finding"
HUB_SOURCE, HUB_DETAIL_TYPE = "aws.securityhub", "Security Hub Findings - Imported"
SEVERE_GUARDDUTY, HIGHEST_GUARDDUTY = 7.0, 10.0
SEVERE_LABELS = ("CRITICAL", "HIGH")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def admits_severe(matcher: Any) -> bool:
    """A `{"numeric": [op, value, ...]}` matcher admitting every severity in [7, 10]."""
    if not isinstance(matcher, dict) or list(matcher) != ["numeric"]:
        return False
    terms = as_list(matcher["numeric"])
    if len(terms) % 2:
        return False
    pairs = [(terms[i], _number(terms[i + 1])) for i in range(0, len(terms), 2)]
    for operator, value in pairs:
        if value is None:
            return False
        admits = {
            ">=": value <= SEVERE_GUARDDUTY,
            ">": value < SEVERE_GUARDDUTY,
            "<=": value >= HIGHEST_GUARDDUTY,
            "<": value > HIGHEST_GUARDDUTY,
        }.get(str(operator), False)
        if not admits:
            return False
    return True


def _source_and_type(pattern: dict[str, Any], source: str, detail_type: str) -> bool:
    types = as_list(pattern.get("detail-type"))
    return as_list(pattern.get("source")) == [source] and (not types or detail_type in types)


def guardduty_severe(pattern: dict[str, Any]) -> bool:
    if not _source_and_type(pattern, GUARDDUTY_SOURCE, GUARDDUTY_DETAIL_TYPE):
        return False
    if not set(pattern) <= {"source", "detail-type", "detail"}:
        return False
    detail = pattern.get("detail", {})
    if not isinstance(detail, dict) or not set(detail) <= {"severity"}:
        return False
    severity = detail.get("severity")
    return severity is None or any(admits_severe(m) for m in as_list(severity))


def hub_severe(pattern: dict[str, Any]) -> bool:
    if not _source_and_type(pattern, HUB_SOURCE, HUB_DETAIL_TYPE):
        return False
    labels = get_path(pattern, "detail", "findings", "Severity", "Label")
    return labels is None or all(label in as_list(labels) for label in SEVERE_LABELS)


def enabled(rule: dict[str, Any]) -> bool:
    state = str(scalar(rule, "state") or "ENABLED").upper()
    return state == "ENABLED" and str(scalar(rule, "is_enabled")).lower() != "false"


def routes(stack: Stack, matches: Any) -> tuple[bool, bool]:
    """(to a function, to an encrypted topic) by the enabled rules whose pattern `matches`."""
    rules = {
        name
        for name, rule in stack.resources(RULE).items()
        if enabled(rule)
        and (pattern := json_document(scalar(rule, "event_pattern"))) is not None
        and matches(pattern)
    }
    encrypted_topics = {
        name
        for name, topic in stack.resources(TOPIC).items()
        if is_set(scalar(topic, "kms_master_key_id"))
    }
    to_function = to_topic = False
    for target in stack.resources(TARGET).values():
        if not any(refers_to(target.get("rule"), RULE, rule) for rule in rules):
            continue
        arn = target.get("arn")
        to_function = to_function or any(
            refers_to(arn, FUNCTION, f) for f in stack.resources(FUNCTION)
        )
        to_topic = to_topic or any(refers_to(arn, TOPIC, t) for t in encrypted_topics)
    return to_function, to_topic


def verdict(resource: str, route: tuple[bool, bool], findings: str) -> Verdict:
    to_function, to_topic = route
    missing = [
        what
        for what, reached in (("a Lambda function", to_function), ("an encrypted topic", to_topic))
        if not reached
    ]
    reason = f"{findings} reach no {' and no '.join(missing)}" if missing else ""
    return Verdict(resource, not missing, reason)


class SevereFindingsToFunctionAndEncryptedTopic(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure GuardDuty findings of severity 7 or more and Security Hub CRITICAL and "
                "HIGH findings go to a Lambda function and an encrypted SNS topic"
            ),
            id="CKV_PHI_54",
            category=CheckCategories.GENERAL_SECURITY,
            judged_types=[DETECTOR, HUB],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        if stack.resources(DETECTOR):
            route = routes(stack, guardduty_severe)
            for name in sorted(stack.resources(DETECTOR)):
                yield verdict(address(DETECTOR, name), route, "GuardDuty findings >= 7")
        if stack.resources(HUB):
            route = routes(stack, hub_severe)
            for name in sorted(stack.resources(HUB)):
                yield verdict(address(HUB, name), route, "CRITICAL/HIGH Security Hub findings")


check = register(SevereFindingsToFunctionAndEncryptedTopic())
