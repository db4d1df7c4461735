"""SageMaker Feature Store groups: online store and offline store under the feature-store key,
offline data in the hardened offline bucket, catalogued in Glue tables this layer owns."""

from __future__ import annotations

from typing import Literal

from cdktf import TerraformResourceLifecycle
from constructs import Construct
from pydantic import Field, field_validator, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.keys import CustomerManagedKey
from modules.policy import Statement, assume_role_policy, policy_document, statement
from modules.storage import HardenedBucket

# SageMaker API patterns (FeatureDefinition.FeatureName, CreateFeatureGroup.FeatureGroupName).
FEATURE_NAME_PATTERN = r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$"
FEATURE_GROUP_NAME_PATTERN = r"^[a-zA-Z0-9]([_-]*[a-zA-Z0-9]){0,63}$"
# Columns Feature Store adds to every offline record; SageMaker refuses them as feature names.
OFFLINE_STORE_SYSTEM_COLUMNS = (
    ("write_time", "timestamp"),
    ("api_invocation_time", "timestamp"),
    ("is_deleted", "boolean"),
)
RESERVED_FEATURE_NAMES = frozenset(name for name, _ in OFFLINE_STORE_SYSTEM_COLUMNS)
GLUE_TYPES = {"Integral": "bigint", "Fractional": "double", "String": "string"}
# Event time is an ISO-8601 string or fractional epoch seconds, never an integer.
EVENT_TIME_TYPES = ("String", "Fractional")
# Same rule as the FHIR prefixes: S3 "safe" segments ending in "/", nothing IAM would expand.
S3_PREFIX_PATTERN = r"^([A-Za-z0-9!_.'()-]+/)+$"
GLUE_CATALOG = "AwsDataCatalog"
# Feature Store writes Parquet only (offline store data format).
PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

FeatureType = Literal["Integral", "Fractional", "String"]


def glue_name(name: str) -> str:
    """Athena/Glue spelling of a table or database name: lower case, underscores only."""
    return name.lower().replace("-", "_")


class FeatureDefinitionSpec(LayerConfig):
    """One feature of a group: a column of the online and offline stores."""

    name: str = Field(
        pattern=FEATURE_NAME_PATTERN,
        max_length=64,
        description="no hyphens (the offline store's Athena/Glue column would be unusable; use "
        "underscores), not a column Feature Store adds itself (write_time, api_invocation_time, "
        "is_deleted); unique in its group ignoring case (Glue folds column names)",
    )
    type: FeatureType = Field(
        description="the Feature Store type: Integral (Glue bigint), Fractional (double) or "
        "String (string)"
    )

    @field_validator("name")
    @classmethod
    def _usable_column_name(cls, value: str) -> str:
        if "-" in value:
            # SageMaker accepts hyphens, but the Parquet column keeps the feature's name and
            # Athena/Glue column names admit only letters, digits and underscores.
            raise ValueError(
                f"feature name '{value}' has a hyphen: the offline store's Athena column would "
                "be unusable; use underscores"
            )
        if value.lower() in RESERVED_FEATURE_NAMES:
            raise ValueError(
                f"'{value}' is a column Feature Store adds to the offline store "
                f"({', '.join(sorted(RESERVED_FEATURE_NAMES))}); choose another feature name"
            )
        return value


class FeatureGroupSpec(LayerConfig):
    """A SageMaker Feature Store group: its records, the feature that identifies each and the
    feature that says when each became true."""

    name: str = Field(
        pattern=FEATURE_GROUP_NAME_PATTERN,
        max_length=64,
        description="the group's name; unique ignoring case and '-' versus '_' (its Glue table "
        "is the name in lower case with underscores)",
    )
    record_identifier: str = Field(
        description="the feature that identifies a record: one of the group's features"
    )
    event_time: str = Field(
        description="the feature that says when a record became true: one of the group's "
        "features, String (ISO-8601) or Fractional (epoch seconds)"
    )
    features: tuple[FeatureDefinitionSpec, ...] = Field(
        min_length=1, description="the group's features (columns)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeatureGroupSpec:
        # Glue folds column names to lower case: "Age" and "age" would be one column.
        seen: dict[str, str] = {}
        for feature in self.features:
            column = feature.name.lower()
            if column in seen:
                raise ValueError(
                    f"feature group '{self.name}': features '{seen[column]}' and "
                    f"'{feature.name}' have the same name (Glue column '{column}')"
                )
            seen[column] = feature.name
        types = {feature.name: feature.type for feature in self.features}
        for role, feature_name in (
            ("record_identifier", self.record_identifier),
            ("event_time", self.event_time),
        ):
            if feature_name not in types:
                raise ValueError(
                    f"feature group '{self.name}': {role} '{feature_name}' is not one of its "
                    f"features ({', '.join(types)})"
                )
        if types[self.event_time] not in EVENT_TIME_TYPES:
            raise ValueError(
                f"feature group '{self.name}': event_time '{self.event_time}' is "
                f"{types[self.event_time]}; it must be String (ISO-8601) or Fractional "
                "(epoch seconds)"
            )
        return self

    @property
    def glue_table_name(self) -> str:
        return glue_name(self.name)


class FeaturesConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str
    groups: tuple[FeatureGroupSpec, ...] = Field(min_length=1)
    offline_prefix: str = Field(default="feature-store/", pattern=S3_PREFIX_PATTERN)
    # Production environment: feature groups (their online stores hold PHI) refuse
    # `terraform destroy`.
    production: bool = False

    @model_validator(mode="after")
    def _unique_groups(self) -> FeaturesConfig:
        seen: dict[str, str] = {}
        for group in self.groups:
            # Group names are unique per account and region; table names per database.
            table = group.glue_table_name
            if table in seen:
                raise ValueError(
                    f"feature groups '{seen[table]}' and '{group.name}' have the same name "
                    f"(Glue table '{table}')"
                )
            seen[table] = group.name
        return self

    @property
    def role_name(self) -> str:
        """Fixed, so the feature-store key's policy can admit the role before it exists."""
        return f"phi-ml-{self.environment}-feature-store"

    @property
    def glue_database_name(self) -> str:
        return glue_name(f"phi_ml_{self.environment}_feature_store")

    def glue_arns(self) -> list[str]:
        """The catalog, this layer's database and its tables: what the role may touch."""
        prefix = f"arn:aws:glue:{self.region}:{self.account_id}"
        database = self.glue_database_name
        return [
            f"{prefix}:catalog",
            f"{prefix}:database/{database}",
            *(f"{prefix}:table/{database}/{group.glue_table_name}" for group in self.groups),
        ]


def glue_columns(group: FeatureGroupSpec) -> list[tuple[str, str]]:
    """(name, Glue type) of the offline store table: the features, then the system columns."""
    features = [(f.name.lower(), GLUE_TYPES[f.type]) for f in group.features]
    return features + list(OFFLINE_STORE_SYSTEM_COLUMNS)


def feature_store_role_statements(
    config: FeaturesConfig, offline_bucket_arn: str, feature_key_arn: str
) -> list[Statement]:
    """Write under the offline prefix, use the feature-store key through S3, update only this
    layer's Glue tables."""
    return [
        # Feature Store writes Parquet files with a bucket-owner-full-control ACL (accepted by
        # BucketOwnerEnforced buckets), so it needs PutObjectAcl next to PutObject.
        statement(
            "WriteOfflineStoreUnderPrefixOnly",
            effect="Allow",
            actions=["s3:PutObject", "s3:PutObjectAcl"],
            resources=f"{offline_bucket_arn}/{config.offline_prefix}*",
        ),
        # CreateFeatureGroup assumes the role and reads the bucket ACL to validate the S3 URI.
        statement(
            "ValidateOfflineBucket",
            effect="Allow",
            actions="s3:GetBucketAcl",
            resources=offline_bucket_arn,
        ),
        # Offline files are SSE-KMS with the feature-store key; S3 makes the KMS calls.
        statement(
            "UseFeatureStoreKeyThroughS3Only",
            effect="Allow",
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=feature_key_arn,
            condition={"StringEquals": {"kms:ViaService": f"s3.{config.region}.amazonaws.com"}},
        ),
        statement(
            "UpdateOwnGlueTablesOnly",
            effect="Allow",
            actions=[
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:UpdateTable",
                "glue:GetPartition",
                "glue:GetPartitions",
                "glue:BatchGetPartition",
                "glue:CreatePartition",
                "glue:BatchCreatePartition",
            ],
            resources=config.glue_arns(),
        ),
    ]


class Features(Construct):
    """Feature groups whose online store and offline store are both encrypted with the
    feature-store key, whose offline data lands only under one prefix of the hardened offline
    bucket, and whose Glue tables are declared here (not created by SageMaker), so their
    schema is reviewed like any other change. The role SageMaker uses can write only there."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: FeaturesConfig,
        feature_key: CustomerManagedKey,
        offline_bucket: HardenedBucket,
    ) -> None:
        super().__init__(scope, id_)
        if offline_bucket.kms_key is not feature_key:
            raise ValueError(
                f"the offline bucket is encrypted with the {offline_bucket.kms_key.config.purpose}"
                " key, not the feature-store key"
            )
        self.config = config
        self.offline_store_uri: str = f"s3://{offline_bucket.bucket_name}/{config.offline_prefix}"

        # Glue Data Catalog encryption (aws_glue_data_catalog_encryption_settings) is one
        # account-wide setting, so it belongs to an account-level layer, not to this one.
        database = aws.GlueCatalogDatabase(
            self,
            "glue-database",
            name=config.glue_database_name,
            description=f"PHI ML platform {config.environment}: Feature Store offline tables",
        )
        self.glue_database_name: str = database.name

        self.role = aws.IamRole(
            self,
            "role",
            name=config.role_name,
            description="SageMaker Feature Store: writes offline feature data, nothing else",
            assume_role_policy=assume_role_policy("sagemaker.amazonaws.com", config.account_id),
        )
        role_policy = aws.IamRolePolicy(
            self,
            "role-policy",
            name="offline-store-prefix-key-and-tables",
            role=self.role.id,
            policy=policy_document(
                *feature_store_role_statements(
                    config, offline_bucket.bucket_arn, feature_key.key_arn
                )
            ),
        )
        self.role_arn: str = self.role.arn

        names = []
        # DescribeFeatureGroup's ResolvedOutputS3Uri per group: where Feature Store (and the
        # feature builder, writing the same layout) keeps the group's offline files.
        resolved: dict[str, str] = {}
        for group in config.groups:
            group_uri = f"{self.offline_store_uri}{group.name}"
            table = aws.GlueCatalogTable(
                self,
                f"table-{group.name}",
                name=group.glue_table_name,
                database_name=database.name,
                description=f"Feature Store offline store of feature group {group.name}",
                table_type="EXTERNAL_TABLE",
                parameters={"classification": "parquet"},
                storage_descriptor=aws.GlueCatalogTableStorageDescriptor(
                    # Feature Store writes under <uri>/<account>/sagemaker/<region>/...;
                    # Athena reads everything below the table location.
                    location=f"{group_uri}/",
                    input_format=PARQUET_INPUT_FORMAT,
                    output_format=PARQUET_OUTPUT_FORMAT,
                    ser_de_info=aws.GlueCatalogTableStorageDescriptorSerDeInfo(
                        serialization_library=PARQUET_SERDE,
                        parameters={"serialization.format": "1"},
                    ),
                    columns=[
                        aws.GlueCatalogTableStorageDescriptorColumns(name=column, type=glue_type)
                        for column, glue_type in glue_columns(group)
                    ],
                ),
            )
            feature_group = aws.SagemakerFeatureGroup(
                self,
                f"group-{group.name}",
                feature_group_name=group.name,
                record_identifier_feature_name=group.record_identifier,
                event_time_feature_name=group.event_time,
                role_arn=self.role.arn,
                feature_definition=[
                    aws.SagemakerFeatureGroupFeatureDefinition(
                        feature_name=feature.name, feature_type=feature.type
                    )
                    for feature in group.features
                ],
                online_store_config=aws.SagemakerFeatureGroupOnlineStoreConfig(
                    enable_online_store=True,
                    storage_type="Standard",
                    security_config=aws.SagemakerFeatureGroupOnlineStoreConfigSecurityConfig(
                        kms_key_id=feature_key.key_arn
                    ),
                ),
                offline_store_config=aws.SagemakerFeatureGroupOfflineStoreConfig(
                    s3_storage_config=aws.SagemakerFeatureGroupOfflineStoreConfigS3StorageConfig(
                        s3_uri=group_uri, kms_key_id=feature_key.key_arn
                    ),
                    table_format="Glue",
                    disable_glue_table_creation=True,
                    data_catalog_config=(
                        aws.SagemakerFeatureGroupOfflineStoreConfigDataCatalogConfig(
                            catalog=GLUE_CATALOG, database=database.name, table_name=table.name
                        )
                    ),
                ),
                # SageMaker validates the role against the bucket at creation: the role's
                # permissions must exist before the group does.
                depends_on=[role_policy],
                lifecycle=(
                    TerraformResourceLifecycle(prevent_destroy=True) if config.production else None
                ),
            )
            names.append(feature_group.feature_group_name)
            resolved[group.name] = (
                feature_group.offline_store_config.s3_storage_config.resolved_output_s3_uri
            )
        self.feature_group_names: tuple[str, ...] = tuple(names)
        self.resolved_output_s3_uris: dict[str, str] = resolved
