"""Mutants of the storage layer (modules/storage.py: HardenedBucket)."""

from __future__ import annotations

from collections.abc import Callable

from tools.mutants.edits import (
    address,
    bucket_policy_without,
    delete_attribute,
    delete_resource,
    named,
)
from tools.mutants.model import Apply, Document, Mutant, RuntimeTwin


def bucket_of(document: Document, bucket_path: str) -> str:
    name, _ = named(document, "aws_s3_bucket", bucket_path)
    return address("aws_s3_bucket", name)


def bucket_part_changed(
    bucket_path: str, resource_type: str, part: str, change: Callable[[Document], None]
) -> Apply:
    """Change the bucket's companion resource `resource_type` (its encryption, versioning,
    ...); the bucket is what must fail."""

    def apply(document: Document) -> str:
        bucket = bucket_of(document, bucket_path)
        _, conf = named(document, resource_type, bucket_path.removesuffix("/bucket") + part)
        change(conf)
        return bucket

    return apply


def sse_with_s3_managed_keys(conf: Document) -> None:
    default = conf["rule"][0]["apply_server_side_encryption_by_default"]
    default["sse_algorithm"] = "AES256"
    del default["kms_master_key_id"]


def without_bucket_key(conf: Document) -> None:
    conf["rule"][0]["bucket_key_enabled"] = False


def versioning_suspended(conf: Document) -> None:
    conf["versioning_configuration"]["status"] = "Suspended"


def without_noncurrent_version_expiration(conf: Document) -> None:
    del conf["rule"][0]["noncurrent_version_expiration"]


def governance_mode(conf: Document) -> None:
    conf["rule"]["default_retention"]["mode"] = "GOVERNANCE"


def public_policies_allowed(document: Document) -> str:
    name, conf = named(document, "aws_s3_bucket_public_access_block", "storage/curated/")
    conf["block_public_policy"] = False
    return address("aws_s3_bucket_public_access_block", name)


def acls_enabled(document: Document) -> str:
    name, conf = named(document, "aws_s3_bucket_ownership_controls", "storage/raw/")
    conf["rule"]["object_ownership"] = "ObjectWriter"
    return address("aws_s3_bucket_ownership_controls", name)


def without_access_logging(document: Document) -> str:
    bucket = bucket_of(document, "storage/ml-artifacts/bucket")
    delete_resource(document, "aws_s3_bucket_logging", "storage/ml-artifacts/access-logging")
    return bucket


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="raw-bucket-allows-old-tls",
        layer="storage",
        guarantee="policy denying TLS < 1.2",
        check_id="CKV_PHI_10",
        stack="dev-data",
        change="the raw bucket's policy without its DenyTlsOlderThan12 statement",
        apply=bucket_policy_without("storage/raw/bucket", "DenyTlsOlderThan12"),
        runtime=RuntimeTwin("RT_PHI_S3_TLS_ONLY", "no TLS floor"),
    ),
    Mutant(
        name="storage-raw-bucket-s3-managed-keys",
        layer="storage",
        guarantee="SSE-KMS with a CMK",
        check_id="CKV_AWS_145",
        stack="dev-data",
        change="the raw bucket's default encryption switched to SSE-S3 (AES256, no CMK)",
        apply=bucket_part_changed(
            "storage/raw/bucket",
            "aws_s3_bucket_server_side_encryption_configuration",
            "/encryption",
            sse_with_s3_managed_keys,
        ),
        runtime=RuntimeTwin("RT_PHI_S3_CMK_ENCRYPTION", "bucket encrypted with S3-managed keys"),
    ),
    Mutant(
        name="storage-curated-bucket-versioning-suspended",
        layer="storage",
        guarantee="versioning",
        check_id="CKV_AWS_21",
        stack="dev-data",
        change="the curated bucket's versioning suspended",
        apply=bucket_part_changed(
            "storage/curated/bucket",
            "aws_s3_bucket_versioning",
            "/versioning",
            versioning_suspended,
        ),
        runtime=RuntimeTwin("RT_PHI_S3_VERSIONING", "versioning suspended"),
    ),
    Mutant(
        name="storage-curated-bucket-public-policy-allowed",
        layer="storage",
        guarantee="all public access blocked",
        check_id="CKV_AWS_54",
        stack="dev-data",
        change="the curated bucket's public access block no longer blocks public policies",
        apply=public_policies_allowed,
        runtime=RuntimeTwin("RT_PHI_S3_PUBLIC_ACCESS_BLOCKED", "public policies allowed"),
    ),
    Mutant(
        name="storage-raw-bucket-acls-enabled",
        layer="storage",
        guarantee="ACLs disabled",
        check_id="CKV2_AWS_65",
        stack="dev-data",
        change="the raw bucket's object ownership set to ObjectWriter (ACLs enabled)",
        apply=acls_enabled,
    ),
    Mutant(
        name="storage-curated-bucket-allows-http",
        layer="storage",
        guarantee="policy denying plain HTTP",
        check_id="CKV_PHI_10",
        stack="staging-data",
        change="the curated bucket's policy without its DenyInsecureTransport statement",
        apply=bucket_policy_without("storage/curated/bucket", "DenyInsecureTransport"),
        runtime=RuntimeTwin("RT_PHI_S3_TLS_ONLY", "plain HTTP allowed"),
    ),
    Mutant(
        name="storage-ml-artifacts-bucket-unlogged",
        layer="storage",
        guarantee="server access logging",
        check_id="CKV_AWS_18",
        stack="dev-data",
        change="the ML artifacts bucket's server access logging removed",
        apply=without_access_logging,
    ),
    Mutant(
        name="storage-feature-offline-bucket-keeps-old-versions",
        layer="storage",
        guarantee="lifecycle for old versions",
        check_id="CKV_PHI_21",
        stack="dev-data",
        change="the feature offline bucket's lifecycle rule without noncurrent-version expiration",
        apply=bucket_part_changed(
            "storage/feature-offline/bucket",
            "aws_s3_bucket_lifecycle_configuration",
            "/lifecycle",
            without_noncurrent_version_expiration,
        ),
    ),
    Mutant(
        name="storage-ml-artifacts-bucket-without-bucket-key",
        layer="storage",
        guarantee="SSE-KMS with a CMK and bucket key",
        check_id="CKV_PHI_20",
        stack="staging-data",
        change="the ML artifacts bucket's default encryption without an S3 Bucket Key",
        apply=bucket_part_changed(
            "storage/ml-artifacts/bucket",
            "aws_s3_bucket_server_side_encryption_configuration",
            "/encryption",
            without_bucket_key,
        ),
    ),
    Mutant(
        name="storage-raw-bucket-accepts-sse-s3-uploads",
        layer="storage",
        guarantee="policy denying non-KMS encryption headers",
        check_id="CKV_PHI_20",
        stack="dev-data",
        change="the raw bucket's policy without its DenyEncryptionOtherThanKms statement",
        apply=bucket_policy_without("storage/raw/bucket", "DenyEncryptionOtherThanKms"),
    ),
    Mutant(
        name="storage-audit-archive-lock-in-governance-mode",
        layer="storage",
        guarantee="optional Object Lock (compliance mode)",
        check_id="CKV_PHI_21",
        stack="org-audit",
        change="the audit archive's default retention in GOVERNANCE mode (bypassable)",
        apply=bucket_part_changed(
            "audit/archive/bucket",
            "aws_s3_bucket_object_lock_configuration",
            "/object-lock",
            governance_mode,
        ),
    ),
    Mutant(
        name="storage-prod-curated-bucket-destroyable",
        layer="storage",
        guarantee="prevent_destroy in production",
        check_id="CKV_PHI_13",
        stack="prod-data",
        change="the production curated bucket without lifecycle.prevent_destroy",
        apply=delete_attribute("aws_s3_bucket", "storage/curated/bucket", "lifecycle"),
    ),
)
