"""The synthesized training pipeline against the programs it runs: a definition SageMaker can
execute. Every processing step's entrypoint is a shipped program; its arguments parse with that
program's own parser; the paths it is told to read and write are the step's inputs and outputs;
the property files name what the programs write; the gate's JSON path exists in a report the
Evaluate program writes; the Train step's hyperparameters pass the built-in container's
validation. Each property beside the definition that breaks it."""

from __future__ import annotations

import copy
import importlib
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pytest

from ml.evaluate import binary_classification_metrics
from ml.hyperparameters import HyperparameterError, parse
from ml.sagemaker_paths import (
    BASELINE_CONSTRAINTS,
    BASELINE_STATISTICS,
    DATASET_DIGEST,
    EVALUATION_REPORT,
    MODEL_DIGEST,
)
from tests.synth import synth_stack
from tests.test_pipelines import (
    METRIC,
    all_steps,
    build_platform,
    definition_of,
    pipeline_config,
    step_named,
)

# What a run-time value resolves to, for parsing the arguments as the container sees them.
SAMPLE_VALUES = {"Parameters.FeaturesAsOf": "2026-07-01T02:14:07Z"}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    """The definition as the ML stack synthesizes it (the layer on real keys, buckets, VPC)."""
    return definition_of(synth_stack(lambda stack: build_platform(stack, pipeline_config())))


def processing_steps(definition: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in all_steps(definition) if s["Type"] == "Processing"]


def resolved(argument: Any) -> str:
    if isinstance(argument, str):
        return argument
    return SAMPLE_VALUES[argument["Get"]]


def parsed(step: dict[str, Any]) -> tuple[Any, Any]:
    """(the program's module, its arguments as its own parser reads them)."""
    app = step["Arguments"]["AppSpecification"]
    python, flag, module_name = app["ContainerEntrypoint"]
    assert (python, flag) == ("python3", "-m")
    module = importlib.import_module(module_name)
    arguments = [resolved(a) for a in app.get("ContainerArguments", [])]
    return module, module.parse_arguments(arguments)


def local_paths(step: dict[str, Any]) -> tuple[set[PurePosixPath], set[PurePosixPath]]:
    arguments = step["Arguments"]
    inputs = {PurePosixPath(i["S3Input"]["LocalPath"]) for i in arguments["ProcessingInputs"]}
    outputs = {
        PurePosixPath(o["S3Output"]["LocalPath"])
        for o in arguments["ProcessingOutputConfig"]["Outputs"]
    }
    return inputs, outputs


def path_problems(step: dict[str, Any]) -> list[str]:
    """Paths the program is told to use that no input or output of the step provides."""
    _, namespace = parsed(step)
    inputs, outputs = local_paths(step)
    problems = []
    for name, value in vars(namespace).items():
        if not hasattr(value, "parts") or not str(value).startswith("/opt/ml/"):
            continue
        path = PurePosixPath(str(value))
        if name == "output":
            if path not in outputs:
                problems.append(f"{step['Name']}: --output {path} is not an output")
            continue
        # An input path, or a folder of inputs (the features: one input per group below it).
        if not any(path == p or p in path.parents or path in p.parents for p in inputs):
            problems.append(f"{step['Name']}: --{name} {path} is no input")
    return problems


def test_every_processing_step_runs_a_shipped_program(definition: dict[str, Any]) -> None:
    steps = processing_steps(definition)
    assert [s["Name"] for s in steps] == ["Preprocess", "Evaluate", "Baseline"]
    for step in steps:
        module, _ = parsed(step)
        # The image copies ml/ (tests/ml/test_model_steps_image.py holds its imports).
        assert module.__name__.startswith("ml."), step["Name"]
        assert callable(module.main)


def test_the_twin_an_entrypoint_without_a_program_is_caught(definition: dict[str, Any]) -> None:
    broken = copy.deepcopy(step_named(definition, "Preprocess"))
    broken["Arguments"]["AppSpecification"]["ContainerEntrypoint"] = ["python3", "-m", "ml.prep"]
    with pytest.raises(ModuleNotFoundError):
        parsed(broken)


def test_every_processing_steps_arguments_parse_with_its_program(
    definition: dict[str, Any],
) -> None:
    for step in processing_steps(definition):
        parsed(step)  # argparse exits (SystemExit) on anything it does not accept


def test_the_twin_an_argument_the_program_does_not_know_is_refused(
    definition: dict[str, Any],
) -> None:
    broken = copy.deepcopy(step_named(definition, "Evaluate"))
    broken["Arguments"]["AppSpecification"]["ContainerArguments"] += ["--metric", METRIC]
    with pytest.raises(SystemExit):
        parsed(broken)


def test_the_programs_read_and_write_the_steps_own_paths(definition: dict[str, Any]) -> None:
    for step in processing_steps(definition):
        assert path_problems(step) == []


def test_the_twin_a_path_no_input_provides_is_caught(definition: dict[str, Any]) -> None:
    broken = copy.deepcopy(step_named(definition, "Baseline"))
    arguments = broken["Arguments"]["AppSpecification"]["ContainerArguments"]
    arguments[arguments.index("--output") + 1] = "/opt/ml/processing/output/elsewhere"
    arguments[arguments.index("--dataset") + 1] = "/opt/ml/processing/input/data"
    assert path_problems(broken) == [
        "Baseline: --dataset /opt/ml/processing/input/data is no input",
        "Baseline: --output /opt/ml/processing/output/elsewhere is not an output",
    ]


def test_property_files_name_what_the_programs_write(definition: dict[str, Any]) -> None:
    files = {
        step["Name"]: [p["FilePath"] for p in step.get("PropertyFiles", [])]
        for step in processing_steps(definition)
    }
    assert files == {
        "Preprocess": [DATASET_DIGEST],
        "Evaluate": [EVALUATION_REPORT, MODEL_DIGEST],
        "Baseline": [],
    }


def test_the_gates_path_exists_in_a_report_the_evaluate_program_writes(
    definition: dict[str, Any],
) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)
    report = {"binary_classification_metrics": binary_classification_metrics(labels, scores)}
    (condition,) = step_named(definition, "MetricGate")["Arguments"]["Conditions"]
    value: Any = report
    for part in condition["LeftValue"]["Std:JsonGet"]["Path"].split("."):
        value = value[part]
    assert isinstance(value, float) and 0 <= value <= 1


def test_the_train_steps_hyperparameters_pass_the_containers_validation(
    definition: dict[str, Any],
) -> None:
    hyperparameters = step_named(definition, "Train")["Arguments"]["HyperParameters"]
    assert all(isinstance(v, str) for v in hyperparameters.values())  # as SageMaker passes them
    typed = parse(hyperparameters, gate_metric=METRIC)
    assert typed["objective"] == "binary:logistic"
    assert typed["eval_metric"] == METRIC
    without_rounds = {k: v for k, v in hyperparameters.items() if k != "num_round"}
    with pytest.raises(HyperparameterError, match="num_round: required"):
        parse(without_rounds, gate_metric=METRIC)


def test_register_carries_the_evaluation_and_the_baseline(definition: dict[str, Any]) -> None:
    arguments = step_named(definition, "Register")["Arguments"]
    baselines = arguments["DriftCheckBaselines"]["ModelDataQuality"]
    baseline_output = {
        "Get": "Steps.Baseline.ProcessingOutputConfig.Outputs['baseline'].S3Output.S3Uri"
    }
    for part, file_name in (
        ("Constraints", BASELINE_CONSTRAINTS),
        ("Statistics", BASELINE_STATISTICS),
    ):
        assert baselines[part]["S3Uri"] == {
            "Std:Join": {"On": "/", "Values": [baseline_output, file_name]}
        }
    metadata = arguments["CustomerMetadataProperties"]
    assert metadata["dataset-manifest-sha256"]["Std:JsonGet"] == {
        "PropertyFile": {"Get": "Steps.Preprocess.PropertyFiles.DatasetDigest"},
        "Path": "manifest_sha256",
    }
    assert metadata["features-as-of"] == {"Get": "Parameters.FeaturesAsOf"}
