"""Monitoring layer: the monitor's role and network, a data-quality schedule's violations (and
only those) reaching a hardened, single-concurrency rollback function, and failed runs and
violations reaching a person. (The schedule and its job definitions are the deployer's:
tests/test_deployer.py holds them isolated and encrypted.)"""

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
from tests.iam import iam_allows
from tests.synth import only, ref, resources, role_policy_named, statement_by_sid, synth_stack
from tests.terraform_check import terraform_validate
from tests.test_inference import ACCOUNT, BUCKET, REGION, VPC_CIDR, key, network

ENDPOINT = "phi-ml-unit-sepsis-risk"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"
SCHEDULE = f"{ENDPOINT}-data-quality"
SCHEDULE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/{SCHEDULE}"
MONITOR_IMAGE = "468650794304.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-model-monitor-analyzer"
RETENTION = 2192

SETTINGS: dict[str, Any] = {
    "environment": "unit",
    "account_id": ACCOUNT,
    "region": REGION,
    "model_name": "sepsis-risk",
    "model_package_group": "unit-sepsis-risk",
    "monitor_image": f"{MONITOR_IMAGE}:latest",
    "instance_type": "ml.m5.xlarge",
    "schedule_expression": "cron(0 * ? * * *)",
    "pipeline_runs_prefix": "pipelines/unit-sepsis-risk/",
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
    return Monitoring(
        stack,
        "monitoring",
        config=MonitoringConfig(**SETTINGS),
        endpoint_name=ENDPOINT,
        endpoint_arn=ENDPOINT_ARN,
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


# --- the monitor: its role, no Terraform schedule ------------------------------------------


def test_terraform_creates_no_job_definition_or_schedule(synth: dict[str, Any]) -> None:
    """SageMaker refuses a schedule for an endpoint that does not exist, and a job definition's
    baseline is fixed: both are the deployer's, per approved version."""
    kinds = ("aws_sagemaker_data_quality_job_definition", "aws_sagemaker_monitoring_schedule")
    assert [k for k in kinds if resources(synth, k)] == []
    config = MonitoringConfig(**SETTINGS)
    assert (config.schedule_name, config.schedule_arn) == (SCHEDULE, SCHEDULE_ARN)


def monitor_policy(synth: dict[str, Any]) -> str:
    return role_policy_named(synth, "monitor-this-endpoint-only")


def test_monitor_role_reads_only_baseline_and_this_endpoints_captures(
    synth: dict[str, Any],
) -> None:
    bucket = ref(synth, "aws_s3_bucket", "arn")
    read = statement_by_sid(monitor_policy(synth), "ReadBaselineAndThisEndpointsCaptures")
    # The runs' Baseline outputs only: not their datasets (derived from PHI) or models.
    assert read["Resource"] == [
        f"{bucket}/pipelines/unit-sepsis-risk/*/baseline/*",
        f"{bucket}/data-capture/{ENDPOINT}/*",
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


def rule_named(synth: dict[str, Any], suffix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (name, rule)
        for name, rule in resources(synth, "aws_cloudwatch_event_rule").items()
        if rule["name"].endswith(suffix)
    ]
    return found


def rule_ref(synth: dict[str, Any], suffix: str, attribute: str) -> str:
    return f"${{aws_cloudwatch_event_rule.{rule_named(synth, suffix)[0]}.{attribute}}}"


def rule_pattern(synth: dict[str, Any], suffix: str = "-violations") -> Any:
    return json.loads(rule_named(synth, suffix)[1]["event_pattern"])


def targets_of(synth: dict[str, Any], suffix: str) -> list[dict[str, Any]]:
    rule = rule_ref(synth, suffix, "name")
    return [
        t for t in resources(synth, "aws_cloudwatch_event_target").values() if t["rule"] == rule
    ]


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
    (target,) = [
        t
        for t in targets_of(synth, "-violations")
        if t["arn"] == ref(synth, "aws_lambda_function", "arn")
    ]
    assert target["dead_letter_config"] == {"arn": ref(synth, "aws_sqs_queue", "arn")}
    assert target["retry_policy"]["maximum_retry_attempts"] >= 1


def test_dead_letter_queue_is_encrypted_and_accepts_only_the_rule(synth: dict[str, Any]) -> None:
    queue = only(synth, "aws_sqs_queue")
    assert queue["kms_master_key_id"] == ref(synth, "aws_kms_key", "arn", named="ml-artifacts")
    policy = only(synth, "aws_sqs_queue_policy")["policy"]
    allow = statement_by_sid(policy, "OnlyThisEndpointsMonitoringRulesDeadLetter")
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Condition"] == {
        "ArnEquals": {
            "aws:SourceArn": [
                rule_ref(synth, "-violations", "arn"),
                rule_ref(synth, "-monitoring-failed", "arn"),
            ]
        }
    }
    deny = statement_by_sid(policy, "DenyInsecureTransport")
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def test_only_the_rule_may_invoke_the_function(synth: dict[str, Any]) -> None:
    permission = only(synth, "aws_lambda_permission")
    assert permission["source_arn"] == rule_ref(synth, "-violations", "arn")
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["function_name"] == ref(synth, "aws_lambda_function", "function_name")
    assert permission["action"] == "lambda:InvokeFunction"


# --- a person hears of failed runs and of drift ----------------------------------------------


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_a_failed_or_stopped_run_of_this_schedule_reaches_a_person(
    synth: dict[str, Any], status: str
) -> None:
    event = monitoring_event(ProcessingJobStatus=status, ExitMessage="AlgorithmError: no data")
    assert event_matches(rule_pattern(synth, "-monitoring-failed"), event)
    assert not event_matches(rule_pattern(synth, "-violations"), event)


@pytest.mark.parametrize(
    "detail",
    [
        {},  # a run with violations: the violation rule's, not a failure
        {"ExitMessage": "Completed: Job completed successfully with no violations."},
        {"ProcessingJobStatus": "Failed", "MonitoringScheduleArn": SCHEDULE_ARN + "-other"},
    ],
    ids=["violations", "clean-run", "other-schedule"],
)
def test_the_twin_completed_runs_and_other_schedules_are_no_failure(
    synth: dict[str, Any], detail: dict[str, Any]
) -> None:
    assert not event_matches(rule_pattern(synth, "-monitoring-failed"), monitoring_event(**detail))


def test_failures_and_violations_are_published_to_an_encrypted_topic(synth: dict[str, Any]) -> None:
    topic = only(synth, "aws_sns_topic")
    assert topic["kms_master_key_id"] == ref(synth, "aws_kms_key", "arn", named="ml-artifacts")
    topic_arn = ref(synth, "aws_sns_topic", "arn")
    for suffix in ("-monitoring-failed", "-violations"):
        (to_people,) = [t for t in targets_of(synth, suffix) if t["arn"] == topic_arn]
        assert to_people["dead_letter_config"] == {"arn": ref(synth, "aws_sqs_queue", "arn")}
        assert "<job>" in to_people["input_transformer"]["input_template"]
    policy = only(synth, "aws_sns_topic_policy")["policy"]
    publish = statement_by_sid(policy, "OnlyThisEndpointsMonitoringRulesPublish")
    assert publish["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        rule_ref(synth, "-monitoring-failed", "arn"),
        rule_ref(synth, "-violations", "arn"),
    ]
    assert statement_by_sid(policy, "DenyInsecureTransport")["Effect"] == "Deny"


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
        "ENDPOINT_NAME": ENDPOINT,
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
    assert sorted(s["Resource"] for s in switching) == sorted(
        [
            ENDPOINT_ARN,
            f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/{ENDPOINT}-*",
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


@pytest.mark.parametrize(
    ("status", "group", "allowed"),
    [
        ("Rejected", "unit-sepsis-risk", True),
        # Twins: never approve (approval is a person's), never another group's versions.
        ("Approved", "unit-sepsis-risk", False),
        ("PendingManualApproval", "unit-sepsis-risk", False),
        ("Rejected", "other-group", False),
    ],
)
def test_function_may_only_reject_versions_of_its_group(
    synth: dict[str, Any], status: str, group: str, allowed: bool
) -> None:
    package = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/2"
    assert (
        iam_allows(
            rollback_policy(synth),
            "sagemaker:UpdateModelPackage",
            package,
            {"sagemaker:ModelApprovalStatus": status},
        )
        is allowed
    )


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
