"""Monitoring layer: an isolated, encrypted data-quality schedule whose violations (and only
those) reach a hardened, single-concurrency rollback function."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cdktf import App, TerraformStack
from pydantic import ValidationError

from modules import aws
from modules.functions import deterministic_zip
from modules.keys import KeyPurpose
from modules.monitoring import (
    ROLLBACK_SOURCE,
    Monitoring,
    MonitoringConfig,
    schedule_interval_hours,
    violation_event_pattern,
)
from modules.storage import HardenedBucket, HardenedBucketConfig
from runtime.rollback import handler
from tests.eventbridge import event_matches
from tests.synth import only, ref, resources, role_policy_named, statement_by_sid, synth_stack
from tests.terraform_check import terraform_validate
from tests.test_inference import ACCOUNT, BUCKET, REGION, VPC_CIDR, key, network

ENDPOINT = "phi-ml-unit-sepsis-risk"
SCHEDULE = f"{ENDPOINT}-data-quality"
SCHEDULE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/{SCHEDULE}"
MONITOR_IMAGE = "468650794304.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-model-monitor-analyzer"
RETENTION = 2192

SETTINGS: dict[str, Any] = {
    "environment": "unit",
    "account_id": ACCOUNT,
    "region": REGION,
    "model_name": "sepsis-risk",
    "monitor_image": f"{MONITOR_IMAGE}:latest",
    "instance_type": "ml.m5.xlarge",
    "schedule_expression": "cron(0 * ? * * *)",
    "baseline_prefix": "baselines/sepsis-risk/",
    "reports_prefix": "monitoring/sepsis-risk/",
    "capture_prefix": "data-capture/",
    "max_runtime_seconds": 1800,
    "vpc_cidr": VPC_CIDR,
}


def build_monitoring(stack: TerraformStack, retention: int = RETENTION) -> Monitoring:
    ml_key = key(stack, KeyPurpose.ML_ARTIFACTS)
    logs_key = key(stack, KeyPurpose.LOGS)
    bucket = HardenedBucket(
        stack,
        "artifacts",
        config=HardenedBucketConfig(name=BUCKET, account_id=ACCOUNT, noncurrent_version_days=30),
        kms_key=ml_key,
        access_logs=None,
    )
    vpc_id, subnet_ids = network(stack)
    endpoint = aws.SagemakerEndpoint(
        stack, "endpoint", name=ENDPOINT, endpoint_config_name=f"{ENDPOINT}-v1"
    )
    return Monitoring(
        stack,
        "monitoring",
        config=MonitoringConfig(**SETTINGS),
        endpoint_name=endpoint.name,
        endpoint_arn=endpoint.arn,
        ml_key=ml_key,
        logs_key=logs_key,
        artifacts_bucket=bucket,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        log_retention_days=retention,
    )


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    return synth_stack(build_monitoring)


def subnets(synthesized: dict[str, Any]) -> list[str]:
    return [f"${{aws_subnet.{n}.id}}" for n in resources(synthesized, "aws_subnet")]


# --- the data-quality job ------------------------------------------------------------------


def job_problems(job: dict[str, Any], *, key_arn: str, subnet_ids: list[str]) -> list[str]:
    """What in a job definition lets data out of the VPC or unencrypted."""
    problems = []
    network = job.get("network_config") or {}
    if network.get("enable_network_isolation") is not True:
        problems.append("container may reach the network")
    if network.get("enable_inter_container_traffic_encryption") is not True:
        problems.append("inter-container traffic in clear")
    vpc = network.get("vpc_config") or {}
    if sorted(vpc.get("subnets", [])) != sorted(subnet_ids) or not vpc.get("security_group_ids"):
        problems.append("not in the private subnets")
    if (job.get("data_quality_job_output_config") or {}).get("kms_key_id") != key_arn:
        problems.append("reports not encrypted with the ML key")
    cluster = (job.get("job_resources") or {}).get("cluster_config") or {}
    if cluster.get("volume_kms_key_id") != key_arn:
        problems.append("volume not encrypted with the ML key")
    return problems


def test_job_is_isolated_encrypted_and_in_the_vpc(synth: dict[str, Any]) -> None:
    job = only(synth, "aws_sagemaker_data_quality_job_definition")
    key_arn = ref(synth, "aws_kms_key", "arn", named="ml-artifacts")
    assert job_problems(job, key_arn=key_arn, subnet_ids=subnets(synth)) == []
    assert job["network_config"]["vpc_config"]["security_group_ids"] == [
        ref(synth, "aws_security_group", "id", named="job-security-group")
    ]


JOB_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "isolation-off": (
        lambda j: j["network_config"].update(enable_network_isolation=False),
        "network",
    ),
    "clear-traffic": (
        lambda j: j["network_config"].pop("enable_inter_container_traffic_encryption"),
        "clear",
    ),
    "no-vpc": (lambda j: j["network_config"].pop("vpc_config"), "subnets"),
    "reports-key": (
        lambda j: j["data_quality_job_output_config"].pop("kms_key_id"),
        "reports",
    ),
    "volume-key": (
        lambda j: j["job_resources"]["cluster_config"].update(volume_kms_key_id="alias/aws/ebs"),
        "volume",
    ),
}


@pytest.mark.parametrize("flaw", JOB_FLAWS.values(), ids=JOB_FLAWS.keys())
def test_job_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    job = copy.deepcopy(only(synth, "aws_sagemaker_data_quality_job_definition"))
    mutate, expected = flaw
    mutate(job)
    key_arn = ref(synth, "aws_kms_key", "arn", named="ml-artifacts")
    problems = job_problems(job, key_arn=key_arn, subnet_ids=subnets(synth))
    assert len(problems) == 1 and expected in problems[0], problems


def test_job_watches_the_endpoint_against_the_baseline(synth: dict[str, Any]) -> None:
    job = only(synth, "aws_sagemaker_data_quality_job_definition")
    bucket = ref(synth, "aws_s3_bucket", "bucket")
    assert job["data_quality_job_input"]["endpoint_input"]["endpoint_name"] == ref(
        synth, "aws_sagemaker_endpoint", "name"
    )
    baseline = job["data_quality_baseline_config"]
    assert baseline["constraints_resource"]["s3_uri"] == (
        f"s3://{bucket}/baselines/sepsis-risk/constraints.json"
    )
    assert baseline["statistics_resource"]["s3_uri"] == (
        f"s3://{bucket}/baselines/sepsis-risk/statistics.json"
    )
    output = job["data_quality_job_output_config"]["monitoring_outputs"]["s3_output"]
    assert output["s3_uri"] == f"s3://{bucket}/monitoring/sepsis-risk/"
    assert job["stopping_condition"] == {"max_runtime_in_seconds": 1800}


def test_schedule_runs_the_job_on_the_configured_expression(synth: dict[str, Any]) -> None:
    schedule = only(synth, "aws_sagemaker_monitoring_schedule")
    assert schedule["name"] == SCHEDULE
    assert schedule["monitoring_schedule_config"] == {
        "monitoring_job_definition_name": ref(
            synth, "aws_sagemaker_data_quality_job_definition", "name"
        ),
        "monitoring_type": "DataQuality",
        "schedule_config": {"schedule_expression": "cron(0 * ? * * *)"},
    }


def monitor_policy(synth: dict[str, Any]) -> str:
    return role_policy_named(synth, "monitor-this-endpoint-only")


def test_monitor_role_reads_only_baseline_and_this_endpoints_captures(
    synth: dict[str, Any],
) -> None:
    bucket = ref(synth, "aws_s3_bucket", "arn")
    endpoint = ref(synth, "aws_sagemaker_endpoint", "name")
    read = statement_by_sid(monitor_policy(synth), "ReadBaselineAndThisEndpointsCaptures")
    assert read["Resource"] == [
        f"{bucket}/baselines/sepsis-risk/*",
        f"{bucket}/data-capture/{endpoint}/*",
    ]
    write = statement_by_sid(monitor_policy(synth), "WriteReports")
    assert write == {
        "Sid": "WriteReports",
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": f"{bucket}/monitoring/sepsis-risk/*",
    }


# --- schedule expressions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "hours"),
    [
        ("cron(0 * ? * * *)", 1),
        ("cron(0 0 ? * * *)", 24),
        ("cron(0 12 ? * * *)", 24),
        ("cron(0 17/12 ? * * *)", 12),
        ("cron(0 0/2 ? * * *)", 2),
        ("cron(0 00/6 ? * * *)", 6),
    ],
)
def test_sagemaker_schedules_are_accepted(expression: str, hours: int) -> None:
    assert schedule_interval_hours(expression) == hours
    assert MonitoringConfig(
        **{**SETTINGS, "schedule_expression": expression, "max_runtime_seconds": 3600}
    )


@pytest.mark.parametrize(
    "expression",
    [
        "NOW",
        "rate(1 hour)",
        "cron(*/5 * ? * * *)",  # minutes other than 0
        "cron(0 24 ? * * *)",  # no hour 24
        "cron(0 0/25 ? * * *)",  # interval above 24
        "cron(0 0/0 ? * * *)",
        "cron(0 * * * ? *)",  # EventBridge style, not Model Monitor's
        "cron(0 12 ? * MON *)",  # weekdays are not supported
        "",
    ],
)
def test_other_schedules_are_refused(expression: str) -> None:
    with pytest.raises(ValidationError, match="not a SageMaker monitoring schedule"):
        MonitoringConfig(**{**SETTINGS, "schedule_expression": expression})


def test_a_run_must_end_before_the_next_starts() -> None:
    with pytest.raises(ValidationError, match="exceeds the schedule's interval"):
        MonitoringConfig(**{**SETTINGS, "max_runtime_seconds": 3601})
    daily = {**SETTINGS, "schedule_expression": "cron(0 3 ? * * *)", "max_runtime_seconds": 7200}
    assert MonitoringConfig(**daily)  # twin: the same runtime fits a daily schedule


# --- violations: the rule --------------------------------------------------------------------


def monitoring_event(**detail: Any) -> dict[str, Any]:
    job_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/model-monitoring-1"
    base = {
        "ProcessingJobArn": job_arn,
        "ProcessingJobName": "model-monitoring-1",
        "ProcessingJobStatus": "Completed",
        "ExitMessage": "CompletedWithViolations: Job completed successfully with 2 violations.",
        "MonitoringScheduleArn": SCHEDULE_ARN,
        "Environment": {"sagemaker_endpoint_name": ENDPOINT},
    }
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Processing Job State Change",
        "id": "e1",
        "detail": {**base, **detail},
    }


def rule_pattern(synth: dict[str, Any]) -> Any:
    """The synthesized pattern with the schedule ARN resolved as AWS would."""
    text = only(synth, "aws_cloudwatch_event_rule")["event_pattern"]
    schedule_ref = ref(synth, "aws_sagemaker_monitoring_schedule", "arn")
    assert schedule_ref in text
    return json.loads(text.replace(schedule_ref, SCHEDULE_ARN))


def test_rule_matches_a_violation_of_this_schedule(synth: dict[str, Any]) -> None:
    event = monitoring_event()
    assert event_matches(rule_pattern(synth), event)
    # What the rule lets through, the function accepts as a violation.
    assert isinstance(handler.parse_violation(event), handler.Violation)


@pytest.mark.parametrize(
    "detail",
    [
        {"ExitMessage": "Completed: Job completed successfully with no violations."},
        {"ProcessingJobStatus": "Failed", "ExitMessage": "CompletedWithViolations: partial"},
        {"ProcessingJobStatus": "InProgress"},
        {"MonitoringScheduleArn": SCHEDULE_ARN.replace(SCHEDULE, "phi-ml-unit-other-dq")},
        {"MonitoringScheduleArn": None},
    ],
    ids=["clean-run", "failed-run", "running", "other-schedule", "not-a-monitoring-job"],
)
def test_rule_does_not_match_anything_else(synth: dict[str, Any], detail: dict[str, Any]) -> None:
    event = monitoring_event(**detail)
    if detail.get("MonitoringScheduleArn", "") is None:
        del event["detail"]["MonitoringScheduleArn"]
    assert not event_matches(rule_pattern(synth), event)


def test_rule_does_not_match_other_sources(synth: dict[str, Any]) -> None:
    event = {**monitoring_event(), "detail-type": "SageMaker Training Job State Change"}
    assert not event_matches(rule_pattern(synth), event)
    assert not event_matches(rule_pattern(synth), {**monitoring_event(), "source": "custom.app"})


def test_pattern_is_built_for_the_schedule_it_is_given() -> None:
    pattern = violation_event_pattern("arn:x")
    assert pattern["detail"]["MonitoringScheduleArn"] == ["arn:x"]


def test_violations_go_to_the_function_with_retries_and_a_dead_letter_queue(
    synth: dict[str, Any],
) -> None:
    target = only(synth, "aws_cloudwatch_event_target")
    assert target["rule"] == ref(synth, "aws_cloudwatch_event_rule", "name")
    assert target["arn"] == ref(synth, "aws_lambda_function", "arn")
    assert target["dead_letter_config"] == {"arn": ref(synth, "aws_sqs_queue", "arn")}
    assert target["retry_policy"]["maximum_retry_attempts"] >= 1


def test_dead_letter_queue_is_encrypted_and_accepts_only_the_rule(synth: dict[str, Any]) -> None:
    queue = only(synth, "aws_sqs_queue")
    assert queue["kms_master_key_id"] == ref(synth, "aws_kms_key", "arn", named="ml-artifacts")
    policy = only(synth, "aws_sqs_queue_policy")["policy"]
    allow = statement_by_sid(policy, "OnlyTheViolationRuleDeadLetters")
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": ref(synth, "aws_cloudwatch_event_rule", "arn")}
    }
    deny = statement_by_sid(policy, "DenyInsecureTransport")
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def test_only_the_rule_may_invoke_the_function(synth: dict[str, Any]) -> None:
    permission = only(synth, "aws_lambda_permission")
    assert permission["source_arn"] == ref(synth, "aws_cloudwatch_event_rule", "arn")
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["function_name"] == ref(synth, "aws_lambda_function", "function_name")
    assert permission["action"] == "lambda:InvokeFunction"


# --- the function ----------------------------------------------------------------------------


def function_problems(function: dict[str, Any], *, synth: dict[str, Any]) -> list[str]:
    problems = []
    vpc = function.get("vpc_config") or {}
    if sorted(vpc.get("subnet_ids", [])) != sorted(subnets(synth)) or not vpc.get(
        "security_group_ids"
    ):
        problems.append("outside the private subnets")
    if (function.get("dead_letter_config") or {}).get("target_arn") != ref(
        synth, "aws_sqs_queue", "arn"
    ):
        problems.append("failed invocations are lost")
    if function.get("reserved_concurrent_executions") != 1:
        problems.append("rollbacks may race")
    if (function.get("tracing_config") or {}).get("mode") != "Active":
        problems.append("not traced")
    if function.get("kms_key_arn") != ref(synth, "aws_kms_key", "arn", named="ml-artifacts"):
        problems.append("environment not encrypted with the CMK")
    return problems


def test_function_is_private_traced_serialized_and_encrypted(synth: dict[str, Any]) -> None:
    function = only(synth, "aws_lambda_function")
    assert function_problems(function, synth=synth) == []
    assert (function["runtime"], function["architectures"], function["handler"]) == (
        "python3.12",
        ["arm64"],
        "handler.handle",
    )
    assert function["environment"]["variables"] == {
        "ENDPOINT_NAME": ref(synth, "aws_sagemaker_endpoint", "name"),
        "MONITORING_SCHEDULE_NAME": SCHEDULE,
    }


FUNCTION_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no-vpc": (lambda f: f.pop("vpc_config"), "subnets"),
    "no-dlq": (lambda f: f.pop("dead_letter_config"), "lost"),
    "unreserved": (lambda f: f.pop("reserved_concurrent_executions"), "race"),
    "concurrency-10": (lambda f: f.update(reserved_concurrent_executions=10), "race"),
    "pass-through": (lambda f: f.update(tracing_config={"mode": "PassThrough"}), "traced"),
    "aws-managed-key": (lambda f: f.pop("kms_key_arn"), "CMK"),
}


@pytest.mark.parametrize("flaw", FUNCTION_FLAWS.values(), ids=FUNCTION_FLAWS.keys())
def test_function_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    function = copy.deepcopy(only(synth, "aws_lambda_function"))
    mutate, expected = flaw
    mutate(function)
    problems = function_problems(function, synth=synth)
    assert len(problems) == 1 and expected in problems[0], problems


def rollback_policy(synth: dict[str, Any]) -> str:
    return role_policy_named(synth, "roll-back-this-endpoint-only")


def test_function_may_switch_only_this_endpoint(synth: dict[str, Any]) -> None:
    policy = json.loads(rollback_policy(synth))
    switching = [s for s in policy["Statement"] if "sagemaker:UpdateEndpoint" in s["Action"]]
    endpoint = ref(synth, "aws_sagemaker_endpoint", "name")
    assert sorted(s["Resource"] for s in switching) == sorted(
        [
            ref(synth, "aws_sagemaker_endpoint", "arn"),
            f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/{endpoint}-*",
        ]
    )
    sagemaker_on_everything = [
        a
        for s in policy["Statement"]
        if s["Resource"] == "*"
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if a.startswith("sagemaker:")
    ]
    assert sagemaker_on_everything == ["sagemaker:ListEndpointConfigs"]


def test_function_logs_to_an_encrypted_six_year_log_group(synth: dict[str, Any]) -> None:
    group = only(synth, "aws_cloudwatch_log_group")
    assert group["kms_key_id"] == ref(synth, "aws_kms_key", "arn", named="logs")
    assert group["retention_in_days"] == RETENTION
    function = only(synth, "aws_lambda_function")
    assert function["logging_config"]["log_group"] == ref(synth, "aws_cloudwatch_log_group", "name")
    assert group["name"] == f"/aws/lambda/{function['function_name']}"


def test_shorter_log_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="six years"):
        synth_stack(lambda stack: build_monitoring(stack, retention=365))


# --- the function's package --------------------------------------------------------------------


def test_package_hash_is_the_hash_of_the_packaged_file(synth: dict[str, Any]) -> None:
    function = only(synth, "aws_lambda_function")
    package = deterministic_zip(ROLLBACK_SOURCE)
    assert (
        function["source_code_hash"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
    )
    with zipfile.ZipFile(__import__("io").BytesIO(package)) as archive:
        assert sorted(archive.namelist()) == ["__init__.py", "handler.py"]
    assert function["filename"].startswith("assets/") and function["filename"].endswith(".zip")


def test_package_ignores_timestamps_and_bytecode(tmp_path: Path) -> None:
    copy_of_source = tmp_path / "rollback"
    shutil.copytree(ROLLBACK_SOURCE, copy_of_source, ignore=shutil.ignore_patterns("__pycache__"))
    first = deterministic_zip(copy_of_source)
    for path in copy_of_source.iterdir():
        os.utime(path, (1_900_000_000, 1_900_000_000))
    (copy_of_source / "__pycache__").mkdir()
    (copy_of_source / "__pycache__" / "handler.cpython-312.pyc").write_bytes(b"\0")
    assert deterministic_zip(copy_of_source) == first
    (copy_of_source / "handler.py").write_text("# changed\n")  # twin: content does count
    assert deterministic_zip(copy_of_source) != first


def test_two_synths_are_byte_identical(tmp_path: Path) -> None:
    outputs = []
    for run in ("first", "second"):
        app = App(outdir=str(tmp_path / run))
        stack = TerraformStack(app, "layer")
        aws.AwsProvider(stack, "aws", region=REGION)
        build_monitoring(stack)
        app.synth()
        stack_dir = tmp_path / run / "stacks" / "layer"
        files = sorted(p for p in stack_dir.rglob("*") if p.is_file())
        outputs.append({p.relative_to(stack_dir): p.read_bytes() for p in files})
    assert outputs[0] == outputs[1]
    assert any(str(p).endswith("rollback.zip") for p in outputs[0])


# --- terraform validate ----------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_monitoring_layer(tmp_path: Path) -> None:
    terraform_validate(tmp_path, build_monitoring, region=REGION)
