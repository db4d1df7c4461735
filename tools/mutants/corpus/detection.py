"""Mutants of the detection layer (modules/detection.py, modules/security_alarms.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tools.mutants.edits import (
    MutantError,
    address,
    delete_attribute,
    delete_resource,
    named,
    set_attribute,
)
from tools.mutants.model import Apply, Document, Mutant, RuntimeTwin

DETECTOR = "detection/guardduty"
HUB = "detection/security-hub"


def detector_of(document: Document) -> str:
    # Feature paths extend the detector's ("detection/guardduty-s3_data_events"): match exactly.
    found = [
        name
        for name, conf in document["resource"]["aws_guardduty_detector"].items()
        if conf["//"]["metadata"]["path"].endswith(DETECTOR)
    ]
    (name,) = found
    return address("aws_guardduty_detector", name)


def hub_of(document: Document) -> str:
    name, _ = named(document, "aws_securityhub_account", HUB)
    return address("aws_securityhub_account", name)


def then(edit: Apply, judged: Callable[[Document], str]) -> Apply:
    """Apply `edit`, and report the resource `judged` names as the one that must fail."""

    def apply(document: Document) -> str:
        edit(document)
        return judged(document)

    return apply


def deleting(resource_type: str, path_part: str) -> Apply:
    def apply(document: Document) -> str:
        return delete_resource(document, resource_type, path_part)

    return apply


def rule_pattern(path_part: str, change: Callable[[Any], None]) -> Apply:
    """Change the event pattern of the rule whose construct path has `path_part`."""

    def apply(document: Document) -> str:
        name, rule = named(document, "aws_cloudwatch_event_rule", path_part)
        pattern = json.loads(rule["event_pattern"])
        change(pattern)
        rule["event_pattern"] = json.dumps(pattern)
        return address("aws_cloudwatch_event_rule", name)

    return apply


def severity_eight(pattern: Any) -> None:
    pattern["detail"]["severity"] = [{"numeric": [">=", 8.0]}]


def critical_only(pattern: Any) -> None:
    pattern["detail"]["findings"]["Severity"]["Label"] = ["CRITICAL"]


def cis_standard_1_4(document: Document) -> str:
    _, subscription = named(
        document, "aws_securityhub_standards_subscription", "cis-aws-foundations-benchmark"
    )
    subscription["standards_arn"] = subscription["standards_arn"].replace("/v/3.0.0", "/v/1.4.0")
    return hub_of(document)


def trail_of(document: Document) -> str:
    name, _ = named(document, "aws_cloudtrail", "audit/trail")
    return address("aws_cloudtrail", name)


def nacl_filter_without_association_changes(document: Document) -> str:
    name, metric_filter = named(
        document, "aws_cloudwatch_log_metric_filter", "alarms/network-acl-changes-filter"
    )
    term = " || ($.eventName = ReplaceNetworkAclAssociation)"
    if term not in metric_filter["pattern"]:
        raise MutantError(f"the NACL filter's pattern has no {term!r}")
    metric_filter["pattern"] = metric_filter["pattern"].replace(term, "")
    return address("aws_cloudwatch_log_metric_filter", name)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="detection-guardduty-no-s3-protection",
        layer="detection",
        guarantee="GuardDuty (S3 ... protection)",
        check_id="CKV_PHI_52",
        stack="dev-security",
        change="the detector's S3_DATA_EVENTS feature DISABLED",
        apply=then(
            set_attribute(
                "aws_guardduty_detector_feature", "guardduty-s3_data_events", "status", "DISABLED"
            ),
            detector_of,
        ),
    ),
    Mutant(
        name="detection-guardduty-no-malware-protection",
        layer="detection",
        guarantee="GuardDuty (EBS malware protection)",
        check_id="CKV_PHI_52",
        stack="prod-security",
        change="the detector's EBS_MALWARE_PROTECTION feature removed",
        apply=then(
            deleting("aws_guardduty_detector_feature", "guardduty-ebs_malware_protection"),
            detector_of,
        ),
        runtime=RuntimeTwin("RT_PHI_GUARDDUTY_ENABLED", "GuardDuty malware protection off"),
    ),
    Mutant(
        name="detection-security-hub-no-nist",
        layer="detection",
        guarantee="Security Hub (FSBP, CIS 3.0, NIST 800-53 r5)",
        check_id="CKV_PHI_53",
        stack="dev-security",
        change="the NIST SP 800-53 Rev. 5 subscription removed",
        apply=then(deleting("aws_securityhub_standards_subscription", "nist-800-53"), hub_of),
        runtime=RuntimeTwin(
            "RT_PHI_SECURITY_HUB_STANDARDS",
            "test_security_hub_missing_or_incomplete_standard_fails",
        ),
    ),
    Mutant(
        name="detection-security-hub-cis-1-4",
        layer="detection",
        guarantee="Security Hub (CIS 3.0)",
        check_id="CKV_PHI_53",
        stack="eu-research-security",
        change="the CIS subscription downgraded to CIS AWS Foundations 1.4.0",
        apply=cis_standard_1_4,
    ),
    Mutant(
        name="detection-guardduty-findings-from-8",
        layer="detection",
        guarantee="GuardDuty findings >= 7 to the quarantine function and on-call topic",
        check_id="CKV_PHI_54",
        stack="dev-security",
        change="the GuardDuty rule matches severity >= 8 only (7.x findings unrouted)",
        apply=then(rule_pattern("detection/guardduty-findings", severity_eight), detector_of),
    ),
    Mutant(
        name="detection-security-hub-critical-only",
        layer="detection",
        guarantee="Security Hub CRITICAL/HIGH to the quarantine function and on-call topic",
        check_id="CKV_PHI_54",
        stack="staging-security",
        change="the Security Hub rule matches CRITICAL only (HIGH dropped)",
        apply=then(rule_pattern("detection/security-hub-findings", critical_only), hub_of),
    ),
    Mutant(
        name="detection-guardduty-no-on-call",
        layer="detection",
        guarantee="GuardDuty findings >= 7 ... to an encrypted on-call topic",
        check_id="CKV_PHI_54",
        stack="prod-security",
        change="the GuardDuty rule's on-call topic target removed",
        apply=then(
            deleting("aws_cloudwatch_event_target", "detection/guardduty-to-on-call"), detector_of
        ),
    ),
    Mutant(
        name="detection-security-hub-no-quarantine",
        layer="detection",
        guarantee="Security Hub CRITICAL/HIGH to the quarantine function (runtime/quarantine)",
        check_id="CKV_PHI_54",
        stack="dev-security",
        change="the Security Hub rule's quarantine function target removed",
        apply=then(
            deleting("aws_cloudwatch_event_target", "detection/security-hub-to-quarantine"), hub_of
        ),
    ),
    Mutant(
        name="detection-on-call-topic-unencrypted",
        layer="detection",
        guarantee="an encrypted on-call topic",
        check_id="CKV_AWS_26",
        stack="dev-security",
        change="the on-call topic's kms_master_key_id removed",
        apply=delete_attribute("aws_sns_topic", "detection/alerts/topic", "kms_master_key_id"),
    ),
    Mutant(
        name="detection-no-root-use-alarm",
        layer="detection",
        guarantee="CIS alarms (root use)",
        check_id="CKV_PHI_51",
        stack="org-audit",
        change="the root-use alarm removed (its metric filter kept)",
        apply=then(
            deleting("aws_cloudwatch_metric_alarm", "alarms/root-account-usage-alarm"), trail_of
        ),
    ),
    Mutant(
        name="detection-unauthorized-calls-alarm-silent",
        layer="detection",
        guarantee="CIS alarms (unauthorized calls)",
        check_id="CKV_PHI_51",
        stack="org-audit",
        change="the unauthorized-calls alarm left without an alarm action",
        apply=then(
            set_attribute(
                "aws_cloudwatch_metric_alarm",
                "alarms/unauthorized-api-calls-alarm",
                "alarm_actions",
                [],
            ),
            trail_of,
        ),
    ),
    Mutant(
        name="detection-no-nacl-change-filter",
        layer="detection",
        guarantee="CIS alarms (NACL changes)",
        check_id="CKV_PHI_51",
        stack="org-audit",
        change="the NACL filter no longer matches ReplaceNetworkAclAssociation",
        apply=then(nacl_filter_without_association_changes, trail_of),
    ),
)
