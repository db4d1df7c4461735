"""Audit layer: an organization-wide, multi-region, validated and encrypted trail with PHI data
events, an archive nobody can shorten, AWS Config recording everything, and a conformance pack
that is exactly the control catalog's rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cdktf import TerraformOutput, TerraformStack
from pydantic import ValidationError

from modules.audit import (
    Audit,
    AuditConfig,
    ConfigAggregator,
    ConfigAggregatorConfig,
    cloudtrail_delivery_statements,
    config_delivery_statements,
)
from modules.config_rules import (
    DESCRIPTION_LIMIT,
    TEMPLATE_BODY_LIMIT_BYTES,
    ConformancePackTooLargeError,
    conformance_pack_template,
    logical_id,
    rule_description,
    rule_name,
)
from modules.keys import CustomerManagedKey, CustomerManagedKeyConfig, KeyPurpose
from policies.catalog import Catalog, Control, RuntimeEvidence, load_catalog
from tests.synth import only, resources, statement_by_sid, statements, synth_stack
from tests.terraform_check import terraform_validate

ACCOUNT = "123456789012"
SECURITY_ACCOUNT = "210987654321"
ORGANIZATION = "o-a1b2c3d4e5"
REGION = "us-east-1"
ARCHIVE = "acme-org-audit"
RETENTION_DAYS = 2557
LOCK_DAYS = 2922
PHI_BUCKET_ARNS = ("arn:aws:s3:::acme-dev-raw", "arn:aws:s3:::acme-dev-curated")
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/phi-ml-org-organization-trail"
CATALOG = load_catalog()
NEW_RULE = "SAGEMAKER_ENDPOINT_CONFIG_PROD_INSTANCE_COUNT"
TRAIL_SCOPE = (
    "is_organization_trail",
    "is_multi_region_trail",
    "include_global_service_events",
    "enable_log_file_validation",
    "enable_logging",
)


def audit_config(**overrides: Any) -> AuditConfig:
    values: dict[str, Any] = {
        "environment": "org",
        "organization_id": ORGANIZATION,
        "account_id": ACCOUNT,
        "region": REGION,
        "log_archive_bucket_name": ARCHIVE,
        "retention_days": RETENTION_DAYS,
        "object_lock_days": LOCK_DAYS,
        "config_snapshot_frequency": "Six_Hours",
    }
    values.update(overrides)
    return AuditConfig(**values)


def key(stack: Any, name: str) -> CustomerManagedKey:
    return CustomerManagedKey(
        stack,
        name,
        config=CustomerManagedKeyConfig(
            purpose=KeyPurpose.LOGS,
            alias=f"alias/phi-ml/unit/{name}",
            account_id=ACCOUNT,
            region=REGION,
            administrators=(f"arn:aws:iam::{ACCOUNT}:role/key-admin",),
            users=(f"arn:aws:iam::{ACCOUNT}:role/auditor",),
        ),
    )


def build_audit(
    stack: Any,
    *,
    catalog: Catalog = CATALOG,
    phi_bucket_arns: tuple[str, ...] = PHI_BUCKET_ARNS,
) -> Audit:
    return Audit(
        stack,
        "audit",
        config=audit_config(),
        trail_key=key(stack, "trail-key"),
        logs_key=key(stack, "logs-key"),
        phi_bucket_arns=list(phi_bucket_arns),
        catalog=catalog,
    )


def with_outputs(stack: Any) -> None:
    built = build_audit(stack)
    for name in (
        "trail_arn",
        "archive_bucket_name",
        "log_group_name",
        "recorder_name",
        "conformance_pack_name",
    ):
        TerraformOutput(stack, name, value=getattr(built, name))


def catalog_with_new_rule() -> Catalog:
    extra = Control(
        id="EU-AI-Act-15",
        framework="EU-AI-Act",
        title="Accuracy, robustness and cybersecurity",
        citation="Regulation (EU) 2024/1689, Article 15",
        responsibility="customer",
        static_checks=(),
        runtime_evidence=RuntimeEvidence(config_rules=(NEW_RULE,)),
    )
    return CATALOG.model_copy(update={"controls": (*CATALOG.controls, extra)})


@pytest.fixture(scope="module")
def audit() -> dict[str, Any]:
    return synth_stack(with_outputs)


@pytest.fixture(scope="module")
def audit_with_new_rule() -> dict[str, Any]:
    return synth_stack(lambda stack: build_audit(stack, catalog=catalog_with_new_rule()))


# --- helpers: each finds one property, and each has a test showing it can fail ------------


def name_of(synthesized: dict[str, Any], type_: str, construct_path: str) -> str:
    """Logical name of the one resource of `type_` whose name starts with `construct_path`."""
    (found,) = [n for n in resources(synthesized, type_) if n.startswith(construct_path + "_")]
    return found


def ref(synthesized: dict[str, Any], type_: str, construct_path: str, attribute: str) -> str:
    return f"${{{type_}.{name_of(synthesized, type_, construct_path)}.{attribute}}}"


def key_arn(synthesized: dict[str, Any], key_name: str) -> str:
    return ref(synthesized, "aws_kms_key", key_name, "arn")


def bucket_ref(synthesized: dict[str, Any], bucket_name: str, attribute: str = "id") -> str:
    (found,) = [
        n for n, b in resources(synthesized, "aws_s3_bucket").items() if b["bucket"] == bucket_name
    ]
    return f"${{aws_s3_bucket.{found}.{attribute}}}"


def of_bucket(synthesized: dict[str, Any], type_: str, bucket_name: str) -> list[dict[str, Any]]:
    target = bucket_ref(synthesized, bucket_name)
    return [r for r in resources(synthesized, type_).values() if r["bucket"] == target]


def object_lock(synthesized: dict[str, Any], bucket_name: str) -> tuple[str, int] | None:
    """(mode, days) of the bucket's default retention, None if it has none."""
    locks = of_bucket(synthesized, "aws_s3_bucket_object_lock_configuration", bucket_name)
    if not locks:
        return None
    retention = locks[0]["rule"]["default_retention"]
    return retention["mode"], retention["days"]


def encryption_key(synthesized: dict[str, Any], bucket_name: str) -> str:
    (encryption,) = of_bucket(
        synthesized, "aws_s3_bucket_server_side_encryption_configuration", bucket_name
    )
    (rule,) = encryption["rule"]
    default = rule["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] == "aws:kms"
    return str(default["kms_master_key_id"])


def bucket_policy(synthesized: dict[str, Any], bucket_name: str) -> str:
    (policy,) = of_bucket(synthesized, "aws_s3_bucket_policy", bucket_name)
    return str(policy["policy"])


def trail_scope_gaps(trail: dict[str, Any]) -> list[str]:
    """Which of the trail's scope and integrity settings are not on."""
    return [setting for setting in TRAIL_SCOPE if trail.get(setting) is not True]


def fields(selector: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in selector["field_selector"]}


def s3_data_event_prefixes(trail: dict[str, Any], *, read_only: bool = False) -> set[str]:
    """Object ARN prefixes whose S3 data events the trail records ('*' for every bucket):
    reads and writes, or with `read_only` the prefixes recorded for reads alone."""
    found: set[str] = set()
    for selector in trail.get("advanced_event_selector", []):
        by_field = fields(selector)
        if by_field.get("eventCategory", {}).get("equals") != ["Data"]:
            continue
        if by_field.get("resources.type", {}).get("equals") != ["AWS::S3::Object"]:
            continue
        reads_only = by_field.get("readOnly") == {"field": "readOnly", "equals": ["true"]}
        if "readOnly" in by_field and not reads_only:
            continue
        if reads_only != read_only:
            continue
        arn = by_field.get("resources.ARN")
        if arn is None or set(arn) - {"field", "starts_with"}:
            found.add("*")
        else:
            found.update(arn["starts_with"])
    return found


def records_all_management_events(trail: dict[str, Any]) -> bool:
    """A selector that keeps every management event, excluding none (KMS included)."""
    return any(
        fields(selector) == {"eventCategory": {"field": "eventCategory", "equals": ["Management"]}}
        for selector in trail.get("advanced_event_selector", [])
    )


def records_lambda_invocations(trail: dict[str, Any]) -> bool:
    return any(
        fields(selector).get("resources.type", {}).get("equals") == ["AWS::Lambda::Function"]
        and fields(selector).get("eventName", {}).get("equals") == ["Invoke"]
        and set(fields(selector)) == {"eventCategory", "resources.type", "eventName"}
        for selector in trail.get("advanced_event_selector", [])
    )


def service_grants_without_source_condition(policy_json: str) -> list[str]:
    """Allow statements for an AWS service that no aws:SourceArn/SourceAccount confines."""
    return [
        s.get("Sid", "?")
        for s in statements(policy_json)
        if s["Effect"] == "Allow"
        and isinstance(s.get("Principal"), dict)
        and "Service" in s["Principal"]
        and not any(
            "aws:SourceArn" in test or "aws:SourceAccount" in test
            for test in s.get("Condition", {}).values()
        )
    ]


def granted(policy_json: str, service: str) -> set[tuple[str, str]]:
    """(action, resource) pairs the policy allows an AWS service."""
    pairs: set[tuple[str, str]] = set()
    for s in statements(policy_json):
        if s["Effect"] == "Allow" and s.get("Principal", {}).get("Service") == service:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            resources_ = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            pairs.update((a, r) for a in actions for r in resources_)
    return pairs


def recorder_gaps(recorder: dict[str, Any]) -> list[str]:
    group = recorder.get("recording_group", {})
    gaps = [
        k for k in ("all_supported", "include_global_resource_types") if group.get(k) is not True
    ]
    if group.get("resource_types") or group.get("exclusion_by_resource_types"):
        gaps.append("resource_types")
    if recorder.get("recording_mode", {}).get("recording_frequency") != "CONTINUOUS":
        gaps.append("recording_frequency")
    return gaps


def pack_rules(pack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Source identifier -> rule properties, from the pack's template body."""
    template = yaml.safe_load(pack["template_body"])
    rules = {}
    for resource in template["Resources"].values():
        assert resource["Type"] == "AWS::Config::ConfigRule"
        properties = resource["Properties"]
        assert properties["Source"]["Owner"] == "AWS"
        rules[properties["Source"]["SourceIdentifier"]] = properties
    return rules


# --- the trail ----------------------------------------------------------------------------


def test_the_trail_is_organization_wide_multi_region_and_validated(audit: dict[str, Any]) -> None:
    assert trail_scope_gaps(only(audit, "aws_cloudtrail")) == []


@pytest.mark.parametrize("setting", TRAIL_SCOPE)
def test_a_trail_scope_gap_is_detected(audit: dict[str, Any], setting: str) -> None:
    switched_off = {**only(audit, "aws_cloudtrail"), setting: False}
    assert trail_scope_gaps(switched_off) == [setting]
    unset = {k: v for k, v in only(audit, "aws_cloudtrail").items() if k != setting}
    assert trail_scope_gaps(unset) == [setting]


def test_the_trail_is_named_by_the_arn_its_policies_trust(audit: dict[str, Any]) -> None:
    trail = only(audit, "aws_cloudtrail")
    assert audit_config().trail_arn == TRAIL_ARN
    assert TRAIL_ARN.endswith(f":trail/{trail['name']}")


def test_the_trail_encrypts_with_the_trail_key_into_the_archive(audit: dict[str, Any]) -> None:
    trail = only(audit, "aws_cloudtrail")
    assert trail["kms_key_id"] == key_arn(audit, "trail-key")
    assert trail["kms_key_id"] != key_arn(audit, "logs-key")
    assert trail["s3_bucket_name"] == bucket_ref(audit, ARCHIVE, "bucket")


def test_the_trail_records_object_events_of_exactly_the_phi_buckets(audit: dict[str, Any]) -> None:
    assert s3_data_event_prefixes(only(audit, "aws_cloudtrail")) == {
        f"{arn}/" for arn in PHI_BUCKET_ARNS
    }


def test_other_phi_buckets_change_the_data_events() -> None:
    other = synth_stack(lambda stack: build_audit(stack, phi_bucket_arns=("arn:aws:s3:::x",)))
    assert s3_data_event_prefixes(only(other, "aws_cloudtrail")) == {"arn:aws:s3:::x/"}


def test_data_events_on_every_bucket_are_detected(audit: dict[str, Any]) -> None:
    trail = copy.deepcopy(only(audit, "aws_cloudtrail"))
    selector = trail["advanced_event_selector"][1]
    selector["field_selector"] = [
        f for f in selector["field_selector"] if f["field"] != "resources.ARN"
    ]
    assert "*" in s3_data_event_prefixes(trail)


def test_the_trail_records_who_reads_the_audit_buckets(audit: dict[str, Any]) -> None:
    trail = only(audit, "aws_cloudtrail")
    assert s3_data_event_prefixes(trail, read_only=True) == {
        f"arn:aws:s3:::{name}/"
        for name in (ARCHIVE, f"{ARCHIVE}-config-history", f"{ARCHIVE}-access-logs")
    }


def test_writes_to_the_audit_buckets_would_be_detected(audit: dict[str, Any]) -> None:
    """Recording log delivery into the buckets the trail writes to would never stop."""
    trail = copy.deepcopy(only(audit, "aws_cloudtrail"))
    audit_reads = trail["advanced_event_selector"][3]
    audit_reads["field_selector"] = [
        f for f in audit_reads["field_selector"] if f["field"] != "readOnly"
    ]
    assert f"arn:aws:s3:::{ARCHIVE}/" in s3_data_event_prefixes(trail)
    assert s3_data_event_prefixes(trail, read_only=True) == set()


def test_the_trail_keeps_every_management_event(audit: dict[str, Any]) -> None:
    trail = only(audit, "aws_cloudtrail")
    assert records_all_management_events(trail)
    without_kms = copy.deepcopy(trail)
    without_kms["advanced_event_selector"][0]["field_selector"].append(
        {"field": "eventSource", "not_equals": ["kms.amazonaws.com"]}
    )
    assert not records_all_management_events(without_kms)


def test_the_trail_records_lambda_invocations(audit: dict[str, Any]) -> None:
    trail = only(audit, "aws_cloudtrail")
    assert records_lambda_invocations(trail)
    without = {
        **trail,
        "advanced_event_selector": [
            s for s in trail["advanced_event_selector"] if s["name"] != "Lambda invocations"
        ],
    }
    assert not records_lambda_invocations(without)


def test_a_trail_without_phi_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="ARNs of the PHI buckets"):
        synth_stack(lambda stack: build_audit(stack, phi_bucket_arns=()))


def test_the_trail_waits_for_the_archive_policy_and_its_log_role(audit: dict[str, Any]) -> None:
    depends_on = only(audit, "aws_cloudtrail")["depends_on"]
    archive_policy = name_of(audit, "aws_s3_bucket_policy", "audit_archive_policy")
    assert f"aws_s3_bucket_policy.{archive_policy}" in depends_on
    delivery = name_of(audit, "aws_iam_role_policy", "audit_trail-logs-delivery")
    assert f"aws_iam_role_policy.{delivery}" in depends_on


# --- CloudWatch Logs ----------------------------------------------------------------------


def test_trail_events_go_to_an_encrypted_six_year_log_group(audit: dict[str, Any]) -> None:
    group = only(audit, "aws_cloudwatch_log_group")
    assert group["retention_in_days"] == RETENTION_DAYS >= 2192
    assert group["kms_key_id"] == key_arn(audit, "logs-key")
    trail = only(audit, "aws_cloudtrail")
    group_arn = ref(audit, "aws_cloudwatch_log_group", "audit_trail-log-group", "arn")
    assert trail["cloud_watch_logs_group_arn"] == f"{group_arn}:*"
    assert trail["cloud_watch_logs_role_arn"] == ref(
        audit, "aws_iam_role", "audit_trail-logs-role", "arn"
    )


@pytest.mark.parametrize("days", [365, 1827, 2191, 2200, 0])
def test_retention_below_six_years_or_not_a_cloudwatch_period_is_refused(days: int) -> None:
    with pytest.raises(ValidationError, match="kept at least six years"):
        audit_config(retention_days=days)


def test_only_this_trail_assumes_the_log_role(audit: dict[str, Any]) -> None:
    role = resources(audit, "aws_iam_role")[name_of(audit, "aws_iam_role", "audit_trail-logs-role")]
    trust = statement_by_sid(role["assume_role_policy"], "ThisTrailAssumesTheRole")
    assert trust["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {
        "aws:SourceAccount": ACCOUNT,
        "aws:SourceArn": TRAIL_ARN,
    }


def test_the_log_role_only_writes_streams_of_the_trail_log_group(audit: dict[str, Any]) -> None:
    name = name_of(audit, "aws_iam_role_policy", "audit_trail-logs-delivery")
    policy = resources(audit, "aws_iam_role_policy")[name]["policy"]
    group_arn = ref(audit, "aws_cloudwatch_log_group", "audit_trail-log-group", "arn")
    assert list(statements(policy)) == [
        {
            "Sid": "CreateStreamsAndPutEventsInTheTrailLogGroupOnly",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{group_arn}:log-stream:*",
        }
    ]


# --- the archive --------------------------------------------------------------------------


def test_the_archive_is_locked_in_compliance_mode_for_the_configured_days(
    audit: dict[str, Any],
) -> None:
    assert object_lock(audit, ARCHIVE) == ("COMPLIANCE", LOCK_DAYS)
    (bucket,) = [b for b in resources(audit, "aws_s3_bucket").values() if b["bucket"] == ARCHIVE]
    assert bucket["object_lock_enabled"] is True
    assert bucket["lifecycle"] == {"prevent_destroy": True}


def test_the_lock_follows_the_configuration() -> None:
    other = synth_stack(
        lambda stack: Audit(
            stack,
            "audit",
            config=audit_config(object_lock_days=3000),
            trail_key=key(stack, "trail-key"),
            logs_key=key(stack, "logs-key"),
            phi_bucket_arns=list(PHI_BUCKET_ARNS),
            catalog=CATALOG,
        )
    )
    assert object_lock(other, ARCHIVE) == ("COMPLIANCE", 3000)


def test_a_governance_mode_lock_is_detected(audit: dict[str, Any]) -> None:
    weakened = copy.deepcopy(audit)
    for lock in resources(weakened, "aws_s3_bucket_object_lock_configuration").values():
        lock["rule"]["default_retention"]["mode"] = "GOVERNANCE"
    assert object_lock(weakened, ARCHIVE) != ("COMPLIANCE", LOCK_DAYS)


@pytest.mark.parametrize("days", [30, 365, 2191])
def test_a_lock_shorter_than_six_years_is_refused(days: int) -> None:
    with pytest.raises(ValidationError, match="object_lock_days"):
        audit_config(object_lock_days=days)


def test_audit_buckets_are_encrypted_with_their_keys(audit: dict[str, Any]) -> None:
    trail_key, logs_key = key_arn(audit, "trail-key"), key_arn(audit, "logs-key")
    assert encryption_key(audit, ARCHIVE) == trail_key
    assert encryption_key(audit, f"{ARCHIVE}-config-history") == trail_key
    # The access-log sink takes S3 log delivery, which the logs key admits.
    assert encryption_key(audit, f"{ARCHIVE}-access-logs") == logs_key


def test_the_archive_logs_access_to_a_sink_without_a_lock(audit: dict[str, Any]) -> None:
    (logging,) = of_bucket(audit, "aws_s3_bucket_logging", ARCHIVE)
    assert logging["target_bucket"] == bucket_ref(audit, f"{ARCHIVE}-access-logs")
    # S3 refuses an Object-Locked bucket as a log target; the detector sees the difference.
    assert object_lock(audit, f"{ARCHIVE}-access-logs") is None


def test_cloudtrail_writes_only_log_prefixes_for_this_trail(audit: dict[str, Any]) -> None:
    policy = bucket_policy(audit, ARCHIVE)
    bucket_arn = f"arn:aws:s3:::{ARCHIVE}"
    assert granted(policy, "cloudtrail.amazonaws.com") == {
        ("s3:GetBucketAcl", bucket_arn),
        ("s3:PutObject", f"{bucket_arn}/AWSLogs/{ACCOUNT}/*"),
        ("s3:PutObject", f"{bucket_arn}/AWSLogs/{ORGANIZATION}/*"),
    }
    acl_check = statement_by_sid(policy, "CloudTrailChecksTheBucketAcl")
    assert acl_check["Condition"] == {"StringEquals": {"aws:SourceArn": TRAIL_ARN}}
    write = statement_by_sid(policy, "CloudTrailWritesTheOrganizationsLogs")
    assert write["Condition"]["StringEquals"]["aws:SourceArn"] == TRAIL_ARN
    # The hardened bucket's denials still stand beside the deliveries.
    assert statement_by_sid(policy, "DenyInsecureTransport")["Effect"] == "Deny"
    assert (
        granted(bucket_policy(audit, f"{ARCHIVE}-config-history"), "cloudtrail.amazonaws.com")
        == set()
    )


def test_every_service_delivery_is_confined_to_its_source(audit: dict[str, Any]) -> None:
    for bucket in (ARCHIVE, f"{ARCHIVE}-config-history", f"{ARCHIVE}-access-logs"):
        assert service_grants_without_source_condition(bucket_policy(audit, bucket)) == []


def test_an_unconfined_service_delivery_is_detected() -> None:
    loose = cloudtrail_delivery_statements(
        ARCHIVE, account_id=ACCOUNT, organization_id=ORGANIZATION, trail_arn=TRAIL_ARN
    )
    del loose[1]["Condition"]
    assert service_grants_without_source_condition(json.dumps({"Statement": loose})) == [
        "CloudTrailWritesTheManagementAccountsLogs"
    ]


def test_config_writes_only_this_accounts_history(audit: dict[str, Any]) -> None:
    name = f"{ARCHIVE}-config-history"
    bucket_arn = f"arn:aws:s3:::{name}"
    assert granted(bucket_policy(audit, name), "config.amazonaws.com") == {
        ("s3:GetBucketAcl", bucket_arn),
        ("s3:ListBucket", bucket_arn),
        ("s3:PutObject", f"{bucket_arn}/AWSLogs/{ACCOUNT}/Config/*"),
    }
    assert granted(bucket_policy(audit, ARCHIVE), "config.amazonaws.com") == set()
    assert config_delivery_statements(name, account_id=ACCOUNT)[2]["Condition"] == {
        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": ACCOUNT}
    }


# --- AWS Config ---------------------------------------------------------------------------


def test_the_recorder_records_every_resource_continuously(audit: dict[str, Any]) -> None:
    recorder = only(audit, "aws_config_configuration_recorder")
    assert recorder_gaps(recorder) == []
    assert recorder["role_arn"] == ref(audit, "aws_iam_role", "audit_config-role", "arn")


@pytest.mark.parametrize(
    "change",
    [
        {"recording_group": {"all_supported": True}},
        {"recording_group": {"all_supported": False, "include_global_resource_types": True}},
        {
            "recording_group": {
                "all_supported": True,
                "include_global_resource_types": True,
                "exclusion_by_resource_types": [{"resource_types": ["AWS::S3::Bucket"]}],
            }
        },
        {"recording_mode": {"recording_frequency": "DAILY"}},
    ],
    ids=["no-global", "not-all", "exclusions", "daily"],
)
def test_a_recorder_gap_is_detected(audit: dict[str, Any], change: dict[str, Any]) -> None:
    assert recorder_gaps({**only(audit, "aws_config_configuration_recorder"), **change}) != []


def test_the_recorder_is_switched_on_after_its_delivery_channel(audit: dict[str, Any]) -> None:
    status = only(audit, "aws_config_configuration_recorder_status")
    assert status["is_enabled"] is True
    assert status["name"] == ref(
        audit, "aws_config_configuration_recorder", "audit_recorder", "name"
    )
    channel = name_of(audit, "aws_config_delivery_channel", "audit_delivery-channel")
    assert status["depends_on"] == [f"aws_config_delivery_channel.{channel}"]


def test_config_delivers_encrypted_history_to_its_own_bucket(audit: dict[str, Any]) -> None:
    channel = only(audit, "aws_config_delivery_channel")
    assert channel["s3_bucket_name"] == bucket_ref(audit, f"{ARCHIVE}-config-history", "bucket")
    # Not the archive: AWS Config refuses buckets with Object Lock default retention.
    assert channel["s3_bucket_name"] != bucket_ref(audit, ARCHIVE, "bucket")
    assert channel["s3_kms_key_arn"] == key_arn(audit, "trail-key")
    assert channel["snapshot_delivery_properties"] == {"delivery_frequency": "Six_Hours"}
    recorder = name_of(audit, "aws_config_configuration_recorder", "audit_recorder")
    assert f"aws_config_configuration_recorder.{recorder}" in channel["depends_on"]


def test_the_config_role_is_for_config_in_this_account_only(audit: dict[str, Any]) -> None:
    role = resources(audit, "aws_iam_role")[name_of(audit, "aws_iam_role", "audit_config-role")]
    assert role["name"] == "phi-ml-org-config-recorder"
    assert audit_config().config_role_arn == f"arn:aws:iam::{ACCOUNT}:role/{role['name']}"
    (trust,) = statements(role["assume_role_policy"])
    assert trust["Principal"] == {"Service": "config.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    attachment = only(audit, "aws_iam_role_policy_attachment")
    assert attachment["policy_arn"] == "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
    assert attachment["role"] == ref(audit, "aws_iam_role", "audit_config-role", "name")


def test_the_config_role_writes_only_its_history_prefix(audit: dict[str, Any]) -> None:
    name = name_of(audit, "aws_iam_role_policy", "audit_config-role-delivery")
    policy = resources(audit, "aws_iam_role_policy")[name]["policy"]
    history = f"arn:aws:s3:::{ARCHIVE}-config-history"
    write = statement_by_sid(policy, "WriteThisAccountsHistoryOnly")
    assert write["Resource"] == f"{history}/AWSLogs/{ACCOUNT}/Config/*"
    assert write["Action"] == ["s3:PutObject", "s3:PutObjectAcl"]
    assert write["Condition"] == {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}
    encrypt = statement_by_sid(policy, "EncryptTheHistoryWithTheAuditKey")
    assert encrypt["Resource"] == key_arn(audit, "trail-key")


def test_config_keeps_its_history_as_long_as_it_may(audit: dict[str, Any]) -> None:
    retention = only(audit, "aws_config_retention_configuration")
    assert retention["retention_period_in_days"] == min(RETENTION_DAYS, 2557)


def test_the_aggregator_is_not_part_of_the_audit_layer(audit: dict[str, Any]) -> None:
    assert resources(audit, "aws_config_configuration_aggregator") == {}


# --- the conformance pack -----------------------------------------------------------------


def test_the_pack_holds_exactly_the_catalogs_rules(audit: dict[str, Any]) -> None:
    pack = only(audit, "aws_config_conformance_pack")
    assert pack["name"] == "phi-ml-org-controls"
    assert set(pack_rules(pack)) == set(CATALOG.config_rules())


def test_a_new_catalog_rule_joins_the_pack(audit_with_new_rule: dict[str, Any]) -> None:
    rules = pack_rules(only(audit_with_new_rule, "aws_config_conformance_pack"))
    assert NEW_RULE not in CATALOG.config_rules()
    assert set(rules) == {*CATALOG.config_rules(), NEW_RULE}
    assert rules[NEW_RULE]["Description"] == "Evidence for EU-AI-Act-15"


def test_each_rule_names_the_controls_it_evidences(audit: dict[str, Any]) -> None:
    rules = pack_rules(only(audit, "aws_config_conformance_pack"))
    for identifier, control_ids in CATALOG.config_rules().items():
        assert rules[identifier]["Description"] == "Evidence for " + ", ".join(control_ids)
        assert rules[identifier]["ConfigRuleName"] == rule_name(identifier)
    retention = rules["CW_LOGGROUP_RETENTION_PERIOD_CHECK"]
    assert retention["InputParameters"] == {"MinRetentionTime": "2192"}
    assert "InputParameters" not in rules["S3_BUCKET_SSL_REQUESTS_ONLY"]


def test_the_pack_waits_for_the_recorder(audit: dict[str, Any]) -> None:
    depends_on = only(audit, "aws_config_conformance_pack")["depends_on"]
    recorder = name_of(audit, "aws_config_configuration_recorder", "audit_recorder")
    status = name_of(audit, "aws_config_configuration_recorder_status", "audit_recorder-status")
    assert f"aws_config_configuration_recorder.{recorder}" in depends_on
    assert f"aws_config_configuration_recorder_status.{status}" in depends_on


def test_rule_names_derive_from_the_identifier_alone() -> None:
    assert rule_name("S3_BUCKET_SSL_REQUESTS_ONLY") == "s3-bucket-ssl-requests-only"
    assert logical_id("EC2_IMDSV2_CHECK") == "Ec2Imdsv2Check"
    before = yaml.safe_load(conformance_pack_template(CATALOG))["Resources"]
    after = yaml.safe_load(conformance_pack_template(catalog_with_new_rule()))["Resources"]
    assert {k: v for k, v in after.items() if k in before} == before
    assert conformance_pack_template(CATALOG) == conformance_pack_template(CATALOG)


def test_a_long_list_of_controls_is_shortened_to_the_description_limit() -> None:
    many = tuple(f"HIPAA-164.312(a)(2)(iv)-{n}" for n in range(20))
    description = rule_description(many)
    assert len(description) <= DESCRIPTION_LIMIT
    shown = description.removeprefix("Evidence for ").split(" and ")[0].split(", ")
    assert shown == list(many[: len(shown)])
    assert description.endswith(f" and {len(many) - len(shown)} more")
    assert rule_description(many[:2]) == f"Evidence for {many[0]}, {many[1]}"


def test_a_pack_over_the_template_limit_is_refused() -> None:
    def catalog_of(rule_count: int) -> Catalog:
        rules = tuple(f"RULE_{n:04}_" + "X" * 40 for n in range(rule_count))
        only_control = CATALOG.controls[0].model_copy(
            update={"runtime_evidence": RuntimeEvidence(config_rules=rules)}
        )
        return Catalog(catalog_version=1, controls=(only_control,))

    fits = conformance_pack_template(catalog_of(100))
    assert len(fits.encode()) <= TEMPLATE_BODY_LIMIT_BYTES
    with pytest.raises(ConformancePackTooLargeError, match=r"at most 51200: split"):
        conformance_pack_template(catalog_of(400))


def test_a_catalog_without_rules_makes_no_pack() -> None:
    no_rules = CATALOG.controls[0].model_copy(update={"runtime_evidence": RuntimeEvidence()})
    with pytest.raises(ValueError, match="names no AWS Config rules"):
        conformance_pack_template(Catalog(catalog_version=1, controls=(no_rules,)))


# --- configuration and outputs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("organization_id", "r-abcd"),
        ("account_id", "12345"),
        ("log_archive_bucket_name", "a" * 49),
        ("log_archive_bucket_name", "Acme_Audit"),
        ("environment", "Prod"),
        ("config_snapshot_frequency", "Weekly"),
        ("organization_trail", False),
    ],
)
def test_bad_configuration_is_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        audit_config(**{field: value})


def test_outputs_name_the_resources_they_describe(audit: dict[str, Any]) -> None:
    outputs = {name: output["value"] for name, output in audit["output"].items()}
    assert outputs == {
        "trail_arn": ref(audit, "aws_cloudtrail", "audit_trail", "arn"),
        "archive_bucket_name": bucket_ref(audit, ARCHIVE, "bucket"),
        "log_group_name": ref(audit, "aws_cloudwatch_log_group", "audit_trail-log-group", "name"),
        "recorder_name": ref(audit, "aws_config_configuration_recorder", "audit_recorder", "name"),
        "conformance_pack_name": ref(
            audit, "aws_config_conformance_pack", "audit_conformance-pack", "name"
        ),
    }


# --- the organization aggregator ----------------------------------------------------------


@pytest.fixture(scope="module")
def aggregator() -> dict[str, Any]:
    config = ConfigAggregatorConfig(environment="security", account_id=SECURITY_ACCOUNT)
    return synth_stack(lambda stack: ConfigAggregator(stack, "aggregator", config=config))


def test_the_aggregator_sees_every_account_and_region(aggregator: dict[str, Any]) -> None:
    source = only(aggregator, "aws_config_configuration_aggregator")[
        "organization_aggregation_source"
    ]
    assert source == {
        "all_regions": True,
        "role_arn": ref(aggregator, "aws_iam_role", "aggregator_role", "arn"),
    }
    role = only(aggregator, "aws_iam_role")
    (trust,) = statements(role["assume_role_policy"])
    assert trust["Principal"] == {"Service": "config.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": SECURITY_ACCOUNT}}
    attachment = only(aggregator, "aws_iam_role_policy_attachment")
    assert attachment["policy_arn"] == (
        "arn:aws:iam::aws:policy/service-role/AWSConfigRoleForOrganizations"
    )


# --- terraform validate -------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_audit_layer(tmp_path: Path) -> None:
    def build(stack: TerraformStack) -> None:
        build_audit(stack)
        ConfigAggregator(
            stack,
            "aggregator",
            config=ConfigAggregatorConfig(environment="security", account_id=SECURITY_ACCOUNT),
        )

    done = terraform_validate(tmp_path, build, region=REGION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The configuration is valid" in done.stdout
