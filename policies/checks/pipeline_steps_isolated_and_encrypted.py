"""CKV_PHI_3 "Ensure every SageMaker pipeline step that runs a job is network-isolated and
KMS-encrypted".

Pipeline jobs read PHI and write models trained on it. HIPAA 45 CFR 164.312(a)(2)(iv) and
164.312(e)(1) (encryption at rest and in transit) and GDPR Art. 32 / EU AI Act Art. 15
(security of the training process) ask that no job can send data out and that everything it
writes is encrypted with the platform's keys. The definition (`pipeline_definition`, JSON) is
read step by step, Condition branches included:

- Processing, QualityCheck, ClarifyCheck: `NetworkConfig.EnableNetworkIsolation` and
  `EnableInterContainerTrafficEncryption` true, `NetworkConfig.VpcConfig` with subnets and
  security groups, `ProcessingResources.ClusterConfig.VolumeKmsKeyId`, and
  `ProcessingOutputConfig.KmsKeyId` when the job has outputs;
- Training (and each training definition of a Tuning step): `EnableNetworkIsolation` and
  `EnableInterContainerTrafficEncryption` true, `VpcConfig`, `ResourceConfig.VolumeKmsKeyId`,
  `OutputDataConfig.KmsKeyId`;
- Transform: `TransformOutput.KmsKeyId` and `TransformResources.VolumeKmsKeyId` (its isolation
  is the model's);
- Model (CreateModel): `EnableNetworkIsolation` true and `VpcConfig`.

Values must be literals: a pipeline parameter could switch them off at start time. Condition,
Fail and RegisterModel steps run no job; any other step type (Lambda, Callback, EMR, ...) runs
code this check cannot see isolated and fails. A definition kept in S3
(`pipeline_definition_s3_location`) cannot be verified and fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import json_document, scalar
from policies.checks._documents import as_list, get_path, pipeline_steps

Arguments = dict[str, Any]


def _key(arguments: Arguments, *path: str) -> list[str]:
    value = get_path(arguments, *path)
    if isinstance(value, str) and value.strip():
        return []
    return [f"{'.'.join(path)} is not a KMS key"]


def _flag(arguments: Arguments, *path: str) -> list[str]:
    if get_path(arguments, *path) is True:
        return []
    return [f"{'.'.join(path)} is not true"]


def _vpc(arguments: Arguments, *path: str) -> list[str]:
    vpc = get_path(arguments, *path)
    if as_list(get_path(vpc, "Subnets")) and as_list(get_path(vpc, "SecurityGroupIds")):
        return []
    return [f"{'.'.join(path)} has no subnets and security groups"]


def processing_problems(arguments: Arguments) -> list[str]:
    problems = [
        *_flag(arguments, "NetworkConfig", "EnableNetworkIsolation"),
        *_flag(arguments, "NetworkConfig", "EnableInterContainerTrafficEncryption"),
        *_vpc(arguments, "NetworkConfig", "VpcConfig"),
        *_key(arguments, "ProcessingResources", "ClusterConfig", "VolumeKmsKeyId"),
    ]
    if as_list(get_path(arguments, "ProcessingOutputConfig", "Outputs")):
        problems += _key(arguments, "ProcessingOutputConfig", "KmsKeyId")
    return problems


def training_problems(arguments: Arguments) -> list[str]:
    return [
        *_flag(arguments, "EnableNetworkIsolation"),
        *_flag(arguments, "EnableInterContainerTrafficEncryption"),
        *_vpc(arguments, "VpcConfig"),
        *_key(arguments, "ResourceConfig", "VolumeKmsKeyId"),
        *_key(arguments, "OutputDataConfig", "KmsKeyId"),
    ]


def tuning_problems(arguments: Arguments) -> list[str]:
    definitions = [
        d
        for d in [
            arguments.get("TrainingJobDefinition"),
            *as_list(arguments.get("TrainingJobDefinitions")),
        ]
        if isinstance(d, dict)
    ]
    if not definitions:
        return ["no training job definition"]
    return [problem for d in definitions for problem in training_problems(d)]


def transform_problems(arguments: Arguments) -> list[str]:
    return [
        *_key(arguments, "TransformOutput", "KmsKeyId"),
        *_key(arguments, "TransformResources", "VolumeKmsKeyId"),
    ]


def model_problems(arguments: Arguments) -> list[str]:
    return [*_flag(arguments, "EnableNetworkIsolation"), *_vpc(arguments, "VpcConfig")]


JOB_STEPS: dict[str, Callable[[Arguments], list[str]]] = {
    "Processing": processing_problems,
    "QualityCheck": processing_problems,
    "ClarifyCheck": processing_problems,
    "Training": training_problems,
    "Tuning": tuning_problems,
    "Transform": transform_problems,
    "Model": model_problems,
}
STEPS_WITHOUT_JOBS = frozenset({"Condition", "Fail", "RegisterModel"})


def step_problems(step: dict[str, Any]) -> list[str]:
    step_type = str(step.get("Type"))
    if step_type in STEPS_WITHOUT_JOBS:
        return []
    rule = JOB_STEPS.get(step_type)
    if rule is None:
        return [f"step type {step_type} cannot be verified as isolated and encrypted"]
    arguments = step.get("Arguments")
    return rule(arguments if isinstance(arguments, dict) else {})


class PipelineStepsIsolatedAndEncrypted(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every SageMaker pipeline step that runs a job is network-isolated "
                "and KMS-encrypted"
            ),
            id="CKV_PHI_3",
            categories=[CheckCategories.AI_AND_ML],
            supported_resources=["aws_sagemaker_pipeline"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["pipeline_definition"]
        definition = json_document(scalar(conf, "pipeline_definition"))
        if definition is None:
            self.details.append("no JSON pipeline_definition: its steps cannot be verified")
            return CheckResult.FAILED
        for step in pipeline_steps(definition):
            for problem in step_problems(step):
                self.details.append(f"step {step.get('Name')}: {problem}")
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = PipelineStepsIsolatedAndEncrypted()
