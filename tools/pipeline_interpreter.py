"""Run a SageMaker pipeline definition step by step, in-process, as SageMaker would run it.

    interpreter = PipelineInterpreter(definition, store=..., scratch=..., register=...)
    run = interpreter.run(parameters={"FeaturesAsOf": "..."})

What it interprets, and how strictly (a definition SageMaker would fail must fail here):
- Parameters: declared names only, each given or defaulted, typed String/Integer/Float/Boolean.
- `Get` references: `Parameters.<name>`, `Execution.PipelineExecutionId|PipelineExecutionArn|
  StartDateTime|PipelineName|PipelineArn`, and `Steps.<step>.<property path>` into the
  properties SageMaker exposes for the step kind (DescribeProcessingJob's
  ProcessingOutputConfig.Outputs['name'].S3Output.S3Uri, DescribeTrainingJob's
  ModelArtifacts.S3ModelArtifacts, the registered ModelPackageArn, and PropertyFiles). An
  unknown name, a step that has not run, or a path the step does not have is an error.
- `Std:Join` and `Std:JsonGet` (a property file of a step that ran, a dotted/indexed path).
- Processing steps: the entrypoint must be `python3 -m <module>` of a program shipped in the
  `ml` package; it runs in-process with its `main(argv)`. Every LocalPath must be under
  /opt/ml/processing/ (SageMaker's rule) and is mapped to a scratch root per instance; inputs
  are copied from the object store (S3Prefix semantics: every object whose key starts with the
  prefix, ShardedByS3Key splitting them over InstanceCount instances), outputs uploaded at the
  end. A program that exits non-zero, writes under /opt/ml/processing/output outside every
  declared output, or an input prefix with no objects fails the step.
- Training steps: the built-in algorithm image named by AlgorithmSpecification.TrainingImage is
  run as its in-process contract (`BUILT_IN_ALGORITHMS`): channels under /opt/ml/input/data,
  hyperparameters.json (every value a string, as the API requires), /opt/ml/model archived as
  <S3OutputPath>/<job name>/output/model.tar.gz.
- Condition steps (every condition must hold: SageMaker ANDs the list), Fail steps, and
  RegisterModel steps, whose resolved arguments are CreateModelPackage's input and go to the
  `register` callback (boto3's create_model_package against the emulator in `make ml-demo`).

Steps run in dependency order (Get references and DependsOn), ties in listed order; a cycle or a
reference to a step that does not exist is an error before anything runs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from ml.framework_versions import XGBOOST_FRAMEWORK, XGBOOST_REPOSITORY
from ml.sagemaker_paths import CONTAINER_ROOT_VARIABLE, MODEL_ARCHIVE

PROCESSING_ROOT = PurePosixPath("/opt/ml/processing")
PROCESSING_OUTPUT_ROOT = PROCESSING_ROOT / "output"
CONTAINER_PREFIX = "/opt/ml/"
PROGRAM_PACKAGE = "ml"
# Concurrent object transfers per staging or upload (boto3 clients are thread-safe).
TRANSFER_THREADS = 8
# The built-in algorithm images (repository, framework version) and the in-process program
# honouring each one's contract with the same library versions.
BUILT_IN_ALGORITHMS = {XGBOOST_REPOSITORY: (XGBOOST_FRAMEWORK, "ml.xgboost_training")}
EXECUTION_PROPERTIES = (
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "StartDateTime",
    "PipelineName",
    "PipelineArn",
)
_PATH_TOKEN = re.compile(r"\.?([A-Za-z0-9_]+)|\[(?:'([^']*)'|\"([^\"]*)\"|([0-9]+))\]")


class PipelineDefinitionError(ValueError):
    """The definition cannot run: SageMaker would refuse it or fail the step."""


class StepFailedError(RuntimeError):
    """A step's program or built-in algorithm failed (its message is the failure reason)."""


class ObjectStore(Protocol):
    """Where the run's S3 objects live: the emulator's S3, or a folder standing in for it."""

    def keys(self, uri: str) -> list[str]:
        """Every key of the bucket that starts with the URI's key prefix, sorted."""

    def download_prefix(self, uri: str, keys: list[str], target: Path) -> None:
        """The keys (listed under the URI's prefix) into the empty folder `target`, each at its
        key relative to the prefix (the first failure raised)."""

    def upload_all(self, transfers: list[tuple[Path, str]]) -> None:
        """Each (local file, s3:// URI), uploaded (the first failure raised)."""


def prefix_transfers(uri: str, keys: list[str], target: Path) -> list[tuple[str, Path]]:
    """S3Prefix semantics: each object at its key relative to the prefix (an object whose key
    is the prefix itself lands under its own name)."""
    _, prefix = split_uri(uri)
    return [
        (key, target / (key[len(prefix) :].lstrip("/") or PurePosixPath(key).name)) for key in keys
    ]


def split_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise PipelineDefinitionError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise PipelineDefinitionError(f"{uri!r} names no bucket")
    return bucket, key


class FolderObjectStore:
    """s3://bucket/key stored as <root>/bucket/key (tests, and runs without an emulator)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # The last listing of each URI: a download of exactly that listing is a whole folder.
        self._listed: dict[str, list[str]] = {}

    def keys(self, uri: str) -> list[str]:
        self._listed[uri] = self._walk(uri)
        return list(self._listed[uri])

    def _walk(self, uri: str) -> list[str]:
        bucket, prefix = split_uri(uri)
        base = self.root / bucket
        # Walk only the folder the prefix is in: a key prefix need not end at a "/".
        start = base / prefix.rsplit("/", 1)[0] if "/" in prefix else base
        if not start.is_dir():
            return []
        # os.walk, not Path.rglob: an offline store is thousands of hourly files, and rglob
        # builds a Path per entry (it cost a third of the Preprocess step in the bench).
        found = (
            os.path.relpath(os.path.join(folder, name), base).replace(os.sep, "/")
            for folder, _, names in os.walk(start)
            for name in names
        )
        return sorted(key for key in found if key.startswith(prefix))

    def download_prefix(self, uri: str, keys: list[str], target: Path) -> None:
        bucket, prefix = split_uri(uri)
        folder = self.root / bucket / prefix.rstrip("/")
        whole_folder = (
            bool(keys)
            and keys == self._listed.get(uri)
            and all(key.startswith(f"{prefix.rstrip('/')}/") for key in keys)
            and not any(target.iterdir())
        )
        if whole_folder:
            # Every object under the prefix, at its own relative path, is the folder itself:
            # seen through a link, as a bind mount would show it. An offline store is one
            # folder per event-time hour, and recreating them cost more than the step's own
            # work (~20,000 mkdir calls at 1,500 patients). The programs never write inputs.
            target.rmdir()
            target.symlink_to(folder.resolve(), target_is_directory=True)
            return
        # One after the other: each is a hard link (a copy would duplicate thousands of
        # files), and threads would only queue on the GIL.
        folders: set[Path] = set()
        for key, target_file in prefix_transfers(uri, keys, target):
            if target_file.parent not in folders:
                target_file.parent.mkdir(parents=True, exist_ok=True)
                folders.add(target_file.parent)
            source = self.root / bucket / key
            try:
                os.link(source, target_file)
            except OSError:
                shutil.copyfile(source, target_file)

    def upload_all(self, transfers: list[tuple[Path, str]]) -> None:
        for source, uri in transfers:
            bucket, key = split_uri(uri)
            target = self.root / bucket / key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


class S3ObjectStore:
    """The object store behind a boto3 S3 client (the emulator in `make ml-demo`)."""

    def __init__(self, s3: Any, *, kms_key_id: str | None = None) -> None:
        self.s3 = s3
        self.kms_key_id = kms_key_id

    def keys(self, uri: str) -> list[str]:
        bucket, prefix = split_uri(uri)
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [str(item["Key"]) for item in page.get("Contents", [])]
        return sorted(found)

    def download_prefix(self, uri: str, keys: list[str], target: Path) -> None:
        bucket, _ = split_uri(uri)

        def fetch(transfer: tuple[str, Path]) -> None:
            key, target = transfer
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, key, str(target))

        _in_parallel(fetch, prefix_transfers(uri, keys, target))

    def upload_all(self, transfers: list[tuple[Path, str]]) -> None:
        # The buckets deny puts without SSE-KMS; SageMaker encrypts outputs with the step's key.
        extra = {"ServerSideEncryption": "aws:kms"}
        if self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id

        def put(transfer: tuple[Path, str]) -> None:
            source, uri = transfer
            bucket, key = split_uri(uri)
            self.s3.upload_file(str(source), bucket, key, ExtraArgs=extra)

        _in_parallel(put, transfers)


@dataclass
class StepRecord:
    name: str
    type: str
    status: str = "NotStarted"
    seconds: float = 0.0
    failure_reason: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            **({"failure_reason": self.failure_reason} if self.failure_reason else {}),
        }


@dataclass
class PipelineRun:
    execution_id: str
    execution_arn: str
    start_time: str
    parameters: dict[str, Any]
    status: str = "Executing"
    failure_reason: str | None = None
    steps: list[StepRecord] = field(default_factory=list)

    def step(self, name: str) -> StepRecord:
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)


Register = Callable[[dict[str, Any]], str]
# (job name, the CreateTrainingJob request the step makes): an emulator records the job, as
# SageMaker Pipelines creates it, so the run's lineage can describe it.
RecordJob = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class _PropertyFile:
    step: str
    output_name: str
    file_path: str


class PipelineInterpreter:
    """One pipeline definition, runnable any number of times against an object store."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        *,
        store: ObjectStore,
        scratch: Path,
        register: Register,
        pipeline_arn: str = "arn:aws:sagemaker:us-east-1:000000000000:pipeline/local",
        record_training_job: RecordJob | None = None,
    ) -> None:
        self.definition = definition
        self.store = store
        self.scratch = scratch
        self.register = register
        self.record_training_job = record_training_job
        self.pipeline_arn = pipeline_arn
        steps = definition.get("Steps")
        if not isinstance(steps, list) or not steps:
            raise PipelineDefinitionError("Steps: the definition has no steps")
        self.top_level = steps
        self.all_steps = {step["Name"]: step for step in _every_step(steps)}
        self.order = _dependency_order(steps, set(self.all_steps))
        self.parameters = _declared_parameters(definition.get("Parameters", []))

    # --- a run ----------------------------------------------------------------------------

    def run(
        self, parameters: Mapping[str, Any] | None = None, *, execution_arn: str | None = None
    ) -> PipelineRun:
        """One execution; `execution_arn` is the one an emulator recorded for it (Start-
        PipelineExecution), so the run's outputs and lineage name an execution that can be
        described; a fresh id otherwise."""
        values = self._parameter_values(parameters or {})
        if execution_arn is None:
            execution_arn = f"{self.pipeline_arn}/execution/{uuid.uuid4().hex[:12]}"
        if not execution_arn.startswith(f"{self.pipeline_arn}/execution/"):
            raise PipelineDefinitionError(
                f"execution {execution_arn} is not an execution of {self.pipeline_arn}"
            )
        execution_id = execution_arn.rsplit("/", 1)[1]
        run = PipelineRun(
            execution_id=execution_id,
            execution_arn=execution_arn,
            start_time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            parameters=values,
        )
        try:
            for step in self.order:
                if not self._run_step(run, step):
                    break
            else:
                run.status = "Succeeded"
        except PipelineDefinitionError as problem:
            run.status, run.failure_reason = "Failed", str(problem)
        return run

    def _parameter_values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            raise PipelineDefinitionError(f"Parameters: not declared: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, (kind, default) in self.parameters.items():
            value = given.get(name, default)
            if value is None:
                raise PipelineDefinitionError(f"Parameters.{name}: no value and no default")
            values[name] = _typed_parameter(name, kind, value)
        return values

    def _run_step(self, run: PipelineRun, step: Mapping[str, Any]) -> bool:
        """Run one step (a Condition runs its branch); False when the run must stop."""
        record = StepRecord(name=str(step["Name"]), type=str(step["Type"]))
        run.steps.append(record)
        started = time.perf_counter()
        record.status = "Executing"
        try:
            kind = record.type
            if kind == "Processing":
                self._processing(run, step, record)
            elif kind == "Training":
                self._training(run, step, record)
            elif kind == "RegisterModel":
                arguments = self._resolve(run, step.get("Arguments", {}))
                record.properties = {"ModelPackageArn": self.register(arguments)}
            elif kind == "Condition":
                outcome = self._condition(run, step)
                record.properties = {"Outcome": outcome}
                record.status, record.seconds = "Succeeded", time.perf_counter() - started
                branch = step["Arguments"]["IfSteps" if outcome else "ElseSteps"]
                return all(self._run_step(run, inner) for inner in branch)
            elif kind == "Fail":
                message = self._resolve(run, step.get("Arguments", {}).get("ErrorMessage", ""))
                raise StepFailedError(str(message))
            else:
                raise PipelineDefinitionError(f"Steps.{record.name}: unknown step type {kind}")
        except StepFailedError as failure:
            record.status, record.failure_reason = "Failed", str(failure)
            record.seconds = time.perf_counter() - started
            run.status, run.failure_reason = "Failed", f"Step {record.name} failed: {failure}"
            return False
        except PipelineDefinitionError as problem:
            record.status, record.failure_reason = "Failed", str(problem)
            record.seconds = time.perf_counter() - started
            raise
        record.status, record.seconds = "Succeeded", time.perf_counter() - started
        return True

    # --- references -----------------------------------------------------------------------

    def _resolve(self, run: PipelineRun, value: Any) -> Any:
        if isinstance(value, list):
            return [self._resolve(run, item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self._get(run, value["Get"])
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            parts = [self._resolve(run, part) for part in join.get("Values", [])]
            return str(join.get("On", "")).join(_text(part) for part in parts)
        if set(value) == {"Std:JsonGet"}:
            return self._json_get(run, value["Std:JsonGet"])
        return {key: self._resolve(run, item) for key, item in value.items()}

    def _get(self, run: PipelineRun, reference: Any) -> Any:
        if not isinstance(reference, str):
            raise PipelineDefinitionError(f"Get: {reference!r} is not a reference string")
        root, _, rest = reference.partition(".")
        if root == "Parameters":
            if rest not in run.parameters:
                raise PipelineDefinitionError(f"Get {reference}: no such parameter")
            return run.parameters[rest]
        if root == "Execution":
            execution = {
                "PipelineExecutionId": run.execution_id,
                "PipelineExecutionArn": run.execution_arn,
                "StartDateTime": run.start_time,
                "PipelineName": self.pipeline_arn.rsplit("/", 1)[-1],
                "PipelineArn": self.pipeline_arn,
            }
            if rest not in execution:
                raise PipelineDefinitionError(f"Get {reference}: no such execution property")
            return execution[rest]
        if root == "Steps":
            name, _, path = rest.partition(".")
            record = self._ran(run, name, reference)
            if path.startswith("PropertyFiles."):
                return self._property_file(name, path.removeprefix("PropertyFiles."), reference)
            return _walk(record.properties, path, reference)
        raise PipelineDefinitionError(f"Get {reference}: unknown root {root!r}")

    def _ran(self, run: PipelineRun, name: str, reference: str) -> StepRecord:
        if name not in self.all_steps:
            raise PipelineDefinitionError(f"Get {reference}: no step named {name!r}")
        try:
            record = run.step(name)
        except KeyError:
            raise PipelineDefinitionError(f"Get {reference}: step {name} has not run") from None
        if record.status != "Succeeded":
            raise PipelineDefinitionError(f"Get {reference}: step {name} did not succeed")
        return record

    def _property_file(self, step: str, name: str, reference: str) -> _PropertyFile:
        for declared in self.all_steps[step].get("PropertyFiles", []):
            if declared.get("PropertyFileName") == name:
                return _PropertyFile(step, str(declared["OutputName"]), str(declared["FilePath"]))
        raise PipelineDefinitionError(f"Get {reference}: step {step} declares no such file")

    def _json_get(self, run: PipelineRun, spec: Mapping[str, Any]) -> Any:
        source = self._resolve(run, spec.get("PropertyFile"))
        if not isinstance(source, _PropertyFile):
            raise PipelineDefinitionError("Std:JsonGet: PropertyFile is not a step's property file")
        record = run.step(source.step)
        folder = record.properties.get("_local_outputs", {}).get(source.output_name)
        if folder is None:
            raise PipelineDefinitionError(
                f"Std:JsonGet: step {source.step} has no output {source.output_name!r}"
            )
        path = Path(folder) / source.file_path
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as problem:
            raise PipelineDefinitionError(
                f"Std:JsonGet: {source.step}'s {source.output_name}/{source.file_path}: "
                f"not readable JSON ({problem})"
            ) from None
        return _walk(document, str(spec.get("Path", "")), f"Std:JsonGet {spec.get('Path')}")

    def _condition(self, run: PipelineRun, step: Mapping[str, Any]) -> bool:
        conditions = step.get("Arguments", {}).get("Conditions", [])
        return all(self._holds(run, condition) for condition in conditions)

    def _holds(self, run: PipelineRun, condition: Mapping[str, Any]) -> bool:
        kind = condition.get("Type")
        if kind == "Not":
            return not self._holds(run, condition["Expression"])
        if kind == "Or":
            return any(self._holds(run, inner) for inner in condition["Conditions"])
        if kind == "In":
            value = self._resolve(run, condition["QueryValue"])
            return value in [self._resolve(run, v) for v in condition["Values"]]
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "Equals": lambda left, right: bool(left == right),
            "GreaterThan": lambda left, right: bool(left > right),
            "GreaterThanOrEqualTo": lambda left, right: bool(left >= right),
            "LessThan": lambda left, right: bool(left < right),
            "LessThanOrEqualTo": lambda left, right: bool(left <= right),
        }
        if kind not in comparisons:
            raise PipelineDefinitionError(f"Condition: unknown condition type {kind!r}")
        left = self._resolve(run, condition["LeftValue"])
        right = self._resolve(run, condition["RightValue"])
        try:
            return comparisons[kind](left, right)
        except TypeError:
            raise PipelineDefinitionError(
                f"Condition {kind}: cannot compare {left!r} with {right!r}"
            ) from None

    # --- processing -------------------------------------------------------------------------

    def _processing(self, run: PipelineRun, step: Mapping[str, Any], record: StepRecord) -> None:
        arguments = self._resolve(run, step["Arguments"])
        name = record.name
        app = arguments.get("AppSpecification")
        if not isinstance(app, dict):
            raise PipelineDefinitionError(f"Steps.{name}: no AppSpecification")
        module = _program(name, app.get("ContainerEntrypoint"))
        program_arguments = [_text(a) for a in app.get("ContainerArguments", [])]
        environment = {k: _text(v) for k, v in (arguments.get("Environment") or {}).items()}
        inputs = arguments.get("ProcessingInputs", [])
        outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in (*inputs, *outputs):
            local = item.get("S3Input", item.get("S3Output", {})).get("LocalPath", "")
            if not PurePosixPath(local).is_relative_to(PROCESSING_ROOT):
                raise PipelineDefinitionError(
                    f"Steps.{name}: LocalPath {local!r} is not under {PROCESSING_ROOT}/"
                )
        instances = int(arguments["ProcessingResources"]["ClusterConfig"]["InstanceCount"])
        job = f"pipelines-{run.execution_id}-{name.lower()}"
        local_outputs: dict[str, str] = {}
        for index in range(instances):
            host = f"algo-{index + 1}"
            root = self.scratch / run.execution_id / name / host
            self._stage_inputs(name, inputs, root, index, instances)
            declared = [_local(root, o["S3Output"]["LocalPath"]) for o in outputs]
            for folder in declared:
                folder.mkdir(parents=True, exist_ok=True)
            _write_resource_config(root, host, instances)
            argv = [_mapped(root, argument) for argument in program_arguments]
            with _container(root, environment):
                status = _call_main(module, argv)
            if status != 0:
                raise StepFailedError(f"{module} exited {status} on {host} ({job})")
            _refuse_undeclared_outputs(name, root, declared)
            for output, folder in zip(outputs, declared, strict=True):
                self._upload(folder, output["S3Output"]["S3Uri"])
                local_outputs.setdefault(output["OutputName"], str(folder))
        record.properties = {
            "ProcessingJobName": job,
            "ProcessingJobStatus": "Completed",
            "ProcessingOutputConfig": {
                "Outputs": {
                    o["OutputName"]: {"OutputName": o["OutputName"], "S3Output": o["S3Output"]}
                    for o in outputs
                }
            },
            "_local_outputs": local_outputs,
        }

    def _stage_inputs(
        self, step: str, inputs: list[Any], root: Path, index: int, instances: int
    ) -> None:
        for item in inputs:
            source = item.get("S3Input")
            if not isinstance(source, dict):
                raise PipelineDefinitionError(f"Steps.{step}: input without S3Input")
            uri = str(source["S3Uri"])
            keys = self.store.keys(uri)
            if not keys:
                raise StepFailedError(f"input {item.get('InputName')}: no objects under {uri}")
            if source.get("S3DataDistributionType") == "ShardedByS3Key":
                keys = keys[index::instances]
            target = _local(root, source["LocalPath"])
            target.mkdir(parents=True, exist_ok=True)
            self.store.download_prefix(uri, keys, target)

    def _upload(self, folder: Path, uri: str) -> None:
        base = uri.rstrip("/")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        self.store.upload_all([(p, f"{base}/{p.relative_to(folder).as_posix()}") for p in files])

    # --- training ---------------------------------------------------------------------------

    def _training(self, run: PipelineRun, step: Mapping[str, Any], record: StepRecord) -> None:
        arguments = self._resolve(run, step["Arguments"])
        name = record.name
        image = str(arguments.get("AlgorithmSpecification", {}).get("TrainingImage", ""))
        reference = image.split("/", 1)[-1].split("@", 1)[0]
        repository, _, tag = reference.partition(":")
        if repository not in BUILT_IN_ALGORITHMS:
            raise PipelineDefinitionError(
                f"Steps.{name}: TrainingImage {image!r} is not a built-in algorithm the "
                f"interpreter knows ({', '.join(sorted(BUILT_IN_ALGORITHMS))})"
            )
        framework, module = BUILT_IN_ALGORITHMS[repository]
        if tag and not tag.startswith(framework):
            raise PipelineDefinitionError(
                f"Steps.{name}: TrainingImage {image!r}: the in-process algorithm is "
                f"{repository} {framework}, not {tag}"
            )
        hyperparameters = arguments.get("HyperParameters", {})
        not_text = sorted(k for k, v in hyperparameters.items() if not isinstance(v, str))
        if not_text:
            raise PipelineDefinitionError(
                f"Steps.{name}: HyperParameters must be strings: {', '.join(not_text)}"
            )
        job = f"pipelines-{run.execution_id}-{name.lower()}"
        if self.record_training_job is not None:
            self.record_training_job(job, dict(arguments))
        root = self.scratch / run.execution_id / name / "algo-1"
        job_input = root / "opt/ml/input"
        channels: dict[str, Any] = {}
        for channel in arguments.get("InputDataConfig", []):
            source = channel["DataSource"]["S3DataSource"]
            uri = str(source["S3Uri"])
            keys = self.store.keys(uri)
            if not keys:
                raise StepFailedError(f"channel {channel['ChannelName']}: no objects under {uri}")
            channel_folder = job_input / "data" / channel["ChannelName"]
            channel_folder.mkdir(parents=True, exist_ok=True)
            self.store.download_prefix(uri, keys, channel_folder)
            channels[channel["ChannelName"]] = {
                "ContentType": channel.get("ContentType", ""),
                "TrainingInputMode": "File",
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            }
        (job_input / "config").mkdir(parents=True, exist_ok=True)
        (job_input / "config/hyperparameters.json").write_text(json.dumps(hyperparameters))
        (job_input / "config/inputdataconfig.json").write_text(json.dumps(channels))
        model_dir, failure = root / "opt/ml/model", root / "opt/ml/output/failure"
        model_dir.mkdir(parents=True, exist_ok=True)
        failure.parent.mkdir(parents=True, exist_ok=True)
        argv = ["--input", str(job_input), "--model-dir", str(model_dir)]
        with _container(root, {}):
            status = _call_main(module, [*argv, "--failure-file", str(failure)])
        if status != 0:
            reason = failure.read_text(encoding="utf-8") if failure.is_file() else f"exit {status}"
            raise StepFailedError(reason)
        archive = root / MODEL_ARCHIVE
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(model_dir.rglob("*")):
                tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
        output_path = str(arguments["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
        model_uri = f"{output_path}/{job}/output/{MODEL_ARCHIVE}"
        self.store.upload_all([(archive, model_uri)])
        record.properties = {
            "TrainingJobName": job,
            "TrainingJobStatus": "Completed",
            "HyperParameters": dict(hyperparameters),
            "ModelArtifacts": {"S3ModelArtifacts": model_uri},
        }


# --- helpers --------------------------------------------------------------------------------


def _in_parallel(action: Callable[[Any], None], items: list[Any]) -> None:
    """Each item through `action` on TRANSFER_THREADS threads, as SageMaker stages inputs and
    uploads outputs concurrently (an offline store is thousands of hourly files); the first
    failure is raised."""
    if len(items) < 2:
        for item in items:
            action(item)
        return
    with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:
        for future in [pool.submit(action, item) for item in items]:
            future.result()


def _every_step(steps: list[Any]) -> Iterator[dict[str, Any]]:
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get("Name"), str):
            raise PipelineDefinitionError(f"Steps: {step!r} is not a named step")
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments", {})
            yield from _every_step([*arguments.get("IfSteps", []), *arguments.get("ElseSteps", [])])


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"Get"} and isinstance(value["Get"], str):
            if value["Get"].startswith("Steps."):
                yield value["Get"].split(".")[1]
            return
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _dependency_order(steps: list[dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
    """Top-level steps in an order where each runs after the steps it references."""
    names = [step["Name"] for step in steps]
    if len(set(names)) != len(names):
        raise PipelineDefinitionError("Steps: two steps share a name")
    owner = {}  # a step inside a condition branch belongs to the condition
    for step in steps:
        for inner in _every_step([step]):
            owner[inner["Name"]] = step["Name"]
    needs: dict[str, set[str]] = {}
    for step in steps:
        wanted = set()
        for inner in _every_step([step]):
            for reference in [*_references(inner), *inner.get("DependsOn", [])]:
                if reference not in known:
                    raise PipelineDefinitionError(
                        f"Steps.{inner['Name']}: references unknown step {reference!r}"
                    )
                if owner[reference] != step["Name"]:
                    wanted.add(owner[reference])
        needs[step["Name"]] = wanted
    ordered: list[dict[str, Any]] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:
        ready = next((s for s in pending if needs[s["Name"]] <= done), None)
        if ready is None:
            cycle = ", ".join(s["Name"] for s in pending)
            raise PipelineDefinitionError(f"Steps: dependency cycle among {cycle}")
        ordered.append(ready)
        done.add(ready["Name"])
        pending.remove(ready)
    return ordered


def _declared_parameters(parameters: list[Any]) -> dict[str, tuple[str, Any]]:
    declared: dict[str, tuple[str, Any]] = {}
    for parameter in parameters:
        name, kind = parameter.get("Name"), parameter.get("Type", "String")
        if not isinstance(name, str) or kind not in ("String", "Integer", "Float", "Boolean"):
            raise PipelineDefinitionError(f"Parameters: {parameter!r} is not a valid parameter")
        declared[name] = (kind, parameter.get("DefaultValue"))
    return declared


def _typed_parameter(name: str, kind: str, value: Any) -> Any:
    try:
        if kind == "Integer":
            return int(value)
        if kind == "Float":
            return float(value)
        if kind == "Boolean":
            if isinstance(value, bool):
                return value
            if str(value).lower() not in ("true", "false"):
                raise ValueError(value)
            return str(value).lower() == "true"
    except (TypeError, ValueError):
        raise PipelineDefinitionError(f"Parameters.{name}: {value!r} is not a {kind}") from None
    return str(value)


def _walk(document: Any, path: str, reference: str) -> Any:
    value = document
    position = 0
    while position < len(path):
        token = _PATH_TOKEN.match(path, position)
        if token is None:
            raise PipelineDefinitionError(f"{reference}: cannot parse path at {path[position:]!r}")
        position = token.end()
        attribute, quoted, double, index = token.groups()
        key: Any = attribute or quoted or double
        try:
            value = value[int(index)] if index is not None else value[key]
        except (KeyError, IndexError, TypeError):
            raise PipelineDefinitionError(f"{reference}: no {path[: token.end()]!r}") from None
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise PipelineDefinitionError(f"{value!r} is not a primitive value")


def _program(step: str, entrypoint: Any) -> str:
    if (
        not isinstance(entrypoint, list)
        or len(entrypoint) != 3
        or entrypoint[:2] != ["python3", "-m"]
        or not str(entrypoint[2]).startswith(f"{PROGRAM_PACKAGE}.")
    ):
        raise PipelineDefinitionError(
            f"Steps.{step}: ContainerEntrypoint {entrypoint!r} is not python3 -m "
            f"{PROGRAM_PACKAGE}.<program>"
        )
    module = str(entrypoint[2])
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        raise PipelineDefinitionError(f"Steps.{step}: no program {module}") from None
    if not callable(getattr(loaded, "main", None)):
        raise PipelineDefinitionError(f"Steps.{step}: {module} has no main(argv)")
    return module


def _call_main(module: str, argv: list[str]) -> int:
    try:
        status = importlib.import_module(module).main(argv)
    except SystemExit as exit_:  # argparse refusing the arguments
        code = exit_.code
        return code if isinstance(code, int) else 1
    return int(status or 0)


def _local(root: Path, container_path: str) -> Path:
    return root / container_path.lstrip("/")


def _mapped(root: Path, argument: str) -> str:
    if argument.startswith(CONTAINER_PREFIX):
        return str(_local(root, argument))
    return argument


def _write_resource_config(root: Path, host: str, instances: int) -> None:
    config = root / "opt/ml/config/resourceconfig.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    hosts = [f"algo-{i + 1}" for i in range(instances)]
    config.write_text(json.dumps({"current_host": host, "hosts": hosts}), encoding="utf-8")


def _refuse_undeclared_outputs(step: str, root: Path, declared: list[Path]) -> None:
    output_root = _local(root, str(PROCESSING_OUTPUT_ROOT))
    if not output_root.is_dir():
        return
    for path in output_root.rglob("*"):
        if path.is_file() and not any(path.is_relative_to(folder) for folder in declared):
            raise StepFailedError(
                f"Steps.{step}: wrote /{path.relative_to(root).as_posix()}, which is under no "
                f"declared ProcessingOutput (SageMaker would discard it)"
            )


@contextlib.contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """These process environment variables while the block runs, the previous ones after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _container(
    root: Path, environment: Mapping[str, str]
) -> contextlib.AbstractContextManager[None]:
    """The step's environment variables and container root, restored afterwards."""
    return temporary_environment({**environment, CONTAINER_ROOT_VARIABLE: str(root)})
