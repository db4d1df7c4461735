"""Features layer: both stores of every feature group are encrypted with the feature-store key,
offline data lands under one prefix of the versioned, encrypted offline bucket, the Glue tables
match the feature definitions, and the SageMaker role can touch nothing else."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformOutput
from pydantic import ValidationError

from modules.features import (
    FeatureDefinitionSpec,
    FeatureGroupSpec,
    Features,
    FeaturesConfig,
)
from tests.base_layers import BUCKET_PREFIX, add_keys_and_storage
from tests.synth import only, resources, statements, synth_stack
from tests.terraform_check import terraform_validate
from tests.test_fhir import (
    ACCOUNT,
    REGION,
    allows,
    granted_actions,
    granted_resources,
    key_arn,
    role_policy,
)

PREFIX = BUCKET_PREFIX
OFFLINE = f"arn:aws:s3:::{PREFIX}-feature-offline"
RAW = f"arn:aws:s3:::{PREFIX}-raw"
FEATURE_KEY = key_arn("feature-store")
S3_VIA = f"s3.{REGION}.amazonaws.com"
DATABASE = "phi_ml_unit_feature_store"
GLUE = f"arn:aws:glue:{REGION}:{ACCOUNT}"


def feature(name: str, type_: str) -> FeatureDefinitionSpec:
    return FeatureDefinitionSpec(name=name, type=type_)


VITALS = FeatureGroupSpec(
    name="patient-vitals",
    record_identifier="patient_id",
    event_time="event_time",
    features=(
        feature("patient_id", "String"),
        feature("event_time", "String"),
        feature("heart_rate", "Integral"),
        feature("Body_Temperature", "Fractional"),
    ),
)
LABS = FeatureGroupSpec(
    name="lab_results",
    record_identifier="encounter_id",
    event_time="observed_at",
    features=(
        feature("encounter_id", "Integral"),
        feature("observed_at", "Fractional"),
        feature("hba1c", "Fractional"),
        feature("loinc_code", "String"),
    ),
)
# Written out, not derived from the module: a wrong type mapping must fail a test.
EXPECTED_COLUMNS = {
    "patient_vitals": [
        ("patient_id", "string"),
        ("event_time", "string"),
        ("heart_rate", "bigint"),
        ("body_temperature", "double"),
        ("write_time", "timestamp"),
        ("api_invocation_time", "timestamp"),
        ("is_deleted", "boolean"),
    ],
    "lab_results": [
        ("encounter_id", "bigint"),
        ("observed_at", "double"),
        ("hba1c", "double"),
        ("loinc_code", "string"),
        ("write_time", "timestamp"),
        ("api_invocation_time", "timestamp"),
        ("is_deleted", "boolean"),
    ],
}
GROUP_TABLES = {"patient-vitals": "patient_vitals", "lab_results": "lab_results"}


def features_config(**overrides: Any) -> FeaturesConfig:
    values: dict[str, Any] = {
        "environment": "unit",
        "account_id": ACCOUNT,
        "region": REGION,
        "groups": (VITALS, LABS),
    }
    values.update(overrides)
    return FeaturesConfig(**values)


def add_features(stack: Any) -> Features:
    keys, storage = add_keys_and_storage(stack, region=REGION)
    layer = Features(
        stack,
        "features",
        config=features_config(),
        feature_key=keys.feature_store,
        offline_bucket=storage.feature_offline,
    )
    TerraformOutput(stack, "role-arn", value=layer.role_arn)
    TerraformOutput(stack, "group-names", value=list(layer.feature_group_names))
    TerraformOutput(stack, "database", value=layer.glue_database_name)
    TerraformOutput(stack, "offline-uri", value=layer.offline_store_uri)
    return layer


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    return synth_stack(add_features)


def key_reference(synth: dict[str, Any], purpose: str) -> str:
    (logical,) = [
        name
        for name, key in resources(synth, "aws_kms_key").items()
        if key["tags"]["key-purpose"] == purpose
    ]
    return f"${{aws_kms_key.{logical}.arn}}"


def bucket_logical(synth: dict[str, Any], name: str) -> str:
    (logical,) = [
        logical
        for logical, bucket in resources(synth, "aws_s3_bucket").items()
        if bucket["bucket"] == name
    ]
    return logical


def feature_groups(synth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        group["feature_group_name"]: group
        for group in resources(synth, "aws_sagemaker_feature_group").values()
    }


def glue_tables(synth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {table["name"]: table for table in resources(synth, "aws_glue_catalog_table").values()}


# --- encryption and placement -----------------------------------------------------------------


def assert_stores_encrypted_with(group: dict[str, Any], key: str) -> None:
    online = group["online_store_config"]
    assert online.get("enable_online_store") is True
    assert online.get("security_config") == {"kms_key_id": key}
    assert group["offline_store_config"]["s3_storage_config"].get("kms_key_id") == key


@pytest.mark.parametrize("name", sorted(GROUP_TABLES))
def test_both_stores_are_encrypted_with_the_feature_store_key(
    synthesized: dict[str, Any], name: str
) -> None:
    assert_stores_encrypted_with(
        feature_groups(synthesized)[name], key_reference(synthesized, "feature-store")
    )


def test_the_encryption_check_detects_a_group_keyed_otherwise(synthesized: dict[str, Any]) -> None:
    """Twin: another key (or none) on either store fails the same check."""
    feature_key = key_reference(synthesized, "feature-store")
    other_key = key_reference(synthesized, "ml-artifacts")
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda g: g["online_store_config"].update(security_config={"kms_key_id": other_key}),
        lambda g: g["online_store_config"].pop("security_config"),
        lambda g: g["offline_store_config"]["s3_storage_config"].update(kms_key_id=other_key),
        lambda g: g["offline_store_config"]["s3_storage_config"].pop("kms_key_id"),
        lambda g: g["online_store_config"].update(enable_online_store=False),
    ]
    for mutate in mutations:
        group = copy.deepcopy(feature_groups(synthesized)["patient-vitals"])
        mutate(group)
        with pytest.raises(AssertionError):
            assert_stores_encrypted_with(group, feature_key)


_S3_URI = re.compile(r"^s3://\$\{aws_s3_bucket\.([^.}]+)\.bucket\}/(.*)$")


def bucket_controls(synth: dict[str, Any], logical: str) -> tuple[str | None, str | None]:
    """(versioning status, KMS key reference) of the bucket with this logical name."""
    bucket_id = f"${{aws_s3_bucket.{logical}.id}}"
    (versioning,) = [
        v for v in resources(synth, "aws_s3_bucket_versioning").values() if v["bucket"] == bucket_id
    ]
    (encryption,) = [
        e
        for e in resources(synth, "aws_s3_bucket_server_side_encryption_configuration").values()
        if e["bucket"] == bucket_id
    ]
    (rule,) = encryption["rule"]
    default = rule["apply_server_side_encryption_by_default"]
    key = default.get("kms_master_key_id") if default["sse_algorithm"] == "aws:kms" else None
    return versioning["versioning_configuration"].get("status"), key


def assert_offline_store_in_versioned_feature_bucket(
    synth: dict[str, Any], group_name: str, s3_uri: str
) -> None:
    match = _S3_URI.match(s3_uri)
    assert match, f"{s3_uri} is not in a bucket of this stack"
    logical, path = match.groups()
    assert path == f"feature-store/{group_name}"
    assert bucket_controls(synth, logical) == (
        "Enabled",
        key_reference(synth, "feature-store"),
    )


@pytest.mark.parametrize("name", sorted(GROUP_TABLES))
def test_offline_store_is_under_the_prefix_of_the_versioned_encrypted_offline_bucket(
    synthesized: dict[str, Any], name: str
) -> None:
    s3_uri = feature_groups(synthesized)[name]["offline_store_config"]["s3_storage_config"][
        "s3_uri"
    ]
    offline = bucket_logical(synthesized, f"{PREFIX}-feature-offline")
    assert s3_uri == f"s3://${{aws_s3_bucket.{offline}.bucket}}/feature-store/{name}"
    assert_offline_store_in_versioned_feature_bucket(synthesized, name, s3_uri)


def test_the_placement_check_detects_another_bucket_or_prefix(synthesized: dict[str, Any]) -> None:
    """Twin: the raw bucket (PHI key), another prefix or a literal bucket name all fail."""
    raw = bucket_logical(synthesized, f"{PREFIX}-raw")
    offline = bucket_logical(synthesized, f"{PREFIX}-feature-offline")
    for s3_uri in (
        f"s3://${{aws_s3_bucket.{raw}.bucket}}/feature-store/patient-vitals",
        f"s3://${{aws_s3_bucket.{offline}.bucket}}/scratch/patient-vitals",
        "s3://someone-elses-bucket/feature-store/patient-vitals",
    ):
        with pytest.raises(AssertionError):
            assert_offline_store_in_versioned_feature_bucket(synthesized, "patient-vitals", s3_uri)


def test_layer_exposes_its_names_uri_and_role(synthesized: dict[str, Any]) -> None:
    outputs = {name: output["value"] for name, output in synthesized["output"].items()}
    offline = bucket_logical(synthesized, f"{PREFIX}-feature-offline")
    assert outputs["offline-uri"] == f"s3://${{aws_s3_bucket.{offline}.bucket}}/feature-store/"
    (database,) = resources(synthesized, "aws_glue_catalog_database")
    assert outputs["database"] == f"${{aws_glue_catalog_database.{database}.name}}"
    (role,) = resources(synthesized, "aws_iam_role")
    assert outputs["role-arn"] == f"${{aws_iam_role.{role}.arn}}"
    groups = resources(synthesized, "aws_sagemaker_feature_group")
    assert sorted(outputs["group-names"]) == sorted(
        f"${{aws_sagemaker_feature_group.{logical}.feature_group_name}}" for logical in groups
    )


# --- Glue catalog -----------------------------------------------------------------------------


def columns(table: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["type"]) for c in table["storage_descriptor"]["columns"]]


@pytest.mark.parametrize("table_name", sorted(EXPECTED_COLUMNS))
def test_glue_columns_match_the_feature_definitions(
    synthesized: dict[str, Any], table_name: str
) -> None:
    assert columns(glue_tables(synthesized)[table_name]) == EXPECTED_COLUMNS[table_name]


def test_the_column_check_detects_a_wrong_type_or_a_missing_column(
    synthesized: dict[str, Any],
) -> None:
    """Twin: the comparison above fails on a table whose schema drifted."""
    expected = EXPECTED_COLUMNS["patient_vitals"]
    for index, change in ((2, {"type": "int"}), (3, {"name": "temperature"})):
        table = copy.deepcopy(glue_tables(synthesized)["patient_vitals"])
        table["storage_descriptor"]["columns"][index].update(change)
        assert columns(table) != expected
    table = copy.deepcopy(glue_tables(synthesized)["patient_vitals"])
    table["storage_descriptor"]["columns"].pop()
    assert columns(table) != expected


@pytest.mark.parametrize(("group_name", "table_name"), sorted(GROUP_TABLES.items()))
def test_glue_table_is_parquet_at_the_offline_store_uri(
    synthesized: dict[str, Any], group_name: str, table_name: str
) -> None:
    table = glue_tables(synthesized)[table_name]
    group = feature_groups(synthesized)[group_name]
    descriptor = table["storage_descriptor"]
    assert (
        descriptor["location"] == group["offline_store_config"]["s3_storage_config"]["s3_uri"] + "/"
    )
    assert table["table_type"] == "EXTERNAL_TABLE"
    assert descriptor["ser_de_info"]["serialization_library"] == (
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    assert descriptor["input_format"].endswith("MapredParquetInputFormat")
    assert descriptor["output_format"].endswith("MapredParquetOutputFormat")


@pytest.mark.parametrize(("group_name", "table_name"), sorted(GROUP_TABLES.items()))
def test_feature_group_catalogues_into_its_own_table_not_a_sagemaker_one(
    synthesized: dict[str, Any], group_name: str, table_name: str
) -> None:
    offline = feature_groups(synthesized)[group_name]["offline_store_config"]
    (database,) = resources(synthesized, "aws_glue_catalog_database")
    (table,) = [
        logical
        for logical, t in resources(synthesized, "aws_glue_catalog_table").items()
        if t["name"] == table_name
    ]
    assert offline["disable_glue_table_creation"] is True
    assert offline["table_format"] == "Glue"
    assert offline["data_catalog_config"] == {
        "catalog": "AwsDataCatalog",
        "database": f"${{aws_glue_catalog_database.{database}.name}}",
        "table_name": f"${{aws_glue_catalog_table.{table}.name}}",
    }
    assert only(synthesized, "aws_glue_catalog_database")["name"] == DATABASE


def test_feature_groups_wait_for_the_role_policy(synthesized: dict[str, Any]) -> None:
    (policy,) = resources(synthesized, "aws_iam_role_policy")
    (role,) = resources(synthesized, "aws_iam_role")
    for group in feature_groups(synthesized).values():
        assert group["depends_on"] == [f"aws_iam_role_policy.{policy}"]
        assert group["role_arn"] == f"${{aws_iam_role.{role}.arn}}"


# --- the role ---------------------------------------------------------------------------------


def test_only_sagemaker_for_this_account_assumes_the_role(synthesized: dict[str, Any]) -> None:
    (trust,) = statements(only(synthesized, "aws_iam_role")["assume_role_policy"])
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


OBJECT = f"{OFFLINE}/feature-store/patient-vitals/{ACCOUNT}/sagemaker/{REGION}/offline-store/x"
REQUESTS = [
    # (id, action, resource, request context, allowed)
    ("write-offline-store", "s3:PutObject", OBJECT, {}, True),
    ("acl-offline-store", "s3:PutObjectAcl", OBJECT, {}, True),
    ("write-other-prefix", "s3:PutObject", f"{OFFLINE}/scratch/x.parquet", {}, False),
    ("write-raw-bucket", "s3:PutObject", f"{RAW}/feature-store/x.parquet", {}, False),
    ("write-lookalike", "s3:PutObject", f"{OFFLINE}-x/feature-store/x.parquet", {}, False),
    ("read-offline-store", "s3:GetObject", OBJECT, {}, False),
    ("delete-offline-store", "s3:DeleteObject", OBJECT, {}, False),
    ("validate-bucket", "s3:GetBucketAcl", OFFLINE, {}, True),
    ("validate-raw-bucket", "s3:GetBucketAcl", RAW, {}, False),
    ("data-key-via-s3", "kms:GenerateDataKey", FEATURE_KEY, {"kms:ViaService": S3_VIA}, True),
    ("data-key-directly", "kms:GenerateDataKey", FEATURE_KEY, {}, False),
    (
        "data-key-phi-key",
        "kms:GenerateDataKey",
        key_arn("phi-data"),
        {"kms:ViaService": S3_VIA},
        False,
    ),
    ("encrypt-via-s3", "kms:Encrypt", FEATURE_KEY, {"kms:ViaService": S3_VIA}, False),
    ("update-own-table", "glue:UpdateTable", f"{GLUE}:table/{DATABASE}/patient_vitals", {}, True),
    (
        "partition-own-table",
        "glue:BatchCreatePartition",
        f"{GLUE}:table/{DATABASE}/lab_results",
        {},
        True,
    ),
    ("own-database", "glue:GetDatabase", f"{GLUE}:database/{DATABASE}", {}, True),
    ("other-table", "glue:UpdateTable", f"{GLUE}:table/{DATABASE}/cohort_export", {}, False),
    ("other-database", "glue:UpdateTable", f"{GLUE}:table/clinical/patient_vitals", {}, False),
    ("delete-own-table", "glue:DeleteTable", f"{GLUE}:table/{DATABASE}/patient_vitals", {}, False),
    ("create-table", "glue:CreateTable", f"{GLUE}:database/{DATABASE}", {}, False),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in REQUESTS])
def test_role_grants_exactly_the_feature_store_requests(
    synthesized: dict[str, Any], case: tuple[Any, ...]
) -> None:
    """Each granted request has refused twins that differ in prefix, bucket, key or table."""
    _, action, resource, context, expected = case
    assert allows(role_policy(synthesized), action, resource, context) is expected


def test_role_policy_names_only_the_prefix_the_key_and_its_glue_tables(
    synthesized: dict[str, Any],
) -> None:
    policy = role_policy(synthesized)
    assert granted_resources(policy) == {
        OFFLINE,
        f"{OFFLINE}/feature-store/*",
        FEATURE_KEY,
        f"{GLUE}:catalog",
        f"{GLUE}:database/{DATABASE}",
        f"{GLUE}:table/{DATABASE}/patient_vitals",
        f"{GLUE}:table/{DATABASE}/lab_results",
    }
    assert not any("*" in action for action in granted_actions(policy))
    # Twin: a database-wide table grant is a different resource set and grants other tables.
    document = json.loads(policy)
    document["Statement"].append(
        {"Effect": "Allow", "Action": "glue:UpdateTable", "Resource": f"{GLUE}:table/{DATABASE}/*"}
    )
    widened = json.dumps(document)
    assert granted_resources(widened) != granted_resources(policy)
    assert allows(widened, "glue:UpdateTable", f"{GLUE}:table/{DATABASE}/cohort_export")


def test_the_offline_bucket_must_be_encrypted_with_the_feature_store_key() -> None:
    def build(stack: Any) -> None:
        keys, storage = add_keys_and_storage(stack, region=REGION)
        Features(
            stack,
            "features",
            config=features_config(),
            feature_key=keys.feature_store,
            offline_bucket=storage.curated,
        )

    with pytest.raises(ValueError, match="encrypted with the phi-data key, not the feature-store"):
        synth_stack(build)


# --- configuration ----------------------------------------------------------------------------


def group(**overrides: Any) -> FeatureGroupSpec:
    values: dict[str, Any] = VITALS.model_dump()
    values.update(overrides)
    return FeatureGroupSpec(**values)


def test_valid_specs_are_accepted() -> None:
    """Twin of the rejections below: each differs from one of these in one value."""
    assert group().event_time == "event_time"
    assert LABS.features[1].type == "Fractional"
    assert features_config(offline_prefix="features/v1/").offline_prefix == "features/v1/"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": ()}, "features\n  Tuple should have at least 1 item"),
        (
            {"record_identifier": "mrn"},
            "record_identifier 'mrn' is not one of its features",
        ),
        ({"event_time": "updated_at"}, "event_time 'updated_at' is not one of its features"),
        (
            {"event_time": "heart_rate"},
            "event_time 'heart_rate' is Integral; it must be String (ISO-8601) or Fractional",
        ),
        (
            {"features": (*VITALS.features, feature("heart_rate", "Fractional"))},
            "features 'heart_rate' and 'heart_rate' have the same name",
        ),
        (
            {"features": (*VITALS.features, feature("Heart_Rate", "Fractional"))},
            "features 'heart_rate' and 'Heart_Rate' have the same name (Glue column 'heart_rate')",
        ),
        ({"name": "patient vitals"}, "name\n  String should match pattern"),
        ({"name": "-vitals"}, "name\n  String should match pattern"),
        ({"name": "vitals-"}, "name\n  String should match pattern"),
        ({"name": "v" * 65}, "name\n  String should"),
    ],
    ids=str,
)
def test_bad_group_specs_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        group(**overrides)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("write_time", "'write_time' is a column Feature Store adds to the offline store"),
        ("IS_DELETED", "'IS_DELETED' is a column Feature Store adds to the offline store"),
        ("heart-rate", "feature name 'heart-rate' has a hyphen"),
        ("heart rate", "String should match pattern"),
        ("_heart_rate", "String should match pattern"),
        ("h" * 65, "String should"),
    ],
    ids=str,
)
def test_bad_feature_names_are_rejected(name: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        FeatureDefinitionSpec(name=name, type="String")


def test_a_feature_type_outside_the_three_is_rejected() -> None:
    with pytest.raises(ValidationError, match="Integral', 'Fractional' or 'String'"):
        FeatureDefinitionSpec(name="notes", type="Text")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"groups": ()}, "groups\n  Tuple should have at least 1 item"),
        ({"groups": (VITALS, VITALS)}, "'patient-vitals' and 'patient-vitals' have the same name"),
        (
            {"groups": (VITALS, group(name="patient_vitals"))},
            "'patient-vitals' and 'patient_vitals' have the same name (Glue table",
        ),
        ({"offline_prefix": "feature-store"}, "offline_prefix"),
        ({"offline_prefix": "feature-*/"}, "offline_prefix"),
    ],
    ids=str,
)
def test_bad_layer_configs_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        features_config(**overrides)


# --- terraform --------------------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_features_layer(tmp_path: Path) -> None:
    result = terraform_validate(tmp_path, add_features, region=REGION)
    assert result.returncode == 0, result.stderr
    assert "The configuration is valid" in result.stdout


def test_production_feature_groups_refuse_destroy() -> None:
    """Online stores hold PHI: in production `terraform destroy` of a group is refused."""

    def build(stack: Any) -> None:
        keys, storage = add_keys_and_storage(stack, region=REGION)
        Features(
            stack,
            "features",
            config=features_config(production=True),
            feature_key=keys.feature_store,
            offline_bucket=storage.feature_offline,
        )

    groups = feature_groups(synth_stack(build)).values()
    assert len(groups) == 2
    assert all(group.get("lifecycle") == {"prevent_destroy": True} for group in groups)


def test_non_production_feature_groups_can_be_destroyed(synthesized: dict[str, Any]) -> None:
    """Twin: the same check sees groups without the guard."""
    assert all("lifecycle" not in group for group in feature_groups(synthesized).values())
