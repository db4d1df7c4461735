"""`make ml-demo` (tools/ml_demo.py): the events it hands the deployed rule and functions are the
ones AWS emits, the trigger's parameters resolve from them, a drifted batch violates a baseline
an undrifted one does not, and the emulator mends it relies on answer as AWS does. The whole
loop on the emulator runs in `test_the_loop_closes_on_the_emulator` (marked emulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from ml.monitor_baseline import compute_constraints, compute_statistics, detect_violations
from modules.pipelines import TRIGGER_PARAMETER_PATHS, trigger_event_pattern
from runtime.deployer import handler as deployer
from runtime.rollback import handler as rollback
from tests.eventbridge import event_matches
from tests.sagemaker_emulation import FAKE_CREDENTIALS, for_one_test
from tools import emulator, ml_demo
from tools.pipeline_interpreter import PipelineRun

FEATURES_ARN = "arn:aws:sagemaker:us-east-1:111111111111:pipeline/phi-ml-dev-readmission-features"


def finished_build(status: str = "Succeeded") -> PipelineRun:
    return PipelineRun(
        execution_id="4r2y0v8dkpxe",
        execution_arn=f"{FEATURES_ARN}/execution/4r2y0v8dkpxe",
        start_time="2026-07-01T01:58:41.000Z",
        parameters={"ExportFolder": "ml-demo-1/"},
        status=status,
    )


def test_the_feature_build_event_starts_training_with_its_execution_and_end_time() -> None:
    event = ml_demo.pipeline_status_event(finished_build(), FEATURES_ARN, "2026-07-01T02:14:07Z")
    assert event_matches(trigger_event_pattern(FEATURES_ARN), event)
    parameters = {
        name: ml_demo.json_path(event, path) for name, path in TRIGGER_PARAMETER_PATHS.items()
    }
    assert parameters == {
        "FeatureBuildExecutionArn": f"{FEATURES_ARN}/execution/4r2y0v8dkpxe",
        "FeaturesAsOf": "2026-07-01T02:14:07Z",
    }
    # The twin: a failed build's event is not one the rule starts training on.
    failed = ml_demo.pipeline_status_event(
        finished_build("Failed"), FEATURES_ARN, "2026-07-01T02:14:07Z"
    )
    assert not event_matches(trigger_event_pattern(FEATURES_ARN), failed)


def test_a_target_path_naming_nothing_in_the_event_is_a_loop_error() -> None:
    event = ml_demo.pipeline_status_event(finished_build(), FEATURES_ARN, "2026-07-01T02:14:07Z")
    with pytest.raises(ml_demo.LoopError, match=r"\$\.detail\.executionFinishTime"):
        ml_demo.json_path(event, "$.detail.executionFinishTime")


def test_the_handed_events_are_what_the_functions_accept() -> None:
    package = {
        "ModelPackageArn": "arn:aws:sagemaker:us-east-1:111111111111:model-package/g/3",
        "ModelPackageGroupName": "g",
        "ModelPackageVersion": 3,
        "ModelApprovalStatus": "Approved",
    }
    assert not isinstance(deployer.parse_approval(ml_demo.package_event(package)), str)
    schedule = "arn:aws:sagemaker:us-east-1:111111111111:monitoring-schedule/e-data-quality"
    violation = rollback.parse_violation(
        ml_demo.monitoring_event(schedule, "e", "CompletedWithViolations: 3 violations.")
    )
    assert not isinstance(violation, str)
    assert violation.schedule_name == "e-data-quality" and violation.endpoint_name == "e"


def test_a_drifted_batch_violates_the_baseline_and_the_same_rows_undrifted_do_not(
    tmp_path: Path,
) -> None:
    columns = ["heart_rate", "systolic_bp", "spo2", "age"]
    generator = np.random.default_rng(7)
    rows = np.column_stack(
        [
            generator.normal(80, 8, 2000),
            generator.normal(120, 10, 2000),
            generator.normal(97, 1, 2000),
            generator.integers(18, 90, 2000).astype(float),
        ]
    )
    statistics = compute_statistics(rows[:1500], ["Fractional"] * 4)
    constraints = compute_constraints(statistics)
    assert detect_violations(statistics, constraints, rows[1500:]) == []
    shifted = ml_demo.drifted(rows[1500:], columns)
    found = detect_violations(statistics, constraints, shifted)
    # Baseline columns are named by position (_c0, _c1, ...): the two shifted ones.
    assert {v["feature_name"] for v in found} == {"_c0", "_c1"}
    # Only the vital signs move: the others are the rows as they were.
    assert np.array_equal(shifted[:, 2:], rows[1500:, 2:])


@pytest.fixture
def mended(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for_one_test(
        monkeypatch,
        emulator._emulate_update_endpoint,
        emulator._merge_customer_metadata_on_update,
    )
    from moto.events.responses import EventsHandler  # noqa: PLC0415

    monkeypatch.setattr(EventsHandler, "test_event_pattern", EventsHandler.test_event_pattern)
    emulator._emulate_test_event_pattern()
    with mock_aws():
        yield


def test_the_emulator_judges_event_patterns_as_eventbridge_does(mended: Any) -> None:
    events = boto3.client("events", region_name="us-east-1")
    pattern = json.dumps(trigger_event_pattern(FEATURES_ARN))
    succeeded = ml_demo.pipeline_status_event(finished_build(), FEATURES_ARN, "2026-07-01T02:14Z")
    failed = ml_demo.pipeline_status_event(finished_build("Failed"), FEATURES_ARN, "2026-07-01Z")
    assert events.test_event_pattern(EventPattern=pattern, Event=json.dumps(succeeded))["Result"]
    assert not events.test_event_pattern(EventPattern=pattern, Event=json.dumps(failed))["Result"]


def test_the_emulator_keeps_metadata_an_update_does_not_name(mended: Any) -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.create_model_package_group(ModelPackageGroupName="g")
    image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/serving@sha256:" + "a" * 64
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="g",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": image}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        CustomerMetadataProperties={"dataset-manifest-sha256": "ab" * 32},
    )["ModelPackageArn"]
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    kept = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert kept == {"dataset-manifest-sha256": "ab" * 32}
    sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"x": "1"})
    merged = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert merged == {"dataset-manifest-sha256": "ab" * 32, "x": "1"}


def test_the_emulator_switches_an_endpoint_only_to_a_configuration_that_exists(
    mended: Any,
) -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    role = "arn:aws:iam::111111111111:role/model"
    image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/serving@sha256:" + "a" * 64
    for version in ("v1", "v2"):
        sagemaker.create_model(
            ModelName=f"e-{version}", ExecutionRoleArn=role, PrimaryContainer={"Image": image}
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=f"e-{version}",
            ProductionVariants=[
                {
                    "VariantName": "primary",
                    "ModelName": f"e-{version}",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="e-v1")
    sagemaker.update_endpoint(EndpointName="e", EndpointConfigName="e-v2")
    assert sagemaker.describe_endpoint(EndpointName="e")["EndpointConfigName"] == "e-v2"
    with pytest.raises(sagemaker.exceptions.ClientError):
        sagemaker.update_endpoint(EndpointName="e", EndpointConfigName="e-v9")
    assert sagemaker.describe_endpoint(EndpointName="e")["EndpointConfigName"] == "e-v2"


@pytest.mark.emulator
def test_the_loop_closes_on_the_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole loop as `make ml-demo ENV=dev` runs it: two versions registered, approved and
    deployed, a drift violation, the endpoint back on the first, the second Rejected, lineage
    without findings."""
    import os  # noqa: PLC0415

    from tools.e2e import synthesize_local  # noqa: PLC0415

    # What `make ml-demo` passes the synthesis: the versions record a commit and repository.
    monkeypatch.setenv("PHI_SOURCE_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("PHI_SOURCE_REPOSITORY", "https://git.example/acme/phi-ml-platform")

    outdir = tmp_path / "out"
    synthesize_local(outdir, "dev")
    document = ml_demo.run_ml_demo(
        "dev",
        outdir=outdir,
        reports=tmp_path / "reports",
        patients=ml_demo.DEFAULT_PATIENTS,
        seed=ml_demo.DEFAULT_SEED,
        jobs=2,
        base_environment=os.environ,
    )
    assert document["succeeded"], document.get("failure")
    first, second = (p["arn"] for p in document["packages"])
    assert document["serving_before_rollback"]["model_package"] == second
    assert document["serving_after_rollback"]["model_package"] == first
    histories = {p["arn"]: [s["status"] for s in p["status_history"]] for p in document["packages"]}
    assert histories[second] == ["PendingManualApproval", "Approved", "Rejected"]
    assert histories[first] == ["PendingManualApproval", "Approved", "Approved"]
    threshold = document["metric"]["threshold"]
    assert all(value >= threshold for value in document["metric"]["held_out"].values())
    assert json.loads((tmp_path / "reports" / "dev" / "run.json").read_text()) == document
    assert (tmp_path / "reports" / "dev" / "lineage.txt").read_text().strip()
