"""Mutants of the audit layer (modules/audit.py, modules/config_rules.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from tools.mutants.edits import (
    MutantError,
    address,
    bucket_policy_without,
    delete_attribute,
    delete_resource,
    named,
    set_attribute,
)
from tools.mutants.model import Apply, Document, Mutant, RuntimeTwin

TRAIL = "audit/trail"


def archive_without_object_lock(document: Document) -> str:
    """The archive created without Object Lock, its lock configuration gone with it."""
    _, bucket = named(document, "aws_s3_bucket", "audit/archive/bucket")
    bucket["object_lock_enabled"] = False
    delete_resource(document, "aws_s3_bucket_object_lock_configuration", "audit/archive/")
    trail, _ = named(document, "aws_cloudtrail", TRAIL)
    return address("aws_cloudtrail", trail)


def trail_selector(selector_name: str, change: Callable[[list[Any], int], None]) -> Apply:
    """Change the trail's advanced event selectors at the one named `selector_name`."""

    def apply(document: Document) -> str:
        name, trail = named(document, "aws_cloudtrail", TRAIL)
        selectors = trail["advanced_event_selector"]
        found = [i for i, s in enumerate(selectors) if s.get("name") == selector_name]
        if len(found) != 1:
            raise MutantError(f"trail selector {selector_name!r}: {len(found)} found")
        change(selectors, found[0])
        return address("aws_cloudtrail", name)

    return apply


def writes_only(selectors: list[Any], index: int) -> None:
    # The cost-saving a developer might try: keep the writes, drop the (far more) reads.
    selectors[index]["field_selector"].append({"field": "readOnly", "equals": ["false"]})


def dropped(selectors: list[Any], index: int) -> None:
    del selectors[index]


def trail_without_cloudwatch_logs(document: Document) -> str:
    name, trail = named(document, "aws_cloudtrail", TRAIL)
    del trail["cloud_watch_logs_group_arn"]
    del trail["cloud_watch_logs_role_arn"]
    return address("aws_cloudtrail", name)


def recorder_some_types(document: Document) -> str:
    _, recorder = named(document, "aws_config_configuration_recorder", "audit/recorder")
    recorder["recording_group"] = {
        "all_supported": False,
        "include_global_resource_types": True,
        "resource_types": ["AWS::S3::Bucket", "AWS::KMS::Key", "AWS::EC2::SecurityGroup"],
    }
    status, _ = named(document, "aws_config_configuration_recorder_status", "recorder-status")
    return address("aws_config_configuration_recorder_status", status)


def without_delivery_channel(document: Document) -> str:
    deleted = delete_resource(document, "aws_config_delivery_channel", "audit/delivery-channel")
    # What still depended on the channel no longer names it (Terraform would refuse otherwise).
    for resources in document["resource"].values():
        for conf in resources.values():
            if deleted in conf.get("depends_on", []):
                conf["depends_on"] = [d for d in conf["depends_on"] if d != deleted]
    recorder, _ = named(document, "aws_config_configuration_recorder", "audit/recorder")
    return address("aws_config_configuration_recorder", recorder)


def recorder_of(document: Document) -> str:
    recorder, _ = named(document, "aws_config_configuration_recorder", "audit/recorder")
    return address("aws_config_configuration_recorder", recorder)


def delivery_without_kms(document: Document) -> str:
    _, channel = named(document, "aws_config_delivery_channel", "audit/delivery-channel")
    del channel["s3_kms_key_arn"]
    return recorder_of(document)


def pack_without(logical_id: str) -> Apply:
    def apply(document: Document) -> str:
        name, pack = named(document, "aws_config_conformance_pack", "audit/conformance-pack")
        header, _, _ = pack["template_body"].partition("Resources:")
        template = yaml.safe_load(pack["template_body"])
        if logical_id not in template["Resources"]:
            raise MutantError(f"conformance pack has no rule {logical_id!r}")
        del template["Resources"][logical_id]
        pack["template_body"] = header + yaml.safe_dump(template, sort_keys=False, width=1000)
        return address("aws_config_conformance_pack", name)

    return apply


def aggregator_of_accounts(document: Document) -> str:
    name, aggregator = named(document, "aws_config_configuration_aggregator", "config-aggregator")
    del aggregator["organization_aggregation_source"]
    aggregator["account_aggregation_source"] = {
        "account_ids": ["999999999999"],
        "all_regions": True,
    }
    return address("aws_config_configuration_aggregator", name)


def aggregator_one_region(document: Document) -> str:
    name, aggregator = named(document, "aws_config_configuration_aggregator", "config-aggregator")
    source = aggregator["organization_aggregation_source"]
    source["all_regions"] = False
    source["regions"] = ["us-east-1"]
    return address("aws_config_configuration_aggregator", name)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="audit-trail-single-account",
        layer="audit",
        guarantee="organization CloudTrail",
        check_id="CKV_PHI_48",
        stack="org-audit",
        change="the trail records the management account only (is_organization_trail false)",
        apply=set_attribute("aws_cloudtrail", TRAIL, "is_organization_trail", False),
    ),
    Mutant(
        name="audit-trail-one-region",
        layer="audit",
        guarantee="all regions",
        check_id="CKV_AWS_67",
        stack="org-audit",
        change="the trail records its home region only (is_multi_region_trail false)",
        apply=set_attribute("aws_cloudtrail", TRAIL, "is_multi_region_trail", False),
    ),
    Mutant(
        name="audit-trail-no-global-events",
        layer="audit",
        guarantee="global events",
        check_id="CKV_PHI_48",
        stack="org-audit",
        change="the trail excludes global service events (IAM, STS, Organizations)",
        apply=set_attribute("aws_cloudtrail", TRAIL, "include_global_service_events", False),
    ),
    Mutant(
        name="audit-trail-no-log-validation",
        layer="audit",
        guarantee="log file validation",
        check_id="CKV_AWS_36",
        stack="org-audit",
        change="the trail writes no digest files (enable_log_file_validation false)",
        apply=set_attribute("aws_cloudtrail", TRAIL, "enable_log_file_validation", False),
        runtime=RuntimeTwin(
            "RT_PHI_CLOUDTRAIL_LOG_VALIDATION", "trail without log file validation"
        ),
    ),
    Mutant(
        name="audit-trail-no-cmk",
        layer="audit",
        guarantee="CMK",
        check_id="CKV_AWS_35",
        stack="org-audit",
        change="the trail's kms_key_id removed (log files under S3-managed keys)",
        apply=delete_attribute("aws_cloudtrail", TRAIL, "kms_key_id"),
    ),
    Mutant(
        name="audit-trail-phi-writes-only",
        layer="audit",
        guarantee="S3 data events on every environment's data buckets",
        check_id="CKV_PHI_48",
        stack="org-audit",
        change="the PHI buckets' data-event selector limited to writes (readOnly false)",
        apply=trail_selector("Object reads and writes in the PHI buckets", writes_only),
    ),
    Mutant(
        name="audit-trail-no-lambda-events",
        layer="audit",
        guarantee="Lambda (data events)",
        check_id="CKV_PHI_48",
        stack="org-audit",
        change="the Lambda invocations selector dropped",
        apply=trail_selector("Lambda invocations", dropped),
    ),
    Mutant(
        name="audit-archive-without-object-lock",
        layer="audit",
        guarantee="into an Object-Locked (compliance mode) archive",
        check_id="CKV_PHI_56",
        stack="org-audit",
        change="the archive bucket created without Object Lock",
        apply=archive_without_object_lock,
    ),
    Mutant(
        name="audit-archive-allows-http",
        layer="audit",
        guarantee="into a hardened archive bucket",
        check_id="CKV_PHI_10",
        stack="org-audit",
        change="the audit archive's policy without DenyInsecureTransport",
        apply=bucket_policy_without("audit/archive/bucket", "DenyInsecureTransport"),
    ),
    Mutant(
        name="audit-trail-no-cloudwatch-logs",
        layer="audit",
        guarantee="and CloudWatch Logs",
        check_id="CKV2_AWS_10",
        stack="org-audit",
        change="the trail no longer delivers to its CloudWatch Logs group",
        apply=trail_without_cloudwatch_logs,
    ),
    Mutant(
        name="audit-trail-logs-one-year",
        layer="audit",
        guarantee="CloudWatch Logs kept six years",
        check_id="CKV_PHI_12",
        stack="org-audit",
        change="the trail's log group kept 365 days",
        apply=set_attribute(
            "aws_cloudwatch_log_group", "audit/trail-log-group", "retention_in_days", 365
        ),
    ),
    Mutant(
        name="config-recorder-some-types",
        layer="audit",
        guarantee="AWS Config recorder",
        check_id="CKV2_AWS_45",
        stack="org-audit",
        change="the recorder records three resource types instead of all supported",
        apply=recorder_some_types,
        runtime=RuntimeTwin("RT_PHI_CONFIG_RECORDING", "Config recorder stopped"),
    ),
    Mutant(
        name="config-no-delivery-channel",
        layer="audit",
        guarantee="delivery channel",
        check_id="CKV_PHI_49",
        stack="org-audit",
        change="the Config delivery channel removed",
        apply=without_delivery_channel,
    ),
    Mutant(
        name="config-delivery-without-kms",
        layer="audit",
        guarantee="delivery channel (encrypted history)",
        check_id="CKV_PHI_49",
        stack="org-audit",
        change="the delivery channel's s3_kms_key_arn removed",
        apply=delivery_without_kms,
    ),
    Mutant(
        name="conformance-pack-drops-log-validation-rule",
        layer="audit",
        guarantee="a conformance pack generated from policies/controls.yaml",
        check_id="CKV_PHI_50",
        stack="org-audit",
        change="the pack without the catalog's CLOUD_TRAIL_LOG_FILE_VALIDATION_ENABLED rule",
        apply=pack_without("CloudTrailLogFileValidationEnabled"),
    ),
    Mutant(
        name="config-history-one-year",
        layer="audit",
        guarantee="Config history kept six years",
        check_id="CKV_PHI_12",
        stack="org-audit",
        change="the Config retention configuration set to 365 days",
        apply=set_attribute(
            "aws_config_retention_configuration",
            "config-retention",
            "retention_period_in_days",
            365,
        ),
    ),
    Mutant(
        name="config-aggregator-one-account",
        layer="audit",
        guarantee="organization aggregator",
        check_id="CKV_PHI_49",
        stack="org-audit",
        change="the aggregator collects the management account only, not the organization",
        apply=aggregator_of_accounts,
    ),
    Mutant(
        name="config-aggregator-one-region",
        layer="audit",
        guarantee="organization aggregator (all regions)",
        # Not CKV_AWS_121: under terraform_json it reads all_regions as [False], a non-empty
        # list, and passes.
        check_id="CKV_PHI_49",
        stack="org-audit",
        change="the organization aggregator limited to us-east-1",
        apply=aggregator_one_region,
    ),
)
