"""Every synthesized SageMaker pipeline definition against AWS's published pipeline-definition
schema (vendored unmodified, plus reviewed corrections): each ML stack's training and
feature-build pipelines are valid; a structurally wrong twin of each kind is refused with a
message naming the path; and each correction is needed, since without it the synthesized
training pipeline is refused.

The definitions hold Terraform interpolations ("${aws_iam_role.x.arn}", cross-stack remote-state
outputs) in string fields. They are validated as they are: every field that carries one (RoleArn,
KmsKeyId, VolumeKmsKeyId, subnets, security groups, S3 URIs) is a pattern-free string in the
schema, so no placeholder is needed, and a placeholder would only hide a wrong shape. If the
schema ever constrains such a field with a pattern, the validity test fails and says where.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import main
from policies.pipeline_schema import (
    CORRECTIONS,
    UPSTREAM_SCHEMA,
    VALIDATOR,
    CorrectionError,
    apply_patch,
    load_corrections,
    load_schema,
    load_upstream_schema,
    validate_definition,
)

# aws-sagemaker-mlops/sagemaker-model-building-pipeline-definition-JSON-schema@b4012b0,
# schema/pipeline-definition.schema.json.
UPSTREAM_BLOB = "fe3975cf8e544679d1849418d67c8ff6df0de2fd"

ML_STACKS = ("dev-ml", "staging-ml", "prod-ml", "eu-research-ml")
# Logical-name prefixes of the two aws_sagemaker_pipeline resources of an ML stack.
PIPELINES = {"training": "pipelines_pipeline_", "feature-build": "feature-build_pipeline_"}

Definition = dict[str, Any]


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Definition]:
    """(stack, pipeline kind) -> definition, for every aws_sagemaker_pipeline in every stack of
    one synthesis of every environment."""
    out = tmp_path_factory.mktemp("pipeline-schema") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize([], out)
    found: dict[tuple[str, str], Definition] = {}
    for stack_file in sorted((out / "stacks").glob("*/cdk.tf.json")):
        resources = json.loads(stack_file.read_text())["resource"]
        for logical, pipeline in resources.get("aws_sagemaker_pipeline", {}).items():
            (kind,) = [k for k, prefix in PIPELINES.items() if logical.startswith(prefix)]
            assert (stack_file.parent.name, kind) not in found, logical
            found[(stack_file.parent.name, kind)] = json.loads(pipeline["pipeline_definition"])
    return found


@pytest.fixture(scope="module")
def training(definitions: dict[tuple[str, str], Definition]) -> Definition:
    return definitions[("dev-ml", "training")]


@pytest.fixture(scope="module")
def feature_build(definitions: dict[tuple[str, str], Definition]) -> Definition:
    return definitions[("dev-ml", "feature-build")]


def test_each_ml_stack_and_only_those_hold_the_two_pipelines(
    definitions: dict[tuple[str, str], Definition],
) -> None:
    assert set(definitions) == {(stack, kind) for stack in ML_STACKS for kind in PIPELINES}
    # What the module docstring says about interpolations is about these definitions.
    assert all("${" in json.dumps(d) for d in definitions.values())


@pytest.mark.parametrize("kind", PIPELINES)
@pytest.mark.parametrize("stack", ML_STACKS)
def test_synthesized_definition_is_valid(
    definitions: dict[tuple[str, str], Definition], stack: str, kind: str
) -> None:
    definition = definitions[(stack, kind)]
    before = copy.deepcopy(definition)
    assert validate_definition(definition) == []
    assert definition == before  # validation reads, never edits


# The failing twins ----------------------------------------------------------------------------


def step_path(definition: Definition, name: str) -> tuple[str, Definition]:
    """The JSON path of the step called `name` (top level or in a condition's branch) and it."""
    for i, step in enumerate(definition["Steps"]):
        if step["Name"] == name:
            return f"$.Steps[{i}]", step
        for branch in ("IfSteps", "ElseSteps"):
            for j, nested in enumerate(step["Arguments"].get(branch, [])):
                if nested["Name"] == name:
                    return f"$.Steps[{i}].Arguments.{branch}[{j}]", nested
    raise AssertionError(f"no step {name!r}")


def rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def left_value(step: Definition) -> Any:
    return step["Arguments"]["Conditions"][0]["LeftValue"]


@dataclass(frozen=True)
class Mutation:
    id: str
    pipeline: str
    step: str
    edit: Callable[[Definition], None]
    at: str  # JSON path below the step's
    says: str


MUTATIONS = [
    Mutation(
        "unknown-step-type",
        "training",
        "Train",
        lambda s: s.update(Type="Trainer"),
        ".Type",
        "'Trainer' is not one of ['AutoML', 'Callback',",
    ),
    Mutation(
        "unknown-step-type-in-a-condition-branch",
        "training",
        "Register",
        lambda s: s.update(Type="RegisterModels"),
        ".Type",
        "'RegisterModels' is not one of ['Fail', 'Processing', 'RegisterModel',",
    ),
    Mutation(
        "processing-app-specification-misspelled",
        "training",
        "Preprocess",
        lambda s: rename(s["Arguments"], "AppSpecification", "AppSpecifications"),
        ".Arguments",
        "'AppSpecifications' was unexpected",
    ),
    Mutation(
        "processing-without-arguments",
        "feature-build",
        "Partition",
        lambda s: s.pop("Arguments"),
        "",
        "'Arguments' is a required property",
    ),
    Mutation(
        "get-with-a-non-string",
        "training",
        "Evaluate",
        lambda s: s["Arguments"]["ProcessingInputs"][0]["S3Input"].update(S3Uri={"Get": 5}),
        ".Arguments.ProcessingInputs[0].S3Input.S3Uri.Get",
        "5 is not of type 'string'",
    ),
    Mutation(
        "unknown-condition-type",
        "training",
        "MetricGate",
        lambda s: s["Arguments"]["Conditions"][0].update(Type="GreaterThanOrEqual"),
        ".Arguments.Conditions[0].Type",
        "'GreaterThanOrEqual' is not one of",
    ),
    Mutation(
        "integer-argument-as-a-string",
        "training",
        "Train",
        lambda s: s["Arguments"]["ResourceConfig"].update(InstanceCount="1"),
        ".Arguments.ResourceConfig.InstanceCount",
        "'1' is not valid under any of the given schemas",
    ),
    Mutation(
        "step-name-outside-the-pattern",
        "training",
        "Baseline",
        lambda s: s.update(Name="Base line"),
        ".Name",
        "'Base line' does not match",
    ),
    # Twins of the corrections: each admits exactly the SDK's shape, no more.
    Mutation(
        "property-file-without-file-path",
        "training",
        "Evaluate",
        lambda s: s["PropertyFiles"][0].pop("FilePath"),
        ".PropertyFiles[0]",
        "'FilePath' is a required property",
    ),
    Mutation(
        "json-get-of-something-not-a-property-file",
        "training",
        "MetricGate",
        lambda s: left_value(s)["Std:JsonGet"]["PropertyFile"].update(
            Get="Steps.Evaluate.Properties.EvaluationReport"
        ),
        ".Arguments.Conditions[0].LeftValue['Std:JsonGet'].PropertyFile.Get",
        "'Steps.Evaluate.Properties.EvaluationReport' does not match",
    ),
    Mutation(
        "json-get-without-path",
        "training",
        "MetricGate",
        lambda s: left_value(s)["Std:JsonGet"].pop("Path"),
        ".Arguments.Conditions[0].LeftValue['Std:JsonGet']",
        "'Path' is a required property",
    ),
    Mutation(
        "join-values-not-a-list",
        "training",
        "Train",
        lambda s: s["Arguments"]["OutputDataConfig"]["S3OutputPath"]["Std:Join"].update(
            Values="s3://bucket/train"
        ),
        ".Arguments.OutputDataConfig.S3OutputPath['Std:Join'].Values",
        "'s3://bucket/train' is not of type 'array'",
    ),
    Mutation(
        "join-with-an-unknown-member",
        "feature-build",
        "Partition",
        lambda s: rename(
            s["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]["Std:Join"],
            "On",
            "Separator",
        ),
        ".Arguments.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri['Std:Join']",
        "'Separator' was unexpected",
    ),
    Mutation(
        "app-managed-not-a-boolean",
        "feature-build",
        "Build",
        lambda s: s["Arguments"]["ProcessingInputs"][0].update(AppManaged="no"),
        ".Arguments.ProcessingInputs[0].AppManaged",
        "'no' is not valid under any of the given schemas",
    ),
    Mutation(
        "unknown-approval-status",
        "training",
        "Register",
        lambda s: s["Arguments"].update(ModelApprovalStatus="Approve"),
        ".Arguments.ModelApprovalStatus",
        "'Approve' is not one of ['Approved', 'Rejected', 'PendingManualApproval']",
    ),
    Mutation(
        "drift-baseline-without-content-type",
        "training",
        "Register",
        lambda s: s["Arguments"]["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"].pop(
            "ContentType"
        ),
        ".Arguments.DriftCheckBaselines.ModelDataQuality.Statistics",
        "'ContentType' is a required property",
    ),
    Mutation(
        "empty-customer-metadata",
        "training",
        "Register",
        lambda s: s["Arguments"].update(CustomerMetadataProperties={}),
        ".Arguments.CustomerMetadataProperties",
        "{} should be non-empty",
    ),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.id)
def test_a_structurally_wrong_definition_is_refused_naming_the_path(
    definitions: dict[tuple[str, str], Definition], mutation: Mutation
) -> None:
    definition = copy.deepcopy(definitions[("dev-ml", mutation.pipeline)])
    path, step = step_path(definition, mutation.step)
    mutation.edit(step)
    problems = validate_definition(definition)
    expected = f"{path}{mutation.at}: "
    assert any(p.startswith(expected) and mutation.says in p for p in problems), problems


def drop_app_specification(definition: Definition) -> None:
    step_path(definition, "Preprocess")[1]["Arguments"].pop("AppSpecification")


def drop_model_package_group(definition: Definition) -> None:
    step_path(definition, "Register")[1]["Arguments"].pop("ModelPackageGroupName")


@pytest.mark.parametrize("edit", [drop_app_specification, drop_model_package_group])
def test_what_the_published_schema_does_not_require(
    training: Definition, edit: Callable[[Definition], None]
) -> None:
    # The schema has no `required` for Processing or RegisterModel arguments, so these pass it;
    # tests/test_pipeline_contract.py and tests/test_pipelines.py hold the definition to them.
    # If this fails, the schema now catches the edit: make it a Mutation above.
    definition = copy.deepcopy(training)
    edit(definition)
    assert validate_definition(definition) == []


# The corrections ------------------------------------------------------------------------------

# What the synthesized training pipeline is refused for without each correction.
NEEDED_FOR = {
    "processing-step-property-files": ["'PropertyFiles' was unexpected"],
    "std-json-get-function": [
        ".Arguments.Conditions[0].LeftValue: ",
        "'Std:JsonGet' was unexpected",
        ".CustomerMetadataProperties['dataset-manifest-sha256']: ",
    ],
    "std-join-function": [".S3Input.S3Uri: ", ".OutputDataConfig.S3OutputPath: ", "'Std:Join'"],
    "processing-io-app-managed": [".ProcessingInputs[0]: ", ".Outputs[0]: ", "'AppManaged'"],
    "register-model-customer-metadata-properties": ["'CustomerMetadataProperties' was unexpected"],
    "register-model-drift-check-baselines": ["'DriftCheckBaselines' was unexpected"],
    "register-model-approval-status": ["'ModelApprovalStatus' was unexpected"],
    "register-model-metadata-properties": ["'MetadataProperties' was unexpected"],
}


def test_the_uncorrected_schema_refuses_the_training_pipeline(training: Definition) -> None:
    problems = validate_definition(training, load_upstream_schema())
    assert any("'PropertyFiles' was unexpected" in p for p in problems), problems
    assert any("'Std:JsonGet'" in p for p in problems), problems


@pytest.mark.parametrize("correction", [c.id for c in load_corrections()])
def test_each_correction_is_needed(training: Definition, correction: str) -> None:
    problems = validate_definition(training, load_schema(without={correction}))
    assert problems, f"{correction} is not needed by the synthesized training pipeline"
    for fragment in NEEDED_FOR[correction]:
        assert any(fragment in p for p in problems), (fragment, problems)


def test_every_correction_says_why_and_cites_its_source() -> None:
    corrections = load_corrections()
    assert [c.id for c in corrections] == list(NEEDED_FOR)
    for correction in corrections:
        assert len(correction.reason) > 40, correction.id
        assert correction.evidence, correction.id
        for source in correction.evidence:
            # "sdk <file>:<line>" (aws/sagemaker-python-sdk at the tag the file names) or
            # "api <shape>" (the SageMaker service model).
            assert source.startswith(("sdk src/", "sdk doc/", "api ")), source
            if source.startswith("sdk "):
                assert ".py:" in source or ".rst:" in source, source
        assert any(op["op"] == "test" for op in correction.patch), correction.id


def test_the_vendored_schema_is_upstream_byte_for_byte() -> None:
    content = UPSTREAM_SCHEMA.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False)
    assert blob.hexdigest() == UPSTREAM_BLOB
    assert json.loads(CORRECTIONS.read_text())["upstream"]["git_blob"] == UPSTREAM_BLOB


def test_the_corrected_schema_is_a_valid_schema_of_its_draft() -> None:
    VALIDATOR.check_schema(load_upstream_schema())
    VALIDATOR.check_schema(load_schema())


def test_a_correction_that_no_longer_matches_upstream_stops_loading() -> None:
    upstream = load_upstream_schema()
    stale = {"op": "test", "path": "/definitions/ProcessingStep/additionalProperties", "value": 1}
    overwrite = {"op": "add", "path": "/definitions/GetFunction", "value": {}}
    nowhere = {"op": "replace", "path": "/definitions/NoSuchStep/properties", "value": {}}
    for operation, says in [
        (stale, "upstream differs"),
        (overwrite, "already present"),
        (nowhere, "no such location"),
    ]:
        with pytest.raises(CorrectionError, match=says):
            apply_patch(upstream, [operation], "twin")
    assert upstream == load_upstream_schema()  # the input is never edited
    with pytest.raises(ValueError, match="no such correction: typo"):
        load_schema(without={"typo"})


def test_the_schema_files_ship_with_the_package() -> None:
    root = Path(__file__).parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    packaged = {
        path
        for pattern in setuptools["package-data"]["policies"]
        for path in (root / "policies").glob(pattern)
    }
    assert {UPSTREAM_SCHEMA, CORRECTIONS} <= packaged
