"""Mutants of the pipelines layer (modules/pipelines.py, modules/feature_build.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tools.mutants.edits import (
    address,
    delete_attribute,
    edit_json,
    named,
    pipeline_step,
)
from tools.mutants.model import Apply, Document, Mutant

TRAINING = "pipelines/pipeline"
TRIGGER_TARGET = "pipelines/trigger-target"


def step_edit(pipeline_path: str, step: str, edit: Callable[[Any], object]) -> Apply:
    """Change one step's Arguments of the pipeline whose construct path has `pipeline_path`."""

    def apply(document: Document) -> str:
        name, conf = named(document, "aws_sagemaker_pipeline", pipeline_path)

        def change(definition: Any) -> None:
            edit(pipeline_step(definition, step)["Arguments"])

        edit_json(conf, "pipeline_definition", change)
        return address("aws_sagemaker_pipeline", name)

    return apply


def trigger_without_as_of(document: Document) -> str:
    pipeline, _ = named(document, "aws_sagemaker_pipeline", TRAINING)
    _, target = named(document, "aws_cloudwatch_event_target", "pipelines/trigger-target")
    parameters = target["sagemaker_pipeline_target"]["pipeline_parameter_list"]
    target["sagemaker_pipeline_target"]["pipeline_parameter_list"] = [
        p for p in parameters if p["value"] != "$.detail.executionEndTime"
    ]
    return address("aws_sagemaker_pipeline", pipeline)


def trigger_on_any_status(document: Document) -> str:
    pipeline, _ = named(document, "aws_sagemaker_pipeline", TRAINING)
    _, rule = named(document, "aws_cloudwatch_event_rule", "pipelines/trigger-rule")
    pattern = json.loads(rule["event_pattern"])
    del pattern["detail"]["currentPipelineExecutionStatus"]
    rule["event_pattern"] = json.dumps(pattern)
    return address("aws_sagemaker_pipeline", pipeline)


def register_without_metric_gate(document: Document) -> str:
    """The metric gate (the Condition step) replaced by its IfSteps: Register runs whatever
    the Evaluate step measured."""
    name, conf = named(document, "aws_sagemaker_pipeline", TRAINING)

    def ungate(definition: Any) -> None:
        gate = pipeline_step(definition, "MetricGate")
        index = definition["Steps"].index(gate)
        definition["Steps"][index : index + 1] = gate["Arguments"]["IfSteps"]

    edit_json(conf, "pipeline_definition", ungate)
    return address("aws_sagemaker_pipeline", name)


def trigger_without_retries(document: Document) -> str:
    name, target = named(document, "aws_cloudwatch_event_target", TRIGGER_TARGET)
    target["retry_policy"]["maximum_retry_attempts"] = 0
    return address("aws_cloudwatch_event_target", name)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="registers-approved",
        layer="pipelines",
        guarantee="register as PendingManualApproval",
        check_id="CKV_PHI_4",
        stack="dev-ml",
        change="the Register step registers models as Approved",
        apply=step_edit(TRAINING, "Register", lambda a: a.update(ModelApprovalStatus="Approved")),
    ),
    Mutant(
        name="training-not-isolated",
        layer="pipelines",
        guarantee="every job network-isolated",
        check_id="CKV_PHI_3",
        stack="dev-ml",
        change="the Train step without network isolation",
        apply=step_edit(TRAINING, "Train", lambda a: a.update(EnableNetworkIsolation=False)),
    ),
    Mutant(
        name="evaluation-volume-unencrypted",
        layer="pipelines",
        guarantee="KMS on volumes",
        check_id="CKV_PHI_3",
        stack="eu-research-ml",
        change="the Evaluate step's volume without a KMS key",
        apply=step_edit(
            TRAINING,
            "Evaluate",
            lambda a: a["ProcessingResources"]["ClusterConfig"].pop("VolumeKmsKeyId"),
        ),
    ),
    Mutant(
        name="feature-build-output-unencrypted",
        layer="pipelines",
        guarantee="KMS on outputs",
        check_id="CKV_PHI_3",
        stack="prod-ml",
        change="the feature build's offline-store output without a KMS key",
        apply=step_edit(
            "feature-build/pipeline",
            "Build",
            lambda a: a["ProcessingOutputConfig"].pop("KmsKeyId"),
        ),
    ),
    Mutant(
        name="trigger-without-as-of",
        layer="pipelines",
        guarantee="started with the build's as-of time (provenance)",
        check_id="CKV_PHI_15",
        stack="dev-ml",
        change="the trigger no longer passes the build's end time to training",
        apply=trigger_without_as_of,
    ),
    Mutant(
        name="trigger-on-any-status",
        layer="pipelines",
        guarantee="an EventBridge rule on the feature build's success starts training",
        check_id="CKV_PHI_15",
        stack="dev-ml",
        change="the trigger rule matches any build status, failures included",
        apply=trigger_on_any_status,
    ),
    Mutant(
        name="pipelines-register-without-metric-gate",
        layer="pipelines",
        guarantee="metric gate -> register",
        check_id="CKV_PHI_32",
        stack="dev-ml",
        change="the metric gate (Condition step) removed: Register runs after every evaluation",
        apply=register_without_metric_gate,
    ),
    Mutant(
        name="pipelines-preprocess-outside-vpc",
        layer="pipelines",
        guarantee="every job in the private subnets",
        check_id="CKV_PHI_3",
        stack="staging-ml",
        change="the Preprocess step's NetworkConfig without VpcConfig (subnets, security group)",
        apply=step_edit(TRAINING, "Preprocess", lambda a: a["NetworkConfig"].pop("VpcConfig")),
    ),
    Mutant(
        name="pipelines-trigger-without-retries",
        layer="pipelines",
        guarantee="with retries",
        check_id="CKV_PHI_33",
        stack="dev-ml",
        change="the trigger target's retry policy allows 0 retry attempts",
        apply=trigger_without_retries,
    ),
    Mutant(
        name="pipelines-trigger-without-dead-letter-queue",
        layer="pipelines",
        guarantee="a dead-letter queue",
        check_id="CKV_PHI_33",
        stack="prod-ml",
        change="the trigger target without its dead_letter_config",
        apply=delete_attribute("aws_cloudwatch_event_target", TRIGGER_TARGET, "dead_letter_config"),
    ),
    Mutant(
        name="pipelines-dead-letter-queue-unencrypted",
        layer="pipelines",
        guarantee="an encrypted dead-letter queue",
        check_id="CKV_AWS_27",
        stack="eu-research-ml",
        change="the trigger's dead-letter queue without its KMS key",
        apply=delete_attribute(
            "aws_sqs_queue", "pipelines/trigger-dead-letter-queue", "kms_master_key_id"
        ),
    ),
)
