"""Security alarms: each CIS monitoring filter matches the CloudTrail records it exists for
(and not their harmless neighbours), and each alarm notifies the alerts topic, which admits
exactly these alarms."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformStack
from pydantic import ValidationError

from modules import aws
from modules.security_alarms import (
    CLOUDTRAIL_CHANGES,
    KMS_KEY_DISABLED_OR_DELETED,
    NACL_CHANGES,
    ROOT_ACCOUNT_USAGE,
    SECURITY_ALARMS,
    SECURITY_GROUP_CHANGES,
    UNAUTHORIZED_API_CALLS,
    SecurityAlarm,
    SecurityAlarms,
    SecurityAlarmsConfig,
)
from tests.synth import only, resources, synth_stack
from tests.terraform_check import terraform_validate
from tests.test_detection import build_detection
from tests.test_inference import ACCOUNT, REGION

TRAIL_LOG_GROUP = "aws-controltower/CloudTrailLogs"


def build_alarms(stack: TerraformStack, **overrides: Any) -> SecurityAlarms:
    log_group = aws.CloudwatchLogGroup(
        stack, "trail-logs", name=TRAIL_LOG_GROUP, retention_in_days=2192
    )
    topic = aws.SnsTopic(stack, "alerts", name="phi-ml-unit-security-alerts")
    return SecurityAlarms(
        stack,
        "security-alarms",
        config=SecurityAlarmsConfig(environment="unit", **overrides),
        trail_log_group_name=log_group.name,
        alerts_topic_arn=topic.arn,
    )


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    return synth_stack(build_alarms)


# --- a CloudWatch Logs JSON filter pattern evaluator ----------------------------------------------

TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<and>&&)|(?P<or>\|\|)|(?P<not_exists>NOT EXISTS)"
    r"|(?P<op>!=|=)|(?P<selector>\$(?:\.[A-Za-z0-9_]+)+)|\"(?P<quoted>[^\"]*)\""
    r"|(?P<bare>[A-Za-z0-9_.*:-]+))"
)


def tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(text.rstrip()):
        match = TOKEN.match(text, position)
        assert match, f"cannot read the pattern at {text[position:]!r}"
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class Evaluator:
    """Evaluates `{ ... }` filter patterns over JSON: `$.a.b = value` / `!= value` (quoted or
    bare, `*` as wildcard), `NOT EXISTS`, parentheses, && and ||. Mixing && and || without
    parentheses is refused: CloudWatch's precedence between them is not something a pattern
    should depend on."""

    def __init__(self, pattern: str) -> None:
        body = pattern.strip()
        assert body.startswith("{") and body.endswith("}"), "not a JSON filter pattern"
        self.tokens = tokens(body[1:-1])
        self.position = 0

    def evaluate(self, record: dict[str, Any]) -> bool:
        self.position = 0
        result = self.expression(record)
        assert self.position == len(self.tokens), f"trailing {self.tokens[self.position :]}"
        return result

    def peek(self) -> str | None:
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def take(self, kind: str) -> str:
        found, value = self.tokens[self.position]
        assert found == kind, f"expected {kind}, found {found} {value!r}"
        self.position += 1
        return value

    def expression(self, record: dict[str, Any]) -> bool:
        results = [self.primary(record)]
        joiner = None
        while self.peek() in ("and", "or"):
            kind = str(self.peek())
            assert joiner in (None, kind), "&& and || mixed without parentheses"
            joiner = kind
            self.take(kind)
            results.append(self.primary(record))
        return all(results) if joiner == "and" else any(results)

    def primary(self, record: dict[str, Any]) -> bool:
        if self.peek() == "open":
            self.take("open")
            result = self.expression(record)
            self.take("close")
            return result
        path = self.take("selector")[2:].split(".")
        value: Any = record
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if self.peek() == "not_exists":
            self.take("not_exists")
            return value is None
        operator = self.take("op")
        kind = self.peek()
        expected = self.take(kind if kind in ("quoted", "bare") else "quoted")
        if value is None:
            return False
        equal = fnmatch.fnmatchcase(str(value), expected)
        return equal if operator == "=" else not equal


def trail_record(event_name: str, **fields: Any) -> dict[str, Any]:
    """A CloudTrail record as delivered to CloudWatch Logs (the fields the filters read)."""
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/platform-engineer/alice",
            "accountId": ACCOUNT,
        },
        "eventTime": "2026-01-12T09:30:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": event_name,
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.9",
        "eventType": "AwsApiCall",
        "recipientAccountId": ACCOUNT,
    }
    record.update(fields)
    return record


ROOT = {"type": "Root", "arn": f"arn:aws:iam::{ACCOUNT}:root", "accountId": ACCOUNT}
KMS = "kms.amazonaws.com"

# For each alarm: records it must catch, and close neighbours it must let pass.
CASES: dict[str, tuple[SecurityAlarm, list[dict[str, Any]], list[dict[str, Any]]]] = {
    "root": (
        ROOT_ACCOUNT_USAGE,
        [
            trail_record(
                "ConsoleLogin",
                userIdentity=ROOT,
                eventSource="signin.amazonaws.com",
                eventType="AwsConsoleSignIn",
            ),
            trail_record("CreateAccessKey", userIdentity=ROOT, eventSource="iam.amazonaws.com"),
        ],
        [
            trail_record("CreateAccessKey", eventSource="iam.amazonaws.com"),
            trail_record(
                "AssumeRole",
                userIdentity={**ROOT, "invokedBy": "support.amazonaws.com"},
            ),
            trail_record("Decrypt", userIdentity=ROOT, eventType="AwsServiceEvent"),
        ],
    ),
    "unauthorized": (
        UNAUTHORIZED_API_CALLS,
        [
            trail_record("RunInstances", errorCode="Client.UnauthorizedOperation"),
            trail_record("GetObject", eventSource="s3.amazonaws.com", errorCode="AccessDenied"),
            trail_record("ListKeys", eventSource=KMS, errorCode="AccessDeniedException"),
        ],
        [
            trail_record("RunInstances"),
            trail_record("GetObject", errorCode="NoSuchKey"),
            trail_record(
                "PutObject",
                errorCode="AccessDenied",
                sourceIPAddress="delivery.logs.amazonaws.com",
            ),
            trail_record("HeadBucket", errorCode="AccessDenied"),
        ],
    ),
    "security-groups": (
        SECURITY_GROUP_CHANGES,
        [
            trail_record(name)
            for name in (
                "AuthorizeSecurityGroupIngress",
                "AuthorizeSecurityGroupEgress",
                "RevokeSecurityGroupIngress",
                "RevokeSecurityGroupEgress",
                "CreateSecurityGroup",
                "DeleteSecurityGroup",
                "ModifySecurityGroupRules",
            )
        ],
        # The quarantine function moving an interface into the isolation group is not a
        # change to a security group.
        [trail_record("DescribeSecurityGroups"), trail_record("ModifyNetworkInterfaceAttribute")],
    ),
    "network-acls": (
        NACL_CHANGES,
        [
            trail_record(name)
            for name in (
                "CreateNetworkAcl",
                "CreateNetworkAclEntry",
                "DeleteNetworkAcl",
                "DeleteNetworkAclEntry",
                "ReplaceNetworkAclEntry",
                "ReplaceNetworkAclAssociation",
            )
        ],
        [trail_record("DescribeNetworkAcls")],
    ),
    "cloudtrail": (
        CLOUDTRAIL_CHANGES,
        [
            trail_record(name, eventSource="cloudtrail.amazonaws.com")
            for name in ("CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging")
        ],
        [
            trail_record("LookupEvents", eventSource="cloudtrail.amazonaws.com"),
            trail_record("DescribeTrails", eventSource="cloudtrail.amazonaws.com"),
        ],
    ),
    "kms": (
        KMS_KEY_DISABLED_OR_DELETED,
        [
            trail_record("DisableKey", eventSource=KMS),
            trail_record("ScheduleKeyDeletion", eventSource=KMS),
        ],
        [
            trail_record("EnableKey", eventSource=KMS),
            trail_record("CancelKeyDeletion", eventSource=KMS),
            trail_record("DisableKey", eventSource="example.amazonaws.com"),
        ],
    ),
}


def test_every_alarm_has_cases() -> None:
    assert sorted(a.slug for a, _, _ in CASES.values()) == sorted(a.slug for a in SECURITY_ALARMS)


@pytest.mark.parametrize("case", CASES.keys())
def test_filter_catches_what_it_exists_for(case: str) -> None:
    alarm, caught, _ = CASES[case]
    evaluator = Evaluator(alarm.pattern)
    for record in caught:
        assert evaluator.evaluate(record), record["eventName"]


@pytest.mark.parametrize("case", CASES.keys())
def test_filter_lets_harmless_neighbours_pass(case: str) -> None:
    alarm, _, passed = CASES[case]
    evaluator = Evaluator(alarm.pattern)
    for record in passed:
        assert not evaluator.evaluate(record), record


def test_evaluator_refuses_implicit_precedence() -> None:
    """The benchmark's literal text for unauthorized calls mixes || and && unparenthesized;
    ours spells out the grouping it means."""
    literal = (
        '{($.errorCode ="*UnauthorizedOperation") || ($.errorCode ="AccessDenied*") '
        '&& ($.sourceIPAddress!="delivery.logs.amazonaws.com") && ($.eventName!="HeadBucket") }'
    )
    with pytest.raises(AssertionError, match="mixed"):
        Evaluator(literal).evaluate(trail_record("GetObject", errorCode="AccessDenied"))


# The key terms each pattern must contain, as the benchmark words them.
KEY_TERMS = {
    ROOT_ACCOUNT_USAGE.slug: [
        '$.userIdentity.type = "Root"',
        "$.userIdentity.invokedBy NOT EXISTS",
        '$.eventType != "AwsServiceEvent"',
    ],
    UNAUTHORIZED_API_CALLS.slug: [
        '$.errorCode = "*UnauthorizedOperation"',
        '$.errorCode = "AccessDenied*"',
        '$.sourceIPAddress != "delivery.logs.amazonaws.com"',
        '$.eventName != "HeadBucket"',
    ],
    SECURITY_GROUP_CHANGES.slug: [
        f"$.eventName = {name}"
        for name in (
            "AuthorizeSecurityGroupIngress",
            "AuthorizeSecurityGroupEgress",
            "RevokeSecurityGroupIngress",
            "RevokeSecurityGroupEgress",
            "CreateSecurityGroup",
            "DeleteSecurityGroup",
        )
    ],
    NACL_CHANGES.slug: [
        f"$.eventName = {name}"
        for name in (
            "CreateNetworkAcl",
            "CreateNetworkAclEntry",
            "DeleteNetworkAcl",
            "DeleteNetworkAclEntry",
            "ReplaceNetworkAclEntry",
            "ReplaceNetworkAclAssociation",
        )
    ],
    CLOUDTRAIL_CHANGES.slug: [
        f"$.eventName = {name}"
        for name in ("CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging")
    ],
    KMS_KEY_DISABLED_OR_DELETED.slug: [
        "$.eventSource = kms.amazonaws.com",
        "$.eventName = DisableKey",
        "$.eventName = ScheduleKeyDeletion",
    ],
}


def missing_terms(pattern: str, terms: list[str]) -> list[str]:
    normalized = re.sub(r"\s+", " ", pattern)
    return [term for term in terms if term not in normalized]


def filters_by_slug(synthesized: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f["name"].removeprefix("phi-ml-unit-security-"): f
        for f in resources(synthesized, "aws_cloudwatch_log_metric_filter").values()
    }


def test_each_synthesized_filter_contains_its_key_terms(synth: dict[str, Any]) -> None:
    filters = filters_by_slug(synth)
    assert sorted(filters) == sorted(KEY_TERMS)
    (log_group,) = resources(synth, "aws_cloudwatch_log_group")
    for slug, terms in KEY_TERMS.items():
        assert missing_terms(filters[slug]["pattern"], terms) == [], slug
        assert filters[slug]["log_group_name"] == f"${{aws_cloudwatch_log_group.{log_group}.name}}"


def test_key_term_check_catches_a_dropped_term(synth: dict[str, Any]) -> None:
    pattern = filters_by_slug(synth)[CLOUDTRAIL_CHANGES.slug]["pattern"]
    weakened = pattern.replace(" || ($.eventName = StopLogging)", "")
    assert missing_terms(weakened, KEY_TERMS[CLOUDTRAIL_CHANGES.slug]) == [
        "$.eventName = StopLogging"
    ]


# --- the alarms -----------------------------------------------------------------------------------


def alarm_problems(synthesized: dict[str, Any], *, topic_arn: str) -> list[str]:
    problems = []
    filters = {
        (f["metric_transformation"]["namespace"], f["metric_transformation"]["name"])
        for f in resources(synthesized, "aws_cloudwatch_log_metric_filter").values()
    }
    for alarm in resources(synthesized, "aws_cloudwatch_metric_alarm").values():
        name = alarm["alarm_name"]
        if (alarm.get("namespace"), alarm.get("metric_name")) not in filters:
            problems.append(f"{name} watches no filter's metric")
        if alarm.get("alarm_actions") != [topic_arn] or alarm.get("actions_enabled") is not True:
            problems.append(f"{name} does not notify the alerts topic")
        if (alarm.get("statistic"), alarm.get("comparison_operator")) != (
            "Sum",
            "GreaterThanOrEqualToThreshold",
        ) or alarm.get("threshold") != 1:
            problems.append(f"{name} does not fire at the first occurrence")
        if alarm.get("treat_missing_data") != "notBreaching":
            problems.append(f"{name} fires when nothing happens")
    return problems


def topic(synthesized: dict[str, Any]) -> str:
    return f"${{aws_sns_topic.{next(iter(resources(synthesized, 'aws_sns_topic')))}.arn}}"


def test_each_alarm_notifies_the_topic_at_the_first_occurrence(synth: dict[str, Any]) -> None:
    assert alarm_problems(synth, topic_arn=topic(synth)) == []
    alarms = resources(synth, "aws_cloudwatch_metric_alarm").values()
    assert sorted(a["alarm_name"] for a in alarms) == sorted(
        f"phi-ml-unit-security-{a.slug}" for a in SECURITY_ALARMS
    )
    for alarm in alarms:
        assert alarm["namespace"] == "PhiMl/SecurityAlarms/unit"
        assert alarm["evaluation_periods"] == 1 and alarm["period"] == 300


def _first_alarm(s: dict[str, Any]) -> dict[str, Any]:
    return next(iter(resources(s, "aws_cloudwatch_metric_alarm").values()))


ALARM_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "other-metric": (lambda s: _first_alarm(s).update(metric_name="elsewhere"), "no filter"),
    "no-action": (lambda s: _first_alarm(s).pop("alarm_actions"), "alerts topic"),
    "disabled": (lambda s: _first_alarm(s).update(actions_enabled=False), "alerts topic"),
    "threshold-5": (lambda s: _first_alarm(s).update(threshold=5), "first occurrence"),
    "average": (lambda s: _first_alarm(s).update(statistic="Average"), "first occurrence"),
    "missing-breaches": (
        lambda s: _first_alarm(s).update(treat_missing_data="breaching"),
        "nothing happens",
    ),
}


@pytest.mark.parametrize("flaw", ALARM_FLAWS.values(), ids=ALARM_FLAWS.keys())
def test_alarm_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    mutated = copy.deepcopy(synth)
    mutate, expected = flaw
    mutate(mutated)
    problems = alarm_problems(mutated, topic_arn=topic(synth))
    assert len(problems) == 1 and expected in problems[0], problems


def test_unauthorized_calls_threshold_is_a_bounded_value() -> None:
    synthesized = synth_stack(lambda stack: build_alarms(stack, unauthorized_api_calls_threshold=5))
    thresholds = {
        a["alarm_name"]: a["threshold"]
        for a in resources(synthesized, "aws_cloudwatch_metric_alarm").values()
    }
    assert thresholds.pop("phi-ml-unit-security-unauthorized-api-calls") == 5
    assert set(thresholds.values()) == {1}  # every other alarm still fires at once
    with pytest.raises(ValidationError, match="less than or equal to 50"):
        SecurityAlarmsConfig(environment="unit", unauthorized_api_calls_threshold=51)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        SecurityAlarmsConfig(environment="unit", unauthorized_api_calls_threshold=0)


# --- with the detection layer's topic -------------------------------------------------------------


@pytest.fixture(scope="module")
def together() -> dict[str, Any]:
    def build(stack: TerraformStack) -> None:
        detection = build_detection(stack)
        log_group = aws.CloudwatchLogGroup(stack, "trail-logs", name=TRAIL_LOG_GROUP)
        SecurityAlarms(
            stack,
            "security-alarms",
            config=SecurityAlarmsConfig(environment="unit"),
            trail_log_group_name=log_group.name,
            alerts_topic_arn=detection.alerts_topic_arn,
        )

    return synth_stack(build)


def admitted(policy_json: str, alarm_arn: str, account: str) -> bool:
    """Whether the topic policy lets CloudWatch publish for this alarm."""
    for stmt in json.loads(policy_json)["Statement"]:
        if stmt["Effect"] != "Allow" or stmt["Principal"] != {
            "Service": "cloudwatch.amazonaws.com"
        }:
            continue
        condition = stmt["Condition"]
        if condition["StringEquals"]["aws:SourceAccount"] == account and fnmatch.fnmatchcase(
            alarm_arn, condition["ArnLike"]["aws:SourceArn"]
        ):
            return True
    return False


def test_detection_topic_admits_every_security_alarm_and_nothing_else(
    together: dict[str, Any],
) -> None:
    policy = only(together, "aws_sns_topic_policy")["policy"]
    assert alarm_problems(together, topic_arn=topic(together)) == []
    for alarm in resources(together, "aws_cloudwatch_metric_alarm").values():
        arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm['alarm_name']}"
        assert admitted(policy, arn, ACCOUNT), arn
    # twins: another environment's alarm, an unrelated alarm, another account
    assert not admitted(
        policy, f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:phi-ml-prod-security-x", ACCOUNT
    )
    assert not admitted(policy, f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:cpu-high", ACCOUNT)
    assert not admitted(
        policy,
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:phi-ml-unit-security-x",
        "210987654321",
    )


# --- terraform validate ---------------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_security_alarms_layer(tmp_path: Path) -> None:
    terraform_validate(tmp_path, build_alarms, region=REGION)
