"""Mutants of the features layer (modules/features.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.mutants.edits import MutantError, address, delete_attribute, edit_json, named
from tools.mutants.model import Apply, Document, Mutant, RuntimeTwin


def online_store_without_key(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-patient-vitals")
    del conf["online_store_config"]["security_config"]
    return address("aws_sagemaker_feature_group", name)


def offline_store_without_key(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-encounters")
    del conf["offline_store_config"]["s3_storage_config"]["kms_key_id"]
    return address("aws_sagemaker_feature_group", name)


def key_reference(document: Document, purpose: str) -> str:
    name, _ = named(document, "aws_kms_key", f"keys/{purpose}/key")
    return f"${{aws_kms_key.{name}.arn}}"


def offline_store_with_phi_key(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-encounters")
    conf["offline_store_config"]["s3_storage_config"]["kms_key_id"] = key_reference(
        document, "phi-data"
    )
    return address("aws_sagemaker_feature_group", name)


def online_store_with_logs_key(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-patient-vitals")
    conf["online_store_config"]["security_config"]["kms_key_id"] = key_reference(document, "logs")
    return address("aws_sagemaker_feature_group", name)


def offline_store_in_unmanaged_bucket(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-patient-vitals")
    storage = conf["offline_store_config"]["s3_storage_config"]
    storage["s3_uri"] = "s3://acme-phi-dev-scratch/feature-store/patient-vitals"
    return address("aws_sagemaker_feature_group", name)


def offline_bucket_unversioned(document: Document) -> str:
    bucket, _ = named(document, "aws_s3_bucket", "storage/feature-offline/bucket")
    _, versioning = named(document, "aws_s3_bucket_versioning", "storage/feature-offline/")
    versioning["versioning_configuration"]["status"] = "Suspended"
    return address("aws_s3_bucket", bucket)


def sagemaker_creates_glue_table(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-encounters")
    offline = conf["offline_store_config"]
    offline["disable_glue_table_creation"] = False
    del offline["data_catalog_config"]
    return address("aws_sagemaker_feature_group", name)


def role_statement(sid: str, change: Callable[[Document], None]) -> Apply:
    """Change the statement `sid` of the feature store role's policy, which must then fail."""

    def apply(document: Document) -> str:
        name, conf = named(document, "aws_iam_role_policy", "features/role-policy")

        def edit(policy: Any) -> None:
            found = [s for s in policy["Statement"] if s.get("Sid") == sid]
            if len(found) != 1:
                raise MutantError(f"no statement {sid!r} in the feature store role's policy")
            change(found[0])

        edit_json(conf, "policy", edit)
        return address("aws_iam_role_policy", name)

    return apply


def any_glue_resource(statement: Document) -> None:
    statement["Resource"] = "*"


def whole_offline_bucket(statement: Document) -> None:
    bucket, _, _ = statement["Resource"].partition("}/")
    statement["Resource"] = f"{bucket}}}/*"


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="online-store-without-key",
        layer="features",
        guarantee="online store encrypted with the feature-store key",
        check_id="CKV_PHI_2",
        stack="dev-data",
        change="the patient-vitals online store without a KMS key",
        apply=online_store_without_key,
    ),
    Mutant(
        name="offline-store-without-key",
        layer="features",
        guarantee="offline store encrypted with the feature-store key",
        check_id="CKV_PHI_2",
        stack="eu-research-data",
        change="the encounters offline store without a KMS key",
        apply=offline_store_without_key,
    ),
    Mutant(
        name="prod-feature-group-destroyable",
        layer="features",
        guarantee="prevent_destroy on production feature groups",
        check_id="CKV_PHI_13",
        stack="prod-data",
        change="a production feature group without lifecycle.prevent_destroy",
        apply=delete_attribute("aws_sagemaker_feature_group", "group-encounters", "lifecycle"),
    ),
    Mutant(
        name="feature-offline-store-phi-key",
        layer="features",
        guarantee="offline store encrypted with the feature-store key",
        check_id="CKV_PHI_28",
        stack="staging-data",
        change="the encounters offline store encrypted with the PHI key",
        apply=offline_store_with_phi_key,
    ),
    Mutant(
        name="feature-online-store-logs-key",
        layer="features",
        guarantee="online store encrypted with the feature-store key",
        check_id="CKV_PHI_28",
        stack="eu-research-data",
        change="the patient-vitals online store encrypted with the logs key",
        apply=online_store_with_logs_key,
        runtime=RuntimeTwin(
            "RT_PHI_FEATURE_GROUP_ENCRYPTION",
            "test_feature_group_stores_must_use_the_feature_store_key",
        ),
    ),
    Mutant(
        name="feature-offline-store-outside-platform-bucket",
        layer="features",
        guarantee="offline data in the versioned bucket",
        check_id="CKV_PHI_28",
        stack="dev-data",
        change="the patient-vitals offline store in a bucket the stack does not declare",
        apply=offline_store_in_unmanaged_bucket,
    ),
    Mutant(
        name="feature-offline-bucket-unversioned",
        layer="features",
        guarantee="offline data in the versioned bucket",
        check_id="CKV_AWS_21",
        stack="prod-data",
        change="the feature-offline bucket's versioning suspended",
        apply=offline_bucket_unversioned,
    ),
    Mutant(
        name="feature-group-sagemaker-creates-glue-table",
        layer="features",
        guarantee="with a Glue table we own",
        check_id="CKV_PHI_28",
        stack="eu-research-data",
        change="the encounters group lets SageMaker create its Glue table (no data_catalog_config)",
        apply=sagemaker_creates_glue_table,
    ),
    Mutant(
        name="feature-store-role-any-glue-table",
        layer="features",
        guarantee="a least-privilege role",
        check_id="CKV_PHI_29",
        stack="dev-data",
        change="the feature store role's Glue actions granted on every resource",
        apply=role_statement("UpdateOwnGlueTablesOnly", any_glue_resource),
    ),
    Mutant(
        name="feature-store-role-whole-bucket",
        layer="features",
        guarantee="a least-privilege role",
        check_id="CKV_PHI_29",
        stack="staging-data",
        change="the feature store role writing anywhere in the offline bucket",
        apply=role_statement("WriteOfflineStoreUnderPrefixOnly", whole_offline_bucket),
    ),
)
