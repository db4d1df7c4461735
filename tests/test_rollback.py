"""Rollback function (runtime/rollback/handler.py) against moto: a violation returns the endpoint
to its previous configuration once, and nothing else ever changes the endpoint."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.sagemaker.models import sagemaker_backends

from runtime.rollback import handler
from tests.sagemaker_emulation import UpdateEndpointEmulation, emulated_sagemaker

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ENDPOINT = "phi-ml-unit-sepsis-risk"
SCHEDULE = f"{ENDPOINT}-data-quality"
SCHEDULE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/{SCHEDULE}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{ENDPOINT}-model"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/phi-ml/sepsis:1"


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> Iterator[UpdateEndpointEmulation]:
    yield from emulated_sagemaker(
        monkeypatch,
        region=REGION,
        environment={"ENDPOINT_NAME": ENDPOINT, "MONITORING_SCHEDULE_NAME": SCHEDULE},
    )


def sagemaker() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def deploy(*versions: str, serving: str | None = None, endpoint: str = ENDPOINT) -> None:
    """Endpoint configurations `<endpoint>-<version>` created in order; the endpoint serves
    `serving` (default: the last)."""
    client = sagemaker()
    for version in versions:
        client.create_model(
            ModelName=f"{endpoint}-{version}",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE},
        )
        client.create_endpoint_config(
            EndpointConfigName=f"{endpoint}-{version}",
            ProductionVariants=[
                {
                    "VariantName": "primary",
                    "ModelName": f"{endpoint}-{version}",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    client.create_endpoint(
        EndpointName=endpoint, EndpointConfigName=f"{endpoint}-{serving or versions[-1]}"
    )


def serving(endpoint: str = ENDPOINT) -> str:
    return str(sagemaker().describe_endpoint(EndpointName=endpoint)["EndpointConfigName"])


def endpoint_tags(endpoint: str = ENDPOINT) -> dict[str, str]:
    arn = sagemaker().describe_endpoint(EndpointName=endpoint)["EndpointArn"]
    return {t["Key"]: t["Value"] for t in sagemaker().list_tags(ResourceArn=arn)["Tags"]}


def state(endpoint: str = ENDPOINT) -> tuple[str, dict[str, str]]:
    """What a handler call could change: the serving configuration and the endpoint's tags."""
    return serving(endpoint), endpoint_tags(endpoint)


def violation_event(
    job: str = "model-monitoring-202611280400-0a1b2c3d",
    *,
    exit_message: str = "CompletedWithViolations: Job completed successfully with 3 violations.",
    schedule_arn: str = SCHEDULE_ARN,
    endpoint: str = ENDPOINT,
    event_id: str = "7bf73129-1428-4cd3-a780-95db273d1602",
) -> dict[str, Any]:
    """A "SageMaker Processing Job State Change" event of a monitoring execution, as
    EventBridge delivers it (detail = DescribeProcessingJob of the monitoring job)."""
    job_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{job}"
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "SageMaker Processing Job State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": "2026-11-28T04:20:00Z",
        "region": REGION,
        "resources": [job_arn],
        "detail": {
            "ProcessingJobName": job,
            "ProcessingJobArn": job_arn,
            "ProcessingJobStatus": "Completed",
            "ExitMessage": exit_message,
            "MonitoringScheduleArn": schedule_arn,
            "Environment": {
                "sagemaker_endpoint_name": endpoint,
                "sagemaker_monitoring_schedule_name": schedule_arn.rsplit("/", 1)[-1],
            },
        },
    }


def json_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "phi_ml.rollback"]


# --- the rollback ----------------------------------------------------------------------------


def test_violation_returns_the_endpoint_to_the_previous_configuration(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy("v1", "v2")
    outcome = handler.handle(violation_event(), None)
    assert outcome["status"] == "rolled-back"
    assert serving() == f"{ENDPOINT}-v1"
    assert updates.calls == [(ENDPOINT, f"{ENDPOINT}-v1")]
    violation = violation_event()["detail"]["ProcessingJobArn"]
    assert endpoint_tags() == {
        handler.TAG_VIOLATION: violation,
        handler.TAG_ROLLED_BACK_FROM: f"{ENDPOINT}-v2",
        handler.TAG_ROLLED_BACK_TO: f"{ENDPOINT}-v1",
    }


def test_clean_monitoring_run_changes_nothing(updates: UpdateEndpointEmulation) -> None:
    """Twin: the same event without violations leaves v2 serving."""
    deploy("v1", "v2")
    before = state()
    clean = violation_event(
        exit_message="Completed: Job completed successfully with no violations."
    )
    assert handler.handle(clean, None)["status"] == "ignored"
    assert state() == before and updates.calls == []


def test_repeated_violation_event_changes_nothing_more(updates: UpdateEndpointEmulation) -> None:
    deploy("v0", "v1", "v2")
    handler.handle(violation_event(), None)
    after_first = state()
    # EventBridge may deliver the same state change again, under another event id.
    again = handler.handle(violation_event(event_id="another-delivery"), None)
    assert again["status"] == "already-handled"
    assert state() == after_first
    assert updates.calls == [(ENDPOINT, f"{ENDPOINT}-v1")]


def test_a_new_violation_rolls_back_one_step_further(updates: UpdateEndpointEmulation) -> None:
    """Twin of the repeat: idempotency keys on the violation, not on "a rollback happened"."""
    deploy("v0", "v1", "v2")
    handler.handle(violation_event("model-monitoring-202611280400-first"), None)
    outcome = handler.handle(violation_event("model-monitoring-202611280500-second"), None)
    assert outcome["status"] == "rolled-back"
    assert serving() == f"{ENDPOINT}-v0"
    assert updates.calls == [(ENDPOINT, f"{ENDPOINT}-v1"), (ENDPOINT, f"{ENDPOINT}-v0")]


def test_a_configuration_rolled_back_from_is_never_chosen_again(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy("v1", "v2")
    handler.handle(violation_event("model-monitoring-202611280400-first"), None)
    deploy_next = sagemaker()
    deploy_next.create_endpoint_config(
        EndpointConfigName=f"{ENDPOINT}-v3",
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": f"{ENDPOINT}-v2",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    deploy_next.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-v3")
    outcome = handler.handle(violation_event("model-monitoring-202611280600-third"), None)
    assert outcome["rolled_back_to"] == f"{ENDPOINT}-v1"  # not v2, which drifted before


def test_a_retry_after_a_failed_switch_finishes_it_instead_of_going_further(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy("v0", "v1", "v2")
    updates.fail_next = True
    with pytest.raises(Exception, match="Rate exceeded"):
        handler.handle(violation_event(), None)
    assert serving() == f"{ENDPOINT}-v2"  # recorded, not switched
    outcome = handler.handle(violation_event(), None)  # Lambda's asynchronous retry
    assert outcome["status"] == "rolled-back"
    assert serving() == f"{ENDPOINT}-v1"
    assert updates.calls == [(ENDPOINT, f"{ENDPOINT}-v1")]


def test_a_busy_endpoint_is_retried_later(updates: UpdateEndpointEmulation) -> None:
    deploy("v1", "v2")
    sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT].endpoint_status = "Updating"
    before = state()
    with pytest.raises(handler.EndpointBusyError):
        handler.handle(violation_event(), None)
    assert state() == before and updates.calls == []


# --- what changes nothing --------------------------------------------------------------------


def without(path: tuple[str, ...]) -> dict[str, Any]:
    event = violation_event()
    holder: Any = event
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return event


def replaced(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    event = violation_event()
    holder: Any = event
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return event


MALFORMED = {
    "not-an-object": ["aws.sagemaker"],
    "empty": {},
    "other-source": replaced(("source",), "aws.ec2"),
    "other-detail-type": replaced(("detail-type",), "SageMaker Training Job State Change"),
    "no-detail": without(("detail",)),
    "detail-not-object": replaced(("detail",), "CompletedWithViolations"),
    "no-job-arn": without(("detail", "ProcessingJobArn")),
    "job-arn-not-an-arn": replaced(("detail", "ProcessingJobArn"), "model-monitoring-1"),
    "no-schedule-arn": without(("detail", "MonitoringScheduleArn")),
    "no-exit-message": without(("detail", "ExitMessage")),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_event_is_logged_and_changes_nothing(
    updates: UpdateEndpointEmulation, caplog: pytest.LogCaptureFixture, event: Any
) -> None:
    deploy("v1", "v2")
    before = state()
    with caplog.at_level(logging.INFO, logger="phi_ml.rollback"):
        outcome = handler.handle(event, None)
    assert outcome["status"] == "rejected"
    assert state() == before and updates.calls == []
    (entry,) = json_logs(caplog)
    assert entry["level"] == "ERROR" and entry["message"].startswith("malformed event")
    assert entry["reason"] == outcome["reason"]


def test_the_well_formed_original_of_the_malformed_events_is_acted_on(
    updates: UpdateEndpointEmulation,
) -> None:
    """Twin: the event the malformed ones were cut from does roll back."""
    deploy("v1", "v2")
    assert handler.handle(violation_event(), None)["status"] == "rolled-back"
    assert serving() == f"{ENDPOINT}-v1"


OTHER_ENDPOINT = "phi-ml-unit-readmission"


@pytest.mark.parametrize(
    "event",
    [
        violation_event(endpoint=OTHER_ENDPOINT),
        violation_event(
            schedule_arn=SCHEDULE_ARN.replace(SCHEDULE, f"{OTHER_ENDPOINT}-data-quality"),
            endpoint=OTHER_ENDPOINT,
        ),
        # Another schedule watching this same endpoint (an ad-hoc one, say) is not the
        # governed one: only the layer's own schedule may trigger a rollback.
        violation_event(schedule_arn=SCHEDULE_ARN.replace(SCHEDULE, f"{ENDPOINT}-ad-hoc")),
    ],
    ids=["other-endpoint", "other-endpoints-schedule", "other-schedule-same-endpoint"],
)
def test_event_for_another_endpoint_changes_nothing(
    updates: UpdateEndpointEmulation, caplog: pytest.LogCaptureFixture, event: dict[str, Any]
) -> None:
    deploy("v1", "v2")
    deploy("v1", "v2", endpoint=OTHER_ENDPOINT)
    before = (state(), state(OTHER_ENDPOINT))
    with caplog.at_level(logging.INFO, logger="phi_ml.rollback"):
        assert handler.handle(event, None)["status"] == "ignored"
    assert (state(), state(OTHER_ENDPOINT)) == before and updates.calls == []
    assert [e["level"] for e in json_logs(caplog)] == ["ERROR"]


def test_event_for_this_endpoint_with_another_present_touches_only_this_one(
    updates: UpdateEndpointEmulation,
) -> None:
    """Twin: with both endpoints deployed, this endpoint's violation rolls back this one only."""
    deploy("v1", "v2")
    deploy("v1", "v2", endpoint=OTHER_ENDPOINT)
    other_before = state(OTHER_ENDPOINT)
    assert handler.handle(violation_event(), None)["status"] == "rolled-back"
    assert serving() == f"{ENDPOINT}-v1" and state(OTHER_ENDPOINT) == other_before


def test_unknown_endpoint_is_logged_and_changes_nothing(
    updates: UpdateEndpointEmulation,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deploy("v1", "v2")
    before = state()
    monkeypatch.setenv("ENDPOINT_NAME", "phi-ml-unit-deleted")
    event = violation_event(endpoint="phi-ml-unit-deleted")
    with caplog.at_level(logging.INFO, logger="phi_ml.rollback"):
        outcome = handler.handle(event, None)
    assert outcome == {
        "status": "rejected",
        "reason": "unknown endpoint",
        "endpoint": "phi-ml-unit-deleted",
        "violation": event["detail"]["ProcessingJobArn"],
    }
    assert state() == before and updates.calls == []
    assert json_logs(caplog)[-1]["message"].startswith("unknown endpoint")


def test_only_one_configuration_means_nothing_to_roll_back_and_is_logged(
    updates: UpdateEndpointEmulation, caplog: pytest.LogCaptureFixture
) -> None:
    deploy("v1")
    before = state()
    with caplog.at_level(logging.INFO, logger="phi_ml.rollback"):
        outcome = handler.handle(violation_event(), None)
    assert outcome["status"] == "nothing-to-roll-back"
    assert state() == before and updates.calls == []
    (entry,) = json_logs(caplog)
    assert entry["level"] == "ERROR" and "no earlier configuration" in entry["message"]
    assert entry["current"] == f"{ENDPOINT}-v1"


def test_configurations_of_other_endpoints_are_not_in_the_lineage(
    updates: UpdateEndpointEmulation,
) -> None:
    """A configuration whose name merely contains the endpoint's name (another endpoint
    "<name>-canary" for instance) is never a rollback target."""
    deploy("v1", endpoint=f"{ENDPOINT}x")  # "phi-ml-unit-sepsis-riskx-v1": no dash after name
    deploy("v2")
    assert handler.handle(violation_event(), None)["status"] == "nothing-to-roll-back"
    assert serving() == f"{ENDPOINT}-v2"


def test_unconfigured_function_changes_nothing(
    updates: UpdateEndpointEmulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy("v1", "v2")
    before = state()
    monkeypatch.delenv("ENDPOINT_NAME")
    assert handler.handle(violation_event(), None)["status"] == "misconfigured"
    assert state() == before and updates.calls == []


# --- the monitor follows the version that serves ----------------------------------------------


def monitor_versions(*versions: int, watching: int) -> None:
    """Data-quality job definitions as the deployer names them, and the schedule on one."""
    client = sagemaker()
    for version in versions:
        client.create_data_quality_job_definition(
            JobDefinitionName=f"{ENDPOINT}-dq-v{version}",
            DataQualityAppSpecification={"ImageUri": IMAGE},
            DataQualityJobInput={
                "EndpointInput": {"EndpointName": ENDPOINT, "LocalPath": "/opt/ml/processing/in"}
            },
            DataQualityJobOutputConfig={
                "MonitoringOutputs": [
                    {"S3Output": {"S3Uri": "s3://b/r/", "LocalPath": "/opt/ml/processing/out"}}
                ]
            },
            JobResources={
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": "ml.m5.xlarge",
                    "VolumeSizeInGB": 20,
                }
            },
            RoleArn=ROLE,
        )
    client.create_monitoring_schedule(
        MonitoringScheduleName=SCHEDULE,
        MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
            "MonitoringJobDefinitionName": f"{ENDPOINT}-dq-v{watching}",
            "MonitoringType": "DataQuality",
        },
    )


def watched_definition() -> str:
    described = sagemaker().describe_monitoring_schedule(MonitoringScheduleName=SCHEDULE)
    return str(described["MonitoringScheduleConfig"]["MonitoringJobDefinitionName"])


def test_after_a_rollback_the_monitor_judges_against_that_versions_baseline(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy("v1", "v2")
    monitor_versions(1, 2, watching=2)
    assert handler.handle(violation_event(), None)["status"] == "rolled-back"
    assert watched_definition() == f"{ENDPOINT}-dq-v1"


def test_the_twin_without_that_versions_job_definition_the_schedule_is_left(
    updates: UpdateEndpointEmulation,
) -> None:
    deploy("v1", "v2")
    monitor_versions(2, watching=2)
    assert handler.handle(violation_event(), None)["status"] == "rolled-back"
    assert serving() == f"{ENDPOINT}-v1"  # the rollback itself still happens
    assert watched_definition() == f"{ENDPOINT}-dq-v2"


# --- the registry's history -----------------------------------------------------------------

GROUP = "unit-sepsis-risk"


def deploy_packages(*versions: str) -> dict[str, str]:
    """Approved packages for each version, its endpoint configuration tagged with the package
    as the deployer tags it; the endpoint serves the last. Returns version -> package ARN."""
    client = sagemaker()
    client.create_model_package_group(ModelPackageGroupName=GROUP)
    packages = {}
    for version in versions:
        packages[version] = client.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://a/{version}/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            CustomerMetadataProperties={"dataset-manifest-sha256": "ab" * 32},
        )["ModelPackageArn"]
    deploy(*versions)
    for version, package in packages.items():
        config = client.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-{version}")
        client.add_tags(
            ResourceArn=config["EndpointConfigArn"],
            Tags=[{"Key": handler.TAG_MODEL_PACKAGE, "Value": package}],
        )
    return packages


def package(arn: str) -> dict[str, Any]:
    return dict(sagemaker().describe_model_package(ModelPackageName=arn))


def test_a_rollback_rejects_the_drifted_version_in_the_registry_and_says_why(
    updates: UpdateEndpointEmulation,
) -> None:
    packages = deploy_packages("v1", "v2")
    outcome = handler.handle(violation_event(), None)
    assert outcome["status"] == "rolled-back"
    assert outcome["rejected_package"] == packages["v2"]
    drifted = package(packages["v2"])
    assert drifted["ModelApprovalStatus"] == "Rejected"
    violation = violation_event()["detail"]["ProcessingJobArn"]
    assert violation in drifted["ApprovalDescription"]
    assert packages["v1"] in drifted["ApprovalDescription"]
    metadata = drifted["CustomerMetadataProperties"]
    assert metadata[handler.ROLLED_BACK_TO] == packages["v1"]
    assert metadata[handler.ROLLED_BACK_ENDPOINT] == ENDPOINT
    assert metadata[handler.ROLLED_BACK_AT].endswith("Z")
    # What the version already carried is kept (lineage), and the returned-to one is untouched.
    assert metadata["dataset-manifest-sha256"] == "ab" * 32
    assert package(packages["v1"])["ModelApprovalStatus"] == "Approved"


def test_a_repeated_violation_event_records_nothing_twice(updates: UpdateEndpointEmulation) -> None:
    packages = deploy_packages("v1", "v2")
    handler.handle(violation_event(), None)
    first = package(packages["v2"])["CustomerMetadataProperties"][handler.ROLLED_BACK_AT]
    assert handler.handle(violation_event(), None)["status"] == "already-handled"
    assert package(packages["v2"])["CustomerMetadataProperties"][handler.ROLLED_BACK_AT] == first


def test_the_twin_a_configuration_naming_no_package_still_rolls_back_and_says_so(
    updates: UpdateEndpointEmulation, caplog: pytest.LogCaptureFixture
) -> None:
    deploy("v1", "v2")
    with caplog.at_level(logging.WARNING, logger="phi_ml.rollback"):
        outcome = handler.handle(violation_event(), None)
    assert outcome["status"] == "rolled-back" and outcome["rejected_package"] is None
    assert serving() == f"{ENDPOINT}-v1"
    assert any("not recorded in the registry" in e["message"] for e in json_logs(caplog))


def test_the_registry_keys_are_the_lineage_requirements() -> None:
    from requirements import model_lineage  # noqa: PLC0415

    assert handler.ROLLED_BACK_AT == model_lineage.ROLLED_BACK_AT
    assert handler.ROLLED_BACK_TO == model_lineage.ROLLED_BACK_TO
    assert handler.ROLLED_BACK_ENDPOINT == model_lineage.ROLLED_BACK_ENDPOINT
    from runtime.deployer import handler as deployer  # noqa: PLC0415

    assert handler.TAG_MODEL_PACKAGE == deployer.TAG_MODEL_PACKAGE
