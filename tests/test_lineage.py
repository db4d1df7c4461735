"""`make lineage` (tools/lineage.py) against moto in-process: a registry of the dev environment's
group with versions registered as the register step leaves them (manifest and metrics in S3,
the feature build and training pipelines' executions with their parameters, a training job),
approved and deployed by the real deployer function, one rolled back by the real rollback
function; the lineage names each link with its values, and every way the chain can break is a
finding or a one-line error, never an invented value.

moto 5.2.5's UpdateModelPackage replaces CustomerMetadataProperties with what it is given (real
SageMaker merges), so every update here passes the version's whole metadata again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.responses import ActionResult
from moto.sagemaker.responses import SageMakerResponse

from environments.layer_configs import layer_configs
from environments.loader import ENVIRONMENTS_DIR, load_environment
from environments.schema import WorkloadEnvironment
from ml.dataset_manifest import DatasetManifest, InputFile, ManifestFeature, Split
from modules import feature_build, pipelines
from modules.feature_build import EXPORT_FOLDER_PARAMETER
from modules.pipelines import FEATURE_BUILD_EXECUTION, FEATURES_AS_OF_PARAMETER, SourceRevision
from requirements.model_lineage import (
    DATASET_MANIFEST_SHA256,
    DATASET_MANIFEST_URI,
    FEATURE_BUILD_JOB,
    FEATURES_AS_OF,
    MODEL_ARCHIVE_SHA256,
    PROCESSING_IMAGE,
    ROLLED_BACK_AT,
    ROLLED_BACK_ENDPOINT,
    ROLLED_BACK_TO,
    TRAINING_IMAGE,
)
from runtime.deployer import handler as deployer
from runtime.rollback import handler as rollback
from tests.sagemaker_emulation import emulated_sagemaker
from tools import lineage

ENVIRONMENT = load_environment(ENVIRONMENTS_DIR / "dev" / "environment.yaml")
assert isinstance(ENVIRONMENT, WorkloadEnvironment)
CONFIGS = layer_configs(ENVIRONMENT)
ACCOUNT, REGION = ENVIRONMENT.account_id, ENVIRONMENT.region
GROUP = CONFIGS.pipeline.model_package_group_name
ENDPOINT = CONFIGS.inference.name
SCHEDULE = f"{ENDPOINT}-data-quality"
ARTIFACTS = CONFIGS.storage.bucket_name("ml-artifacts")
RAW = CONFIGS.storage.bucket_name("raw")
SERVING_IMAGE = CONFIGS.pipeline.serving_image
ROLE = f"arn:aws:iam::{ACCOUNT}:role/phi-ml-dev-pipeline"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
EXPORT_FOLDER = "2026-06-30/"
AS_OF = "2026-06-30T00:00:00Z"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HYPERPARAMETERS = {"objective": "binary:logistic", "num_round": "50", "max_depth": "4"}
APPROVAL_COMMENT = "Clinical safety board CSB-12: AUC above threshold on the 2026-06 cohort"
READ_PREFIXES = ("Describe", "List", "Get")


def settings() -> deployer.Settings:
    inference = CONFIGS.inference
    return deployer.Settings(
        endpoint_name=ENDPOINT,
        model_package_group=GROUP,
        model_execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{inference.model_role_name}",
        model_subnet_ids=("subnet-a", "subnet-b"),
        model_security_group_ids=("sg-model",),
        kms_key_arn=KEY,
        artifacts_bucket=ARTIFACTS,
        serving_repository=str(deployer.image_repository(SERVING_IMAGE)),
        capture_s3_uri=f"s3://{ARTIFACTS}/{inference.capture_prefix}",
        capture_sampling_percent=inference.data_capture_sampling_percent,
        instance_type=inference.endpoint_instance_type,
        instance_count=1,
        retained_versions=3,
        monitoring_schedule_name=SCHEDULE,
        monitoring_schedule_expression="cron(0 * ? * * *)",
        monitor_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{ENDPOINT}-monitor",
        monitor_image=f"156813124566.dkr.ecr.{REGION}.amazonaws.com/sagemaker-model-monitor-analyzer",
        monitor_instance_type="ml.m5.xlarge",
        monitor_volume_size_gb=20,
        monitor_max_runtime_seconds=1800,
        monitor_reports_s3_uri=f"s3://{ARTIFACTS}/monitoring/reports/",
        monitor_subnet_ids=("subnet-a", "subnet-b"),
        monitor_security_group_ids=("sg-monitor",),
    )


def sagemaker() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


@dataclass
class Version:
    arn: str
    number: int
    execution_arn: str
    manifest_uri: str
    manifest_sha256: str
    metrics_uri: str
    archive: str
    training_job: str
    metadata: dict[str, str]
    auc: float


@dataclass
class Registry:
    feature_build_execution: str
    versions: dict[int, Version]


def uri_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def put(uri: str, body: bytes) -> None:
    bucket, key = uri_parts(uri)
    s3().put_object(Bucket=bucket, Key=key, Body=body)


def manifest(rows: int = 812) -> DatasetManifest:
    return DatasetManifest(
        as_of=AS_OF,
        label="readmitted_30d",
        features=(
            ManifestFeature("length_of_stay_days", "Integral"),
            ManifestFeature("heart_rate", "Fractional"),
        ),
        split_seed=7,
        split_shares={"validation": 0.15, "test": 0.15},
        splits={
            "train": Split("train.csv", "a1" * 32, rows, 97, 590),
            "test": Split("test.csv", "b2" * 32, 170, 20, 130),
        },
        inputs=(InputFile("encounters/2026/06/part-0.parquet", "c3" * 32, 2048),),
        records={"encounters": {"read": 1204, "latest": 1100, "deleted": 4}},
        excluded={"censored": 57},
    )


def evaluation(auc: float) -> bytes:
    metrics = {
        name: {"value": value, "standard_deviation": 0.01}
        for name, value in {
            "auc": auc,
            "accuracy": 0.77,
            "f1": 0.41,
            "precision": 0.38,
            "recall": 0.45,
        }.items()
    }
    report = {
        "version": 0.0,
        "dataset": {"item_count": 170},
        "binary_classification_metrics": metrics,
    }
    return json.dumps(report).encode()


def create_pipelines() -> str:
    """Both pipelines as the stacks define them; the features pipeline run once. Returns its
    execution ARN."""
    client = sagemaker()
    features = feature_build.pipeline_definition(
        CONFIGS.feature_build,
        role_arn=ROLE,
        ml_key_arn=KEY,
        feature_key_arn=KEY,
        security_group_id="sg-jobs",
        subnet_ids=["subnet-a"],
        raw_bucket_name=RAW,
        artifacts_bucket_name=ARTIFACTS,
        offline_bucket_name=CONFIGS.storage.bucket_name("feature-offline"),
    )
    client.create_pipeline(
        PipelineName=CONFIGS.feature_build.pipeline_name,
        RoleArn=ROLE,
        PipelineDefinition=json.dumps(features),
    )
    training = pipelines.pipeline_definition(
        CONFIGS.pipeline,
        role_arn=ROLE,
        ml_key_arn=KEY,
        security_group_id="sg-jobs",
        subnet_ids=["subnet-a"],
        artifacts_bucket_name=ARTIFACTS,
        source=SourceRevision(repository="https://git.example.org/phi-ml-platform", commit=COMMIT),
    )
    client.create_pipeline(
        PipelineName=CONFIGS.pipeline.pipeline_name,
        RoleArn=ROLE,
        PipelineDefinition=json.dumps(training),
    )
    return str(
        client.start_pipeline_execution(
            PipelineName=CONFIGS.feature_build.pipeline_name,
            PipelineParameters=[{"Name": EXPORT_FOLDER_PARAMETER, "Value": EXPORT_FOLDER}],
        )["PipelineExecutionArn"]
    )


def register(
    number: int,
    feature_build_execution: str,
    *,
    trained: bool = True,
    metadata_changes: dict[str, str | None] | None = None,
) -> Version:
    """A training run as the pipeline leaves it: the execution (with its parameters), the
    manifest and evaluation report in its run folder, the training job (unless not `trained`),
    the registered version (PendingManualApproval). `metadata_changes` replace (None: drop)
    metadata keys."""
    client = sagemaker()
    execution_arn = str(
        client.start_pipeline_execution(
            PipelineName=CONFIGS.pipeline.pipeline_name,
            PipelineParameters=[
                {"Name": FEATURE_BUILD_EXECUTION, "Value": feature_build_execution},
                {"Name": FEATURES_AS_OF_PARAMETER, "Value": AS_OF},
            ],
        )["PipelineExecutionArn"]
    )
    run = f"s3://{ARTIFACTS}/{CONFIGS.pipeline.artifacts_prefix}{execution_arn.rsplit('/', 1)[1]}"
    manifest_uri = f"{run}/preprocess/dataset/manifest.json"
    manifest_bytes = manifest().to_json().encode()
    put(manifest_uri, manifest_bytes)
    auc = round(0.80 + number / 100, 2)
    metrics_uri = f"{run}/evaluate/evaluation/evaluation.json"
    put(metrics_uri, evaluation(auc))
    job = f"pipelines-{execution_arn.rsplit('/', 1)[1]}-train-{number}"
    if trained:
        client.create_training_job(
            TrainingJobName=job,
            AlgorithmSpecification={
                "TrainingImage": CONFIGS.pipeline.training_image,
                "TrainingInputMode": "File",
            },
            RoleArn=ROLE,
            HyperParameters=HYPERPARAMETERS,
            OutputDataConfig={"S3OutputPath": f"{run}/train", "KmsKeyId": KEY},
            ResourceConfig={
                "InstanceType": "ml.m5.xlarge",
                "InstanceCount": 1,
                "VolumeSizeInGB": 30,
            },
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
        )
    archive = f"{run}/train/{job}/output/model.tar.gz"
    metadata: dict[str, str | None] = {
        lineage.PIPELINE_EXECUTION_KEY: execution_arn,
        FEATURE_BUILD_JOB: feature_build_execution,
        FEATURES_AS_OF: AS_OF,
        DATASET_MANIFEST_URI: manifest_uri,
        DATASET_MANIFEST_SHA256: hashlib.sha256(manifest_bytes).hexdigest(),
        MODEL_ARCHIVE_SHA256: hashlib.sha256(f"archive {number}".encode()).hexdigest(),
        PROCESSING_IMAGE: CONFIGS.pipeline.processing_image,
        TRAINING_IMAGE: CONFIGS.pipeline.training_image,
        **(metadata_changes or {}),
    }
    kept = {key: value for key, value in metadata.items() if value is not None}
    arn = str(
        client.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelPackageDescription=f"run {execution_arn.rsplit('/', 1)[1]}",
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": SERVING_IMAGE, "ModelDataUrl": archive}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelMetrics={
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}
                }
            },
            DriftCheckBaselines={
                "ModelDataQuality": {
                    part: {
                        "ContentType": "application/json",
                        "S3Uri": f"{run}/baseline/baseline/{part.lower()}.json",
                    }
                    for part in ("Constraints", "Statistics")
                }
            },
            MetadataProperties={
                "GeneratedBy": execution_arn,
                "CommitId": COMMIT,
                "Repository": "https://git.example.org/phi-ml-platform",
            },
            CustomerMetadataProperties=kept,
        )["ModelPackageArn"]
    )
    return Version(
        arn=arn,
        number=number,
        execution_arn=execution_arn,
        manifest_uri=manifest_uri,
        manifest_sha256=str(metadata[DATASET_MANIFEST_SHA256]),
        metrics_uri=metrics_uri,
        archive=archive,
        training_job=job,
        metadata=kept,
        auc=auc,
    )


def approve_and_deploy(version: Version) -> None:
    sagemaker().update_model_package(
        ModelPackageArn=version.arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription=APPROVAL_COMMENT,
        CustomerMetadataProperties=version.metadata,
    )
    approval = deployer.Approval(package_arn=version.arn, group=GROUP, version=version.number)
    assert deployer.deploy(sagemaker(), settings(), approval)["status"] == "deployed"


def roll_back(version: Version, to: Version, *, at: str, violation: str) -> None:
    """The rollback function on a violation: the endpoint returns to `to`, and `version` is
    marked in the registry (Rejected, the reason, rolled-back-* metadata). Where the function
    does not record it in the registry itself, it is recorded here as it would; `at` is set
    either way, so the order of rollbacks is known."""
    job = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{violation}"
    result = rollback.roll_back(sagemaker(), ENDPOINT, job, schedule_name=SCHEDULE)
    assert result["status"] == "rolled-back"
    described = sagemaker().describe_model_package(ModelPackageName=version.arn)
    recorded = described.get("ModelApprovalStatus") == "Rejected"
    version.metadata = {
        **(described.get("CustomerMetadataProperties") or version.metadata),
        ROLLED_BACK_AT: at,
        ROLLED_BACK_TO: to.arn,
        ROLLED_BACK_ENDPOINT: ENDPOINT,
    }
    sagemaker().update_model_package(
        ModelPackageArn=version.arn,
        ModelApprovalStatus="Rejected",
        ApprovalDescription=(
            described["ApprovalDescription"] if recorded else f"rolled back: drift ({job})"
        ),
        CustomerMetadataProperties=version.metadata,
    )


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """v1 approved and served; v2 and v3 each deployed, then rolled back (the endpoint is back
    on v1); v4 registered, pending."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("PHI_ENVIRONMENTS_DIR", raising=False)
    for _ in emulated_sagemaker(
        monkeypatch, region=REGION, environment={"MOTO_ACCOUNT_ID": ACCOUNT}
    ):
        s3().create_bucket(Bucket=ARTIFACTS)
        sagemaker().create_model_package_group(ModelPackageGroupName=GROUP)
        features = create_pipelines()
        versions = {number: register(number, features) for number in (1, 2, 3, 4)}
        approve_and_deploy(versions[1])
        approve_and_deploy(versions[2])
        roll_back(versions[2], versions[1], at="2026-07-01T08:00:00Z", violation="monitor-0701")
        approve_and_deploy(versions[3])
        roll_back(versions[3], versions[1], at="2026-07-03T09:30:00Z", violation="monitor-0703")
        yield Registry(feature_build_execution=features, versions=versions)


def run(capsys: pytest.CaptureFixture[str], *argv: str, **options: Any) -> tuple[int, str, str]:
    code = lineage.main(list(argv), **options)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def document(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, "dev", "--format", "json", *argv)
    assert err == ""
    parsed: dict[str, Any] = json.loads(out)
    return code, parsed


# --- the chain -------------------------------------------------------------------------------


def test_the_served_version_is_traced_link_by_link(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    served = registry.versions[1]
    code, found = document(capsys)
    assert code == 0, found["findings"]
    assert found["findings"] == []
    assert found["model_package_arn"] == served.arn
    assert "served by endpoint" in found["chosen"]

    manifest_found = found["dataset_manifest"]
    assert manifest_found["uri"] == served.manifest_uri
    assert manifest_found["computed_sha256"] == manifest_found["recorded_sha256"]
    assert manifest_found["computed_sha256"] == served.manifest_sha256
    assert manifest_found["digest_matches"] is True
    assert manifest_found["as_of"] == AS_OF
    assert manifest_found["splits"]["train"] == {
        "file": "train.csv",
        "sha256": "a1" * 32,
        "rows": 812,
        "positives": 97,
        "patients": 590,
    }
    assert manifest_found["inputs"] == [
        {"path": "encounters/2026/06/part-0.parquet", "sha256": "c3" * 32, "bytes": 2048}
    ]

    build = found["feature_build"]
    assert build["arn"] == registry.feature_build_execution
    assert build["parameters"] == {EXPORT_FOLDER_PARAMETER: EXPORT_FOLDER}
    # Resolved from the run's own definition: the raw bucket's export prefix + its folder.
    assert build["fhir_export"]["uri"] == (
        f"s3://{RAW}/{CONFIGS.feature_build.export_prefix}{EXPORT_FOLDER}"
    )
    assert build["fhir_export"]["source"].startswith("the execution's pipeline definition")

    execution = found["pipeline_execution"]
    assert execution["arn"] == served.execution_arn
    assert execution["status"] == "Succeeded"
    assert execution["parameters"][FEATURE_BUILD_EXECUTION] == registry.feature_build_execution
    assert execution["parameters"][FEATURES_AS_OF_PARAMETER] == AS_OF
    # moto 5.2.5 has no ListPipelineExecutionSteps: said, by name, not invented.
    assert execution["steps"] is None
    assert "ListPipelineExecutionSteps is not available" in execution["steps_note"]
    assert found["unavailable"] == [execution["steps_note"]]

    images = found["images"]
    assert images["serving"] == [{"image": SERVING_IMAGE, "pinned_by_digest": True}]
    assert images["processing"]["image"] == CONFIGS.pipeline.processing_image
    assert images["training"]["image"] == CONFIGS.pipeline.training_image

    training = found["training"]
    assert training["model_archive"] == served.archive
    assert training["job"] == served.training_job
    assert training["job_status"] == "Completed"
    assert training["hyperparameters"] == HYPERPARAMETERS
    assert training["hyperparameters_source"].startswith("the training job")
    assert training["model_archive_sha256"] == served.metadata[MODEL_ARCHIVE_SHA256]
    assert "not recomputed" in training["model_archive_sha256_source"]

    assert found["metrics"]["uri"] == served.metrics_uri
    assert found["metrics"]["metrics"]["auc"] == {"value": served.auc, "standard_deviation": 0.01}
    assert found["metrics"]["item_count"] == 170
    baseline = found["drift_baseline"]["documents"]
    assert baseline["ModelDataQuality.Constraints"].endswith("/baseline/baseline/constraints.json")

    approval = found["approval"]
    assert approval["status"] == "Approved"
    assert approval["comment"] == APPROVAL_COMMENT
    assert approval["last_modified_by"]
    assert approval["last_modified_at"]

    endpoint = found["endpoint"]
    assert endpoint["endpoint_config"] == f"{ENDPOINT}-v1"
    assert endpoint["serves_this_version"] is True
    [variant] = endpoint["variants"]
    assert variant["model"] == f"{ENDPOINT}-v1"
    assert variant["model_package_arn"] == served.arn
    assert variant["model_package_version"] == 1
    assert variant["image"] == SERVING_IMAGE
    assert variant["model_data_url"] == served.archive


def test_the_text_form_names_the_same_links(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    served = registry.versions[1]
    code, out, err = run(capsys, "dev")
    assert (code, err) == (0, "")
    assert out.startswith(f"lineage of {served.arn}\n")
    for expected in (
        f"computed sha256: {served.manifest_sha256} (matches)",
        f"FHIR export read: s3://{RAW}/{CONFIGS.feature_build.export_prefix}{EXPORT_FOLDER}",
        "ListPipelineExecutionSteps is not available from this endpoint",
        f"training job: {served.training_job}",
        f"auc: {served.auc}",
        f"comment: {APPROVAL_COMMENT}",
        f"variant primary: model {ENDPOINT}-v1 -> {served.arn} (version 1)",
        "findings: none",
    ):
        assert expected in out


def test_every_rollback_of_the_group_is_listed_in_time_order(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2, v3 = (registry.versions[n] for n in (1, 2, 3))
    _, found = document(capsys)
    reasons = [entry.pop("reason") for entry in found["rollbacks"]]
    assert found["rollbacks"] == [
        {
            "version": 2,
            "model_package_arn": v2.arn,
            "rolled_back_at": "2026-07-01T08:00:00Z",
            "rolled_back_to": v1.arn,
            "endpoint": ENDPOINT,
            "status": "Rejected",
        },
        {
            "version": 3,
            "model_package_arn": v3.arn,
            "rolled_back_at": "2026-07-03T09:30:00Z",
            "rolled_back_to": v1.arn,
            "endpoint": ENDPOINT,
            "status": "Rejected",
        },
    ]
    # The reason is the version's ApprovalDescription: it names the violation.
    assert "monitor-0701" in reasons[0] and "monitor-0703" in reasons[1]


def test_a_version_without_rolled_back_at_is_not_listed_as_a_rollback(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    # v3 rolled back earlier than v2 now: listed first (time order, not version order), and
    # once its marker is gone it is not listed at all.
    v3 = registry.versions[3]
    v3.metadata[ROLLED_BACK_AT] = "2026-06-30T12:00:00Z"
    sagemaker().update_model_package(ModelPackageArn=v3.arn, CustomerMetadataProperties=v3.metadata)
    _, found = document(capsys)
    assert [r["version"] for r in found["rollbacks"]] == [3, 2]
    del v3.metadata[ROLLED_BACK_AT]
    sagemaker().update_model_package(ModelPackageArn=v3.arn, CustomerMetadataProperties=v3.metadata)
    _, found = document(capsys)
    assert [r["version"] for r in found["rollbacks"]] == [2]


def test_a_named_version_is_traced_by_number_or_arn(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = registry.versions[2]
    for named in ("2", v2.arn):
        code, found = document(capsys, "--package", named)
        assert code == 0, found["findings"]
        assert found["model_package_arn"] == v2.arn
        assert found["approval"]["status"] == "Rejected"
        assert "monitor-0701" in found["approval"]["comment"]
        assert found["dataset_manifest"]["computed_sha256"] == v2.manifest_sha256
        # The endpoint is back on v1: said, not confused with this version.
        assert found["endpoint"]["serves_this_version"] is False
        assert found["endpoint"]["variants"][0]["model_package_version"] == 1


def test_pipeline_steps_are_listed_where_the_endpoint_implements_the_api(
    registry: Registry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The twin of "not available": an endpoint that answers ListPipelineExecutionSteps (as
    # SageMaker does) has its steps and their jobs listed, and nothing is said missing.
    served = registry.versions[1]
    training_job = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{served.training_job}"

    def list_pipeline_execution_steps(response: SageMakerResponse) -> ActionResult:
        assert response._get_param("PipelineExecutionArn") == served.execution_arn
        started = datetime(2026, 6, 30, 1, tzinfo=UTC)
        return ActionResult(
            {
                "PipelineExecutionSteps": [
                    {
                        "StepName": "Train",
                        "StepStatus": "Succeeded",
                        "StartTime": started,
                        "EndTime": started + timedelta(minutes=12),
                        "Metadata": {"TrainingJob": {"Arn": training_job}},
                    }
                ]
            }
        )

    monkeypatch.setattr(
        SageMakerResponse,
        "list_pipeline_execution_steps",
        list_pipeline_execution_steps,
        raising=False,
    )
    code, found = document(capsys)
    assert code == 0, found["findings"]
    assert found["unavailable"] == []
    [step] = found["pipeline_execution"]["steps"]
    assert (step["step"], step["status"], step["jobs"]) == ("Train", "Succeeded", [training_job])
    assert step["started"].startswith("2026-06-30T01:00:00")


# --- failing twins ---------------------------------------------------------------------------


def test_a_manifest_whose_bytes_changed_is_a_finding(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    served = registry.versions[1]
    put(served.manifest_uri, manifest(rows=813).to_json().encode())
    code, found = document(capsys)
    assert code == 1
    section = found["dataset_manifest"]
    assert section["digest_matches"] is False
    assert section["recorded_sha256"] == served.manifest_sha256
    assert section["computed_sha256"] != served.manifest_sha256
    [finding] = found["findings"]
    assert served.manifest_sha256 in finding and section["computed_sha256"] in finding
    code, out, _ = run(capsys, "dev")
    assert code == 1
    assert "(DOES NOT MATCH)" in out


def test_missing_metadata_is_reported_missing_not_invented(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = register(
        5,
        registry.feature_build_execution,
        metadata_changes={DATASET_MANIFEST_URI: None, TRAINING_IMAGE: None},
    )
    code, found = document(capsys, "--package", str(bare.number))
    assert code == 1
    assert found["version"]["missing_metadata"] == [DATASET_MANIFEST_URI, TRAINING_IMAGE]
    for key in (DATASET_MANIFEST_URI, TRAINING_IMAGE):
        assert f"CustomerMetadataProperties['{key}'] is not recorded" in found["findings"]
    manifest_found = found["dataset_manifest"]
    assert manifest_found["uri"] is None
    assert "computed_sha256" not in manifest_found and "as_of" not in manifest_found
    assert found["images"]["training"] == {"image": None, "pinned_by_digest": False}
    # The links it does record are still followed.
    assert found["training"]["job"] == bare.training_job


def test_a_link_that_names_nothing_is_a_finding(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    features = CONFIGS.feature_build.pipeline_name
    gone = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{features}/execution/gone"
    stray = register(5, gone, trained=False)
    code, found = document(capsys, "--package", "5")
    assert code == 1
    assert found["feature_build"]["parameters"] is None
    assert any(f.startswith(f"feature build {gone}:") for f in found["findings"])
    training = found["training"]
    assert training["job"] == stray.training_job and "job_status" not in training
    # What the run asked for, labelled as such: not claimed to be the job's.
    assert training["hyperparameters"] == CONFIGS.pipeline.training_hyperparameters
    assert "could not be read" in training["hyperparameters_source"]


def test_a_served_model_that_is_not_the_versions_archive_is_a_finding(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    served = registry.versions[1]
    original = served.archive
    # The version's container as registered differs from what the endpoint's model runs.
    client = sagemaker()
    client.delete_model(ModelName=f"{ENDPOINT}-v1")
    client.create_model(
        ModelName=f"{ENDPOINT}-v1",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SERVING_IMAGE, "ModelDataUrl": f"{original}.other"},
        Tags=[{"Key": deployer.TAG_MODEL_PACKAGE, "Value": served.arn}],
    )
    code, found = document(capsys)
    assert code == 1
    [finding] = found["findings"]
    assert "ModelDataUrl" in finding and f"{original}.other" in finding


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_an_unknown_package_is_one_line_exit_2(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "dev", "--package", "99")
    assert (code, out) == (2, "")
    assert one_error_line(err) == (
        f"error: no version 99 in model package group {GROUP} (versions 1-4)"
    )
    other_group = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sepsis-risk/1"
    code, _, err = run(capsys, "dev", "--package", other_group)
    assert code == 2
    assert f"is not a version of dev's group {GROUP}" in one_error_line(err)
    code, _, err = run(capsys, "dev", "--package", "latest")
    assert code == 2
    assert "neither a model package version ARN nor a version number" in one_error_line(err)


def test_no_endpoint_and_no_package_is_one_line_exit_2(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    sagemaker().delete_endpoint(EndpointName=ENDPOINT)
    code, out, err = run(capsys, "dev")
    assert (code, out) == (2, "")
    assert f"endpoint {ENDPOINT} does not exist in dev" in one_error_line(err)
    # Its twin: a named version is traced, the endpoint said to be absent.
    code, found = document(capsys, "--package", "1")
    assert code == 0, found["findings"]
    assert found["endpoint"] == {"name": ENDPOINT, "exists": False, "serves_this_version": False}


def test_an_unknown_environment_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "nope")
    assert (code, out) == (2, "")
    assert "no such environment (known: " in one_error_line(err)
    code, _, err = run(capsys, "org")
    assert code == 2
    assert "org is the organization" in one_error_line(err)


def test_access_denied_is_one_line_exit_2(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    session = boto3.Session(region_name=REGION)

    def deny(model: Any, **_: Any) -> None:
        if model.name == "DescribeEndpoint":
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
                model.name,
            )

    session.events.register("before-call.sagemaker.*", deny)
    code, out, err = run(capsys, "dev", session=session)
    assert (code, out) == (2, "")
    assert one_error_line(err).startswith("error: access denied to DescribeEndpoint")


def test_credentials_of_another_account_are_one_line_exit_2(
    registry: Registry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "222222222222")
    code, _, err = run(capsys, "dev")
    assert code == 2
    assert f"of account 222222222222, dev is account {ACCOUNT}" in one_error_line(err)


# --- read-only -------------------------------------------------------------------------------


class WriteAttemptedError(AssertionError):
    pass


def recording_session() -> tuple[boto3.Session, list[str]]:
    """A session whose every client fails, before sending, any call but a read."""
    session = boto3.Session(region_name=REGION)
    calls: list[str] = []

    def only_reads(model: Any, **_: Any) -> None:
        calls.append(model.name)
        if not model.name.startswith(READ_PREFIXES):
            raise WriteAttemptedError(model.name)

    session.events.register("before-call.*.*", only_reads)
    return session, calls


def test_the_command_makes_read_calls_only(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    session, calls = recording_session()
    code, _, _ = run(capsys, "dev", session=session)
    assert code == 0
    assert calls and all(call.startswith(READ_PREFIXES) for call in calls)
    # Content: the two documents the version names, nothing else.
    assert calls.count("GetObject") == 2
    assert {
        "DescribeModelPackage",
        "DescribeEndpoint",
        "ListPipelineParametersForExecution",
    } <= set(calls)


def test_a_write_through_the_recording_session_fails_the_test(registry: Registry) -> None:
    session, calls = recording_session()
    with pytest.raises(WriteAttemptedError):
        session.client("sagemaker").update_model_package(
            ModelPackageArn=registry.versions[4].arn, ModelApprovalStatus="Approved"
        )
    assert calls == ["UpdateModelPackage"]
    status = sagemaker().describe_model_package(ModelPackageName=registry.versions[4].arn)
    assert status["ModelApprovalStatus"] == "PendingManualApproval"


def test_a_write_by_the_command_is_refused_before_it_is_sent(
    registry: Registry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def writes(reader: lineage.Reader, summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        reader.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
        return []

    monkeypatch.setattr(lineage, "rollbacks", writes)
    session, calls = recording_session()
    with pytest.raises(Exception, match="DeleteEndpoint"):
        lineage.main(["dev"], session=session)
    assert "DeleteEndpoint" not in calls  # the command's own guard refused it first
    assert sagemaker().describe_endpoint(EndpointName=ENDPOINT)["EndpointName"] == ENDPOINT


# --- output ----------------------------------------------------------------------------------


def test_output_file_holds_one_json_document(
    registry: Registry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "reports" / "lineage.json"
    code, out, err = run(capsys, "dev", "--format", "json", "--output", str(target))
    assert (code, err) == (0, "")
    assert out == f"lineage of {registry.versions[1].arn} written to {target}: no findings\n"
    assert json.loads(target.read_text())["model_package_arn"] == registry.versions[1].arn
