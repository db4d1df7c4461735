"""The pipelines family: every real synthesized SageMaker pipeline definition is valid against
AWS's pipeline-definition schema (policies/pipeline_schema.py), and a twin with one structural
fault fails PF_PIPELINE_SCHEMA on exactly that pipeline, naming the JSON path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from policies import pipeline_schema
from policies.preflight import pipelines
from policies.preflight.base import PreflightSourceError, SynthesizedStacks
from tests.preflight.conftest import failed, first, mutant

ML_STACKS = {"dev-ml", "staging-ml", "prod-ml", "eu-research-ml"}
STACK = "dev-ml"
TRAINING = "pipelines_pipeline_"
FEATURE_BUILD = "feature-build_pipeline_"

Definition = dict[str, Any]


def test_every_real_pipeline_is_valid_and_judged(stacks: SynthesizedStacks) -> None:
    findings = pipelines.check(stacks)
    assert failed(findings) == []
    judged = {(f.stack, f.resource.split(".")[1].split("_")[0]) for f in findings}
    assert judged == {(s, kind) for s in ML_STACKS for kind in ("pipelines", "feature-build")}
    assert {f.check_id for f in findings} == {rule.id for rule in pipelines.RULES}
    assert all("pipeline phi-ml-" in f.detail for f in findings)


def definition_edit(
    prefix: str, change: Callable[[Definition], None]
) -> Callable[[dict[str, Any]], None]:
    def edit(configuration: dict[str, Any]) -> None:
        block = first(configuration, "aws_sagemaker_pipeline", prefix)
        definition = json.loads(block["pipeline_definition"])
        change(definition)
        block["pipeline_definition"] = json.dumps(definition)

    return edit


def step(definition: Definition, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in definition["Steps"] if s["Name"] == name)
    return found


def train_without_arguments(definition: Definition) -> None:
    del step(definition, "Train")["Arguments"]


def numeric_step_name(definition: Definition) -> None:
    step(definition, "Evaluate")["Name"] = 42


def unknown_step_type(definition: Definition) -> None:
    step(definition, "Build")["Type"] = "Processor"


def parameter_of_wrong_type(definition: Definition) -> None:
    definition["Parameters"][0]["Type"] = "Text"


# Mutants of the real pipeline definitions, each with the JSON path the schema must name.
MUTANTS = {
    "missing-arguments": (TRAINING, train_without_arguments, "$.Steps[1]"),
    "name-not-a-string": (TRAINING, numeric_step_name, "$.Steps[2].Name"),
    "unknown-step-type": (FEATURE_BUILD, unknown_step_type, "$.Steps[1].Type"),
    "parameter-type": (TRAINING, parameter_of_wrong_type, "$.Parameters[0]"),
}


@pytest.mark.parametrize(("prefix", "change", "path"), MUTANTS.values(), ids=MUTANTS.keys())
def test_a_faulty_definition_fails_on_that_pipeline(
    synthesized: Path,
    tmp_path: Path,
    prefix: str,
    change: Callable[[Definition], None],
    path: str,
) -> None:
    findings = pipelines.check(
        mutant(synthesized, tmp_path, STACK, definition_edit(prefix, change))
    )
    (failure,) = failed(findings)
    assert (failure.check_id, failure.stack) == ("PF_PIPELINE_SCHEMA", STACK)
    assert failure.resource.startswith(f"aws_sagemaker_pipeline.{prefix}")
    assert path in failure.detail
    assert "pipeline-definition JSON schema" in failure.detail  # the source is named


def test_a_definition_that_is_not_json_fails(synthesized: Path, tmp_path: Path) -> None:
    def truncate(configuration: dict[str, Any]) -> None:
        block = first(configuration, "aws_sagemaker_pipeline", TRAINING)
        block["pipeline_definition"] = block["pipeline_definition"][:-1]

    (failure,) = failed(pipelines.check(mutant(synthesized, tmp_path, STACK, truncate)))
    assert "not JSON" in failure.detail and failure.stack == STACK


def test_a_definition_held_elsewhere_is_not_judged(synthesized: Path, tmp_path: Path) -> None:
    def from_s3(configuration: dict[str, Any]) -> None:
        block = first(configuration, "aws_sagemaker_pipeline", TRAINING)
        del block["pipeline_definition"]
        block["pipeline_definition_s3_location"] = {"bucket": "b", "object_key": "k"}

    findings = pipelines.check(mutant(synthesized, tmp_path, STACK, from_s3))
    assert failed(findings) == []
    assert not any(f.stack == STACK and TRAINING in f.resource for f in findings)
    assert any(f.stack == STACK and FEATURE_BUILD in f.resource for f in findings)


def test_an_unreadable_schema_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pipeline_schema, "UPSTREAM_SCHEMA", tmp_path / "missing.schema.json")
    with pytest.raises(PreflightSourceError, match="schema cannot be loaded"):
        pipelines.check(stacks)


def test_a_correction_that_no_longer_applies_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    corrections = json.loads(pipeline_schema.CORRECTIONS.read_text(encoding="utf-8"))
    corrections["corrections"][0]["patch"].insert(
        0, {"op": "test", "path": "/definitions", "value": "reviewed against another schema"}
    )
    changed = tmp_path / "corrections.json"
    changed.write_text(json.dumps(corrections), encoding="utf-8")
    monkeypatch.setattr(pipeline_schema, "CORRECTIONS", changed)
    with pytest.raises(PreflightSourceError, match="CorrectionError"):
        pipelines.check(stacks)
