"""Every SageMaker pipeline definition against AWS's published pipeline-definition JSON schema
(vendored, with reviewed corrections: `policies/pipeline_schema.py`, `policies/schemas/`).

SageMaker refuses a CreatePipeline/UpdatePipeline whose definition does not parse as a pipeline
(a step without its Arguments, a condition of the wrong shape), so a definition the schema
refuses is an apply that fails. Definitions are validated as synthesized, Terraform references
included: every field that carries one is a pattern-free string in the schema (see
`tests/test_pipeline_schema.py`), so no placeholder is needed.
"""

from __future__ import annotations

import json
from typing import Any, Final

from jsonschema.exceptions import SchemaError

from policies import pipeline_schema
from policies.findings import Finding
from policies.preflight.base import (
    TOKEN,
    PreflightSourceError,
    Rule,
    SynthesizedStacks,
    verdict,
)

PIPELINE_RESOURCE: Final = "aws_sagemaker_pipeline"
DEFINITION_ATTRIBUTE: Final = "pipeline_definition"
# How many schema problems a finding names before it counts the rest.
SHOWN_PROBLEMS: Final = 5

SCHEMA: Final = Rule(
    id="PF_PIPELINE_SCHEMA",
    family="pipelines",
    title="SageMaker pipeline definitions are valid against AWS's pipeline-definition schema",
    source=(
        "AWS's SageMaker pipeline-definition JSON schema "
        "(aws-sagemaker-mlops/sagemaker-model-building-pipeline-definition-JSON-schema, "
        "vendored in policies/schemas/ with its reviewed corrections)"
    ),
)
RULES: Final[tuple[Rule, ...]] = (SCHEMA,)


def check(stacks: SynthesizedStacks) -> list[Finding]:
    schema = _schema()
    findings = []
    for resource in stacks.resources(PIPELINE_RESOURCE):
        body = resource.block.get(DEFINITION_ATTRIBUTE)
        # No inline definition (pipeline_definition_s3_location), or one that is wholly another
        # resource's value: nothing here to judge.
        if not isinstance(body, str) or TOKEN.fullmatch(body.strip()):
            continue
        problem = judge_definition(body, schema)
        name = resource.block.get("pipeline_name", resource.name)
        findings.append(verdict(SCHEMA, resource, problem, judged=f"pipeline {name}"))
    return findings


def _schema() -> dict[str, Any]:
    """The vendored schema with its corrections, or PreflightSourceError naming what broke."""
    try:
        schema = pipeline_schema.load_schema()
        pipeline_schema.VALIDATOR.check_schema(schema)
    except (OSError, ValueError, KeyError, TypeError, SchemaError) as error:
        # CorrectionError and json.JSONDecodeError are ValueErrors.
        raise PreflightSourceError(
            f"the pipeline-definition schema cannot be loaded from "
            f"{pipeline_schema.SCHEMAS} ({type(error).__name__}: {error})"
        ) from None
    return schema


def judge_definition(body: str, schema: dict[str, Any]) -> str | None:
    try:
        definition = json.loads(body)
    except json.JSONDecodeError as error:
        return f"pipeline_definition is not JSON ({error})"
    if not isinstance(definition, dict):
        return "pipeline_definition is not a JSON object"
    problems = pipeline_schema.validate_definition(definition, schema)
    if not problems:
        return None
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    hidden = len(problems) - SHOWN_PROBLEMS
    return shown + (f"; and {hidden} more" if hidden > 0 else "")
