"""SageMaker Pipeline (preprocess -> train -> evaluate -> gate -> register) started by a
succeeded feature build.

Every run is isolated (no network from the containers, VPC-only, KMS-encrypted volumes and
outputs), trains on the features as of the feature build that started it (that build's
execution and end time are the run's parameters, recorded on the registered version), and can
only ever register a model as `PendingManualApproval`: a person approves it in the registry
before it can reach production.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import PurePosixPath as Path
from typing import Any

from cdktf import Token
from constructs import Construct
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ml.dataset_manifest import DEFAULT_SPLIT_SEED
from ml.hyperparameters import HyperparameterError, as_strings, validate
from ml.model_quality import GATE_METRIC_PATHS
from ml.sagemaker_paths import (
    BASELINE_CONSTRAINTS,
    BASELINE_STATISTICS,
    DATASET_DIGEST,
    DATASET_MANIFEST,
    EVALUATION_REPORT,
    MODEL_DIGEST,
    SPLIT_FILES,
)
from modules import aws
from modules.config import LayerConfig
from modules.iam_statements import (
    ECR_IMAGE,
    SAGEMAKER_INTERFACE_ACTIONS,
    deny_insecure_transport,
    describe_vpc,
    ecr_authorization_token,
    ecr_pull,
    ecr_repository_arn,
    pass_role_to_sagemaker_only,
    sagemaker_job_guards,
    sagemaker_job_telemetry,
)
from modules.keys import CustomerManagedKey
from modules.policy import Statement, assume_role_policy, policy_document, statement
from modules.storage import HardenedBucket
from requirements.model_lineage import (
    DATASET_MANIFEST_SHA256,
    DATASET_MANIFEST_URI,
    FEATURE_BUILD_JOB,
    MODEL_ARCHIVE_SHA256,
    PROCESSING_IMAGE,
    TRAINING_IMAGE,
    UNRECORDED_REVISION,
)
from requirements.model_lineage import FEATURES_AS_OF as FEATURES_AS_OF_KEY

# EU AI Act Art. 14 (human oversight) and FDA change control: the pipeline proposes, a person
# decides. Deliberately a constant, not configuration: no environment may auto-approve.
MODEL_APPROVAL_STATUS = "PendingManualApproval"
PIPELINE_DEFINITION_VERSION = "2020-12-01"

# Step names double as the `Steps.<name>` references other steps use.
PREPROCESS_STEP = "Preprocess"
TRAIN_STEP = "Train"
EVALUATE_STEP = "Evaluate"
BASELINE_STEP = "Baseline"
GATE_STEP = "MetricGate"
REGISTER_STEP = "Register"
BELOW_THRESHOLD_STEP = "MetricBelowThreshold"

# The programs each processing step runs, shipped in the model-steps image
# (ml/Dockerfile.model-steps); each follows the processing container's paths.
STEP_PROGRAMS = {
    PREPROCESS_STEP: "ml.preprocess",
    EVALUATE_STEP: "ml.evaluate",
    BASELINE_STEP: "ml.monitor_baseline",
}
DATASET_OUTPUT = "dataset"
EVALUATION_OUTPUT = "evaluation"
BASELINE_OUTPUT = "baseline"
EVALUATION_FILE = EVALUATION_REPORT
EVALUATION_PROPERTY_FILE = "EvaluationReport"
MODEL_DIGEST_PROPERTY_FILE = "ModelDigest"
DATASET_PROPERTY_FILE = "DatasetDigest"

# The feature build that started the run and the instant it finished: the run's training data
# is the offline store as of that instant (time travel by write_time), so a rerun with the same
# parameters joins the same records. No defaults: a run started by hand must name both, so no
# registered version is without the build it trained on.
FEATURE_BUILD_EXECUTION = "FeatureBuildExecutionArn"
FEATURES_AS_OF_PARAMETER = "FeaturesAsOf"
INPUT_DATA_URI = "InputDataUri"
# The feature build's status-change event (SageMaker Model Building Pipeline Execution Status
# Change) as EventBridge delivers it.
PIPELINE_STATUS_SOURCE = "aws.sagemaker"
PIPELINE_STATUS_DETAIL_TYPE = "SageMaker Model Building Pipeline Execution Status Change"
SUCCEEDED = "Succeeded"

PROCESSING_ROOT = "/opt/ml/processing"
MODEL_CONTENT_TYPE = "text/csv"
VOLUME_SIZE_GB = 30
HTTPS = 443

# Failed deliveries are retried for a day, then kept 14 days (SQS's maximum) in the DLQ.
TRIGGER_MAX_EVENT_AGE_SECONDS = 86_400
TRIGGER_MAX_RETRY_ATTEMPTS = 20
DEAD_LETTER_RETENTION_SECONDS = 1_209_600

# Job names SageMaker Pipelines generates: pipelines-<execution id>-<step>-<suffix>.
PIPELINE_JOB_NAME_PREFIX = "pipelines-"
JOB_CREATION_ACTIONS = ["sagemaker:CreateProcessingJob", "sagemaker:CreateTrainingJob"]

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
# Lower case only: SageMaker lower-cases some names inside ARNs, and IAM compares ARNs
# case-sensitively, so a mixed-case name could silently fall outside its own policy.
_LOWER_NAME = r"^[a-z0-9](-?[a-z0-9])*$"


class SourceRevision(LayerConfig):
    """The code a pipeline definition was synthesized from, recorded on every version it
    registers (CreateModelPackage MetadataProperties: Repository and CommitId, at most 1,024
    characters each)."""

    repository: str = Field(default=UNRECORDED_REVISION, pattern=r"^\S{1,1024}$")
    commit: str = Field(
        default=UNRECORDED_REVISION,
        pattern=rf"^([0-9a-f]{{40}}|[0-9a-f]{{64}}|{UNRECORDED_REVISION})$",
    )


class PipelineConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    # 48 leaves room for the "-execution" role name suffix within IAM's 64 characters.
    pipeline_name: str = Field(pattern=_LOWER_NAME, max_length=48)
    model_package_group_name: str = Field(pattern=_LOWER_NAME, max_length=63)
    processing_image: str = Field(pattern=ECR_IMAGE.pattern)
    training_image: str = Field(pattern=ECR_IMAGE.pattern)
    # The container registered for serving; the training image when None (built-in algorithms
    # and framework images serve what they train).
    inference_image: str | None = Field(default=None, pattern=ECR_IMAGE.pattern)
    processing_instance_type: str = Field(pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    training_instance_type: str = Field(pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    metric_name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    # A model must score at least this to be registered; 0 would let anything through.
    metric_threshold: float = Field(gt=0, le=1)
    offline_store_uri: str = Field(pattern=_S3_URI.pattern)
    # The declared feature groups (each one's offline data is under offline_store_uri/<name>)
    # and the feature spec the feature-build jobs read (an object in the artifacts bucket).
    feature_groups: tuple[str, ...] = Field(min_length=1)
    feature_spec_key: str = Field(min_length=1, max_length=1024)
    # The built-in XGBoost algorithm's hyperparameters, as that container validates them
    # (ml/hyperparameters.py), with eval_metric the gate metric.
    hyperparameters: dict[str, int | float | str]
    split_seed: int = Field(default=DEFAULT_SPLIT_SEED, ge=0, le=2**31 - 1)
    # 5 days: the CreateProcessingJob maximum, so one limit fits every job.
    max_runtime_seconds: int = Field(ge=60, le=432_000)
    vpc_cidr: str

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, cidr: str) -> str:
        ipaddress.IPv4Network(cidr, strict=True)
        return cidr

    @field_validator("metric_name")
    @classmethod
    def _reported_by_evaluate(cls, metric: str) -> str:
        if metric not in GATE_METRIC_PATHS:
            raise ValueError(
                f"metric_name '{metric}' is not one the Evaluate step reports "
                f"({', '.join(GATE_METRIC_PATHS)})"
            )
        return metric

    @field_validator("hyperparameters")
    @classmethod
    def _train_what_the_gate_judges(
        cls, hyperparameters: dict[str, int | float | str], info: ValidationInfo
    ) -> dict[str, int | float | str]:
        metric = info.data.get("metric_name")
        if metric is None:
            return hyperparameters  # the metric itself was refused, and is reported
        try:
            validate(hyperparameters, gate_metric=metric)
        except HyperparameterError as problem:
            raise ValueError(str(problem)) from None
        return hyperparameters

    @field_validator("processing_image")
    @classmethod
    def _steps_by_digest(cls, image: str) -> str:
        if "@sha256:" not in image:
            # The step programs are this repository's code: what runs must be the image CI
            # built and scanned, and a tag can be moved to other bytes after review.
            raise ValueError(f"{image!r}: the model-steps image must be pinned by @sha256: digest")
        return image

    @model_validator(mode="after")
    def _serves_by_digest(self) -> PipelineConfig:
        if "@sha256:" not in self.serving_image:
            # The deployer serves only images pinned by digest: a registered tag would be an
            # approved version that can never be deployed (and a tag can change under it).
            raise ValueError(
                f"inference_image {self.serving_image!r}: the image registered for serving must "
                "be pinned by @sha256: digest"
            )
        return self

    @property
    def training_hyperparameters(self) -> dict[str, str]:
        """As CreateTrainingJob wants them: every value a string."""
        return as_strings(validate(self.hyperparameters, gate_metric=self.metric_name))

    @property
    def offline_store_bucket(self) -> str:
        match = _S3_URI.match(self.offline_store_uri)
        assert match is not None  # guaranteed by the field pattern
        return match["bucket"]

    @property
    def offline_store_prefix(self) -> str:
        match = _S3_URI.match(self.offline_store_uri)
        assert match is not None
        return match["prefix"] or ""

    @property
    def execution_role_name(self) -> str:
        """Fixed, so the key policies can admit the role before it exists."""
        return f"{self.pipeline_name}-execution"

    @property
    def serving_image(self) -> str:
        return self.inference_image or self.training_image

    @property
    def artifacts_prefix(self) -> str:
        """Key prefix (no bucket) under which every run of this pipeline writes."""
        return f"pipelines/{self.pipeline_name}/"


# --- the pipeline definition (pure data) --------------------------------------------------


def _parameter(name: str) -> dict[str, str]:
    return {"Get": f"Parameters.{name}"}


def _join(*values: Any, on: str = "/") -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def _run_uri(artifacts_bucket_name: str, config: PipelineConfig, *parts: str) -> dict[str, Any]:
    """s3://<artifacts>/pipelines/<pipeline>/<execution id>/<parts>: one folder per run."""
    return _join(
        f"s3://{artifacts_bucket_name}/{config.artifacts_prefix.rstrip('/')}",
        {"Get": "Execution.PipelineExecutionId"},
        *parts,
    )


def _processing_output_uri(step: str, output: str) -> dict[str, str]:
    return {"Get": f"Steps.{step}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"}


def _provenance_environment() -> dict[str, Any]:
    return {
        "FEATURE_BUILD_EXECUTION_ARN": _parameter(FEATURE_BUILD_EXECUTION),
        "PIPELINE_EXECUTION_ARN": {"Get": "Execution.PipelineExecutionArn"},
    }


def _json_get(step: str, property_file: str, path: str) -> dict[str, Any]:
    return {
        "Std:JsonGet": {
            "PropertyFile": {"Get": f"Steps.{step}.PropertyFiles.{property_file}"},
            "Path": path,
        }
    }


def pipeline_definition(
    config: PipelineConfig,
    *,
    role_arn: str,
    ml_key_arn: str,
    security_group_id: str,
    subnet_ids: list[str],
    artifacts_bucket_name: str,
    source: SourceRevision,
) -> dict[str, Any]:
    """The SageMaker pipeline definition (schema version 2020-12-01) as a dict.

    Every job runs with network isolation, inter-container encryption, in the given private
    subnets, with its volumes and outputs encrypted by the ML artifacts key. The metric
    threshold is a literal, not a pipeline parameter, so nobody starting a run can lower it.
    """
    vpc = {"SecurityGroupIds": [security_group_id], "Subnets": list(subnet_ids)}
    processing_network = {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": vpc,
    }
    stopping = {"MaxRuntimeInSeconds": config.max_runtime_seconds}

    def processing_resources() -> dict[str, Any]:
        return {
            "ClusterConfig": {
                "InstanceType": config.processing_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": VOLUME_SIZE_GB,
                "VolumeKmsKeyId": ml_key_arn,
            }
        }

    def s3_input(name: str, uri: Any, folder: str | None = None) -> dict[str, Any]:
        return {
            "InputName": name,
            "AppManaged": False,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": f"{PROCESSING_ROOT}/input/{folder or name}",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    def s3_output(step: str, name: str) -> dict[str, Any]:
        return {
            "OutputName": name,
            "AppManaged": False,
            "S3Output": {
                "S3Uri": _run_uri(artifacts_bucket_name, config, step.lower(), name),
                "LocalPath": f"{PROCESSING_ROOT}/output/{name}",
                "S3UploadMode": "EndOfJob",
            },
        }

    def program(step: str, *arguments: Any) -> dict[str, Any]:
        # The image carries the code (built and scanned in CI): with network isolation nothing
        # can be downloaded at run time, and the image digest pins what ran. The framework
        # image has no entrypoint of its own: each step names its program.
        return {
            "ImageUri": config.processing_image,
            "ContainerEntrypoint": ["python3", "-m", STEP_PROGRAMS[step]],
            "ContainerArguments": list(arguments),
        }

    def processing_step(
        step: str,
        app: dict[str, Any],
        inputs: list[dict[str, Any]],
        outputs: list[str],
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "Name": step,
            "Type": "Processing",
            "Arguments": {
                "ProcessingResources": processing_resources(),
                "AppSpecification": app,
                "Environment": _provenance_environment(),
                "ProcessingInputs": inputs,
                "ProcessingOutputConfig": {
                    "Outputs": [s3_output(step, name) for name in outputs],
                    "KmsKeyId": ml_key_arn,
                },
                "NetworkConfig": processing_network,
                "StoppingCondition": stopping,
                "RoleArn": role_arn,
            },
            **extra,
        }

    dataset_uri = _processing_output_uri(PREPROCESS_STEP, DATASET_OUTPUT)
    preprocess = processing_step(
        PREPROCESS_STEP,
        program(
            PREPROCESS_STEP,
            "--as-of",
            _parameter(FEATURES_AS_OF_PARAMETER),
            "--features",
            f"{PROCESSING_ROOT}/input/features",
            "--spec",
            f"{PROCESSING_ROOT}/input/spec/{Path(config.feature_spec_key).name}",
            "--output",
            f"{PROCESSING_ROOT}/output/{DATASET_OUTPUT}",
            "--split-seed",
            str(config.split_seed),
        ),
        [
            *(
                s3_input(
                    f"features-{group}",
                    _join(_parameter(INPUT_DATA_URI), group, on=""),
                    f"features/{group}",
                )
                for group in config.feature_groups
            ),
            s3_input("spec", f"s3://{artifacts_bucket_name}/{config.feature_spec_key}"),
        ],
        [DATASET_OUTPUT],
        PropertyFiles=[
            {
                "PropertyFileName": DATASET_PROPERTY_FILE,
                "OutputName": DATASET_OUTPUT,
                "FilePath": DATASET_DIGEST,
            }
        ],
    )

    def channel(name: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "ContentType": MODEL_CONTENT_TYPE,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    # A key prefix that names one object: the split's CSV in the dataset.
                    "S3Uri": _join(dataset_uri, SPLIT_FILES[name]),
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }

    # CreateTrainingJob has no NetworkConfig: the same three controls are top-level fields.
    train = {
        "Name": TRAIN_STEP,
        "Type": "Training",
        "Arguments": {
            "AlgorithmSpecification": {
                "TrainingImage": config.training_image,
                "TrainingInputMode": "File",
            },
            "HyperParameters": config.training_hyperparameters,
            "InputDataConfig": [channel("train"), channel("validation")],
            "OutputDataConfig": {
                "S3OutputPath": _run_uri(artifacts_bucket_name, config, "train"),
                "KmsKeyId": ml_key_arn,
            },
            "ResourceConfig": {
                "InstanceType": config.training_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": VOLUME_SIZE_GB,
                "VolumeKmsKeyId": ml_key_arn,
            },
            "EnableNetworkIsolation": True,
            "EnableInterContainerTrafficEncryption": True,
            "VpcConfig": vpc,
            "StoppingCondition": stopping,
            "RoleArn": role_arn,
        },
    }

    model_artifacts = {"Get": f"Steps.{TRAIN_STEP}.ModelArtifacts.S3ModelArtifacts"}
    dataset_input = s3_input(DATASET_OUTPUT, dataset_uri)
    evaluate = processing_step(
        EVALUATE_STEP,
        program(
            EVALUATE_STEP,
            "--model",
            f"{PROCESSING_ROOT}/input/model",
            "--dataset",
            f"{PROCESSING_ROOT}/input/{DATASET_OUTPUT}",
            "--output",
            f"{PROCESSING_ROOT}/output/{EVALUATION_OUTPUT}",
        ),
        [s3_input("model", model_artifacts), dataset_input],
        [EVALUATION_OUTPUT],
        PropertyFiles=[
            {
                "PropertyFileName": EVALUATION_PROPERTY_FILE,
                "OutputName": EVALUATION_OUTPUT,
                "FilePath": EVALUATION_FILE,
            },
            {
                "PropertyFileName": MODEL_DIGEST_PROPERTY_FILE,
                "OutputName": EVALUATION_OUTPUT,
                "FilePath": MODEL_DIGEST,
            },
        ],
    )
    baseline = processing_step(
        BASELINE_STEP,
        program(
            BASELINE_STEP,
            "--dataset",
            f"{PROCESSING_ROOT}/input/{DATASET_OUTPUT}",
            "--output",
            f"{PROCESSING_ROOT}/output/{BASELINE_OUTPUT}",
        ),
        [dataset_input],
        [BASELINE_OUTPUT],
    )

    evaluation_report = _join(
        _processing_output_uri(EVALUATE_STEP, EVALUATION_OUTPUT), EVALUATION_FILE
    )
    baseline_uri = _processing_output_uri(BASELINE_STEP, BASELINE_OUTPUT)

    def json_document(uri: Any) -> dict[str, Any]:
        return {"ContentType": "application/json", "S3Uri": uri}

    register = {
        "Name": REGISTER_STEP,
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": config.model_package_group_name,
            "ModelPackageDescription": _join(
                f"{config.pipeline_name} run",
                {"Get": "Execution.PipelineExecutionId"},
                "trained on features as of",
                _parameter(FEATURES_AS_OF_PARAMETER),
                on=" ",
            ),
            "ModelApprovalStatus": MODEL_APPROVAL_STATUS,
            "InferenceSpecification": {
                "Containers": [{"Image": config.serving_image, "ModelDataUrl": model_artifacts}],
                "SupportedContentTypes": [MODEL_CONTENT_TYPE],
                "SupportedResponseMIMETypes": [MODEL_CONTENT_TYPE],
            },
            "ModelMetrics": {"ModelQuality": {"Statistics": json_document(evaluation_report)}},
            # What monitoring compares the endpoint's traffic with, per version.
            "DriftCheckBaselines": {
                "ModelDataQuality": {
                    "Constraints": json_document(_join(baseline_uri, BASELINE_CONSTRAINTS)),
                    "Statistics": json_document(_join(baseline_uri, BASELINE_STATISTICS)),
                }
            },
            # Which code defined the run: the registry's own provenance block.
            "MetadataProperties": {
                "GeneratedBy": {"Get": "Execution.PipelineExecutionArn"},
                "Repository": source.repository,
                "CommitId": source.commit,
            },
            # Provenance on the package itself. SageMaker caps each value at 256 characters:
            # a longer value fails registration rather than being truncated silently.
            "CustomerMetadataProperties": {
                FEATURE_BUILD_JOB: _parameter(FEATURE_BUILD_EXECUTION),
                FEATURES_AS_OF_KEY: _parameter(FEATURES_AS_OF_PARAMETER),
                INPUT_DATA_URI: _parameter(INPUT_DATA_URI),
                "PipelineExecutionArn": {"Get": "Execution.PipelineExecutionArn"},
                DATASET_MANIFEST_URI: _join(dataset_uri, DATASET_MANIFEST),
                DATASET_MANIFEST_SHA256: _json_get(
                    PREPROCESS_STEP, DATASET_PROPERTY_FILE, "manifest_sha256"
                ),
                MODEL_ARCHIVE_SHA256: _json_get(
                    EVALUATE_STEP, MODEL_DIGEST_PROPERTY_FILE, "model_archive_sha256"
                ),
                PROCESSING_IMAGE: config.processing_image,
                TRAINING_IMAGE: config.training_image,
            },
        },
    }
    below_threshold = {
        "Name": BELOW_THRESHOLD_STEP,
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": (
                f"{config.metric_name} below {config.metric_threshold}: model not registered"
            )
        },
    }
    gate = {
        "Name": GATE_STEP,
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": _json_get(
                        EVALUATE_STEP,
                        EVALUATION_PROPERTY_FILE,
                        GATE_METRIC_PATHS[config.metric_name],
                    ),
                    "RightValue": config.metric_threshold,
                }
            ],
            "IfSteps": [register],
            "ElseSteps": [below_threshold],
        },
    }

    return {
        "Version": PIPELINE_DEFINITION_VERSION,
        "Metadata": {},
        "Parameters": [
            {"Name": FEATURE_BUILD_EXECUTION, "Type": "String"},
            {"Name": FEATURES_AS_OF_PARAMETER, "Type": "String"},
            # Overridable per run, but the execution role reads only the offline store prefix,
            # so any other location fails instead of training on unvetted data.
            {
                "Name": INPUT_DATA_URI,
                "Type": "String",
                "DefaultValue": config.offline_store_uri,
            },
        ],
        "Steps": [preprocess, train, evaluate, baseline, gate],
    }


def trigger_event_pattern(features_pipeline_arn: str) -> dict[str, Any]:
    """The feature build's pipeline execution reaching Succeeded (and nothing else: a failed or
    stopped build must not start training on half-written features)."""
    return {
        "source": [PIPELINE_STATUS_SOURCE],
        "detail-type": [PIPELINE_STATUS_DETAIL_TYPE],
        "detail": {
            "pipelineArn": [features_pipeline_arn],
            "currentPipelineExecutionStatus": [SUCCEEDED],
        },
    }


# EventBridge replaces a SageMaker pipeline parameter whose whole value is a JSON path with
# that part of the event.
TRIGGER_PARAMETER_PATHS = {
    FEATURE_BUILD_EXECUTION: "$.detail.pipelineExecutionArn",
    FEATURES_AS_OF_PARAMETER: "$.detail.executionEndTime",
}


# --- the construct ------------------------------------------------------------------------


def jobs_security_group(
    scope: Construct, *, name: str, region: str, vpc_id: str, vpc_cidr: str
) -> Any:
    """The security group of a pipeline's jobs: no ingress, HTTPS to the VPC's endpoints and to
    S3 (through the gateway endpoint's prefix list), nothing else.

    No inline egress: Terraform removes AWS's default allow-all egress rule from a new group,
    so the two rules below are all the jobs' ENIs can do.
    """
    group = aws.SecurityGroup(
        scope,
        "jobs-security-group",
        name=name,
        description="SageMaker pipeline jobs: HTTPS to VPC endpoints and S3 only",
        vpc_id=vpc_id,
        tags={"Name": name},
    )
    aws.VpcSecurityGroupEgressRule(
        scope,
        "jobs-https-to-vpc-endpoints",
        security_group_id=group.id,
        description="HTTPS to the PrivateLink endpoints in the VPC",
        ip_protocol="tcp",
        from_port=HTTPS,
        to_port=HTTPS,
        cidr_ipv4=vpc_cidr,
    )
    s3 = aws.DataAwsPrefixList(scope, "s3-prefix-list", name=f"com.amazonaws.{region}.s3")
    aws.VpcSecurityGroupEgressRule(
        scope,
        "jobs-https-to-s3-gateway-endpoint",
        security_group_id=group.id,
        description="HTTPS to S3 through the gateway endpoint",
        ip_protocol="tcp",
        from_port=HTTPS,
        to_port=HTTPS,
        prefix_list_id=s3.id,
    )
    return group


class Pipelines(Construct):
    """The training pipeline and the trigger that starts it for every succeeded feature build.

    Guarantees: every job is network-isolated, in the private subnets, behind a security
    group that only reaches the VPC's endpoints and S3 over HTTPS, with volumes and outputs
    encrypted by the ML artifacts key; the execution role reads only the offline store prefix,
    writes only this pipeline's artifacts prefix and can register models only as
    `PendingManualApproval` in its own group; every registered model names the feature build
    it trained on, the as-of time, the dataset manifest, the images and the commit; trigger
    deliveries that fail land in a KMS-encrypted dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PipelineConfig,
        ml_key: CustomerManagedKey,
        feature_key: CustomerManagedKey,
        artifacts_bucket: HardenedBucket,
        features_pipeline_arn: str,
        offline_bucket_arn: str,
        vpc_id: str,
        subnet_ids: list[str],
        source: SourceRevision,
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        if not subnet_ids:
            raise ValueError("the pipeline's jobs need at least one private subnet")
        offline_bucket = f"arn:aws:s3:::{config.offline_store_bucket}"
        if not Token.is_unresolved(offline_bucket_arn) and offline_bucket_arn != offline_bucket:
            raise ValueError(
                f"offline_store_uri {config.offline_store_uri} is not in {offline_bucket_arn}"
            )
        self.security_group = jobs_security_group(
            self,
            name=f"{config.pipeline_name}-jobs",
            region=config.region,
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
        )
        self.security_group_id: str = self.security_group.id

        role_name = config.execution_role_name
        self.execution_role = aws.IamRole(
            self,
            "execution-role",
            name=role_name,
            description=f"SageMaker pipeline {config.pipeline_name} and the jobs it runs",
            assume_role_policy=assume_role_policy("sagemaker.amazonaws.com", config.account_id),
        )
        self.execution_role_arn: str = self.execution_role.arn
        aws.IamRolePolicy(
            self,
            "execution-policy",
            name="run-this-pipeline-only",
            role=self.execution_role.id,
            policy=policy_document(
                *execution_role_statements(
                    config,
                    role_arn=self.execution_role.arn,
                    ml_key_arn=ml_key.key_arn,
                    feature_key_arn=feature_key.key_arn,
                    artifacts_bucket_arn=artifacts_bucket.bucket_arn,
                    offline_bucket_arn=offline_bucket_arn,
                    vpc_id=vpc_id,
                )
            ),
        )

        self.definition = pipeline_definition(
            config,
            role_arn=self.execution_role.arn,
            ml_key_arn=ml_key.key_arn,
            security_group_id=self.security_group.id,
            subnet_ids=subnet_ids,
            artifacts_bucket_name=artifacts_bucket.bucket_name,
            source=source,
        )
        self.pipeline = aws.SagemakerPipeline(
            self,
            "pipeline",
            pipeline_name=config.pipeline_name,
            pipeline_display_name=config.pipeline_name,
            pipeline_description=(
                f"{config.environment}: preprocess, train, evaluate, register for approval"
            ),
            role_arn=self.execution_role.arn,
            pipeline_definition=json.dumps(self.definition, sort_keys=True),
        )
        self.pipeline_arn: str = self.pipeline.arn
        self.pipeline_name: str = self.pipeline.pipeline_name

        self._trigger(config, ml_key, features_pipeline_arn)

    def _trigger(
        self, config: PipelineConfig, ml_key: CustomerManagedKey, features_pipeline_arn: str
    ) -> None:
        name = f"{config.pipeline_name}-trigger"
        self.trigger_rule = aws.CloudwatchEventRule(
            self,
            "trigger-rule",
            name=name,
            description="A succeeded feature build starts the training pipeline on its features",
            event_pattern=json.dumps(trigger_event_pattern(features_pipeline_arn), sort_keys=True),
            state="ENABLED",
        )
        self.trigger_rule_arn: str = self.trigger_rule.arn

        # Messages name the feature build and its data, so the queue is encrypted with a CMK.
        # EventBridge needs kms:GenerateDataKey and kms:Decrypt on that key (a key-policy
        # statement).
        self.dead_letter_queue = aws.SqsQueue(
            self,
            "trigger-dead-letter-queue",
            name=f"{name}-dlq",
            kms_master_key_id=ml_key.key_arn,
            kms_data_key_reuse_period_seconds=300,
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
        )
        self.dead_letter_queue_arn: str = self.dead_letter_queue.arn
        aws.SqsQueuePolicy(
            self,
            "trigger-dead-letter-queue-policy",
            queue_url=self.dead_letter_queue.url,
            policy=policy_document(
                *dead_letter_queue_statements(self.dead_letter_queue.arn, self.trigger_rule.arn)
            ),
        )

        events_role = aws.IamRole(
            self,
            "trigger-role",
            name=name,
            description=f"EventBridge starts {config.pipeline_name} and nothing else",
            assume_role_policy=assume_role_policy("events.amazonaws.com", config.account_id),
        )
        aws.IamRolePolicy(
            self,
            "trigger-policy",
            name="start-this-pipeline-only",
            role=events_role.id,
            policy=policy_document(
                statement(
                    "StartThisPipelineOnly",
                    effect="Allow",
                    actions="sagemaker:StartPipelineExecution",
                    resources=self.pipeline.arn,
                )
            ),
        )
        parameters = [
            aws.CloudwatchEventTargetSagemakerPipelineTargetPipelineParameterListStruct(
                name=parameter, value=path
            )
            for parameter, path in TRIGGER_PARAMETER_PATHS.items()
        ]
        parameters.append(
            aws.CloudwatchEventTargetSagemakerPipelineTargetPipelineParameterListStruct(
                name=INPUT_DATA_URI, value=config.offline_store_uri
            )
        )
        self.trigger_target = aws.CloudwatchEventTarget(
            self,
            "trigger-target",
            rule=self.trigger_rule.name,
            target_id="start-pipeline",
            arn=self.pipeline.arn,
            role_arn=events_role.arn,
            sagemaker_pipeline_target=aws.CloudwatchEventTargetSagemakerPipelineTarget(
                pipeline_parameter_list=parameters
            ),
            retry_policy=aws.CloudwatchEventTargetRetryPolicy(
                maximum_event_age_in_seconds=TRIGGER_MAX_EVENT_AGE_SECONDS,
                maximum_retry_attempts=TRIGGER_MAX_RETRY_ATTEMPTS,
            ),
            dead_letter_config=aws.CloudwatchEventTargetDeadLetterConfig(
                arn=self.dead_letter_queue.arn
            ),
        )


def dead_letter_queue_statements(queue_arn: str, rule_arn: str) -> list[Statement]:
    """Only EventBridge, and only for this rule, may send; and only over TLS."""
    return [
        statement(
            "EventBridgeTriggerRuleSendsFailedEvents",
            effect="Allow",
            principal={"Service": "events.amazonaws.com"},
            actions="sqs:SendMessage",
            resources=queue_arn,
            condition={"ArnEquals": {"aws:SourceArn": rule_arn}},
        ),
        deny_insecure_transport(actions="sqs:*", resources=queue_arn),
    ]


def execution_role_statements(
    config: PipelineConfig,
    *,
    role_arn: str,
    ml_key_arn: str,
    feature_key_arn: str,
    artifacts_bucket_arn: str,
    offline_bucket_arn: str,
    vpc_id: str,
) -> list[Statement]:
    """What the pipeline and its jobs may do: this pipeline's data, keys, jobs and group only."""
    region, account = config.region, config.account_id
    sagemaker = f"arn:aws:sagemaker:{region}:{account}"
    offline_prefix = config.offline_store_prefix
    artifacts_prefix = config.artifacts_prefix
    group = config.model_package_group_name
    job_arns = [
        f"{sagemaker}:processing-job/{PIPELINE_JOB_NAME_PREFIX}*",
        f"{sagemaker}:training-job/{PIPELINE_JOB_NAME_PREFIX}*",
    ]
    log_groups = [
        f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/{kind}Jobs{suffix}"
        for kind in ("Processing", "Training")
        for suffix in ("", ":*")
    ]
    repositories = sorted(
        {ecr_repository_arn(image) for image in (config.processing_image, config.training_image)}
    )
    return [
        statement(
            "ReadFeatureStoreOfflinePrefix",
            effect="Allow",
            actions="s3:GetObject",
            resources=f"{offline_bucket_arn}/{offline_prefix}*",
        ),
        statement(
            "ListFeatureStoreOfflinePrefix",
            effect="Allow",
            actions="s3:ListBucket",
            resources=offline_bucket_arn,
            condition={"StringLike": {"s3:prefix": [f"{offline_prefix}*"]}},
        ),
        # The feature spec the feature-build jobs read: which groups, where their records are.
        statement(
            "ReadTheFeatureSpec",
            effect="Allow",
            actions="s3:GetObject",
            resources=f"{artifacts_bucket_arn}/{config.feature_spec_key}",
        ),
        statement(
            "ReadWriteThisPipelinesArtifacts",
            effect="Allow",
            actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            resources=f"{artifacts_bucket_arn}/{artifacts_prefix}*",
        ),
        statement(
            "ListThisPipelinesArtifacts",
            effect="Allow",
            actions="s3:ListBucket",
            resources=artifacts_bucket_arn,
            condition={"StringLike": {"s3:prefix": [f"{artifacts_prefix}*"]}},
        ),
        statement(
            "UseMlArtifactsKey",
            effect="Allow",
            actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*"],
            resources=ml_key_arn,
        ),
        # SageMaker encrypts the jobs' EBS volumes through a grant made with the caller's
        # permissions; the grant may only go to an AWS service acting for this role.
        statement(
            "GrantMlArtifactsKeyToJobVolumes",
            effect="Allow",
            actions="kms:CreateGrant",
            resources=ml_key_arn,
            condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        statement(
            "DecryptFeatureStoreThroughS3Only",
            effect="Allow",
            actions=["kms:Decrypt", "kms:DescribeKey"],
            resources=feature_key_arn,
            condition={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        ),
        statement(
            "RunThisPipelinesJobs",
            effect="Allow",
            actions=[
                *JOB_CREATION_ACTIONS,
                "sagemaker:AddTags",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:ListTags",
                "sagemaker:StopProcessingJob",
                "sagemaker:StopTrainingJob",
            ],
            resources=job_arns,
        ),
        *sagemaker_job_guards(JOB_CREATION_ACTIONS),
        statement(
            "RegisterPendingModelPackagesInItsGroupOnly",
            effect="Allow",
            actions="sagemaker:CreateModelPackage",
            resources=[
                f"{sagemaker}:model-package-group/{group}",
                f"{sagemaker}:model-package/{group}/*",
            ],
            condition={"StringEquals": {"sagemaker:ModelApprovalStatus": MODEL_APPROVAL_STATUS}},
        ),
        statement(
            "InspectItsModelPackages",
            effect="Allow",
            actions=[
                "sagemaker:AddTags",
                "sagemaker:DescribeModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:ListTags",
            ],
            resources=[
                f"{sagemaker}:model-package-group/{group}",
                f"{sagemaker}:model-package/{group}/*",
            ],
        ),
        # Approval is a person's decision in the registry, never the pipeline's.
        statement(
            "NeverApproveModels",
            effect="Deny",
            actions="sagemaker:UpdateModelPackage",
            resources="*",
        ),
        pass_role_to_sagemaker_only(role_arn),
        ecr_pull("PullJobImages", repositories),
        ecr_authorization_token("EcrLogin"),
        *sagemaker_job_telemetry(log_groups),
        describe_vpc("DescribeVpcForJobs"),
        # SageMaker attaches VPC jobs through ENIs it creates with this role. The ENI ids are
        # unknown in advance, so the resource is "*", confined to this VPC by condition.
        statement(
            "ManageJobNetworkInterfacesInThisVpc",
            effect="Allow",
            actions=list(SAGEMAKER_INTERFACE_ACTIONS),
            resources="*",
            condition={"ArnEquals": {"ec2:Vpc": f"arn:aws:ec2:{region}:{account}:vpc/{vpc_id}"}},
        ),
    ]
