"""The FHIR -> features builder as a SageMaker pipeline of two Processing jobs.

`Partition` (one instance) splits the HealthLake export in the raw bucket into patient
partitions; `Build` (the configured instance count) receives whole partitions through
`ShardedByS3Key`, builds every declared feature group and uploads its offline files straight
into the Feature Store offline store (the layout Feature Store itself writes), its online
records and its report into the run's artifacts folder. The feature spec the jobs read is an
S3 object Terraform writes from the environment file, naming each group's resolved offline
location, so what was reviewed is what is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from constructs import Construct
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ml.feature_spec import (
    BasisKind,
    FeatureColumn,
    FeatureSpec,
    GroupSpec,
    ProcessingBasis,
    basis_problem,
)
from modules import aws
from modules.config import LayerConfig
from modules.features import S3_PREFIX_PATTERN, FeatureGroupSpec
from modules.iam_statements import (
    ECR_IMAGE,
    ecr_authorization_token,
    ecr_pull,
    ecr_repository_arn,
    pass_role_to_sagemaker_only,
    sagemaker_job_guards,
    sagemaker_job_telemetry,
    sagemaker_vpc_interface_statements,
)
from modules.keys import CustomerManagedKey
from modules.pipelines import (
    PIPELINE_DEFINITION_VERSION,
    PIPELINE_JOB_NAME_PREFIX,
    PROCESSING_ROOT,
    jobs_security_group,
)
from modules.policy import Statement, assume_role_policy, policy_document, statement
from modules.storage import HardenedBucket

PIPELINE_SUFFIX = "-features"
ROLE_SUFFIX = "-execution"
IAM_ROLE_NAME_MAX = 64
# The features pipeline's role, <pipeline>-features-execution, must fit IAM's 64 characters.
MAX_PIPELINE_NAME = IAM_ROLE_NAME_MAX - len(ROLE_SUFFIX)

PARTITION_STEP = "Partition"
BUILD_STEP = "Build"
# The container's program (ml/feature_builder.py); ml/Dockerfile.feature-builder declares the
# same ENTRYPOINT, and a test holds the two together.
ENTRYPOINT = ("python3", "-m", "ml.feature_builder")
SPEC_FILE = "feature-spec.json"

EXPORT_INPUT = "export"
# The export a run reads: the folder StartFHIRExportJob wrote under the export prefix
# (<datastore id>-FHIR_EXPORT-<job id>/). One export per run: the prefix accumulates every
# export ever made, and two of them would repeat every resource id.
EXPORT_FOLDER_PARAMETER = "ExportFolder"
PARTITIONS = "partitions"
SPEC_INPUT = "spec"
REPORT = "report"
OFFLINE = "offline"
ONLINE = "online"

# The partition step holds the export and its partitions at once: room for both.
VOLUME_SIZE_GB = 100
PROCESSING_INSTANCE_TYPE = r"^ml\.[a-z0-9-]+\.[a-z0-9]+$"
_LOWER_NAME = r"^[a-z0-9](-?[a-z0-9])*$"


class FeatureBuildConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    jurisdiction: str
    # <training pipeline>-features; lower case for the same reason as the training pipeline's
    # name (SageMaker lower-cases names inside ARNs, IAM compares them case-sensitively).
    pipeline_name: str = Field(pattern=_LOWER_NAME)
    image: str
    instance_type: str = Field(pattern=PROCESSING_INSTANCE_TYPE)
    instance_count: int = Field(ge=1, le=100)
    partitions: int = Field(ge=1, le=10_000)
    max_bad_line_share: float = Field(ge=0, le=0.5)
    # 5 days: the CreateProcessingJob maximum.
    max_runtime_seconds: int = Field(ge=60, le=432_000)
    export_prefix: str = Field(pattern=S3_PREFIX_PATTERN)
    offline_prefix: str = Field(default="feature-store/", pattern=S3_PREFIX_PATTERN)
    groups: tuple[FeatureGroupSpec, ...] = Field(min_length=1)
    processing_basis_kind: str
    processing_basis_reference: str | None = None
    vpc_cidr: str

    @field_validator("pipeline_name")
    @classmethod
    def _role_name_fits(cls, name: str) -> str:
        if len(name) > MAX_PIPELINE_NAME:
            raise ValueError(
                f"'{name}' is {len(name)} characters: its execution role '{name}{ROLE_SUFFIX}' "
                f"would exceed IAM's {IAM_ROLE_NAME_MAX}, so it may have at most "
                f"{MAX_PIPELINE_NAME} characters (a training pipeline name of at most "
                f"{MAX_PIPELINE_NAME - len(PIPELINE_SUFFIX)}, before '{PIPELINE_SUFFIX}')"
            )
        return name

    @field_validator("image")
    @classmethod
    def _image_by_digest(cls, image: str) -> str:
        parts = ECR_IMAGE.match(image)
        if parts is None:
            raise ValueError(
                f"{image!r} is not a private ECR image "
                "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:<64 hex>)"
            )
        if parts["digest"] is None:
            raise ValueError(
                f"{image!r} names the tag ':{parts['tag']}'; the feature builder image must be "
                "pinned by digest (<repository>@sha256:<64 hex>): a tag can be moved to other "
                "code after review"
            )
        return image

    @field_validator("partitions")
    @classmethod
    def _every_instance_gets_a_partition(cls, partitions: int, info: ValidationInfo) -> int:
        instances = info.data.get("instance_count")
        if isinstance(instances, int) and partitions < instances:
            raise ValueError(
                f"{partitions} partitions cannot keep {instances} instances busy: "
                "ShardedByS3Key gives each instance whole partitions (use at least "
                f"{instances})"
            )
        return partitions

    @model_validator(mode="after")
    def _basis_allowed(self) -> FeatureBuildConfig:
        problem = basis_problem(
            self.jurisdiction, self.processing_basis_kind, self.processing_basis_reference
        )
        if problem:
            raise ValueError(problem)
        return self

    @property
    def execution_role_name(self) -> str:
        """Fixed, so the key policies can admit the role before it exists."""
        return f"{self.pipeline_name}{ROLE_SUFFIX}"

    @property
    def artifacts_prefix(self) -> str:
        """Key prefix (no bucket) of this pipeline's spec and run folders."""
        return f"pipelines/{self.pipeline_name}/"

    @property
    def spec_key(self) -> str:
        return feature_spec_key(self.pipeline_name)

    def feature_spec(self, resolved_output_s3_uris: Mapping[str, str]) -> FeatureSpec:
        """The spec the jobs read: the declared groups, each with its resolved offline
        location (DescribeFeatureGroup's ResolvedOutputS3Uri)."""
        missing = sorted({g.name for g in self.groups} - set(resolved_output_s3_uris))
        extra = sorted(set(resolved_output_s3_uris) - {g.name for g in self.groups})
        if missing or extra:
            raise ValueError(
                f"resolved offline locations do not match the declared groups "
                f"(missing: {missing}, undeclared: {extra})"
            )
        return FeatureSpec(
            environment=self.environment,
            jurisdiction=self.jurisdiction,
            basis=ProcessingBasis(
                BasisKind(self.processing_basis_kind), self.processing_basis_reference
            ),
            groups=tuple(
                GroupSpec(
                    name=group.name,
                    record_identifier=group.record_identifier,
                    event_time=group.event_time,
                    features=tuple(FeatureColumn(f.name, f.type) for f in group.features),
                    resolved_output_s3_uri=resolved_output_s3_uris[group.name],
                )
                for group in self.groups
            ),
            max_bad_line_share=self.max_bad_line_share,
        )


def feature_spec_key(features_pipeline: str) -> str:
    """Where the spec object is in the artifacts bucket (the training pipeline reads it too)."""
    return f"pipelines/{features_pipeline}/{SPEC_FILE}"


def features_pipeline_name(training_pipeline_name: str) -> str:
    return f"{training_pipeline_name}{PIPELINE_SUFFIX}"


# --- the pipeline definition (pure data) --------------------------------------------------


def _join(*values: Any) -> dict[str, Any]:
    return {"Std:Join": {"On": "/", "Values": list(values)}}


def _run_uri(artifacts_bucket_name: str, config: FeatureBuildConfig, *parts: str) -> Any:
    """s3://<artifacts>/pipelines/<pipeline>/<execution id>/<parts>: one folder per run."""
    return _join(
        f"s3://{artifacts_bucket_name}/{config.artifacts_prefix.rstrip('/')}",
        {"Get": "Execution.PipelineExecutionId"},
        *parts,
    )


def _local(kind: str, name: str) -> str:
    return f"{PROCESSING_ROOT}/{kind}/{name}"


def pipeline_definition(
    config: FeatureBuildConfig,
    *,
    role_arn: str,
    ml_key_arn: str,
    feature_key_arn: str,
    security_group_id: str,
    subnet_ids: list[str],
    raw_bucket_name: str,
    artifacts_bucket_name: str,
    offline_bucket_name: str,
) -> dict[str, Any]:
    """The features pipeline (schema 2020-12-01): Partition, then Build on its partitions.

    Both jobs are network-isolated with inter-container encryption, in the private subnets,
    with volumes encrypted by the ML artifacts key. Partition's outputs are encrypted with the
    ML artifacts key; Build's with the feature-store key, because its offline output lands in
    the offline store, whose readers (Feature Store, Athena, training) hold that key. Nothing
    in the definition is a parameter but the export folder, which is joined onto the export
    prefix: a run cannot be pointed at other data (the role reads nothing else either).
    """
    network = {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": {"SecurityGroupIds": [security_group_id], "Subnets": list(subnet_ids)},
    }

    def resources(instances: int) -> dict[str, Any]:
        return {
            "ClusterConfig": {
                "InstanceType": config.instance_type,
                "InstanceCount": instances,
                "VolumeSizeInGB": VOLUME_SIZE_GB,
                "VolumeKmsKeyId": ml_key_arn,
            }
        }

    def s3_input(name: str, uri: Any, distribution: str = "FullyReplicated") -> dict[str, Any]:
        return {
            "InputName": name,
            "AppManaged": False,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": _local("input", name),
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": distribution,
            },
        }

    def s3_output(name: str, uri: Any) -> dict[str, Any]:
        return {
            "OutputName": name,
            "AppManaged": False,
            "S3Output": {
                "S3Uri": uri,
                "LocalPath": _local("output", name),
                "S3UploadMode": "EndOfJob",
            },
        }

    def step(
        name: str,
        *,
        instances: int,
        arguments: list[Any],
        inputs: list[dict[str, Any]],
        outputs: list[dict[str, Any]],
        output_key_arn: str,
    ) -> dict[str, Any]:
        return {
            "Name": name,
            "Type": "Processing",
            "Arguments": {
                "ProcessingResources": resources(instances),
                # The image carries the code (built and scanned in CI, pinned by digest):
                # with network isolation nothing can be fetched at run time.
                "AppSpecification": {
                    "ImageUri": config.image,
                    "ContainerEntrypoint": list(ENTRYPOINT),
                    "ContainerArguments": arguments,
                },
                "ProcessingInputs": inputs,
                "ProcessingOutputConfig": {"Outputs": outputs, "KmsKeyId": output_key_arn},
                "NetworkConfig": network,
                "StoppingCondition": {"MaxRuntimeInSeconds": config.max_runtime_seconds},
                "RoleArn": role_arn,
            },
        }

    partition = step(
        PARTITION_STEP,
        instances=1,
        arguments=[
            "partition",
            "--input",
            _local("input", EXPORT_INPUT),
            "--output",
            _local("output", PARTITIONS),
            "--partitions",
            str(config.partitions),
            "--report",
            _local("output", REPORT),
            "--max-bad-line-share",
            str(config.max_bad_line_share),
        ],
        inputs=[
            s3_input(
                EXPORT_INPUT,
                {
                    "Std:Join": {
                        "On": "",
                        "Values": [
                            f"s3://{raw_bucket_name}/{config.export_prefix}",
                            {"Get": f"Parameters.{EXPORT_FOLDER_PARAMETER}"},
                        ],
                    }
                },
            )
        ],
        outputs=[
            s3_output(name, _run_uri(artifacts_bucket_name, config, PARTITION_STEP.lower(), name))
            for name in (PARTITIONS, REPORT)
        ],
        output_key_arn=ml_key_arn,
    )
    partitions_uri = {
        "Get": f"Steps.{PARTITION_STEP}.ProcessingOutputConfig.Outputs['{PARTITIONS}']"
        ".S3Output.S3Uri"
    }
    build = step(
        BUILD_STEP,
        instances=config.instance_count,
        arguments=[
            "build",
            "--input",
            _local("input", PARTITIONS),
            "--spec",
            f"{_local('input', SPEC_INPUT)}/{SPEC_FILE}",
            "--offline-output",
            _local("output", OFFLINE),
            "--online-output",
            _local("output", ONLINE),
            "--report",
            _local("output", REPORT),
            # One write_time for every instance of a run: the run's start.
            "--write-time",
            {"Get": "Execution.StartDateTime"},
        ],
        inputs=[
            # Each instance gets whole partitions, so whole patients: outputs never overlap.
            s3_input(PARTITIONS, partitions_uri, "ShardedByS3Key"),
            s3_input(SPEC_INPUT, f"s3://{artifacts_bucket_name}/{config.spec_key}"),
        ],
        outputs=[
            # The offline store itself: each instance writes files named for its host under
            # <group>/<account>/sagemaker/<region>/offline-store/..., as Feature Store does.
            s3_output(OFFLINE, f"s3://{offline_bucket_name}/{config.offline_prefix}"),
            s3_output(ONLINE, _run_uri(artifacts_bucket_name, config, BUILD_STEP.lower(), ONLINE)),
            s3_output(REPORT, _run_uri(artifacts_bucket_name, config, BUILD_STEP.lower(), REPORT)),
        ],
        output_key_arn=feature_key_arn,
    )
    return {
        "Version": PIPELINE_DEFINITION_VERSION,
        "Metadata": {},
        # No default: a run names the export it builds from.
        "Parameters": [{"Name": EXPORT_FOLDER_PARAMETER, "Type": "String"}],
        "Steps": [partition, build],
    }


# --- the execution role -------------------------------------------------------------------


def job_arns(config: FeatureBuildConfig) -> list[str]:
    """The processing jobs this pipeline's runs start: pipelines-<execution id>-<step>-<suffix>.
    SageMaker may spell the step name lower case inside the ARN, and IAM compares ARNs
    case-sensitively, so both spellings are named."""
    sagemaker = f"arn:aws:sagemaker:{config.region}:{config.account_id}"
    return [
        f"{sagemaker}:processing-job/{PIPELINE_JOB_NAME_PREFIX}*-{spelling}-*"
        for name in (PARTITION_STEP, BUILD_STEP)
        for spelling in (name, name.lower())
    ]


def execution_role_statements(
    config: FeatureBuildConfig,
    *,
    role_arn: str,
    ml_key_arn: str,
    feature_key_arn: str,
    export_key_arn: str,
    raw_bucket_arn: str,
    artifacts_bucket_arn: str,
    offline_bucket_arn: str,
    vpc_id: str,
) -> list[Statement]:
    """Read the export prefix and the spec; write the run folders and the declared groups'
    offline folders; use the keys through S3 only; run this pipeline's jobs, isolated."""
    region, account = config.region, config.account_id
    through_s3 = {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}
    export_prefix = config.export_prefix
    # Run folders are pipelines/<pipeline>/<execution id>/...: one level below the spec,
    # which the role can read but not replace.
    run_folders = f"{artifacts_bucket_arn}/{config.artifacts_prefix}*/*"
    log_groups = [
        f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/ProcessingJobs{suffix}"
        for suffix in ("", ":*")
    ]
    creation = "sagemaker:CreateProcessingJob"
    return [
        statement(
            "ReadFhirExportPrefixOnly",
            effect="Allow",
            actions="s3:GetObject",
            resources=f"{raw_bucket_arn}/{export_prefix}*",
        ),
        statement(
            "ListFhirExportPrefixOnly",
            effect="Allow",
            actions="s3:ListBucket",
            resources=raw_bucket_arn,
            condition={"StringLike": {"s3:prefix": [f"{export_prefix}*"]}},
        ),
        statement(
            "ReadTheFeatureSpec",
            effect="Allow",
            actions="s3:GetObject",
            resources=f"{artifacts_bucket_arn}/{config.spec_key}",
        ),
        statement(
            "ReadWriteOwnRunFolders",
            effect="Allow",
            actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            resources=run_folders,
        ),
        statement(
            "ListOwnArtifacts",
            effect="Allow",
            actions="s3:ListBucket",
            resources=artifacts_bucket_arn,
            condition={"StringLike": {"s3:prefix": [f"{config.artifacts_prefix}*"]}},
        ),
        statement(
            "WriteDeclaredGroupsOfflineStoreOnly",
            effect="Allow",
            actions=["s3:AbortMultipartUpload", "s3:PutObject"],
            resources=[
                f"{offline_bucket_arn}/{config.offline_prefix}{group.name}/*"
                for group in config.groups
            ],
        ),
        statement(
            "DecryptFhirExportThroughS3Only",
            effect="Allow",
            actions="kms:Decrypt",
            resources=export_key_arn,
            condition=through_s3,
        ),
        # Decrypt as well as GenerateDataKey: multipart uploads of large outputs need both.
        statement(
            "UseMlArtifactsKeyThroughS3Only",
            effect="Allow",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=ml_key_arn,
            condition=through_s3,
        ),
        statement(
            "WriteOfflineStoreWithFeatureKeyThroughS3Only",
            effect="Allow",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=feature_key_arn,
            condition=through_s3,
        ),
        # SageMaker validates the job's keys (metadata only, no cryptographic use).
        statement(
            "DescribeJobKeys",
            effect="Allow",
            actions="kms:DescribeKey",
            resources=[ml_key_arn, feature_key_arn],
        ),
        # The jobs' EBS volumes are encrypted through a grant made with this role's
        # permissions; the grant may only go to an AWS service acting for it.
        statement(
            "GrantMlArtifactsKeyToJobVolumes",
            effect="Allow",
            actions="kms:CreateGrant",
            resources=ml_key_arn,
            condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        statement(
            "RunThisPipelinesJobsOnly",
            effect="Allow",
            actions=[
                "sagemaker:AddTags",
                creation,
                "sagemaker:DescribeProcessingJob",
                "sagemaker:ListTags",
                "sagemaker:StopProcessingJob",
            ],
            resources=job_arns(config),
        ),
        *sagemaker_job_guards(creation),
        pass_role_to_sagemaker_only(role_arn),
        ecr_pull("PullTheFeatureBuilderImageOnly", ecr_repository_arn(config.image)),
        ecr_authorization_token("EcrLogin"),
        *sagemaker_job_telemetry(log_groups),
        *sagemaker_vpc_interface_statements(region, account, vpc_id),
    ]


# --- the construct ------------------------------------------------------------------------


class FeatureBuild(Construct):
    """The features pipeline: FHIR export -> patient partitions -> feature records.

    Guarantees: both jobs are network-isolated, in the private subnets, behind a security
    group that only reaches the VPC's endpoints and S3 over HTTPS, with KMS-encrypted volumes
    and outputs (offline files under the feature-store key, like the rest of the offline
    store); the execution role reads only the raw bucket's export prefix and the spec object,
    writes only its run folders and the declared groups' offline folders, uses the keys only
    through S3 and pulls only the builder image; the spec object is encrypted with the ML
    artifacts key.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: FeatureBuildConfig,
        ml_key: CustomerManagedKey,
        feature_key: CustomerManagedKey,
        raw_bucket: HardenedBucket,
        artifacts_bucket: HardenedBucket,
        offline_bucket: HardenedBucket,
        resolved_output_s3_uris: Mapping[str, str],
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        if not subnet_ids:
            raise ValueError("the feature build's jobs need at least one private subnet")
        for bucket, key in ((artifacts_bucket, ml_key), (offline_bucket, feature_key)):
            if bucket.kms_key is not key:
                raise ValueError(
                    f"bucket {bucket.node.id} is encrypted with the "
                    f"{bucket.kms_key.config.purpose} key, not the {key.config.purpose} key"
                )
        spec = config.feature_spec(resolved_output_s3_uris)

        self.spec_object = aws.S3Object(
            self,
            "feature-spec",
            bucket=artifacts_bucket.bucket_name,
            key=config.spec_key,
            content=spec.to_json(),
            content_type="application/json",
            server_side_encryption="aws:kms",
            kms_key_id=ml_key.key_arn,
            # No bucket key for this one object: its KMS encryption context is then the
            # object's ARN, to which the ML key's policy confines the deployer's right to
            # encrypt (see KeysConfig.deployed_objects); the deployer never decrypts.
            bucket_key_enabled=False,
        )

        self.security_group = jobs_security_group(
            self,
            name=f"{config.pipeline_name}-jobs",
            region=config.region,
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
        )
        self.security_group_id: str = self.security_group.id

        self.execution_role = aws.IamRole(
            self,
            "execution-role",
            name=config.execution_role_name,
            description=f"SageMaker pipeline {config.pipeline_name} and its two jobs",
            assume_role_policy=assume_role_policy("sagemaker.amazonaws.com", config.account_id),
        )
        self.execution_role_arn: str = self.execution_role.arn
        aws.IamRolePolicy(
            self,
            "execution-policy",
            name="build-features-from-the-export-only",
            role=self.execution_role.id,
            policy=policy_document(
                *execution_role_statements(
                    config,
                    role_arn=self.execution_role.arn,
                    ml_key_arn=ml_key.key_arn,
                    feature_key_arn=feature_key.key_arn,
                    export_key_arn=raw_bucket.kms_key.key_arn,
                    raw_bucket_arn=raw_bucket.bucket_arn,
                    artifacts_bucket_arn=artifacts_bucket.bucket_arn,
                    offline_bucket_arn=offline_bucket.bucket_arn,
                    vpc_id=vpc_id,
                )
            ),
        )

        self.definition = pipeline_definition(
            config,
            role_arn=self.execution_role.arn,
            ml_key_arn=ml_key.key_arn,
            feature_key_arn=feature_key.key_arn,
            security_group_id=self.security_group.id,
            subnet_ids=subnet_ids,
            raw_bucket_name=raw_bucket.bucket_name,
            artifacts_bucket_name=artifacts_bucket.bucket_name,
            offline_bucket_name=offline_bucket.bucket_name,
        )
        self.pipeline = aws.SagemakerPipeline(
            self,
            "pipeline",
            pipeline_name=config.pipeline_name,
            pipeline_display_name=config.pipeline_name,
            pipeline_description=(
                f"{config.environment}: FHIR export -> patient partitions -> feature records"
            ),
            role_arn=self.execution_role.arn,
            pipeline_definition=json.dumps(self.definition, sort_keys=True),
            # A run reads the spec: it must exist before the first run can start.
            depends_on=[self.spec_object],
        )
        self.pipeline_arn: str = self.pipeline.arn
        self.pipeline_name: str = self.pipeline.pipeline_name
