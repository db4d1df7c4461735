"""CKV_PHI_15 "Ensure every model-training pipeline is started by a succeeded feature build,
with that build's execution and end time as parameters".

Provenance: every training run must say which data it trained on. FDA's predetermined change
control plan expectations (traceability of each model change to its data), EU AI Act Art. 10
(data governance) and Art. 12 (record-keeping), HIPAA 45 CFR 164.312(b) (audit controls). The
platform's path is: the FHIR -> features pipeline succeeds -> SageMaker's pipeline status event
-> rule -> the training pipeline started with the build's execution ARN and end time (the
point-in-time cut-off of its join) as parameters, both recorded on the registered version.
Judged, with the stack in view: each `aws_sagemaker_pipeline` that makes a model (a Training,
Tuning, AutoML, Model or RegisterModel step, Condition branches included; a definition that
cannot be read counts as one) passes when an `aws_cloudwatch_event_target` of its stack targets
it (`arn` = `${aws_sagemaker_pipeline.<name>.arn}`) from an enabled `aws_cloudwatch_event_rule`
of that stack whose `event_pattern` matches only `Succeeded` executions of named pipelines
(`aws.sagemaker`, `SageMaker Model Building Pipeline Execution Status Change`; none of them the
judged pipeline itself), and passes `$.detail.pipelineExecutionArn` and
`$.detail.executionEndTime` as pipeline parameters. A pipeline that only runs Processing jobs
(the feature build itself) makes no model and is not judged here; its jobs are judged by
CKV_PHI_3 like every pipeline's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, json_document
from policies.checks._documents import as_list, get_path, pipeline_steps
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

# Written out here, not imported from the module that builds the rule: a check never imports
# the code it judges.
STATUS_SOURCE = "aws.sagemaker"
STATUS_DETAIL_TYPE = "SageMaker Model Building Pipeline Execution Status Change"
SUCCEEDED = "Succeeded"
PROVENANCE_PARAMETERS = ("$.detail.pipelineExecutionArn", "$.detail.executionEndTime")
# Step types that train, tune, create or register a model: the runs whose data must be named.
MODEL_STEP_TYPES = frozenset({"Training", "Tuning", "AutoML", "Model", "RegisterModel"})


def makes_a_model(pipeline: dict[str, Any]) -> bool:
    definition = json_document(pipeline.get("pipeline_definition"))
    if definition is None:
        return True
    return any(step.get("Type") in MODEL_STEP_TYPES for step in pipeline_steps(definition))


def rule_problem(rule: dict[str, Any], judged_pipeline: str) -> str | None:
    """Why the rule does not start on a succeeded feature build only, or None."""
    if str(rule.get("state", "ENABLED")).upper() != "ENABLED" or rule.get("is_enabled") is False:
        return "its rule is disabled"
    pattern = json_document(rule.get("event_pattern"))
    if pattern is None:
        return "its rule has no readable event pattern"
    pipelines = as_list(get_path(pattern, "detail", "pipelineArn"))
    # The first that holds is the reason; none holding means the rule is the one required.
    problems = (
        (
            as_list(pattern.get("source")) != [STATUS_SOURCE]
            or as_list(pattern.get("detail-type")) != [STATUS_DETAIL_TYPE],
            "its rule does not match pipeline execution status changes",
        ),
        (
            as_list(get_path(pattern, "detail", "currentPipelineExecutionStatus")) != [SUCCEEDED],
            f"its rule does not match {SUCCEEDED} executions only",
        ),
        (
            not pipelines or not all(isinstance(p, str) and p for p in pipelines),
            "its rule does not name the feature build pipeline",
        ),
        (
            any(refers_to(p, "aws_sagemaker_pipeline", judged_pipeline) for p in pipelines),
            "its rule starts it on its own executions",
        ),
    )
    return next((reason for holds, reason in problems if holds), None)


def parameters_problem(target: dict[str, Any]) -> str | None:
    values = {
        str(parameter.get("value"))
        for pipeline_target in blocks(target, "sagemaker_pipeline_target")
        for parameter in blocks(pipeline_target, "pipeline_parameter_list")
    }
    missing = [p for p in PROVENANCE_PARAMETERS if p not in values]
    return f"it is not passed {', '.join(missing)}" if missing else None


class FeatureBuildStartsTraining(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every model-training pipeline is started by a succeeded feature build, "
                "with that build's execution and end time as parameters"
            ),
            id="CKV_PHI_15",
            category=CheckCategories.LOGGING,
            judged_types=["aws_sagemaker_pipeline"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        rules = stack.resources("aws_cloudwatch_event_rule")
        targets = stack.resources("aws_cloudwatch_event_target").values()
        for name, pipeline in stack.resources("aws_sagemaker_pipeline").items():
            if not makes_a_model(pipeline):
                continue
            problems = []
            for target in targets:
                if not refers_to(target.get("arn"), "aws_sagemaker_pipeline", name):
                    continue
                rule = next(
                    (
                        conf
                        for rule_name, conf in rules.items()
                        if refers_to(target.get("rule"), "aws_cloudwatch_event_rule", rule_name)
                    ),
                    None,
                )
                problem = (
                    "its target's rule is not in the stack"
                    if rule is None
                    else rule_problem(rule, name) or parameters_problem(target)
                )
                if problem is None:
                    break
                problems.append(problem)
            else:
                yield Verdict(
                    address("aws_sagemaker_pipeline", name),
                    False,
                    "; ".join(problems) or "no feature-build rule starts it",
                )
                continue
            yield Verdict(address("aws_sagemaker_pipeline", name), True, "")


check = register(FeatureBuildStartsTraining())
