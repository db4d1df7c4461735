"""Storage layer: which key encrypts which bucket, and the policy, logging, versioning, lock and
destroy protection every hardened bucket carries."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from modules.keys import CustomerManagedKey, CustomerManagedKeyConfig, KeyPurpose
from modules.storage import (
    HardenedBucket,
    HardenedBucketConfig,
    ObjectLock,
)
from tests.base_layers import BUCKET_PREFIX, add_keys_and_storage
from tests.iam import denied_by
from tests.synth import only, resources, statement_by_sid, statements, synth_stack

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PREFIX = BUCKET_PREFIX
DATA_DAYS = 90
AUDIT_DAYS = 2192
ADMINISTRATORS = (f"arn:aws:iam::{ACCOUNT}:role/key-admin",)
USERS = (f"arn:aws:iam::{ACCOUNT}:role/data-engineer",)
# Bucket purpose -> the key purpose whose CMK must encrypt it.
BUCKET_KEYS = {
    "raw": "phi-data",
    "curated": "phi-data",
    "ml-artifacts": "ml-artifacts",
    "feature-offline": "feature-store",
    "access-logs": "logs",
}
DATA_BUCKETS = ("raw", "curated", "ml-artifacts", "feature-offline")
SINK = "access-logs"
SSE = "s3:x-amz-server-side-encryption"
_REFERENCE = re.compile(r"^\$\{aws_s3_bucket\.([^.}]+)\.id\}$")


def build_storage(production: bool) -> dict[str, Any]:
    return synth_stack(
        lambda stack: add_keys_and_storage(stack, region=REGION, production=production)
    )


@pytest.fixture(scope="module")
def storage() -> dict[str, Any]:
    return build_storage(production=False)


@pytest.fixture(scope="module")
def production_storage() -> dict[str, Any]:
    return build_storage(production=True)


@pytest.fixture(scope="module")
def locked() -> dict[str, Any]:
    """An Object-Locked audit bucket logging to an unlocked sink."""

    def build(stack: Any) -> None:
        key = CustomerManagedKey(
            stack,
            "audit-key",
            config=CustomerManagedKeyConfig(
                purpose=KeyPurpose.LOGS,
                alias="alias/unit/audit",
                account_id=ACCOUNT,
                region=REGION,
                administrators=ADMINISTRATORS,
                users=USERS,
            ),
        )
        sink = HardenedBucket(
            stack,
            "sink",
            config=HardenedBucketConfig(
                name="unit-audit-sink", account_id=ACCOUNT, noncurrent_version_days=30
            ),
            kms_key=key,
            access_logs=None,
        )
        HardenedBucket(
            stack,
            "trail",
            config=HardenedBucketConfig(
                name="unit-audit-trail",
                account_id=ACCOUNT,
                noncurrent_version_days=AUDIT_DAYS,
                object_lock=ObjectLock(retention_days=AUDIT_DAYS),
            ),
            kms_key=key,
            access_logs=sink,
        )

    return synth_stack(build)


def name(purpose: str) -> str:
    return f"{PREFIX}-{purpose}"


def bucket_logical_names(synthesized: dict[str, Any]) -> dict[str, str]:
    """Bucket name -> logical name of its aws_s3_bucket."""
    return {
        bucket["bucket"]: logical
        for logical, bucket in resources(synthesized, "aws_s3_bucket").items()
    }


def by_bucket(synthesized: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Bucket name -> the one resource of `resource_type` attached to it (by its `bucket`)."""
    names = {logical: bucket for bucket, logical in bucket_logical_names(synthesized).items()}
    found: dict[str, dict[str, Any]] = {}
    for resource in resources(synthesized, resource_type).values():
        match = _REFERENCE.match(resource["bucket"])
        assert match, f"{resource_type} names its bucket literally: {resource['bucket']}"
        bucket = names[match.group(1)]
        assert bucket not in found, f"two {resource_type} for {bucket}"
        found[bucket] = resource
    return found


def key_arn_reference(synthesized: dict[str, Any], purpose: str) -> str:
    (logical,) = [
        logical
        for logical, key in resources(synthesized, "aws_kms_key").items()
        if key["tags"]["key-purpose"] == purpose
    ]
    return f"${{aws_kms_key.{logical}.arn}}"


def assert_encrypted_with(encryption: dict[str, Any], key_arn: str) -> None:
    (rule,) = encryption["rule"]
    default = rule.get("apply_server_side_encryption_by_default")
    assert default == {"sse_algorithm": "aws:kms", "kms_master_key_id": key_arn}, rule
    assert rule.get("bucket_key_enabled") is True, rule


# --- encryption ---------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
def test_bucket_is_encrypted_with_its_purpose_key(storage: dict[str, Any], purpose: str) -> None:
    encryption = by_bucket(storage, "aws_s3_bucket_server_side_encryption_configuration")
    assert_encrypted_with(
        encryption[name(purpose)], key_arn_reference(storage, BUCKET_KEYS[purpose])
    )


def test_every_bucket_has_exactly_one_encryption_configuration(storage: dict[str, Any]) -> None:
    encryption = by_bucket(storage, "aws_s3_bucket_server_side_encryption_configuration")
    assert sorted(encryption) == sorted(name(p) for p in BUCKET_KEYS)


def test_encryption_check_rejects_the_wrong_key_and_sse_s3(storage: dict[str, Any]) -> None:
    """Twin: the assertion above can fail, and passes on a correctly keyed rule."""
    phi, logs = key_arn_reference(storage, "phi-data"), key_arn_reference(storage, "logs")
    assert phi != logs

    def configuration(algorithm: str, key: str | None) -> dict[str, Any]:
        default: dict[str, Any] = {"sse_algorithm": algorithm}
        if key is not None:
            default["kms_master_key_id"] = key
        return {
            "rule": [
                {"apply_server_side_encryption_by_default": default, "bucket_key_enabled": True}
            ]
        }

    assert_encrypted_with(configuration("aws:kms", phi), phi)
    for wrong in (configuration("aws:kms", logs), configuration("AES256", None), {"rule": [{}]}):
        with pytest.raises(AssertionError):
            assert_encrypted_with(wrong, phi)


# --- versioning, public access, ownership, destroy protection -----------------------------


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
def test_versioning_is_enabled(storage: dict[str, Any], purpose: str) -> None:
    versioning = by_bucket(storage, "aws_s3_bucket_versioning")[name(purpose)]
    assert versioning["versioning_configuration"] == {"status": "Enabled"}


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
def test_all_four_public_access_block_flags_are_on(storage: dict[str, Any], purpose: str) -> None:
    block = by_bucket(storage, "aws_s3_bucket_public_access_block")[name(purpose)]
    flags = (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    )
    assert {flag: block.get(flag) for flag in flags} == dict.fromkeys(flags, True)


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
def test_acls_are_disabled_by_bucket_owner_enforced(storage: dict[str, Any], purpose: str) -> None:
    ownership = by_bucket(storage, "aws_s3_bucket_ownership_controls")[name(purpose)]
    assert ownership["rule"] == {"object_ownership": "BucketOwnerEnforced"}


def test_buckets_are_named_from_the_prefix_and_never_force_destroyed(
    storage: dict[str, Any],
) -> None:
    buckets = resources(storage, "aws_s3_bucket").values()
    assert sorted(b["bucket"] for b in buckets) == sorted(name(p) for p in BUCKET_KEYS)
    assert all(b["force_destroy"] is False for b in buckets)


def test_production_buckets_prevent_destroy(production_storage: dict[str, Any]) -> None:
    buckets = resources(production_storage, "aws_s3_bucket").values()
    assert len(buckets) == len(BUCKET_KEYS)
    assert all(b.get("lifecycle") == {"prevent_destroy": True} for b in buckets)


def test_non_production_buckets_can_be_destroyed(storage: dict[str, Any]) -> None:
    """Twin of the production test: the same check sees the difference."""
    assert all("lifecycle" not in b for b in resources(storage, "aws_s3_bucket").values())


# --- bucket policy ------------------------------------------------------------------------


def bucket_policy(synthesized: dict[str, Any], bucket: str) -> str:
    return str(by_bucket(synthesized, "aws_s3_bucket_policy")[bucket]["policy"])


SECURE = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}
REQUESTS = [
    # (id, action, object or bucket, request context, the Deny statements that must match)
    ("https-tls13-get", "s3:GetObject", "object", SECURE, []),
    ("https-tls12-list", "s3:ListBucket", "bucket", {**SECURE, "s3:TlsVersion": "1.2"}, []),
    (
        "plain-http-get",
        "s3:GetObject",
        "object",
        {"aws:SecureTransport": "false"},
        ["DenyInsecureTransport"],
    ),
    (
        "plain-http-list",
        "s3:ListBucket",
        "bucket",
        {"aws:SecureTransport": "false"},
        ["DenyInsecureTransport"],
    ),
    (
        "tls11-get",
        "s3:GetObject",
        "object",
        {**SECURE, "s3:TlsVersion": "1.1"},
        ["DenyTlsOlderThan12"],
    ),
    (
        "tls10-delete-bucket",
        "s3:DeleteBucket",
        "bucket",
        {**SECURE, "s3:TlsVersion": "1.0"},
        ["DenyTlsOlderThan12"],
    ),
    (
        "put-sse-s3",
        "s3:PutObject",
        "object",
        {**SECURE, SSE: "AES256"},
        ["DenyEncryptionOtherThanKms"],
    ),
    ("put-sse-kms", "s3:PutObject", "object", {**SECURE, SSE: "aws:kms"}, []),
    ("put-sse-kms-dsse", "s3:PutObject", "object", {**SECURE, SSE: "aws:kms:dsse"}, []),
    ("put-default-encryption", "s3:PutObject", "object", SECURE, []),
]


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
@pytest.mark.parametrize("request_case", [pytest.param(case, id=case[0]) for case in REQUESTS])
def test_bucket_policy_denies_exactly_the_insecure_requests(
    storage: dict[str, Any], purpose: str, request_case: tuple[Any, ...]
) -> None:
    """Each secure request is the twin of an insecure one that differs in one header."""
    _, action, target, context, expected = request_case
    arn = f"arn:aws:s3:::{name(purpose)}"
    resource = arn if target == "bucket" else f"{arn}/patients/2024/visit.parquet"
    assert denied_by(bucket_policy(storage, name(purpose)), action, resource, context) == expected


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
def test_transport_statements_cover_bucket_and_objects(
    storage: dict[str, Any], purpose: str
) -> None:
    arn = f"arn:aws:s3:::{name(purpose)}"
    policy = bucket_policy(storage, name(purpose))
    insecure = statement_by_sid(policy, "DenyInsecureTransport")
    old_tls = statement_by_sid(policy, "DenyTlsOlderThan12")
    for deny in (insecure, old_tls):
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
        assert deny["Resource"] == [arn, f"{arn}/*"]
    assert insecure["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert old_tls["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
def test_policy_is_applied_after_the_public_access_block(
    storage: dict[str, Any], purpose: str
) -> None:
    policy = by_bucket(storage, "aws_s3_bucket_policy")[name(purpose)]
    block_names = {
        logical
        for logical, block in resources(storage, "aws_s3_bucket_public_access_block").items()
        if block["bucket"] == policy["bucket"]
    }
    assert policy["depends_on"] == [f"aws_s3_bucket_public_access_block.{n}" for n in block_names]


# --- access logging -----------------------------------------------------------------------


@pytest.mark.parametrize("purpose", DATA_BUCKETS)
def test_data_bucket_logs_to_the_access_log_sink(storage: dict[str, Any], purpose: str) -> None:
    logging = by_bucket(storage, "aws_s3_bucket_logging")[name(purpose)]
    sink = bucket_logical_names(storage)[name(SINK)]
    assert logging["target_bucket"] == f"${{aws_s3_bucket.{sink}.id}}"
    assert logging["target_prefix"] == f"{name(purpose)}/"


def test_the_sink_does_not_log_to_itself(storage: dict[str, Any]) -> None:
    logged = by_bucket(storage, "aws_s3_bucket_logging")
    assert sorted(logged) == sorted(name(p) for p in DATA_BUCKETS)
    assert name(SINK) not in logged


def test_the_sink_accepts_log_delivery_from_this_account_only(storage: dict[str, Any]) -> None:
    delivery = statement_by_sid(
        bucket_policy(storage, name(SINK)), "AllowS3ServerAccessLogDeliveryFromThisAccount"
    )
    assert delivery["Effect"] == "Allow"
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Resource"] == f"arn:aws:s3:::{name(SINK)}/*"
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def allow_statements(policy_json: str) -> list[str]:
    return [s["Sid"] for s in statements(policy_json) if s["Effect"] == "Allow"]


@pytest.mark.parametrize("purpose", DATA_BUCKETS)
def test_data_bucket_policies_allow_nothing(storage: dict[str, Any], purpose: str) -> None:
    """Access comes from IAM in the account; the bucket policy only denies. (Twin: the sink's
    policy has exactly one Allow, which this detector finds.)"""
    assert allow_statements(bucket_policy(storage, name(purpose))) == []
    assert allow_statements(bucket_policy(storage, name(SINK))) == [
        "AllowS3ServerAccessLogDeliveryFromThisAccount"
    ]


# --- lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", sorted(BUCKET_KEYS))
def test_lifecycle_waits_for_versioning(storage: dict[str, Any], purpose: str) -> None:
    lifecycle = by_bucket(storage, "aws_s3_bucket_lifecycle_configuration")[name(purpose)]
    versioning_names = [
        logical
        for logical, versioning in resources(storage, "aws_s3_bucket_versioning").items()
        if versioning["bucket"] == lifecycle["bucket"]
    ]
    assert lifecycle["depends_on"] == [f"aws_s3_bucket_versioning.{versioning_names[0]}"]


@pytest.mark.parametrize(
    ("purpose", "days"),
    [*((p, DATA_DAYS) for p in DATA_BUCKETS), (SINK, AUDIT_DAYS)],
)
def test_lifecycle_expires_old_versions_after_the_configured_days(
    storage: dict[str, Any], purpose: str, days: int
) -> None:
    (rule,) = by_bucket(storage, "aws_s3_bucket_lifecycle_configuration")[name(purpose)]["rule"]
    assert rule["status"] == "Enabled"
    assert rule.get("noncurrent_version_expiration") == [{"noncurrent_days": days}]
    assert rule.get("abort_incomplete_multipart_upload") == [{"days_after_initiation": 7}]


# --- object lock --------------------------------------------------------------------------


def test_object_lock_is_compliance_mode_with_the_configured_days(locked: dict[str, Any]) -> None:
    lock = by_bucket(locked, "aws_s3_bucket_object_lock_configuration")
    assert sorted(lock) == ["unit-audit-trail"]
    assert lock["unit-audit-trail"]["rule"] == {
        "default_retention": {"mode": "COMPLIANCE", "days": AUDIT_DAYS}
    }
    enabled = {
        b["bucket"]: b["object_lock_enabled"] for b in resources(locked, "aws_s3_bucket").values()
    }
    assert enabled == {"unit-audit-trail": True, "unit-audit-sink": False}


def test_buckets_without_object_lock_have_none(storage: dict[str, Any]) -> None:
    assert resources(storage, "aws_s3_bucket_object_lock_configuration") == {}
    assert all(
        b["object_lock_enabled"] is False for b in resources(storage, "aws_s3_bucket").values()
    )


def test_a_single_bucket_logs_to_the_sink_it_is_given(locked: dict[str, Any]) -> None:
    logging = by_bucket(locked, "aws_s3_bucket_logging")
    sink = bucket_logical_names(locked)["unit-audit-sink"]
    assert {b: r["target_bucket"] for b, r in logging.items()} == {
        "unit-audit-trail": f"${{aws_s3_bucket.{sink}.id}}"
    }


def test_versions_must_outlive_the_object_lock() -> None:
    with pytest.raises(ValidationError, match="shorter than the object lock retention 365"):
        HardenedBucketConfig(
            name="unit-audit",
            account_id=ACCOUNT,
            noncurrent_version_days=364,
            object_lock=ObjectLock(retention_days=365),
        )


def test_versions_kept_as_long_as_the_lock_are_accepted() -> None:
    config = HardenedBucketConfig(
        name="unit-audit",
        account_id=ACCOUNT,
        noncurrent_version_days=365,
        object_lock=ObjectLock(retention_days=365),
    )
    assert config.object_lock == ObjectLock(retention_days=365)


@pytest.mark.parametrize(
    "bad_name", ["Upper-case", "ab", "ends-with-hyphen-", "under_score"], ids=str
)
def test_bucket_names_must_be_valid_s3_names(bad_name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        HardenedBucketConfig(name=bad_name, account_id=ACCOUNT, noncurrent_version_days=30)


def test_only_the_raw_bucket_sends_object_events_to_eventbridge(storage: dict[str, Any]) -> None:
    """New raw objects reach EventBridge; curated or artifact writes must not, or every
    pipeline output would become an event of its own."""
    notifications = by_bucket(storage, "aws_s3_bucket_notification")
    assert set(notifications) == {name("raw")}
    assert notifications[name("raw")]["eventbridge"] is True


def delivery_bucket(deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    def build(stack: Any) -> None:
        key = CustomerManagedKey(
            stack,
            "archive-key",
            config=CustomerManagedKeyConfig(
                purpose=KeyPurpose.LOGS,
                alias="alias/phi-ml/unit/archive",
                account_id=ACCOUNT,
                region="us-east-1",
                administrators=(f"arn:aws:iam::{ACCOUNT}:role/key-admin",),
                users=(f"arn:aws:iam::{ACCOUNT}:role/key-user",),
            ),
        )
        HardenedBucket(
            stack,
            "archive",
            config=HardenedBucketConfig(
                name="unit-archive", account_id=ACCOUNT, noncurrent_version_days=2192
            ),
            kms_key=key,
            access_logs=None,
            service_deliveries=deliveries,
        )

    return synth_stack(build)


CLOUDTRAIL_DELIVERY = {
    "Sid": "CloudTrailDelivers",
    "Effect": "Allow",
    "Principal": {"Service": "cloudtrail.amazonaws.com"},
    "Action": "s3:PutObject",
    "Resource": "arn:aws:s3:::unit-archive/AWSLogs/*",
}


def test_service_deliveries_join_the_fixed_policy() -> None:
    synthesized = delivery_bucket([CLOUDTRAIL_DELIVERY])
    policy = only(synthesized, "aws_s3_bucket_policy")["policy"]
    assert statement_by_sid(policy, "CloudTrailDelivers") == CLOUDTRAIL_DELIVERY
    statement_by_sid(policy, "DenyInsecureTransport")


@pytest.mark.parametrize(
    "principal",
    ["*", {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, {"Service": "x", "AWS": "*"}],
    ids=["anyone", "account", "service-and-account"],
)
def test_only_aws_services_may_be_granted_delivery(principal: Any) -> None:
    with pytest.raises(ValueError, match="only Allow statements for AWS service principals"):
        delivery_bucket([{**CLOUDTRAIL_DELIVERY, "Principal": principal}])


def test_a_deny_cannot_be_smuggled_in_as_a_delivery() -> None:
    with pytest.raises(ValueError, match="only Allow statements"):
        delivery_bucket([{**CLOUDTRAIL_DELIVERY, "Effect": "Deny"}])


def test_logging_waits_for_the_sinks_policy(storage: dict[str, Any]) -> None:
    """S3 refuses a logging target whose policy does not yet admit log delivery."""
    sink_policy = next(
        logical
        for logical, policy in resources(storage, "aws_s3_bucket_policy").items()
        if "AllowS3ServerAccessLogDeliveryFromThisAccount" in policy["policy"]
    )
    for logging in resources(storage, "aws_s3_bucket_logging").values():
        assert f"aws_s3_bucket_policy.{sink_policy}" in logging.get("depends_on", [])
