"""Detection layer: GuardDuty and Security Hub on (organization-wide only from the security
account), the findings that matter (and only those) reach an encrypted on-call topic and a
hardened isolation function, with retries and a dead-letter queue."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformStack
from pydantic import ValidationError

from modules import functions, monitoring
from modules.detection import (
    QUARANTINE_SOURCE,
    SECURITY_HUB_SEVERITIES,
    Detection,
    DetectionConfig,
    guardduty_finding_pattern,
)
from modules.keys import KeyPurpose
from runtime.quarantine import handler
from tests.eventbridge import event_matches
from tests.synth import only, ref, resources, role_policy_named, statement_by_sid, synth_stack
from tests.terraform_check import terraform_validate
from tests.test_inference import ACCOUNT, REGION, VPC_CIDR, key, network
from tests.test_monitoring import build_monitoring
from tests.test_quarantine import guardduty_event, security_hub_event

RETENTION = 2192
INSTANCE = "i-0a1b2c3d4e5f60718"
SETTINGS: dict[str, Any] = {
    "environment": "unit",
    "account_id": ACCOUNT,
    "region": REGION,
    "is_security_account": True,
    "vpc_cidr": VPC_CIDR,
    "log_retention_days": RETENTION,
}
# Written out, not computed: these are the ARNs Security Hub documents for the standards.
EXPECTED_STANDARDS = {
    f"arn:aws:securityhub:{REGION}::standards/aws-foundational-security-best-practices/v/1.0.0",
    f"arn:aws:securityhub:{REGION}::standards/cis-aws-foundations-benchmark/v/3.0.0",
    f"arn:aws:securityhub:{REGION}::standards/nist-800-53/v/5.0.0",
}


def build_detection(stack: TerraformStack, **overrides: Any) -> Detection:
    # The ML key stands in for the alerts key: any CMK will do for the construct.
    alerts_key = key(stack, KeyPurpose.ML_ARTIFACTS)
    logs_key = key(stack, KeyPurpose.LOGS)
    vpc_id, subnet_ids = network(stack)
    return Detection(
        stack,
        "detection",
        config=DetectionConfig(**{**SETTINGS, **overrides}),
        alerts_key=alerts_key,
        logs_key=logs_key,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
    )


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    return synth_stack(build_detection)


@pytest.fixture(scope="module")
def member() -> dict[str, Any]:
    return synth_stack(lambda stack: build_detection(stack, is_security_account=False))


def alerts_key_arn(synthesized: dict[str, Any]) -> str:
    return ref(synthesized, "aws_kms_key", "arn", named="ml-artifacts")


def rule_arns(synthesized: dict[str, Any]) -> list[str]:
    return [
        ref(synthesized, "aws_cloudwatch_event_rule", "arn", named="guardduty"),
        ref(synthesized, "aws_cloudwatch_event_rule", "arn", named="security-hub"),
    ]


# --- GuardDuty ------------------------------------------------------------------------------------


def detector_problems(synthesized: dict[str, Any]) -> list[str]:
    problems = []
    detector = only(synthesized, "aws_guardduty_detector")
    if detector.get("enable") is not True:
        problems.append("detector disabled")
    if detector.get("finding_publishing_frequency") != "FIFTEEN_MINUTES":
        problems.append("findings published late")
    if "datasources" in detector:
        problems.append("deprecated datasources block")
    detector_id = ref(synthesized, "aws_guardduty_detector", "id")
    features = {
        f["name"]: f["status"]
        for f in resources(synthesized, "aws_guardduty_detector_feature").values()
        if f["detector_id"] == detector_id
    }
    for feature in ("S3_DATA_EVENTS", "EBS_MALWARE_PROTECTION"):
        if features.get(feature) != "ENABLED":
            problems.append(f"{feature} not enabled")
    return problems


def test_detector_is_on_with_s3_and_malware_protection(synth: dict[str, Any]) -> None:
    assert detector_problems(synth) == []


def feature(synthesized: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [
        f
        for f in resources(synthesized, "aws_guardduty_detector_feature").values()
        if f["name"] == name
    ]
    return found


DETECTOR_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "disabled": (lambda s: only(s, "aws_guardduty_detector").update(enable=False), "disabled"),
    "six-hours": (
        lambda s: only(s, "aws_guardduty_detector").update(
            finding_publishing_frequency="SIX_HOURS"
        ),
        "late",
    ),
    "datasources": (
        lambda s: only(s, "aws_guardduty_detector").update(datasources={"s3_logs": {}}),
        "deprecated",
    ),
    "malware-off": (
        lambda s: feature(s, "EBS_MALWARE_PROTECTION").update(status="DISABLED"),
        "EBS",
    ),
    "s3-missing": (
        lambda s: s["resource"]["aws_guardduty_detector_feature"].pop(
            next(n for n in resources(s, "aws_guardduty_detector_feature") if "s3" in n)
        ),
        "S3_DATA_EVENTS",
    ),
}


@pytest.mark.parametrize("flaw", DETECTOR_FLAWS.values(), ids=DETECTOR_FLAWS.keys())
def test_detector_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    mutated = copy.deepcopy(synth)
    mutate, expected = flaw
    mutate(mutated)
    problems = detector_problems(mutated)
    assert len(problems) == 1 and expected in problems[0], problems


ORGANIZATION_TYPES = (
    "aws_guardduty_organization_configuration",
    "aws_guardduty_organization_configuration_feature",
    "aws_securityhub_finding_aggregator",
    "aws_securityhub_organization_configuration",
)


def organization_resources(synthesized: dict[str, Any]) -> list[str]:
    return [t for t in ORGANIZATION_TYPES if resources(synthesized, t)]


def test_security_account_enables_every_member_and_aggregates(synth: dict[str, Any]) -> None:
    assert organization_resources(synth) == list(ORGANIZATION_TYPES)
    detector_id = ref(synth, "aws_guardduty_detector", "id")
    organization = only(synth, "aws_guardduty_organization_configuration")
    assert organization["auto_enable_organization_members"] == "ALL"
    assert organization["detector_id"] == detector_id
    assert "datasources" not in organization and "auto_enable" not in organization
    features = resources(synth, "aws_guardduty_organization_configuration_feature").values()
    assert {(f["name"], f["auto_enable"], f["detector_id"]) for f in features} == {
        ("S3_DATA_EVENTS", "ALL", detector_id),
        ("EBS_MALWARE_PROTECTION", "ALL", detector_id),
    }
    assert only(synth, "aws_securityhub_finding_aggregator")["linking_mode"] == "ALL_REGIONS"
    hub_organization = only(synth, "aws_securityhub_organization_configuration")
    assert hub_organization["auto_enable"] is True
    assert hub_organization["auto_enable_standards"] == "NONE"


def test_member_account_neither_aggregates_nor_enables_others(
    synth: dict[str, Any], member: dict[str, Any]
) -> None:
    assert organization_resources(member) == []
    # ...but is itself fully protected: the same detector, features and standards.
    assert detector_problems(member) == []
    assert {
        s["standards_arn"]
        for s in resources(member, "aws_securityhub_standards_subscription").values()
    } == EXPECTED_STANDARDS
    assert organization_resources(synth) != []  # twin: the checker sees them when present


# --- Security Hub ---------------------------------------------------------------------------------


def test_security_hub_uses_consolidated_controls_without_default_standards(
    synth: dict[str, Any],
) -> None:
    hub = only(synth, "aws_securityhub_account")
    assert hub["enable_default_standards"] is False
    assert hub["control_finding_generator"] == "SECURITY_CONTROL"
    assert hub["auto_enable_controls"] is True


def standards_problems(synthesized: dict[str, Any]) -> list[str]:
    subscriptions = resources(synthesized, "aws_securityhub_standards_subscription").values()
    arns = [s["standards_arn"] for s in subscriptions]
    problems = [f"unexpected standard {arn}" for arn in sorted(set(arns) - EXPECTED_STANDARDS)]
    problems += [f"missing standard {arn}" for arn in sorted(EXPECTED_STANDARDS - set(arns))]
    hub = f"aws_securityhub_account.{next(iter(resources(synthesized, 'aws_securityhub_account')))}"
    problems += [
        f"{s['standards_arn']} may be subscribed before the hub exists"
        for s in subscriptions
        if s.get("depends_on") != [hub]
    ]
    return problems


def test_exactly_the_three_standards_are_subscribed(synth: dict[str, Any]) -> None:
    assert standards_problems(synth) == []
    assert len(resources(synth, "aws_securityhub_standards_subscription")) == 3


def test_standards_checker_catches_the_retired_cis_arn_format(synth: dict[str, Any]) -> None:
    mutated = copy.deepcopy(synth)
    cis = next(
        s
        for s in resources(mutated, "aws_securityhub_standards_subscription").values()
        if "cis" in s["standards_arn"]
    )
    cis["standards_arn"] = "arn:aws:securityhub:::ruleset/cis-aws-foundations-benchmark/v/1.2.0"
    assert standards_problems(mutated) == [
        "unexpected standard arn:aws:securityhub:::ruleset/cis-aws-foundations-benchmark/v/1.2.0",
        f"missing standard arn:aws:securityhub:{REGION}::standards/"
        "cis-aws-foundations-benchmark/v/3.0.0",
    ]


# --- the rules ------------------------------------------------------------------------------------


def test_matcher_semantics() -> None:
    """The matcher can fail: each operator rejects what EventBridge rejects."""
    assert event_matches({"a": [{"numeric": [">=", 7]}]}, {"a": 7.0})
    assert not event_matches({"a": [{"numeric": [">=", 7]}]}, {"a": 6.99})
    assert not event_matches({"a": [{"numeric": [">=", 7]}]}, {"a": "8"})
    assert event_matches({"a": [{"prefix": "Compl"}]}, {"a": "Completed"})
    assert not event_matches({"a": [{"prefix": "Compl"}]}, {"a": "Failed"})
    assert event_matches({"a": ["x", "y"]}, {"a": "y"}) and not event_matches(
        {"a": ["x"]}, {"a": "z"}
    )
    assert not event_matches({"a": {"b": ["x"]}}, {"a": {}})
    assert event_matches({"a": {"b": ["x"]}}, {"a": [{"b": "z"}, {"b": "x"}]})
    assert not event_matches({"a": [{"anything-but": "G"}]}, {"a": "G"})
    assert event_matches({"a": [{"anything-but": "G"}]}, {"a": "H"})


def parsed(event: dict[str, Any]) -> list[handler.Finding]:
    findings = handler.parse_findings(event, 7.0)
    assert isinstance(findings, list), findings
    return findings


def rule_pattern(synthesized: dict[str, Any], named: str) -> Any:
    (rule,) = [
        r for n, r in resources(synthesized, "aws_cloudwatch_event_rule").items() if named in n
    ]
    return json.loads(rule["event_pattern"])


@pytest.mark.parametrize("severity", [7, 7.0, 8.5, 8.9, 9.5])
def test_guardduty_rule_matches_findings_at_or_above_the_threshold(
    synth: dict[str, Any], severity: float
) -> None:
    event = guardduty_event(INSTANCE, severity=severity)
    assert event_matches(rule_pattern(synth, "guardduty"), event)
    # What the rule lets through, the function acts on.
    assert [f.ignore_reason for f in parsed(event)] == [None]


@pytest.mark.parametrize("severity", [6.9, 5.0, 2.0])
def test_guardduty_rule_does_not_match_below_the_threshold(
    synth: dict[str, Any], severity: float
) -> None:
    assert not event_matches(
        rule_pattern(synth, "guardduty"), guardduty_event(INSTANCE, severity=severity)
    )


def test_guardduty_rule_follows_the_configured_threshold() -> None:
    pattern = guardduty_finding_pattern(8.0)
    assert not event_matches(pattern, guardduty_event(INSTANCE, severity=7.5))
    assert event_matches(pattern, guardduty_event(INSTANCE, severity=8.0))


def test_guardduty_rule_ignores_other_sources(synth: dict[str, Any]) -> None:
    pattern = rule_pattern(synth, "guardduty")
    assert not event_matches(pattern, {**guardduty_event(INSTANCE), "source": "custom.guardduty"})
    assert not event_matches(pattern, security_hub_event(INSTANCE))


@pytest.mark.parametrize("label", ["CRITICAL", "HIGH"])
def test_security_hub_rule_matches_new_critical_and_high_findings(
    synth: dict[str, Any], label: str
) -> None:
    event = security_hub_event(INSTANCE, label=label)
    assert event_matches(rule_pattern(synth, "security-hub"), event)
    assert [f.ignore_reason for f in parsed(event)] == [None]


@pytest.mark.parametrize(
    "variant",
    [
        {"label": "MEDIUM"},
        {"label": "LOW"},
        {"label": "INFORMATIONAL"},
        {"status": "NOTIFIED"},
        {"status": "RESOLVED"},
        {"record_state": "ARCHIVED"},
        {"product": "GuardDuty"},
    ],
    ids=["medium", "low", "informational", "notified", "resolved", "archived", "guardduty"],
)
def test_security_hub_rule_does_not_match_other_findings(
    synth: dict[str, Any], variant: dict[str, str]
) -> None:
    assert not event_matches(
        rule_pattern(synth, "security-hub"), security_hub_event(INSTANCE, **variant)
    )


def test_rule_severities_and_function_severities_agree() -> None:
    assert SECURITY_HUB_SEVERITIES == handler.SECURITY_HUB_LABELS


def target_problems(target: dict[str, Any], *, queue_arn: str) -> list[str]:
    problems = []
    retry = target.get("retry_policy") or {}
    if not retry.get("maximum_retry_attempts") or not retry.get("maximum_event_age_in_seconds"):
        problems.append("no retry policy")
    if (target.get("dead_letter_config") or {}).get("arn") != queue_arn:
        problems.append("failed deliveries are lost")
    return problems


def test_each_rule_targets_the_function_and_the_topic_with_retries_and_dead_letters(
    synth: dict[str, Any],
) -> None:
    queue = ref(synth, "aws_sqs_queue", "arn")
    function = ref(synth, "aws_lambda_function", "arn")
    topic = ref(synth, "aws_sns_topic", "arn")
    targets = resources(synth, "aws_cloudwatch_event_target").values()
    by_rule = {
        rule: sorted(t["arn"] for t in targets if t["rule"] == rule)
        for rule in (
            ref(synth, "aws_cloudwatch_event_rule", "name", named="guardduty"),
            ref(synth, "aws_cloudwatch_event_rule", "name", named="security-hub"),
        )
    }
    assert by_rule == {rule: sorted([function, topic]) for rule in by_rule}
    assert len(targets) == 4
    for target in targets:
        assert target_problems(target, queue_arn=queue) == [], target


TARGET_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no-retry": (lambda t: t.pop("retry_policy"), "retry"),
    "zero-retries": (lambda t: t["retry_policy"].update(maximum_retry_attempts=0), "retry"),
    "no-dlq": (lambda t: t.pop("dead_letter_config"), "lost"),
    "other-dlq": (lambda t: t.update(dead_letter_config={"arn": "arn:aws:sqs:x"}), "lost"),
}


@pytest.mark.parametrize("flaw", TARGET_FLAWS.values(), ids=TARGET_FLAWS.keys())
def test_target_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    target = copy.deepcopy(next(iter(resources(synth, "aws_cloudwatch_event_target").values())))
    mutate, expected = flaw
    mutate(target)
    problems = target_problems(target, queue_arn=ref(synth, "aws_sqs_queue", "arn"))
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_on_call_reads_a_message_naming_the_finding(synth: dict[str, Any]) -> None:
    notifications = [
        t
        for t in resources(synth, "aws_cloudwatch_event_target").values()
        if t["arn"] == ref(synth, "aws_sns_topic", "arn")
    ]
    assert len(notifications) == 2
    for target in notifications:
        transformer = target["input_transformer"]
        placeholders = set(re.findall(r"<([a-z_]+)>", transformer["input_template"]))
        assert placeholders == set(transformer["input_paths"])  # every placeholder is filled
        assert {"severity", "finding", "account", "title"} <= placeholders
        assert transformer["input_template"].startswith('"')  # a string, not raw JSON


# --- the alerts topic -----------------------------------------------------------------------------


def topic_problems(synthesized: dict[str, Any]) -> list[str]:
    problems = []
    topic = only(synthesized, "aws_sns_topic")
    if topic.get("kms_master_key_id") != alerts_key_arn(synthesized):
        problems.append("topic not encrypted with the alerts key")
    policy = json.loads(only(synthesized, "aws_sns_topic_policy")["policy"])
    account = {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    alarms = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:phi-ml-unit-security-*"
    expected_allows = {
        "FindingRulesPublish": (
            {"Service": "events.amazonaws.com"},
            {"ArnEquals": {"aws:SourceArn": rule_arns(synthesized)}, **account},
        ),
        "SecurityAlarmsPublish": (
            {"Service": "cloudwatch.amazonaws.com"},
            {"ArnLike": {"aws:SourceArn": alarms}, **account},
        ),
    }
    for allow in (s for s in policy["Statement"] if s["Effect"] == "Allow"):
        principal, condition = expected_allows.get(allow.get("Sid"), (None, None))
        if (allow["Principal"], allow.get("Condition"), allow["Action"]) != (
            principal,
            condition,
            "sns:Publish",
        ):
            problems.append(f"statement {allow.get('Sid')} admits more than the rules and alarms")
    denies = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    if not any(s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in denies):
        problems.append("plain HTTP publishing not denied")
    return problems


def test_topic_is_encrypted_and_admits_only_the_rules_and_the_alarms(synth: dict[str, Any]) -> None:
    assert topic_problems(synth) == []
    assert only(synth, "aws_sns_topic_policy")["arn"] == ref(synth, "aws_sns_topic", "arn")


def _policy(s: dict[str, Any]) -> dict[str, Any]:
    return only(s, "aws_sns_topic_policy")


def _edit_policy(s: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> None:
    policy = json.loads(_policy(s)["policy"])
    edit(policy)
    _policy(s)["policy"] = json.dumps(policy)


TOPIC_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "aws-managed-key": (
        lambda s: only(s, "aws_sns_topic").update(kms_master_key_id="alias/aws/sns"),
        "alerts key",
    ),
    "any-rule": (
        lambda s: _edit_policy(
            s,
            lambda p: p["Statement"][0]["Condition"]["ArnEquals"].update(
                {"aws:SourceArn": "arn:aws:events:*:*:rule/*"}
            ),
        ),
        "FindingRulesPublish",
    ),
    "any-account": (
        lambda s: _edit_policy(s, lambda p: p["Statement"][1]["Condition"].pop("StringEquals")),
        "SecurityAlarmsPublish",
    ),
    "everyone": (
        lambda s: _edit_policy(
            s,
            lambda p: p["Statement"].append(
                {"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "sns:Publish"}
            ),
        ),
        "Open",
    ),
    "no-tls-deny": (
        lambda s: _edit_policy(s, lambda p: p["Statement"].pop()),
        "plain HTTP",
    ),
}


@pytest.mark.parametrize("flaw", TOPIC_FLAWS.values(), ids=TOPIC_FLAWS.keys())
def test_topic_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    mutated = copy.deepcopy(synth)
    mutate, expected = flaw
    mutate(mutated)
    problems = topic_problems(mutated)
    assert len(problems) == 1 and expected in problems[0], problems


def test_dead_letter_queue_is_encrypted_and_admits_only_the_two_rules(
    synth: dict[str, Any],
) -> None:
    queue = only(synth, "aws_sqs_queue")
    assert queue["kms_master_key_id"] == alerts_key_arn(synth)
    allow = statement_by_sid(
        only(synth, "aws_sqs_queue_policy")["policy"], "OnlyTheInvokingRulesDeadLetter"
    )
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": rule_arns(synth)},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }


# --- the isolation function -----------------------------------------------------------------------


def subnets(synthesized: dict[str, Any]) -> list[str]:
    return [f"${{aws_subnet.{n}.id}}" for n in resources(synthesized, "aws_subnet")]


def function_problems(synthesized: dict[str, Any]) -> list[str]:
    problems = []
    function = only(synthesized, "aws_lambda_function")
    vpc = function.get("vpc_config") or {}
    if sorted(vpc.get("subnet_ids", [])) != sorted(subnets(synthesized)) or vpc.get(
        "security_group_ids"
    ) != [ref(synthesized, "aws_security_group", "id", named="quarantine_security-group")]:
        problems.append("outside the private subnets or its security group")
    if (function.get("dead_letter_config") or {}).get("target_arn") != ref(
        synthesized, "aws_sqs_queue", "arn"
    ):
        problems.append("failed invocations are lost")
    if function.get("reserved_concurrent_executions") != 1:
        problems.append("quarantines may race")
    if (function.get("tracing_config") or {}).get("mode") != "Active":
        problems.append("not traced")
    if function.get("kms_key_arn") != alerts_key_arn(synthesized):
        problems.append("environment not encrypted with the CMK")
    group = only(synthesized, "aws_cloudwatch_log_group")
    if group.get("kms_key_id") != ref(synthesized, "aws_kms_key", "arn", named="logs"):
        problems.append("logs not encrypted with the logs key")
    if group.get("retention_in_days", 0) < 2192:
        problems.append("logs kept under six years")
    if (function.get("logging_config") or {}).get("log_group") != ref(
        synthesized, "aws_cloudwatch_log_group", "name"
    ):
        problems.append("logs to a group of Lambda's making")
    return problems


def test_function_is_private_traced_serialized_and_encrypted(synth: dict[str, Any]) -> None:
    assert function_problems(synth) == []
    function = only(synth, "aws_lambda_function")
    assert (function["runtime"], function["architectures"], function["handler"]) == (
        "python3.12",
        ["arm64"],
        "handler.handle",
    )
    assert function["function_name"] == "phi-ml-unit-quarantine"


def _function(s: dict[str, Any]) -> dict[str, Any]:
    return only(s, "aws_lambda_function")


FUNCTION_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no-vpc": (lambda s: _function(s).pop("vpc_config"), "subnets"),
    "no-dlq": (lambda s: _function(s).pop("dead_letter_config"), "lost"),
    "unreserved": (lambda s: _function(s).pop("reserved_concurrent_executions"), "race"),
    "concurrency-10": (lambda s: _function(s).update(reserved_concurrent_executions=10), "race"),
    "pass-through": (
        lambda s: _function(s).update(tracing_config={"mode": "PassThrough"}),
        "traced",
    ),
    "aws-managed-key": (lambda s: _function(s).pop("kms_key_arn"), "CMK"),
    "plain-logs": (lambda s: only(s, "aws_cloudwatch_log_group").pop("kms_key_id"), "logs key"),
    "one-year": (
        lambda s: only(s, "aws_cloudwatch_log_group").update(retention_in_days=365),
        "six years",
    ),
    "default-log-group": (lambda s: _function(s).pop("logging_config"), "Lambda's making"),
}


@pytest.mark.parametrize("flaw", FUNCTION_FLAWS.values(), ids=FUNCTION_FLAWS.keys())
def test_function_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    mutated = copy.deepcopy(synth)
    mutate, expected = flaw
    mutate(mutated)
    problems = function_problems(mutated)
    assert len(problems) == 1 and expected in problems[0], problems


def test_function_is_configured_with_the_isolation_group_and_threshold(
    synth: dict[str, Any],
) -> None:
    assert only(synth, "aws_lambda_function")["environment"]["variables"] == {
        "ACCOUNT_ID": ACCOUNT,
        "ISOLATION_SECURITY_GROUP_ID": ref(
            synth, "aws_security_group", "id", named="isolation-security-group"
        ),
        "ISOLATION_VPC_ID": ref(synth, "aws_vpc", "id"),
        "SEVERITY_THRESHOLD": "7.0",
    }


def test_configured_threshold_reaches_rule_and_function() -> None:
    synthesized = synth_stack(lambda stack: build_detection(stack, finding_severity_threshold=8))
    assert rule_pattern(synthesized, "guardduty") == guardduty_finding_pattern(8.0)
    variables = only(synthesized, "aws_lambda_function")["environment"]["variables"]
    assert variables["SEVERITY_THRESHOLD"] == "8.0"


def isolation_group_problems(group: dict[str, Any], *, vpc_id: str) -> list[str]:
    problems = []
    if group.get("ingress") != []:
        problems.append("admits traffic in")
    if group.get("egress") != []:
        problems.append("lets traffic out")
    if group.get("vpc_id") != vpc_id:
        problems.append("not in the workload VPC")
    return problems


def test_isolation_group_has_no_rules_at_all(synth: dict[str, Any]) -> None:
    group = only_named(synth, "aws_security_group", "isolation-security-group")
    assert isolation_group_problems(group, vpc_id=ref(synth, "aws_vpc", "id")) == []
    rules = [
        r
        for type_ in ("aws_vpc_security_group_egress_rule", "aws_vpc_security_group_ingress_rule")
        for r in resources(synth, type_).values()
        if r["security_group_id"]
        == ref(synth, "aws_security_group", "id", named="isolation-security-group")
    ]
    assert rules == []
    # twins: a rule in or out, or another VPC, is caught
    vpc = ref(synth, "aws_vpc", "id")
    assert isolation_group_problems({**group, "egress": [{"to_port": 443}]}, vpc_id=vpc) != []
    assert isolation_group_problems({**group, "ingress": [{"to_port": 22}]}, vpc_id=vpc) != []
    assert isolation_group_problems({**group, "vpc_id": "vpc-other"}, vpc_id=vpc) != []


def only_named(synthesized: dict[str, Any], type_: str, named: str) -> dict[str, Any]:
    (found,) = [r for n, r in resources(synthesized, type_).items() if named in n]
    return found


def test_function_reaches_only_https_in_the_vpc(synth: dict[str, Any]) -> None:
    group = ref(synth, "aws_security_group", "id", named="quarantine_security-group")
    egress = [
        r
        for r in resources(synth, "aws_vpc_security_group_egress_rule").values()
        if r["security_group_id"] == group
    ]
    assert [
        (r["ip_protocol"], r["from_port"], r["to_port"], r.get("cidr_ipv4")) for r in egress
    ] == [("tcp", 443, 443, VPC_CIDR)]
    # Its rules are the separate resources only: an inline list would fight them on every apply.
    assert "egress" not in only_named(synth, "aws_security_group", "quarantine_security-group")


def task_policy(synthesized: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(role_policy_named(synthesized, "task")))


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def privilege_problems(policy: dict[str, Any], *, isolation_group_arn: str) -> list[str]:
    """Where the isolation role could do more than isolate instances of this account."""
    problems = []
    allowed = {
        "ec2:CreateSnapshot",
        "ec2:CreateTags",
        "ec2:DescribeInstances",
        "ec2:DescribeSnapshots",
        "ec2:DescribeVolumes",
        "ec2:ModifyInstanceAttribute",
        "ec2:ModifyNetworkInterfaceAttribute",
    }
    for stmt in policy["Statement"]:
        extra = sorted(set(actions_of(stmt)) - allowed)
        if extra:
            problems.append(f"{stmt['Sid']} grants {extra}")
        if stmt["Resource"] == "*" and any(
            not a.startswith("ec2:Describe") for a in actions_of(stmt)
        ):
            problems.append(f"{stmt['Sid']} changes any resource")
        if "ec2:ModifyNetworkInterfaceAttribute" in actions_of(stmt):
            groups = [r for r in stmt["Resource"] if ":security-group/" in r]
            if groups != [isolation_group_arn]:
                problems.append(f"{stmt['Sid']} may attach groups other than the isolation group")
        mutating = [a for a in actions_of(stmt) if a.startswith(("ec2:Modify", "ec2:CreateTags"))]
        if mutating and ":instance/" in json.dumps(stmt["Resource"]):
            here = (stmt.get("Condition") or {}).get("StringEquals", {})
            if here.get("aws:ResourceAccount") != ACCOUNT or here.get("ec2:Region") != REGION:
                problems.append(f"{stmt['Sid']} reaches instances of other accounts or regions")
    return problems


def isolation_group_arn(synthesized: dict[str, Any]) -> str:
    group = ref(synthesized, "aws_security_group", "id", named="isolation-security-group")
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/{group}"


def test_function_role_may_only_isolate_instances_of_this_account(synth: dict[str, Any]) -> None:
    policy = task_policy(synth)
    assert privilege_problems(policy, isolation_group_arn=isolation_group_arn(synth)) == []
    tagging = next(
        s for s in policy["Statement"] if s["Sid"] == "TagInstancesWithQuarantineTagsOnly"
    )
    assert tagging["Condition"]["ForAllValues:StringEquals"] == {
        "aws:TagKeys": ["phi-ml:quarantined", "phi-ml:finding-id", "phi-ml:quarantined-at"]
    }
    snapshots = next(
        s for s in policy["Statement"] if s["Sid"] == "CreateOnlySnapshotsTaggedWithTheirFinding"
    )
    assert snapshots["Condition"] == {"Null": {"aws:RequestTag/phi-ml:finding-id": "false"}}


PRIVILEGE_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "terminate": (
        lambda p: p["Statement"].append(
            {
                "Sid": "Kill",
                "Action": "ec2:TerminateInstances",
                "Resource": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*",
            }
        ),
        "Kill grants",
    ),
    "any-group": (
        lambda p: next(
            s for s in p["Statement"] if s["Sid"] == "MoveInterfacesIntoTheIsolationGroupOnly"
        )["Resource"].__setitem__(2, f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/*"),
        "other than the isolation group",
    ),
    "any-account": (
        lambda p: next(s for s in p["Statement"] if s["Sid"] == "ProtectInstancesFromTermination")[
            "Condition"
        ].pop("StringEquals"),
        "other accounts",
    ),
    "tags-anywhere": (
        lambda p: p["Statement"].append(
            {"Sid": "TagAll", "Action": "ec2:CreateTags", "Resource": "*"}
        ),
        "TagAll changes any resource",
    ),
}


@pytest.mark.parametrize("flaw", PRIVILEGE_FLAWS.values(), ids=PRIVILEGE_FLAWS.keys())
def test_privilege_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    policy = copy.deepcopy(task_policy(synth))
    mutate, expected = flaw
    mutate(policy)
    problems = privilege_problems(policy, isolation_group_arn=isolation_group_arn(synth))
    assert len(problems) == 1 and expected in problems[0], problems


def test_runtime_policy_confines_the_basics(synth: dict[str, Any]) -> None:
    (policy,) = [
        p["policy"]
        for p in resources(synth, "aws_iam_role_policy").values()
        if p["name"] == "run-in-the-vpc"
    ]
    assert statement_by_sid(policy, "WriteItsOwnLogs")["Resource"] == (
        f"{ref(synth, 'aws_cloudwatch_log_group', 'arn')}:*"
    )
    assert statement_by_sid(policy, "DeadLetterFailedInvocations")["Resource"] == ref(
        synth, "aws_sqs_queue", "arn"
    )
    assert statement_by_sid(policy, "UseTheEnvironmentKey")["Resource"] == alerts_key_arn(synth)
    trust = json.loads(only(synth, "aws_iam_role")["assume_role_policy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_only_the_two_rules_may_invoke_the_function(synth: dict[str, Any]) -> None:
    permissions = resources(synth, "aws_lambda_permission").values()
    assert sorted(p["source_arn"] for p in permissions) == sorted(rule_arns(synth))
    for permission in permissions:
        assert permission["principal"] == "events.amazonaws.com"
        assert permission["action"] == "lambda:InvokeFunction"
        assert permission["source_account"] == ACCOUNT
        assert permission["function_name"] == ref(synth, "aws_lambda_function", "function_name")


def test_role_name_matches_what_the_key_policy_admits(synth: dict[str, Any]) -> None:
    config = DetectionConfig(**SETTINGS)
    assert only(synth, "aws_iam_role")["name"] == config.quarantine_name
    assert config.quarantine_role_arn == f"arn:aws:iam::{ACCOUNT}:role/phi-ml-unit-quarantine"


# --- the package ----------------------------------------------------------------------------------


def test_package_hash_is_the_hash_of_the_quarantine_source(synth: dict[str, Any]) -> None:
    function = only(synth, "aws_lambda_function")
    package = functions.deterministic_zip(QUARANTINE_SOURCE)
    assert (
        function["source_code_hash"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
    )
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert sorted(archive.namelist()) == ["__init__.py", "handler.py"]
    assert function["filename"].startswith("assets/") and function["filename"].endswith(".zip")


def test_shared_packaging_is_byte_identical_to_the_monitoring_layers() -> None:
    """The monitoring layer's rollback package is functions.deterministic_zip's, byte for byte:
    the synthesized code hash is that package's hash (one packager serves both layers)."""
    rollback = Path(monitoring.ROLLBACK_SOURCE)
    package = functions.deterministic_zip(rollback)
    function = only(synth_stack(build_monitoring), "aws_lambda_function")
    assert (
        function["source_code_hash"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
    )
    assert functions.deterministic_zip(QUARANTINE_SOURCE) != package


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"finding_severity_threshold": 9.0}, "less than or equal to 8.9"),
        ({"finding_severity_threshold": 0.5}, "greater than or equal to 1"),
        ({"log_retention_days": 365}, "six years"),
        ({"log_retention_days": 2200}, "six years"),
        ({"vpc_cidr": "10.42.0.0/33"}, "vpc_cidr"),
        ({"account_id": "12345"}, "account_id"),
        ({"is_security_account": None}, "is_security_account"),
    ],
)
def test_bad_configuration_is_refused(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DetectionConfig(**{**SETTINGS, **override})


def test_good_configuration_variants_are_accepted() -> None:
    assert DetectionConfig(**{**SETTINGS, "finding_severity_threshold": 8.9})
    assert DetectionConfig(**{**SETTINGS, "log_retention_days": 3653})
    assert DetectionConfig(**SETTINGS).finding_severity_threshold == 7.0  # the default


# --- terraform validate ---------------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_detection_layer(tmp_path: Path) -> None:
    terraform_validate(tmp_path, build_detection, region=REGION)
