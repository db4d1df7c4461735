"""The synthesized training pipeline, executed step by step in-process by the interpreter
`make ml-demo` uses: the definition's own parameters, references, paths and property files
drive the step programs, so a wrong reference, path, entrypoint or gate path fails the run (one
twin each), and a passing run registers a package whose every artifact exists."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ml import feature_builder, synthetic_fhir
from ml.fhir_export import export_files
from tests.ml import exports
from tests.synth import synth_stack
from tests.test_pipelines import build_platform, definition_of, pipeline_config, step_named
from tools.pipeline_interpreter import (
    FolderObjectStore,
    PipelineDefinitionError,
    PipelineInterpreter,
    PipelineRun,
    split_uri,
)

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
# What the trigger passes: the feature build that wrote the records, and when it finished.
BUILD_PARAMETERS = {
    "FeatureBuildExecutionArn": (
        "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/unit-readmission-features"
        "/execution/4r2y0v8dkpxe"
    ),
    "FeaturesAsOf": "2026-06-30T00:15:00Z",
}
PATIENTS = 1500
GATE = 0.75  # what 1,500 synthetic patients clear deterministically (tests/ml loop test)
OFFLINE_STORE = exports.OFFLINE_STORE
SPEC_KEY = "pipelines/unit-readmission-features/feature-spec.json"
XGBOOST = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
SERVING = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/phi-ml/serving@sha256:{'ab' * 32}"
TERRAFORM_REFERENCE = re.compile(r"\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}")


def resolved_references(synthesized: dict[str, Any], definition: dict[str, Any]) -> Any:
    """The definition as Terraform hands it to SageMaker: `${type.id.attribute}` replaced by the
    synthesized literal (bucket names), other attributes by a stand-in known only at apply."""

    def value(match: re.Match[str]) -> str:
        kind, name, attribute = match.groups()
        literal = synthesized["resource"].get(kind, {}).get(name, {}).get(attribute)
        if isinstance(literal, str) and "${" not in literal:
            return literal
        return f"{name}-{attribute}-at-apply"

    return json.loads(TERRAFORM_REFERENCE.sub(value, json.dumps(definition)))


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    config = pipeline_config(
        offline_store_uri=OFFLINE_STORE,
        metric_threshold=GATE,
        training_image=XGBOOST,
        inference_image=SERVING,
    )
    return synth_stack(lambda stack: build_platform(stack, config))


@pytest.fixture(scope="module")
def definition(synthesized: dict[str, Any]) -> dict[str, Any]:
    return dict(resolved_references(synthesized, definition_of(synthesized)))


def spec_uri(definition: dict[str, Any]) -> str:
    preprocess = step_named(definition, "Preprocess")["Arguments"]["ProcessingInputs"]
    (spec,) = [i for i in preprocess if i["InputName"] == "spec"]
    return str(spec["S3Input"]["S3Uri"])


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory, definition: dict[str, Any]) -> Path:
    """An object store holding what the feature build leaves: the offline store's Parquet of
    the synthetic population and the feature spec where the definition reads it."""
    root = tmp_path_factory.mktemp("s3")
    work = tmp_path_factory.mktemp("population")
    export = synthetic_fhir.write_export(
        synthetic_fhir.generate(PATIENTS, 7, as_of=AS_OF), work / "export"
    )
    bucket, prefix = split_uri(OFFLINE_STORE)
    feature_builder.build(
        export_files(export),
        exports.spec(),
        offline_output=root / bucket / prefix,
        online_output=None,
        shard="local",
        write_time=AS_OF,
    )
    spec_bucket, spec_key = split_uri(spec_uri(definition))
    (root / spec_bucket / spec_key).parent.mkdir(parents=True)
    (root / spec_bucket / spec_key).write_text(exports.spec().to_json(), encoding="utf-8")
    return root


class Registry:
    def __init__(self) -> None:
        self.packages: list[dict[str, Any]] = []

    def __call__(self, arguments: dict[str, Any]) -> str:
        self.packages.append(arguments)
        return f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/x/{len(self.packages)}"


def run_of(
    definition: dict[str, Any], store_root: Path, scratch: Path
) -> tuple[PipelineRun, Registry]:
    registry = Registry()
    interpreter = PipelineInterpreter(
        definition, store=FolderObjectStore(store_root), scratch=scratch, register=registry
    )
    return interpreter.run(BUILD_PARAMETERS), registry


def statuses(run: PipelineRun) -> dict[str, str]:
    return {step.name: step.status for step in run.steps}


def object_at(store_root: Path, uri: str) -> Path:
    bucket, key = split_uri(uri)
    return store_root / bucket / key


@pytest.fixture(scope="module")
def passing(
    definition: dict[str, Any], store_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[PipelineRun, Registry]:
    return run_of(definition, store_root, tmp_path_factory.mktemp("run"))


def test_the_synthesized_pipeline_runs_to_a_registered_package(
    passing: tuple[PipelineRun, Registry],
) -> None:
    run, registry = passing
    assert run.status == "Succeeded", run.failure_reason
    assert statuses(run) == {
        "Preprocess": "Succeeded",
        "Train": "Succeeded",
        "Evaluate": "Succeeded",
        "Baseline": "Succeeded",
        "MetricGate": "Succeeded",
        "Register": "Succeeded",
    }
    (package,) = registry.packages
    assert package["ModelApprovalStatus"] == "PendingManualApproval"


def test_every_artifact_the_package_names_exists_with_the_digest_it_states(
    passing: tuple[PipelineRun, Registry], store_root: Path
) -> None:
    run, registry = passing
    (package,) = registry.packages
    (container,) = package["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"].endswith(
        f"/{run.step('Train').properties['TrainingJobName']}/output/model.tar.gz"
    )
    assert object_at(store_root, container["ModelDataUrl"]).is_file()
    baseline = package["DriftCheckBaselines"]["ModelDataQuality"]
    for part in ("Constraints", "Statistics"):
        assert object_at(store_root, baseline[part]["S3Uri"]).is_file()
    report = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    auc = json.loads(object_at(store_root, report).read_text())["binary_classification_metrics"]
    assert auc["auc"]["value"] >= GATE
    metadata = package["CustomerMetadataProperties"]
    manifest = object_at(store_root, metadata["dataset-manifest-uri"]).read_bytes()
    assert metadata["dataset-manifest-sha256"] == hashlib.sha256(manifest).hexdigest()
    # The cut-off is the feature build's end, not the run's start, and the version says so.
    assert json.loads(manifest)["as_of"] == BUILD_PARAMETERS["FeaturesAsOf"]
    assert metadata["features-as-of"] == BUILD_PARAMETERS["FeaturesAsOf"]
    assert metadata["feature-build-job"] == BUILD_PARAMETERS["FeatureBuildExecutionArn"]
    assert metadata["PipelineExecutionArn"] == run.execution_arn
    archive = object_at(store_root, container["ModelDataUrl"]).read_bytes()
    assert metadata["model-archive-sha256"] == hashlib.sha256(archive).hexdigest()
    assert package["MetadataProperties"]["GeneratedBy"] == run.execution_arn


def mutated(definition: dict[str, Any], step: str, change: Any) -> dict[str, Any]:
    copied = copy.deepcopy(definition)
    change(step_named(copied, step))
    return copied


def processing_input(step: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [i for i in step["Arguments"]["ProcessingInputs"] if i["InputName"] == name]
    return dict(found["S3Input"])


def wrong_local_path(step: dict[str, Any]) -> None:
    (found,) = [i for i in step["Arguments"]["ProcessingInputs"] if i["InputName"] == "dataset"]
    found["S3Input"]["LocalPath"] = "/opt/ml/processing/input/data"


def wrong_output_name(step: dict[str, Any]) -> None:
    (found,) = [i for i in step["Arguments"]["ProcessingInputs"] if i["InputName"] == "dataset"]
    found["S3Input"]["S3Uri"] = {
        "Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['datasets'].S3Output.S3Uri"
    }


def wrong_gate_path(step: dict[str, Any]) -> None:
    step["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"]["Path"] = (
        "binary_classification_metrics.roc_auc.value"
    )


def unshipped_program(step: dict[str, Any]) -> None:
    step["Arguments"]["AppSpecification"]["ContainerEntrypoint"] = ["python3", "-m", "ml.eval"]


def output_elsewhere(step: dict[str, Any]) -> None:
    (output,) = step["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    output["S3Output"]["LocalPath"] = "/opt/ml/processing/output/reports"


@pytest.mark.parametrize(
    "defect",
    [
        ("Evaluate", wrong_local_path, "ml.evaluate exited"),
        ("Evaluate", wrong_output_name, "Outputs['datasets']"),
        ("MetricGate", wrong_gate_path, "roc_auc"),
        ("Evaluate", unshipped_program, "no program ml.eval"),
        ("Evaluate", output_elsewhere, "under no declared ProcessingOutput"),
    ],
    ids=["input-path", "reference", "gate-path", "entrypoint", "output-path"],
)
def test_the_twin_a_defect_in_the_definition_fails_the_run_and_registers_nothing(
    definition: dict[str, Any],
    store_root: Path,
    tmp_path: Path,
    defect: tuple[str, Any, str],
) -> None:
    step, change, reason = defect
    run, registry = run_of(mutated(definition, step, change), store_root, tmp_path)
    assert run.status == "Failed"
    assert reason in str(run.failure_reason)
    assert registry.packages == []


def test_the_twin_a_gate_the_model_does_not_clear_fails_at_the_fail_step(
    definition: dict[str, Any], store_root: Path, tmp_path: Path
) -> None:
    def unreachable(step: dict[str, Any]) -> None:
        step["Arguments"]["Conditions"][0]["RightValue"] = 0.999

    run, registry = run_of(mutated(definition, "MetricGate", unreachable), store_root, tmp_path)
    assert run.status == "Failed"
    assert statuses(run)["MetricBelowThreshold"] == "Failed"
    assert "Register" not in statuses(run)
    assert registry.packages == []


def test_a_reference_to_a_step_that_does_not_exist_is_refused_before_anything_runs(
    definition: dict[str, Any], store_root: Path, tmp_path: Path
) -> None:
    def dangling(step: dict[str, Any]) -> None:
        (found,) = [i for i in step["Arguments"]["ProcessingInputs"] if i["InputName"] == "dataset"]
        found["S3Input"]["S3Uri"] = {"Get": "Steps.Prepare.ProcessingOutputConfig.Outputs"}

    with pytest.raises(PipelineDefinitionError, match="unknown step 'Prepare'"):
        PipelineInterpreter(
            mutated(definition, "Evaluate", dangling),
            store=FolderObjectStore(store_root),
            scratch=tmp_path,
            register=Registry(),
        )


def test_undeclared_parameters_are_refused(
    definition: dict[str, Any], store_root: Path, tmp_path: Path
) -> None:
    interpreter = PipelineInterpreter(
        definition, store=FolderObjectStore(store_root), scratch=tmp_path, register=Registry()
    )
    with pytest.raises(PipelineDefinitionError, match="not declared: InputUri"):
        interpreter.run({"InputUri": "s3://elsewhere/"})


# --- the folder store's staging ---------------------------------------------------------------


def folder_store(tmp_path: Path) -> FolderObjectStore:
    for key in (
        "store/group/2026/01/a.parquet",
        "store/group/2026/02/b.parquet",
        "store/group-old/c",
    ):
        path = tmp_path / "s3" / "bucket" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key)
    return FolderObjectStore(tmp_path / "s3")


def stage(tmp_path: Path, uri: str, every: int = 1, start: int = 0) -> Path:
    """The objects under `uri` (every `every`-th from `start`, as a shard) staged into a folder."""
    store = folder_store(tmp_path)
    target = tmp_path / "input"
    target.mkdir()
    store.download_prefix(uri, store.keys(uri)[start::every], target)
    return target


def staged(target: Path) -> dict[str, str]:
    return {
        p.relative_to(target).as_posix(): p.read_text() for p in target.rglob("*") if p.is_file()
    }


def test_a_whole_folder_prefix_is_staged_as_the_folder_itself(tmp_path: Path) -> None:
    target = stage(tmp_path, "s3://bucket/store/group/")
    assert target.is_symlink()
    assert staged(target) == {
        "2026/01/a.parquet": "store/group/2026/01/a.parquet",
        "2026/02/b.parquet": "store/group/2026/02/b.parquet",
    }


def test_a_prefix_that_is_not_one_folder_is_staged_object_by_object(tmp_path: Path) -> None:
    # "store/group" also matches "store/group-old/c": S3 prefixes are not folders.
    target = stage(tmp_path, "s3://bucket/store/group")
    assert not target.is_symlink()
    assert staged(target) == {
        "2026/01/a.parquet": "store/group/2026/01/a.parquet",
        "2026/02/b.parquet": "store/group/2026/02/b.parquet",
        "-old/c": "store/group-old/c",
    }


def test_a_shard_of_a_folder_is_only_its_own_keys(tmp_path: Path) -> None:
    target = stage(tmp_path, "s3://bucket/store/group/", every=2, start=1)
    assert not target.is_symlink()
    assert staged(target) == {"2026/02/b.parquet": "store/group/2026/02/b.parquet"}
