"""Deployer function (runtime/deployer/handler.py) against moto: an approved registry version is
served by the endpoint, secure by construction, with the monitor on its own baseline and the
previous versions kept for rollback; anything not approved, or not traceable to the platform's
artifacts and a digest-pinned image, changes nothing."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

from runtime.deployer import handler
from runtime.rollback import handler as rollback
from tests.model_versions import lineage
from tests.sagemaker_emulation import UpdateEndpointEmulation, emulated_sagemaker

ACCOUNT = "123456789012"
REGION = "eu-west-1"
GROUP = "sepsis-risk"
ENDPOINT = "phi-ml-unit-sepsis-risk"
SCHEDULE = f"{ENDPOINT}-data-quality"
BUCKET = "acme-unit-ml-artifacts"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
REPOSITORY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/phi-ml/serving"
IMAGE = f"{REPOSITORY}@sha256:{'ab' * 32}"
MONITOR_REPOSITORY = "sagemaker-model-monitor-analyzer"
ENVIRONMENT = {
    "ENDPOINT_NAME": ENDPOINT,
    "MODEL_PACKAGE_GROUP": GROUP,
    "MODEL_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{ENDPOINT}-model",
    "MODEL_SUBNET_IDS": "subnet-a,subnet-b",
    "MODEL_SECURITY_GROUP_IDS": "sg-model",
    "KMS_KEY_ARN": KEY,
    "ARTIFACTS_BUCKET": BUCKET,
    "SERVING_REPOSITORY": REPOSITORY,
    "CAPTURE_S3_URI": f"s3://{BUCKET}/data-capture/sepsis-risk/",
    "CAPTURE_SAMPLING_PERCENT": "25",
    "INSTANCE_TYPE": "ml.c7g.xlarge",
    "INSTANCE_COUNT": "1",
    "RETAINED_VERSIONS": "2",
    "MONITORING_SCHEDULE_NAME": SCHEDULE,
    "MONITORING_SCHEDULE_EXPRESSION": "cron(0 * ? * * *)",
    "MONITOR_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{ENDPOINT}-monitor",
    "MONITOR_IMAGE": f"468650794304.dkr.ecr.{REGION}.amazonaws.com/{MONITOR_REPOSITORY}",
    "MONITOR_INSTANCE_TYPE": "ml.m5.xlarge",
    "MONITOR_VOLUME_SIZE_GB": "20",
    "MONITOR_MAX_RUNTIME_SECONDS": "1800",
    "MONITOR_REPORTS_S3_URI": f"s3://{BUCKET}/monitoring/sepsis-risk/reports/",
    "MONITOR_SUBNET_IDS": "subnet-a,subnet-b",
    "MONITOR_SECURITY_GROUP_IDS": "sg-monitor",
}


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> Iterator[UpdateEndpointEmulation]:
    for emulation in emulated_sagemaker(monkeypatch, region=REGION, environment=ENVIRONMENT):
        sagemaker().create_model_package_group(ModelPackageGroupName=GROUP)
        yield emulation


def sagemaker() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def package_arguments(**changes: Any) -> dict[str, Any]:
    arguments = lineage(ACCOUNT, REGION)
    runs = f"s3://{BUCKET}/pipelines/unit/exec-1"
    arguments["InferenceSpecification"]["Containers"] = [
        {"Image": IMAGE, "ModelDataUrl": f"{runs}/train/job/output/model.tar.gz"}
    ]
    baseline = arguments["DriftCheckBaselines"]["ModelDataQuality"]
    baseline["Constraints"]["S3Uri"] = f"{runs}/baseline/baseline/constraints.json"
    baseline["Statistics"]["S3Uri"] = f"{runs}/baseline/baseline/statistics.json"
    arguments.update(changes)
    return arguments


def register(*, approve: str | None = "Approved", **changes: Any) -> str:
    arn = str(
        sagemaker().create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="PendingManualApproval",
            **package_arguments(**changes),
        )["ModelPackageArn"]
    )
    if approve:
        sagemaker().update_model_package(ModelPackageArn=arn, ModelApprovalStatus=approve)
    return arn


def approval_event(arn: str, status: str = "Approved", group: str = GROUP) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "approval-1",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "region": REGION,
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageArn": arn,
            "ModelPackageVersion": int(arn.rsplit("/", 1)[1]),
            "ModelApprovalStatus": status,
        },
    }


def deploy(arn: str) -> dict[str, Any]:
    return handler.handle(approval_event(arn), None)


def snapshot() -> dict[str, Any]:
    """Everything the deployer could create or change."""
    client = sagemaker()
    endpoints = client.list_endpoints()["Endpoints"]
    schedules = client.list_monitoring_schedules()["MonitoringScheduleSummaries"]
    return {
        "models": sorted(m["ModelName"] for m in client.list_models()["Models"]),
        "configs": sorted(
            c["EndpointConfigName"] for c in client.list_endpoint_configs()["EndpointConfigs"]
        ),
        "jobs": sorted(
            j["MonitoringJobDefinitionName"]
            for j in client.list_data_quality_job_definitions()["JobDefinitionSummaries"]
        ),
        "endpoints": sorted((e["EndpointName"], e.get("EndpointStatus")) for e in endpoints),
        "serving": [
            client.describe_endpoint(EndpointName=e["EndpointName"])["EndpointConfigName"]
            for e in endpoints
        ],
        "schedules": sorted(
            (s["MonitoringScheduleName"], s["MonitoringJobDefinitionName"]) for s in schedules
        ),
    }


# --- approval deploys ------------------------------------------------------------------------


def test_the_first_approval_creates_what_serves_secure_by_construction(
    updates: UpdateEndpointEmulation,
) -> None:
    arn = register()
    outcome = deploy(arn)
    assert outcome == {
        "status": "deployed",
        "endpoint": ENDPOINT,
        "version": 1,
        "model_package": arn,
        "endpoint_config": f"{ENDPOINT}-v1",
        "previous_endpoint_config": None,
        "deleted": [],
    }
    client = sagemaker()
    model = client.describe_model(ModelName=f"{ENDPOINT}-v1")
    container = package_arguments()["InferenceSpecification"]["Containers"][0]
    assert model["PrimaryContainer"] == {
        "Image": IMAGE,
        "ModelDataUrl": container["ModelDataUrl"],
        "Mode": "SingleModel",
    }
    assert model["ExecutionRoleArn"] == ENVIRONMENT["MODEL_EXECUTION_ROLE_ARN"]
    assert model["EnableNetworkIsolation"] is True
    assert model["VpcConfig"] == {
        "Subnets": ["subnet-a", "subnet-b"],
        "SecurityGroupIds": ["sg-model"],
    }
    config = client.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-v1")
    assert config["KmsKeyId"] == KEY
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == "primary" and variant["ModelName"] == f"{ENDPOINT}-v1"
    assert variant["InitialInstanceCount"] == 1 and variant["InitialVariantWeight"] == 1
    assert variant["InstanceType"] == "ml.c7g.xlarge"
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 25,
        "DestinationS3Uri": ENVIRONMENT["CAPTURE_S3_URI"],
        "KmsKeyId": KEY,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json", "application/jsonlines"],
        },
    }
    job = client.describe_data_quality_job_definition(JobDefinitionName=f"{ENDPOINT}-dq-v1")
    assert job["NetworkConfig"] == {
        "EnableInterContainerTrafficEncryption": True,
        "EnableNetworkIsolation": True,
        "VpcConfig": {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-monitor"]},
    }
    assert job["JobResources"]["ClusterConfig"] == {
        "InstanceCount": 1,
        "InstanceType": "ml.m5.xlarge",
        "VolumeSizeInGB": 20,
        "VolumeKmsKeyId": KEY,
    }
    assert job["DataQualityJobOutputConfig"] == {
        "MonitoringOutputs": [
            {
                "S3Output": {
                    "S3Uri": ENVIRONMENT["MONITOR_REPORTS_S3_URI"],
                    "LocalPath": "/opt/ml/processing/output",
                    "S3UploadMode": "EndOfJob",
                }
            }
        ],
        "KmsKeyId": KEY,
    }
    assert job["DataQualityJobInput"] == {
        "EndpointInput": {
            "EndpointName": ENDPOINT,
            "LocalPath": "/opt/ml/processing/input/endpoint",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        }
    }
    baseline = package_arguments()["DriftCheckBaselines"]["ModelDataQuality"]
    assert job["DataQualityBaselineConfig"] == {
        "ConstraintsResource": {"S3Uri": baseline["Constraints"]["S3Uri"]},
        "StatisticsResource": {"S3Uri": baseline["Statistics"]["S3Uri"]},
    }
    assert job["RoleArn"] == ENVIRONMENT["MONITOR_ROLE_ARN"]
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800}
    assert job["DataQualityAppSpecification"] == {"ImageUri": ENVIRONMENT["MONITOR_IMAGE"]}
    assert snapshot()["serving"] == [f"{ENDPOINT}-v1"]
    schedule = client.describe_monitoring_schedule(MonitoringScheduleName=SCHEDULE)
    assert schedule["MonitoringScheduleConfig"] == {
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
        "MonitoringJobDefinitionName": f"{ENDPOINT}-dq-v1",
        "MonitoringType": "DataQuality",
    }
    for resource in (model["ModelArn"], config["EndpointConfigArn"], job["JobDefinitionArn"]):
        tags = client.list_tags(ResourceArn=resource)["Tags"]
        assert {"Key": handler.TAG_MODEL_PACKAGE, "Value": arn} in tags


def test_the_next_approval_switches_the_endpoint_and_its_monitor_and_keeps_the_first(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy(register())
    outcome = deploy(register())
    assert outcome["status"] == "deployed"
    assert outcome["previous_endpoint_config"] == f"{ENDPOINT}-v1"
    assert updates.calls == [(ENDPOINT, f"{ENDPOINT}-v2")]
    state = snapshot()
    assert state["serving"] == [f"{ENDPOINT}-v2"]
    assert state["schedules"] == [(SCHEDULE, f"{ENDPOINT}-dq-v2")]
    assert state["configs"] == [f"{ENDPOINT}-v1", f"{ENDPOINT}-v2"]


def test_rollback_returns_to_the_version_the_deployer_kept(
    updates: UpdateEndpointEmulation,
) -> None:
    """The two functions agree on the names: rollback's target is the deployer's previous."""
    deploy(register())
    deploy(register())
    target = rollback.previous_configuration(sagemaker(), ENDPOINT, f"{ENDPOINT}-v2")
    assert target == f"{ENDPOINT}-v1"


def test_versions_beyond_the_retained_ones_are_deleted_but_never_the_serving_one(
    updates: UpdateEndpointEmulation,
) -> None:
    for _ in range(3):
        deploy(register())
    state = snapshot()
    assert state["configs"] == [f"{ENDPOINT}-v2", f"{ENDPOINT}-v3"]
    assert state["models"] == [f"{ENDPOINT}-v2", f"{ENDPOINT}-v3"]
    assert state["jobs"] == [f"{ENDPOINT}-dq-v2", f"{ENDPOINT}-dq-v3"]
    assert state["serving"] == [f"{ENDPOINT}-v3"]


def test_the_twin_an_old_version_serving_after_a_rollback_is_kept(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy(register())
    deploy(register())
    sagemaker().update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-v1")
    deploy(register())
    state = snapshot()
    # v1 served until v3 replaced it: kept, as the previous one; v2 is within the newest two.
    assert f"{ENDPOINT}-v1" in state["configs"]
    assert state["serving"] == [f"{ENDPOINT}-v3"]


def test_a_repeated_approval_event_changes_nothing(updates: UpdateEndpointEmulation) -> None:
    arn = register()
    deploy(arn)
    before = snapshot()
    assert deploy(arn)["status"] == "already-deployed"
    assert snapshot() == before
    assert updates.calls == []


def test_a_busy_endpoint_is_retried_not_changed(updates: UpdateEndpointEmulation) -> None:
    deploy(register())
    arn = register()
    from moto.sagemaker.models import sagemaker_backends  # noqa: PLC0415

    sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT].endpoint_status = "Updating"
    with pytest.raises(handler.EndpointBusyError):
        deploy(arn)
    assert snapshot()["serving"] == [f"{ENDPOINT}-v1"]


# --- nothing else deploys --------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Rejected", None], ids=["rejected", "pending"])
def test_a_version_that_is_not_approved_is_refused_and_changes_nothing(
    updates: UpdateEndpointEmulation, status: str | None
) -> None:
    arn = register(approve=status)
    before = snapshot()
    # Even an event claiming approval: the deployer reads the status again.
    outcome = handler.handle(approval_event(arn, status="Approved"), None)
    assert outcome["status"] == "refused"
    assert "approval status" in outcome["reason"]
    assert snapshot() == before


def tagged_image(arguments: dict[str, Any]) -> None:
    arguments["InferenceSpecification"]["Containers"][0]["Image"] = f"{REPOSITORY}:1.4.2"


def other_repository(arguments: dict[str, Any]) -> None:
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/elsewhere@sha256:{'cd' * 32}"
    arguments["InferenceSpecification"]["Containers"][0]["Image"] = image


def archive_elsewhere(arguments: dict[str, Any]) -> None:
    arguments["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] = (
        "s3://someone-elses-bucket/model.tar.gz"
    )


def no_baseline(arguments: dict[str, Any]) -> None:
    del arguments["DriftCheckBaselines"]


def no_statistics(arguments: dict[str, Any]) -> None:
    del arguments["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]


def baseline_elsewhere(arguments: dict[str, Any]) -> None:
    baseline = arguments["DriftCheckBaselines"]["ModelDataQuality"]
    baseline["Constraints"]["S3Uri"] = "s3://someone-elses-bucket/baseline/constraints.json"


def two_containers(arguments: dict[str, Any]) -> None:
    containers = arguments["InferenceSpecification"]["Containers"]
    containers.append(copy.deepcopy(containers[0]))


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        (tagged_image, "not pinned by @sha256"),
        (other_repository, "is not from"),
        (archive_elsewhere, "is not in"),
        (no_baseline, "nothing to compare with"),
        (no_statistics, "Statistics.S3Uri None is missing"),
        (baseline_elsewhere, "Constraints.S3Uri 's3://someone-elses-bucket/"),
        (two_containers, "2 containers"),
    ],
    ids=[
        "tag",
        "other-repository",
        "archive-elsewhere",
        "no-baseline",
        "no-statistics",
        "baseline-elsewhere",
        "two-containers",
    ],
)
def test_an_approved_package_that_is_not_the_platforms_is_refused(
    updates: UpdateEndpointEmulation, defect: Any, reason: str
) -> None:
    arguments = package_arguments()
    defect(arguments)
    arn = str(
        sagemaker().create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved", **arguments
        )["ModelPackageArn"]
    )
    before = snapshot()
    outcome = deploy(arn)
    assert outcome["status"] == "refused" and reason in outcome["reason"], outcome
    assert snapshot() == before


def test_an_event_of_another_group_is_ignored(updates: UpdateEndpointEmulation) -> None:
    arn = register()
    other = arn.replace(f"/{GROUP}/", "/other-model/")
    assert handler.handle(approval_event(other, group="other-model"), None)["status"] == "ignored"
    assert snapshot()["endpoints"] == []


@pytest.mark.parametrize(
    "event",
    [
        "not an object",
        {"source": "custom.app", "detail-type": "SageMaker Model Package State Change"},
        {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change"},
        {
            "source": "aws.sagemaker",
            "detail-type": "SageMaker Model Package State Change",
            "detail": {"ModelPackageArn": "arn:aws:sagemaker:eu-west-1:1:model-package/x"},
        },
    ],
    ids=["not-an-object", "other-source", "no-detail", "unversioned-arn"],
)
def test_a_malformed_event_is_rejected(updates: UpdateEndpointEmulation, event: Any) -> None:
    assert handler.handle(event, None)["status"] == "rejected"
    assert snapshot()["endpoints"] == []


def test_a_function_missing_settings_changes_nothing(
    updates: UpdateEndpointEmulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KMS_KEY_ARN")
    monkeypatch.setenv("RETAINED_VERSIONS", "two")
    outcome = deploy(register())
    assert outcome["status"] == "misconfigured"
    assert outcome["problems"] == [
        "KMS_KEY_ARN is not set",
        "RETAINED_VERSIONS='two' is not a whole number",
    ]
    assert snapshot()["endpoints"] == []


def test_one_retained_version_is_refused_rollback_needs_an_earlier_one(
    updates: UpdateEndpointEmulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETAINED_VERSIONS", "1")
    assert deploy(register())["status"] == "misconfigured"


# --- what else the deployer guarantees -------------------------------------------------------


def json_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "phi_ml.deployer"]


def fail_once(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """The next `action` request fails like a throttled one; later ones go through."""
    original = getattr(SageMakerResponse, action)
    failed: list[bool] = []

    def failing(response: SageMakerResponse) -> Any:
        if not failed:
            failed.append(True)
            raise ValidationError(message="Rate exceeded (emulated)")
        return original(response)

    monkeypatch.setattr(SageMakerResponse, action, failing)


@pytest.mark.parametrize("status", ["Rejected", None], ids=["rejected", "pending"])
def test_a_version_not_approved_leaves_the_serving_one_alone_and_says_so(
    updates: UpdateEndpointEmulation, caplog: pytest.LogCaptureFixture, status: str | None
) -> None:
    deploy(register())
    arn = register(approve=status)
    before = snapshot()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="phi_ml.deployer"):
        outcome = handler.handle(approval_event(arn, status="Approved"), None)
    assert outcome["status"] == "refused"
    assert snapshot() == before and updates.calls == []
    (entry,) = json_logs(caplog)
    assert entry["level"] == "ERROR"
    assert entry["message"] == "not approved: refused, endpoint unchanged"
    assert entry["approval"] == (status or "PendingManualApproval")


def test_the_twin_the_same_version_once_approved_replaces_the_serving_one(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy(register())
    arn = register(approve=None)
    sagemaker().update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    assert deploy(arn)["status"] == "deployed"
    assert snapshot()["serving"] == [f"{ENDPOINT}-v2"]


def test_the_twin_a_digest_with_a_tag_beside_it_from_the_serving_repository_deploys(
    updates: UpdateEndpointEmulation,
) -> None:
    arguments = package_arguments()
    image = f"{REPOSITORY}:1.4.2@sha256:{'ab' * 32}"
    arguments["InferenceSpecification"]["Containers"][0]["Image"] = image
    assert deploy(register(**arguments))["status"] == "deployed"
    model = sagemaker().describe_model(ModelName=f"{ENDPOINT}-v1")
    assert model["PrimaryContainer"]["Image"] == image


def test_the_package_container_environment_is_passed_to_the_model(
    updates: UpdateEndpointEmulation,
) -> None:
    arguments = package_arguments()
    arguments["InferenceSpecification"]["Containers"][0]["Environment"] = {"THRESHOLD": "0.4"}
    deploy(register(**arguments))
    model = sagemaker().describe_model(ModelName=f"{ENDPOINT}-v1")
    assert model["PrimaryContainer"]["Environment"] == {"THRESHOLD": "0.4"}


@pytest.mark.parametrize(("length", "status"), [(57, "deployed"), (58, "refused")])
def test_names_longer_than_sagemaker_allows_are_refused(
    updates: UpdateEndpointEmulation, monkeypatch: pytest.MonkeyPatch, length: int, status: str
) -> None:
    """`<endpoint>-dq-v1` is the longest name: 57 + 6 characters fit SageMaker's 63."""
    endpoint = ("phi-ml-unit-" + "x" * 64)[:length]
    monkeypatch.setenv("ENDPOINT_NAME", endpoint)
    outcome = deploy(register())
    assert outcome["status"] == status
    if status == "refused":
        assert outcome["reason"].startswith("names longer than SageMaker's 63 characters")
        assert snapshot() == {
            "models": [],
            "configs": [],
            "jobs": [],
            "endpoints": [],
            "serving": [],
            "schedules": [],
        }


def test_an_unknown_package_is_rejected(updates: UpdateEndpointEmulation) -> None:
    arn = register()
    missing = arn.rsplit("/", 1)[0] + "/7"
    outcome = handler.handle(approval_event(missing), None)
    assert outcome["status"] == "rejected" and outcome["reason"] == "unknown model package"
    assert snapshot()["models"] == []


def test_a_resource_of_the_versions_name_that_another_made_is_never_served(
    updates: UpdateEndpointEmulation,
) -> None:
    """A model called `<endpoint>-v1` that this package did not create (an operator's, say)
    is not reused: it could run any image."""
    sagemaker().create_model(
        ModelName=f"{ENDPOINT}-v1",
        ExecutionRoleArn=ENVIRONMENT["MODEL_EXECUTION_ROLE_ARN"],
        PrimaryContainer={"Image": f"{REPOSITORY}:latest"},
    )
    before = snapshot()
    outcome = deploy(register())
    assert outcome["status"] == "refused"
    assert "is not this package's" in outcome["reason"]
    assert snapshot() == before


def test_the_twin_a_retry_reuses_what_this_package_created(
    updates: UpdateEndpointEmulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = register()
    fail_once(monkeypatch, "create_endpoint_config")
    with pytest.raises(ClientError, match="Rate exceeded"):
        deploy(arn)
    assert snapshot()["models"] == [f"{ENDPOINT}-v1"] and snapshot()["endpoints"] == []
    assert deploy(arn)["status"] == "deployed"  # Lambda's asynchronous retry
    assert snapshot()["serving"] == [f"{ENDPOINT}-v1"]


def test_a_retry_after_the_switch_finishes_the_deployment_and_keeps_what_it_left(
    updates: UpdateEndpointEmulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serving v1 after a rollback, v3 is approved; the schedule update fails after the
    switch. The retry repoints the monitor and still keeps v1, which v3 replaced, although
    v1 is not among the newest two."""
    deploy(register())
    deploy(register())
    sagemaker().update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-v1")
    arn = register()
    fail_once(monkeypatch, "update_monitoring_schedule")
    with pytest.raises(ClientError, match="Rate exceeded"):
        deploy(arn)
    assert snapshot()["serving"] == [f"{ENDPOINT}-v3"]
    assert snapshot()["schedules"] == [(SCHEDULE, f"{ENDPOINT}-dq-v2")]
    outcome = deploy(arn)
    assert outcome["status"] == "deployed"
    assert outcome["previous_endpoint_config"] == f"{ENDPOINT}-v1"
    assert outcome["deleted"] == []
    state = snapshot()
    assert state["schedules"] == [(SCHEDULE, f"{ENDPOINT}-dq-v3")]
    assert state["configs"] == [f"{ENDPOINT}-v1", f"{ENDPOINT}-v2", f"{ENDPOINT}-v3"]
    assert deploy(arn)["status"] == "already-deployed"


def test_the_oldest_version_beyond_retention_is_deleted_whole(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy(register())
    deploy(register())
    outcome = deploy(register())
    assert outcome["deleted"] == [
        f"endpoint-config/{ENDPOINT}-v1",
        f"model/{ENDPOINT}-v1",
        f"data-quality-job-definition/{ENDPOINT}-dq-v1",
    ]


def test_the_twin_with_three_retained_nothing_is_deleted(
    updates: UpdateEndpointEmulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETAINED_VERSIONS", "3")
    for _ in range(3):
        outcome = deploy(register())
    assert outcome["deleted"] == []
    assert snapshot()["configs"] == [f"{ENDPOINT}-v{n}" for n in (1, 2, 3)]


def test_versions_of_other_endpoints_are_never_deleted(updates: UpdateEndpointEmulation) -> None:
    """Names that merely start like this endpoint's versions belong to other endpoints."""
    client = sagemaker()
    for other in (f"{ENDPOINT}-canary-v1", f"{ENDPOINT}x-v1"):
        client.create_model(
            ModelName=other,
            ExecutionRoleArn=ENVIRONMENT["MODEL_EXECUTION_ROLE_ARN"],
            PrimaryContainer={"Image": IMAGE},
        )
        client.create_endpoint_config(
            EndpointConfigName=other,
            ProductionVariants=[
                {
                    "VariantName": "primary",
                    "ModelName": other,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    for _ in range(3):
        deploy(register())
    state = snapshot()
    assert {f"{ENDPOINT}-canary-v1", f"{ENDPOINT}x-v1"} <= set(state["configs"])
    assert {f"{ENDPOINT}-canary-v1", f"{ENDPOINT}x-v1"} <= set(state["models"])
    assert f"{ENDPOINT}-v1" not in state["configs"]


@pytest.mark.parametrize("status", ["Creating", "Updating", "SystemUpdating", "Failed"])
def test_an_endpoint_not_in_service_is_retried_later_and_nothing_is_created(
    updates: UpdateEndpointEmulation, status: str
) -> None:
    deploy(register())
    arn = register()
    sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT].endpoint_status = status
    before = snapshot()
    with pytest.raises(handler.EndpointBusyError):
        deploy(arn)
    assert snapshot() == before and updates.calls == []


def test_a_violation_after_two_deployments_rolls_back_to_the_first(
    updates: UpdateEndpointEmulation,
) -> None:
    """End to end with the rollback function: it returns to the deployer's previous version."""
    deploy(register())
    deploy(register())
    job = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/model-monitoring-1"
    schedule = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/{SCHEDULE}"
    violation = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Processing Job State Change",
        "detail": {
            "ProcessingJobArn": job,
            "ProcessingJobStatus": "Completed",
            "ExitMessage": "CompletedWithViolations: Job completed successfully with 3 violations.",
            "MonitoringScheduleArn": schedule,
            "Environment": {"sagemaker_endpoint_name": ENDPOINT},
        },
    }
    outcome = rollback.handle(violation, None)
    assert outcome["status"] == "rolled-back"
    assert outcome["rolled_back_to"] == f"{ENDPOINT}-v1"
    assert snapshot()["serving"] == [f"{ENDPOINT}-v1"]


def test_the_twin_after_one_deployment_rollback_has_no_target(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy(register())
    assert rollback.previous_configuration(sagemaker(), ENDPOINT, f"{ENDPOINT}-v1") is None


def cut(path: tuple[str, ...], value: Any = None) -> dict[str, Any]:
    """A well-formed approval event with one field removed (value None) or replaced."""
    event = approval_event(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/1")
    holder: Any = event
    for key in path[:-1]:
        holder = holder[key]
    if value is None:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return event


MALFORMED = {
    "other-detail-type": cut(("detail-type",), "SageMaker Model State Change"),
    "detail-not-object": cut(("detail",), "Approved"),
    "no-arn": cut(("detail", "ModelPackageArn")),
    "no-group": cut(("detail", "ModelPackageGroupName")),
    "no-version": cut(("detail", "ModelPackageVersion")),
    "version-not-a-number": cut(("detail", "ModelPackageVersion"), "1"),
    "version-a-boolean": cut(("detail", "ModelPackageVersion"), True),
    "no-approval-status": cut(("detail", "ModelApprovalStatus")),
    "arn-of-another-version": cut(("detail", "ModelPackageVersion"), 2),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_event_is_logged_and_changes_nothing(
    updates: UpdateEndpointEmulation, caplog: pytest.LogCaptureFixture, event: Any
) -> None:
    register()
    before = snapshot()
    with caplog.at_level(logging.INFO, logger="phi_ml.deployer"):
        outcome = handler.handle(event, None)
    assert outcome["status"] == "rejected"
    assert snapshot() == before
    (entry,) = json_logs(caplog)
    assert entry["level"] == "ERROR" and entry["message"].startswith("malformed event")
    assert entry["reason"] == outcome["reason"]


def test_the_twin_the_well_formed_original_deploys(updates: UpdateEndpointEmulation) -> None:
    register()
    event = approval_event(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/1")
    assert handler.handle(event, None)["status"] == "deployed"


def test_every_missing_setting_is_reported_at_once(
    updates: UpdateEndpointEmulation,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for variable in ENVIRONMENT:
        monkeypatch.delenv(variable)
    with caplog.at_level(logging.INFO, logger="phi_ml.deployer"):
        outcome = deploy(register())
    assert outcome["status"] == "misconfigured"
    assert outcome["problems"] == [f"{v} is not set" for v in handler.Settings.variables()]
    assert set(handler.Settings.variables()) == set(ENVIRONMENT)
    (entry,) = json_logs(caplog)
    assert entry["level"] == "ERROR"
    assert entry["message"] == "function is not configured: nothing changed"
    assert snapshot()["models"] == []


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("CAPTURE_SAMPLING_PERCENT", "0", "is not from 1 to 100"),
        ("CAPTURE_SAMPLING_PERCENT", "101", "is not from 1 to 100"),
        ("INSTANCE_COUNT", "0", "is not at least 1"),
        ("KMS_KEY_ARN", "alias/phi-ml", "is not an kms ARN"),
        ("MODEL_EXECUTION_ROLE_ARN", "model-role", "is not an iam ARN"),
        ("CAPTURE_S3_URI", "acme-unit-ml-artifacts/data-capture/", "is not an s3://"),
        ("MODEL_SUBNET_IDS", "subnet-a,,subnet-b", "is not a comma-separated list"),
        ("SERVING_REPOSITORY", f"{REPOSITORY}:latest", "no tag, no digest"),
        ("ARTIFACTS_BUCKET", "Acme_Bucket", "is not an S3 bucket name"),
    ],
)
def test_a_malformed_setting_is_named(
    updates: UpdateEndpointEmulation,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    problem: str,
) -> None:
    monkeypatch.setenv(variable, value)
    outcome = deploy(register())
    assert outcome["status"] == "misconfigured"
    (reported,) = outcome["problems"]
    assert reported.startswith(f"{variable}={value!r} ") and problem in reported
    assert snapshot()["models"] == []


def test_the_twin_the_complete_settings_are_parsed() -> None:
    settings = handler.Settings.from_environment(ENVIRONMENT)
    assert isinstance(settings, handler.Settings)
    assert settings.model_subnet_ids == ("subnet-a", "subnet-b")
    assert settings.retained_versions == 2 and settings.capture_sampling_percent == 25
    assert settings.monitor_max_runtime_seconds == 1800
