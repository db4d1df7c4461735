"""CKV_PHI_32 "Ensure a SageMaker pipeline registers a model only behind a condition on an
evaluation metric".

A model trained on patient data is proposed for approval only when it measured well enough on
held-out data: FDA's predetermined change control plan expectations (performance criteria a
change must meet, verified before release), EU AI Act Art. 15 (accuracy declared and met) and
Art. 9 (risk management by testing against defined metrics). A person still approves
(CKV_PHI_4), but an unconditional registration puts every model, however poor, in front of
them. Judged: every `aws_sagemaker_pipeline` whose `pipeline_definition` (JSON) has a
RegisterModel step. Each RegisterModel step must sit in the `IfSteps` of a Condition step
(nested conditions allowed, every enclosing branch an `IfSteps`) whose `Conditions` (all of
which must hold) include a comparison (`GreaterThanOrEqualTo`, `GreaterThan`,
`LessThanOrEqualTo`, `LessThan`) of a metric read from a step's property file
(`Std:JsonGet` of `Steps.<step>.PropertyFiles.<file>`, the step being one of the definition's)
with a literal number: not a pipeline parameter a caller could lower at start time. A
RegisterModel step at the top level or in an `ElseSteps` branch fails. Pipelines that register
no model are not judged; a definition kept in S3 cannot be verified and fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import json_document, scalar
from policies.checks._documents import as_list, get_path, pipeline_steps

COMPARISONS = frozenset({"GreaterThanOrEqualTo", "GreaterThan", "LessThanOrEqualTo", "LessThan"})
_PROPERTY_FILE = re.compile(r"^Steps\.(?P<step>[^.]+)\.PropertyFiles\.[^.]+$")


def _steps(value: Any) -> list[dict[str, Any]]:
    return [step for step in as_list(value) if isinstance(step, dict)]


def placements(
    steps: list[dict[str, Any]],
    gates: tuple[dict[str, Any], ...] = (),
    if_branch_only: bool = True,
) -> Iterator[tuple[dict[str, Any], tuple[dict[str, Any], ...], bool]]:
    """(step, the Condition steps whose IfSteps enclose it, whether every enclosing branch is
    an IfSteps) for every step, Condition branches included."""
    for step in steps:
        yield step, gates, if_branch_only
        if step.get("Type") != "Condition":
            continue
        arguments = step.get("Arguments")
        if not isinstance(arguments, dict):
            continue
        yield from placements(_steps(arguments.get("IfSteps")), (*gates, step), if_branch_only)
        yield from placements(_steps(arguments.get("ElseSteps")), gates, False)


def _metric_of(value: Any, step_names: set[str]) -> bool:
    """A value read from a property file of one of the definition's steps."""
    reference = get_path(value, "Std:JsonGet", "PropertyFile", "Get")
    match = _PROPERTY_FILE.match(reference) if isinstance(reference, str) else None
    return match is not None and match["step"] in step_names


def _literal_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_metric_gate(condition_step: dict[str, Any], step_names: set[str]) -> bool:
    for condition in as_list(get_path(condition_step, "Arguments", "Conditions")):
        if not isinstance(condition, dict) or condition.get("Type") not in COMPARISONS:
            continue
        left, right = condition.get("LeftValue"), condition.get("RightValue")
        if (_metric_of(left, step_names) and _literal_number(right)) or (
            _literal_number(left) and _metric_of(right, step_names)
        ):
            return True
    return False


class PipelineRegistersBehindMetricGate(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a SageMaker pipeline registers a model only behind a condition on an "
                "evaluation metric"
            ),
            id="CKV_PHI_32",
            categories=[CheckCategories.AI_AND_ML],
            supported_resources=["aws_sagemaker_pipeline"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["pipeline_definition"]
        definition = json_document(scalar(conf, "pipeline_definition"))
        if definition is None:
            self.details.append("no JSON pipeline_definition: registrations cannot be verified")
            return CheckResult.FAILED
        step_names = {str(step.get("Name")) for step in pipeline_steps(definition)}
        registrations = [
            (step, gates, if_branch_only)
            for step, gates, if_branch_only in placements(_steps(definition.get("Steps")))
            if step.get("Type") == "RegisterModel"
        ]
        if not registrations:
            return CheckResult.UNKNOWN
        for step, gates, if_branch_only in registrations:
            name = step.get("Name")
            if not if_branch_only:
                self.details.append(f"step {name}: registers in an ElseSteps branch")
            elif not any(is_metric_gate(gate, step_names) for gate in gates):
                self.details.append(
                    f"step {name}: no enclosing condition compares an evaluation metric with a "
                    "literal threshold"
                )
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = PipelineRegistersBehindMetricGate()
