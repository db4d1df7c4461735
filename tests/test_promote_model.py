"""tools/promote_model.py: staging's approved version moves to prod by digest, in moto with two
accounts (each session holds credentials assumed into its own account), never retrained and
never reading anything but the version and the objects it names.

Every passing case has its failing twin: approved / pending or rejected; digest / tag; the
evaluated archive / a tampered one; a faithful copy / one that differs; staging -> prod / a
reversed, skipped or foreign direction; the objects the version names / one outside the run
folder; a first promotion / the second, which registers nothing.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from moto import mock_aws

from environments.layer_configs import layer_configs
from environments.loader import ENVIRONMENTS_DIR, load_environments
from environments.schema import WorkloadEnvironment
from modules.deployment import image_repository
from requirements.model_lineage import (
    DATASET_MANIFEST_SHA256,
    DATASET_MANIFEST_URI,
    FEATURE_BUILD_JOB,
    FEATURES_AS_OF,
    MODEL_ARCHIVE_SHA256,
    PROCESSING_IMAGE,
    PROMOTED_FROM,
    TRAINING_IMAGE,
)
from runtime.deployer import handler as deployer
from tools import promote_model
from tools.promote_model import PROMOTION_CHAIN, RefusedError, SourceGuard, promotion_problem

REGION = "us-east-1"


def workload(name: str) -> WorkloadEnvironment:
    [environment] = load_environments([name], ENVIRONMENTS_DIR)
    assert isinstance(environment, WorkloadEnvironment)
    return environment


STAGING_ENV = workload("staging")
PROD_ENV = workload("prod")
STAGING = layer_configs(STAGING_ENV)
PROD = layer_configs(PROD_ENV)
SOURCE_BUCKET = STAGING.storage.bucket_name("ml-artifacts")
RAW_BUCKET = STAGING.storage.bucket_name("raw")
TARGET_BUCKET = PROD.storage.bucket_name("ml-artifacts")
GROUP = STAGING.pipeline.model_package_group_name
TARGET_GROUP = PROD.pipeline.model_package_group_name
PROD_REPOSITORY = image_repository(PROD.inference.inference_image)
STAGING_REPOSITORY = image_repository(STAGING.inference.inference_image)
PROD_KEY_ALIAS = f"alias/phi-ml/{PROD_ENV.name}/ml-artifacts"
# One run of staging's pipeline, laid out as its steps write it (modules/pipelines.py).
RUN = f"{STAGING.pipeline.artifacts_prefix}x7k2pq9r3m1a/"
KEYS = {
    "archive": f"{RUN}train/pipelines-x7k2pq9r3m1a-Train-Zb81/output/model.tar.gz",
    "report": f"{RUN}evaluate/evaluation/evaluation.json",
    "constraints": f"{RUN}baseline/baseline/constraints.json",
    "statistics": f"{RUN}baseline/baseline/statistics.json",
}
PROMOTED_PREFIX = f"{PROD.pipeline.artifacts_prefix}promoted-from-staging/"


def model_archive() -> bytes:
    payload = b'{"learner": "a booster"}'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        member = tarfile.TarInfo("xgboost-model")
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))
    return buffer.getvalue()


ARCHIVE = model_archive()
DOCUMENTS = {
    "report": json.dumps({"binary_classification_metrics": {"auc": {"value": 0.87}}}).encode(),
    "constraints": json.dumps({"version": 0.0, "features": [{"name": "age"}]}).encode(),
    "statistics": json.dumps({"version": 0.0, "dataset": {"item_count": 300}}).encode(),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    staging: boto3.Session
    prod: boto3.Session
    digest: str
    key_arn: str
    versions: dict[str, str] = field(default_factory=dict)  # name -> source package ARN

    def client(self, session: boto3.Session, service: str) -> Any:
        return session.client(service, region_name=REGION)


def assumed(account: str) -> boto3.Session:
    """A session whose credentials moto knows as the account's (STS AssumeRole)."""
    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/phi-ml-data-engineer", RoleSessionName="promote"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )


def register(
    world: World,
    name: str,
    *,
    status: str = "Approved",
    image: str | None = None,
    archive_sha256: str | None = None,
    constraints_uri: str | None = None,
) -> str:
    """A staging version as the register step writes it, then decided by a person."""
    sagemaker = world.client(world.staging, "sagemaker")
    uri = {kind: f"s3://{SOURCE_BUCKET}/{key}" for kind, key in KEYS.items()}
    metadata = {
        DATASET_MANIFEST_URI: f"s3://{SOURCE_BUCKET}/{RUN}preprocess/dataset/manifest.json",
        DATASET_MANIFEST_SHA256: "1" * 64,
        FEATURES_AS_OF: "2026-06-30T00:00:00Z",
        FEATURE_BUILD_JOB: f"arn:aws:sagemaker:{REGION}:222222222222:pipeline/f/execution/a",
        PROCESSING_IMAGE: f"222222222222.dkr.ecr.{REGION}.amazonaws.com/m@sha256:{'2' * 64}",
        TRAINING_IMAGE: f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.0-5",
        MODEL_ARCHIVE_SHA256: archive_sha256 or sha256(ARCHIVE),
    }
    arn: str = sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelPackageDescription=f"phi-ml-staging-readmission run {name}",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [
                {
                    "Image": image or f"{STAGING_REPOSITORY}@{world.digest}",
                    "ModelDataUrl": uri["archive"],
                }
            ],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": uri["report"]}
            }
        },
        DriftCheckBaselines={
            "ModelDataQuality": {
                "Constraints": {
                    "ContentType": "application/json",
                    "S3Uri": constraints_uri or uri["constraints"],
                },
                "Statistics": {"ContentType": "application/json", "S3Uri": uri["statistics"]},
            }
        },
        MetadataProperties={
            "GeneratedBy": f"arn:aws:sagemaker:{REGION}:222222222222:pipeline/p/execution/{name}",
            "Repository": "https://github.com/acme-health/phi-ml-platform",
            "CommitId": "0123456789abcdef0123456789abcdef01234567",
        },
        CustomerMetadataProperties=metadata,
    )["ModelPackageArn"]
    if status != "PendingManualApproval":
        sagemaker.update_model_package(
            ModelPackageArn=arn,
            ModelApprovalStatus=status,
            ApprovalDescription="reviewed",
            # moto 5.2.5 drops the metadata an update does not repeat; AWS keeps it.
            CustomerMetadataProperties=metadata,
        )
    world.versions[name] = arn
    return arn


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in [n for n in os.environ if n.startswith(("AWS_", "MOTO_", "PHI_"))]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        staging, prod = assumed(STAGING_ENV.account_id), assumed(PROD_ENV.account_id)
        source_s3 = staging.client("s3", region_name=REGION)
        for bucket in (SOURCE_BUCKET, RAW_BUCKET):
            source_s3.create_bucket(Bucket=bucket)
        source_s3.put_object(Bucket=SOURCE_BUCKET, Key=KEYS["archive"], Body=ARCHIVE)
        for kind, body in DOCUMENTS.items():
            source_s3.put_object(
                Bucket=SOURCE_BUCKET, Key=KEYS[kind], Body=body, ContentType="application/json"
            )
        # What a promotion must never read: the training split and raw PHI.
        source_s3.put_object(
            Bucket=SOURCE_BUCKET, Key=f"{RUN}preprocess/dataset/train.csv", Body=b"x"
        )
        source_s3.put_object(Bucket=RAW_BUCKET, Key="incoming/patients.csv", Body=b"mrn,name")
        staging.client("sagemaker", region_name=REGION).create_model_package_group(
            ModelPackageGroupName=GROUP
        )

        target_s3 = prod.client("s3", region_name=REGION)
        target_s3.create_bucket(Bucket=TARGET_BUCKET)
        target_s3.put_bucket_versioning(
            Bucket=TARGET_BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        kms = prod.client("kms", region_name=REGION)
        key_arn = kms.create_key(Description="prod ML artifacts")["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=PROD_KEY_ALIAS, TargetKeyId=key_arn)
        prod.client("sagemaker", region_name=REGION).create_model_package_group(
            ModelPackageGroupName=TARGET_GROUP
        )
        ecr = prod.client("ecr", region_name=REGION)
        ecr.create_repository(repositoryName=PROD_REPOSITORY.partition("/")[2])
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": f"sha256:{'3' * 64}"},
            "layers": [],
        }
        pushed = ecr.put_image(
            repositoryName=PROD_REPOSITORY.partition("/")[2],
            imageManifest=json.dumps(manifest),
            imageTag="readmission",
        )
        digest = pushed["image"]["imageId"]["imageDigest"]
        yield World(staging=staging, prod=prod, digest=digest, key_arn=key_arn)


def run(
    capsys: pytest.CaptureFixture[str],
    world: World,
    *argv: str,
    source: boto3.Session | None = None,
    target: boto3.Session | None = None,
) -> tuple[int, str, str]:
    arguments = (
        list(argv) if argv and argv[0] == "--from" else ["--from", "staging", "--to", "prod", *argv]
    )
    code = promote_model.main(
        arguments, source_session=source or world.staging, target_session=target or world.prod
    )
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def recorded_calls(session: boto3.Session) -> list[tuple[str, str, str]]:
    """Every call the session's clients make: (service, operation, the key or package named)."""
    calls: list[tuple[str, str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        named = params.get("Key") or params.get("ModelPackageName") or ""
        calls.append((model.service_model.service_name, model.name, str(named)))

    session.events.register("before-parameter-build", record)
    return calls


def target_packages(world: World) -> list[dict[str, Any]]:
    sagemaker = world.client(world.prod, "sagemaker")
    summaries = sagemaker.list_model_packages(ModelPackageGroupName=TARGET_GROUP)
    return [
        sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"])
        for s in summaries["ModelPackageSummaryList"]
    ]


def target_object_versions(world: World) -> list[dict[str, Any]]:
    listed = world.client(world.prod, "s3").list_object_versions(
        Bucket=TARGET_BUCKET, Prefix=PROMOTED_PREFIX
    )
    return [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]


def s3_object(session: boto3.Session, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    response: dict[str, Any] = session.client("s3", region_name=REGION).get_object(
        Bucket=bucket, Key=key
    )
    response["bytes"] = response["Body"].read()
    return response


def promoted(world: World, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    register(world, "v1")
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, err) == (0, ""), err
    [package] = target_packages(world)
    assert package["ModelPackageArn"] in out
    return package


# --- what a promotion registers ----------------------------------------------------------


def test_an_approved_version_is_registered_in_prod_pending_with_the_same_digest(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    package = promoted(world, capsys)
    source = world.client(world.staging, "sagemaker").describe_model_package(
        ModelPackageName=world.versions["v1"]
    )
    # prod's reviewers decide again: a promotion never approves.
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    [container] = package["InferenceSpecification"]["Containers"]
    assert container["Image"] == f"{PROD_REPOSITORY}@{world.digest}"
    [source_container] = source["InferenceSpecification"]["Containers"]
    assert source_container["Image"].rpartition("@")[2] == container["Image"].rpartition("@")[2]
    assert package["MetadataProperties"] == source["MetadataProperties"]
    assert package["CustomerMetadataProperties"] == {
        **source["CustomerMetadataProperties"],
        PROMOTED_FROM: world.versions["v1"],
    }
    assert package["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]


def test_the_copies_are_the_evaluated_bytes_in_prods_bucket_under_prods_ml_key(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    package = promoted(world, capsys)
    [container] = package["InferenceSpecification"]["Containers"]
    quality = package["DriftCheckBaselines"]["ModelDataQuality"]
    copies = {
        "archive": container["ModelDataUrl"],
        "report": package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"],
        "constraints": quality["Constraints"]["S3Uri"],
        "statistics": quality["Statistics"]["S3Uri"],
    }
    for kind, uri in copies.items():
        assert uri.startswith(f"s3://{TARGET_BUCKET}/{PROMOTED_PREFIX}"), uri
        stored = s3_object(world.prod, uri)
        assert stored["ServerSideEncryption"] == "aws:kms"
        assert stored["SSEKMSKeyId"] == world.key_arn
        expected = ARCHIVE if kind == "archive" else DOCUMENTS[kind]
        assert sha256(stored["bytes"]) == sha256(expected)
    assert (
        sha256(s3_object(world.prod, copies["archive"])["bytes"])
        == (package["CustomerMetadataProperties"][MODEL_ARCHIVE_SHA256])
    )
    # Readable by the roles prod's layers create, which read nothing else of the bucket.
    key = {kind: uri.partition(f"{TARGET_BUCKET}/")[2] for kind, uri in copies.items()}
    assert fnmatchcase(key["archive"], f"{PROD.inference.model_archive_prefix}*/model.tar.gz")
    for kind in ("constraints", "statistics"):
        assert fnmatchcase(key[kind], PROD.monitoring.baseline_objects)
    # The training job's name stays in the archive's path (lineage names the job by it).
    assert key["archive"].endswith("/pipelines-x7k2pq9r3m1a-Train-Zb81/output/model.tar.gz")


def deployer_settings(world: World) -> deployer.Settings:
    role = f"arn:aws:iam::{PROD_ENV.account_id}:role/phi-ml-prod-readmission-model"
    return deployer.Settings(
        endpoint_name=PROD.inference.name,
        model_package_group=TARGET_GROUP,
        model_execution_role_arn=role,
        model_subnet_ids=("subnet-1",),
        model_security_group_ids=("sg-1",),
        kms_key_arn=world.key_arn,
        artifacts_bucket=TARGET_BUCKET,
        serving_repository=PROD_REPOSITORY,
        capture_s3_uri=f"s3://{TARGET_BUCKET}/data-capture/readmission/",
        capture_sampling_percent=10,
        instance_type="ml.c7g.xlarge",
        instance_count=2,
        retained_versions=3,
        monitoring_schedule_name="phi-ml-prod-readmission-data-quality",
        monitoring_schedule_expression="cron(0 * ? * * *)",
        monitor_role_arn=role,
        monitor_image="156813124566.dkr.ecr.us-east-1.amazonaws.com/analyzer:latest",
        monitor_instance_type="ml.m5.xlarge",
        monitor_volume_size_gb=20,
        monitor_max_runtime_seconds=1800,
        monitor_reports_s3_uri=f"s3://{TARGET_BUCKET}/monitoring/readmission/reports/",
        monitor_subnet_ids=("subnet-1",),
        monitor_security_group_ids=("sg-1",),
    )


def test_prods_deployer_accepts_the_promoted_package_and_refuses_the_source_one(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    package = promoted(world, capsys)
    settings = deployer_settings(world)
    approval = deployer.Approval(package["ModelPackageArn"], TARGET_GROUP, 1)
    container, baseline = deployer.checked_package(settings, approval, package)
    assert container["ModelDataUrl"].startswith(f"s3://{TARGET_BUCKET}/")
    assert baseline["Statistics"]["S3Uri"].startswith(f"s3://{TARGET_BUCKET}/")
    # The twin: staging's own package could not serve in prod (another repository and bucket).
    source = world.client(world.staging, "sagemaker").describe_model_package(
        ModelPackageName=world.versions["v1"]
    )
    with pytest.raises(deployer.RefusedError):
        deployer.checked_package(
            settings, deployer.Approval(source["ModelPackageArn"], GROUP, 1), source
        )


# --- what a promotion reads ----------------------------------------------------------------


def test_the_source_calls_are_the_version_and_the_objects_it_names_only(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = register(world, "v1")
    calls = recorded_calls(world.staging)
    code, _, err = run(capsys, world, "--package", arn)
    assert (code, err) == (0, "")
    assert sorted(calls) == sorted(
        [
            ("sagemaker", "DescribeModelPackage", arn),
            *[("s3", "GetObject", key) for key in KEYS.values()],
        ]
    )


@pytest.mark.parametrize(
    "elsewhere",
    [
        f"s3://{RAW_BUCKET}/incoming/patients.csv",  # raw PHI
        f"s3://{SOURCE_BUCKET}/{RUN}preprocess/dataset/train.csv",  # the training split
        f"s3://{SOURCE_BUCKET}/{RUN}baseline/baseline/statistics.json",  # not constraints
    ],
)
def test_a_version_naming_an_object_outside_its_run_folder_is_refused_before_any_read(
    world: World, capsys: pytest.CaptureFixture[str], elsewhere: str
) -> None:
    arn = register(world, "v1", constraints_uri=elsewhere)
    calls = recorded_calls(world.staging)
    code, out, err = run(capsys, world, "--package", arn)
    assert (code, out) == (1, "")
    line = one_line(err)
    assert line.startswith("refused: DriftCheckBaselines.ModelDataQuality.Constraints")
    assert calls == [("sagemaker", "DescribeModelPackage", arn)]
    assert target_packages(world) == []
    assert target_object_versions(world) == []


def test_the_source_guard_refuses_any_other_call_before_it_is_sent(world: World) -> None:
    guard = SourceGuard(
        "arn:aws:sagemaker:us-east-1:222222222222:model-package/readmission-risk/1",
        frozenset({(SOURCE_BUCKET, KEYS["report"])}),
    )
    s3 = guard.install(world.client(world.staging, "s3"))
    assert s3.get_object(Bucket=SOURCE_BUCKET, Key=KEYS["report"])["Body"].read()
    forbidden: list[Callable[[], Any]] = [
        lambda: s3.get_object(Bucket=SOURCE_BUCKET, Key=f"{RUN}preprocess/dataset/train.csv"),
        lambda: s3.get_object(Bucket=RAW_BUCKET, Key="incoming/patients.csv"),
        lambda: s3.list_objects_v2(Bucket=SOURCE_BUCKET),
        lambda: s3.put_object(Bucket=SOURCE_BUCKET, Key=KEYS["report"], Body=b"{}"),
    ]
    for call in forbidden:
        with pytest.raises(RefusedError, match="reads only the version and the objects"):
            call()
    sagemaker = guard.install(world.client(world.staging, "sagemaker"))
    with pytest.raises(RefusedError):
        sagemaker.list_model_packages(ModelPackageGroupName=GROUP)


# --- refusals: nothing registered, nothing copied ------------------------------------------


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_a_version_not_approved_is_refused(
    world: World, capsys: pytest.CaptureFixture[str], status: str
) -> None:
    register(world, "v1", status=status)
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, out) == (1, "")
    assert one_line(err) == (
        f"refused: {world.versions['v1']} is {status}, not Approved: only a version staging's "
        "reviewers approved is promoted"
    )
    assert target_packages(world) == []
    assert target_object_versions(world) == []


def test_an_image_by_tag_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    register(world, "v1", image=f"{STAGING_REPOSITORY}:readmission")
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, out) == (1, "")
    assert "is not pinned by @sha256: digest" in one_line(err)
    assert target_packages(world) == []
    assert target_object_versions(world) == []


def test_an_image_prods_repository_lacks_is_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    register(world, "v1", image=f"{STAGING_REPOSITORY}@sha256:{'0' * 64}")
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, out) == (1, "")
    assert f"{PROD_REPOSITORY} holds no image sha256:{'0' * 64}" in one_line(err)
    assert target_packages(world) == []
    assert target_object_versions(world) == []


def test_a_tampered_archive_is_refused_and_nothing_is_copied_or_registered(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    register(world, "v1")
    # The archive was replaced after Evaluate hashed it: not the evaluated bytes.
    world.client(world.staging, "s3").put_object(
        Bucket=SOURCE_BUCKET, Key=KEYS["archive"], Body=ARCHIVE + b"tampered"
    )
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, out) == (1, "")
    line = one_line(err)
    assert f"hashes to {sha256(ARCHIVE + b'tampered')}" in line
    assert f"records {MODEL_ARCHIVE_SHA256} {sha256(ARCHIVE)}" in line
    assert target_packages(world) == []
    assert target_object_versions(world) == []


def test_a_copy_that_differs_from_what_was_read_is_removed_with_every_other_copy(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    register(world, "v1")

    def corrupt_in_transit(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("/statistics.json"):  # the last of the four copies
            params["Body"] = b'{"corrupted": true}'

    world.prod.events.register("before-parameter-build.s3.PutObject", corrupt_in_transit)
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, out) == (1, "")
    line = one_line(err)
    assert "the drift baseline statistics copy" in line
    assert "copies removed, nothing registered" in line
    assert target_packages(world) == []
    assert target_object_versions(world) == []


def test_a_version_without_a_recorded_archive_digest_is_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    register(world, "v1", archive_sha256="not-a-digest")
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, out) == (1, "")
    assert f"records no {MODEL_ARCHIVE_SHA256}" in one_line(err)
    assert target_packages(world) == []


# --- direction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "says"),
    [
        ("prod", "staging", "prod -> staging reverses the promotion path dev -> staging -> prod"),
        ("staging", "dev", "staging -> dev reverses the promotion path"),
        ("dev", "prod", "dev -> prod skips staging on the promotion path"),
        ("staging", "eu-research", "eu-research is not on the promotion path"),
        ("eu-research", "prod", "eu-research is not on the promotion path"),
        ("staging", "staging", "staging -> staging: a version is promoted to the next"),
    ],
)
def test_a_promotion_off_the_path_is_refused_before_any_call(
    world: World, capsys: pytest.CaptureFixture[str], source: str, target: str, says: str
) -> None:
    register(world, "v1")
    calls = [recorded_calls(world.staging), recorded_calls(world.prod)]
    code, out, err = run(capsys, world, "--from", source, "--to", target, "--package", "1")
    assert (code, out) == (1, "")
    assert one_line(err).startswith(f"refused: {says}")
    assert calls == [[], []]


def test_each_step_of_the_path_is_allowed_and_only_those() -> None:
    every = [workload(name) for name in ("dev", "staging", "prod", "eu-research")]
    allowed = {(a.name, b.name) for a in every for b in every if promotion_problem(a, b) is None}
    assert allowed == set(itertools.pairwise(PROMOTION_CHAIN))


def test_the_environment_files_must_grant_prod_the_promotion_reads() -> None:
    registry = STAGING_ENV.ml.registry.model_copy(update={"production_account_id": "555555555555"})
    staging = STAGING_ENV.model_copy(
        update={"ml": STAGING_ENV.ml.model_copy(update={"registry": registry})}
    )
    assert promotion_problem(STAGING_ENV, PROD_ENV) is None
    problem = promotion_problem(staging, PROD_ENV)
    assert problem is not None and "grants promotion reads to account 555555555555" in problem


# --- idempotency ---------------------------------------------------------------------------


def test_promoting_again_reports_the_existing_package_and_registers_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    first = promoted(world, capsys)
    copies = target_object_versions(world)
    assert len(copies) == 4
    calls = recorded_calls(world.staging)
    code, out, err = run(capsys, world, "--package", world.versions["v1"])
    assert (code, err) == (0, "")
    assert out == (
        f"already promoted: staging {world.versions['v1']} is prod {first['ModelPackageArn']} "
        "(PendingManualApproval); nothing copied or registered\n"
    )
    assert [p["ModelPackageArn"] for p in target_packages(world)] == [first["ModelPackageArn"]]
    assert target_object_versions(world) == copies
    # The second run read the version only, no object.
    assert calls == [("sagemaker", "DescribeModelPackage", world.versions["v1"])]


def test_a_second_version_is_promoted_beside_the_first(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    promoted(world, capsys)
    second = register(world, "v2")
    code, _, err = run(capsys, world, "--package", "2")
    assert (code, err) == (0, "")
    assert sorted(
        p["CustomerMetadataProperties"][PROMOTED_FROM] for p in target_packages(world)
    ) == (sorted([world.versions["v1"], second]))


# --- cannot run as asked: exit 2 -----------------------------------------------------------


def test_target_credentials_of_another_account_are_one_line_exit_2(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    register(world, "v1")
    code, out, err = run(capsys, world, "--package", "1", target=world.staging)
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "error: the target credentials are of account 222222222222, prod is account "
        "333333333333: use credentials of that account (--target-profile)"
    )
    assert target_packages(world) == []


@pytest.mark.parametrize(
    ("package", "says"),
    [
        ("latest", "--package 'latest' is neither a model package version ARN nor a version"),
        (
            "arn:aws:sagemaker:us-east-1:111111111111:model-package/readmission-risk/1",
            "is not a version of staging's group readmission-risk",
        ),
        ("9", "no model package arn:aws:sagemaker:us-east-1:222222222222:model-package/"),
    ],
)
def test_a_package_that_is_not_a_staging_version_is_one_line_exit_2(
    world: World, capsys: pytest.CaptureFixture[str], package: str, says: str
) -> None:
    register(world, "v1")
    code, out, err = run(capsys, world, "--package", package)
    assert (code, out) == (2, "")
    assert says in one_line(err)
    assert target_packages(world) == []


def test_an_unknown_environment_is_one_line_exit_2(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, world, "--from", "qa", "--to", "prod", "--package", "1")
    assert (code, out) == (2, "")
    assert "no such environment" in one_line(err)


# --- registration ------------------------------------------------------------------------


def test_an_answer_lost_after_registration_keeps_the_package_and_its_copies(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    register(world, "v1")

    def lose_the_answer(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com")

    world.prod.events.register("after-call.sagemaker.CreateModelPackage", lose_the_answer)
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, err) == (0, "")
    [package] = target_packages(world)
    assert out.startswith(f"promoted staging {world.versions['v1']} -> prod ")
    assert package["ModelPackageArn"] in out
    assert len(target_object_versions(world)) == 4
    settings = deployer_settings(world)
    approval = deployer.Approval(package["ModelPackageArn"], TARGET_GROUP, 1)
    deployer.checked_package(settings, approval, package)


def test_a_registration_that_fails_removes_the_copies(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    register(world, "v1")

    def refuse(model: Any, **_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "group is being deleted"}},
            model.name,
        )

    world.prod.events.register("before-call.sagemaker.CreateModelPackage", refuse)
    code, out, err = run(capsys, world, "--package", "1")
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "error: prod (account 333333333333, us-east-1): CreateModelPackage failed "
        "(ValidationException: group is being deleted)"
    )
    assert target_packages(world) == []
    assert target_object_versions(world) == []
