"""Benchmark of the model loop (`make bench` runs it after tools.bench_features).

    python -m tools.bench_ml [--runs 5] [--patients 1500] [--quick] [--ml-demo | --no-ml-demo]
        [--output reports/bench-ml.json] [--markdown reports/bench-ml.md]
        [--max-load 1.5] [--max-wait 600]

Measured:

1. The pipeline interpreter's overhead. One synthetic population (`ml.synthetic_fhir`, seed 7)
   is built into the offline store's Parquet layout (`ml.feature_builder`, untimed) inside a
   folder standing in for S3, beside the feature spec where the definition reads it. The
   training pipeline definition `environments/dev` synthesizes (modules.pipelines.
   pipeline_definition of its PipelineConfig, literal role, key and subnets) then runs two ways:
   (a) interpreted: tools.pipeline_interpreter.PipelineInterpreter over a FolderObjectStore,
       its RegisterModel step collected by a callback;
   (b) direct: the same step programs called in the same order with the definition's own
       arguments (ml.preprocess, ml.xgboost_training's in-process contract, ml.evaluate,
       ml.monitor_baseline, then the gate's comparison), on local folders: the offline store and
       the spec read where they lie, the dataset, model and reports written once.
   So (a) - (b) is everything the interpreter adds: resolving references, copying every input
   object into the step's scratch root, archiving the model as model.tar.gz, uploading every
   output, property files, the register callback. Both in this process, one untimed warm-up
   each, then --runs rounds (default 5, --quick 2) alternating a and b, so a change of load
   spreads over both. Target: a / b at most 1.2 (medians). Both must train the same model
   (sha256 of the Booster file `xgboost-model`) with the same gate metric and gate outcome in
   every run, or the bench fails.
2. `make ml-demo` end to end: `PHI_TARGET=local python main.py --out TMP dev` (timed, reported
   apart), then one `python -m tools.ml_demo dev --out TMP --reports TMP` (moto, terraform
   apply, two feature builds and trainings, approval, deploy, drift, rollback, lineage; about 8
   minutes, at ml-demo's own 1,500 patients): its wall time and the per-step seconds of its
   run.json. Skipped with --no-ml-demo, and in --quick unless --ml-demo is given.

Targets are reported met / not met, never enforced: exit 0 when the benchmark ran, 1 when a
measured step or command failed or the two ways trained different models, 2 for a usage error
(one line).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final, NoReturn

from environments.layer_configs import LayerConfigs, layer_configs
from environments.loader import load_environment
from environments.schema import WorkloadEnvironment
from ml import evaluate, feature_builder, monitor_baseline, preprocess, synthetic_fhir
from ml import xgboost_training as training
from ml.fhir_export import export_files
from ml.model_quality import GATE_METRIC_PATHS
from ml.sagemaker_paths import (
    EVALUATION_REPORT,
    SPLIT_FILES,
    XGBOOST_MODEL_FILE,
)
from modules.feature_build import features_pipeline_name
from modules.pipelines import (
    BASELINE_STEP,
    BELOW_THRESHOLD_STEP,
    EVALUATE_STEP,
    EVALUATION_OUTPUT,
    FEATURE_BUILD_EXECUTION,
    FEATURES_AS_OF_PARAMETER,
    GATE_STEP,
    PREPROCESS_STEP,
    REGISTER_STEP,
    TRAIN_STEP,
    PipelineConfig,
    SourceRevision,
    pipeline_definition,
)
from tools.bench import (
    DEFAULT_MAX_LOAD,
    DEFAULT_MAX_WAIT_SECONDS,
    REPO_ROOT,
    BenchError,
    Sample,
    Summary,
    bench_environment,
    machine_info,
    markdown_table,
    megabytes,
    non_negative,
    run_measured,
    text_table,
    wait_for_quiet_machine,
)
from tools.cli import EXIT_USAGE, positive_int
from tools.feature_flow import AS_OF, environment_path
from tools.ml_demo import DEFAULT_PATIENTS as ML_DEMO_PATIENTS
from tools.ml_demo import RUN_FILE
from tools.pipeline_interpreter import (
    FolderObjectStore,
    PipelineDefinitionError,
    PipelineInterpreter,
    split_uri,
)

INTERPRETED: Final = "interpreted"
DIRECT: Final = "direct"
WAYS: Final = (INTERPRETED, DIRECT)
DEFAULT_RUNS: Final = 5
QUICK_RUNS: Final = 2
# ml-demo's population: the model clears dev's gate on it.
DEFAULT_PATIENTS: Final = ML_DEMO_PATIENTS
QUICK_PATIENTS: Final = 300
SEED: Final = 7
BENCH_ENVIRONMENT: Final = "dev"
# The feature build finished a quarter of an hour after the export's instant.
FEATURES_AS_OF: Final = "2026-06-30T00:15:00Z"
OVERHEAD_TARGET: Final = 1.2
DEFAULT_OUTPUT: Final = Path("reports/bench-ml.json")
DEFAULT_MARKDOWN: Final = Path("reports/bench-ml.md")
# What the stack would put into the definition; only their shape matters to the interpreter.
ML_KEY_ID: Final = "0b5e1c2d-3f4a-4b6c-8d7e-9f0a1b2c3d4e"
SECURITY_GROUP_ID: Final = "sg-0123456789abcdef0"
SUBNET_IDS: Final = ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210")
ARTIFACTS_PURPOSE: Final = "ml-artifacts"
CONTAINER_PREFIX: Final = "/opt/ml/"
PROCESSING: Final = PurePosixPath("/opt/ml/processing")
OUTPUT_TAIL_CHARACTERS: Final = 600


# --- the workload: one population, one definition -------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What both ways run: the definition, its parameters, and the object store's folder."""

    config: PipelineConfig
    definition: dict[str, Any]
    parameters: dict[str, str]
    store_root: Path
    artifacts_bucket: str
    spec_file: Path
    patients: int

    @property
    def offline_folder(self) -> Path:
        """The offline store as the feature builder wrote it (every group's folder)."""
        bucket, prefix = split_uri(self.config.offline_store_uri)
        return self.store_root / bucket / prefix

    def run_folder(self, execution_id: str) -> Path:
        """Where an interpreted run's outputs land in the store (removed after each run)."""
        prefix = self.config.artifacts_prefix.rstrip("/")
        return self.store_root / self.artifacts_bucket / prefix / execution_id


def bench_definition(
    environment_name: str = BENCH_ENVIRONMENT,
) -> tuple[LayerConfigs, dict[str, Any]]:
    """The environment's layer configs and the training definition synthesized from its
    pipeline config as the stack does, with literal role, key and network ids."""
    environment = load_environment(environment_path(environment_name))
    if not isinstance(environment, WorkloadEnvironment):
        raise BenchError(f"{environment_name} is not a workload environment")
    configs = layer_configs(environment)
    config = configs.pipeline
    definition = pipeline_definition(
        config,
        role_arn=f"arn:aws:iam::{config.account_id}:role/{config.execution_role_name}",
        ml_key_arn=f"arn:aws:kms:{config.region}:{config.account_id}:key/{ML_KEY_ID}",
        security_group_id=SECURITY_GROUP_ID,
        subnet_ids=list(SUBNET_IDS),
        artifacts_bucket_name=configs.storage.bucket_name(ARTIFACTS_PURPOSE),
        source=SourceRevision(),
    )
    return configs, definition


def build_parameters(config: PipelineConfig) -> dict[str, str]:
    """What the trigger passes: the feature build's execution and when it finished."""
    features = features_pipeline_name(config.pipeline_name)
    execution = (
        f"arn:aws:sagemaker:{config.region}:{config.account_id}:pipeline/{features}"
        "/execution/bench0000000"
    )
    return {FEATURE_BUILD_EXECUTION: execution, FEATURES_AS_OF_PARAMETER: FEATURES_AS_OF}


def stage_workload(
    scratch: Path, patients: int, environment_name: str = BENCH_ENVIRONMENT
) -> Workload:
    """The population's offline store and the feature spec in a folder object store."""
    configs, definition = bench_definition(environment_name)
    config, artifacts_bucket = configs.pipeline, configs.storage.bucket_name(ARTIFACTS_PURPOSE)
    resolved = {
        group: (
            f"{config.offline_store_uri}{group}/{config.account_id}/sagemaker/{config.region}/"
            f"offline-store/{group}-1780000000/data"
        )
        for group in config.feature_groups
    }
    spec = configs.feature_build.feature_spec(resolved)
    store_root = scratch / "s3"
    export = synthetic_fhir.write_export(
        synthetic_fhir.generate(patients, SEED, as_of=AS_OF), scratch / "export"
    )
    bucket, prefix = split_uri(config.offline_store_uri)
    with contextlib.redirect_stdout(io.StringIO()):
        feature_builder.build(
            export_files(export),
            spec,
            offline_output=store_root / bucket / prefix,
            online_output=None,
            shard="local",
            write_time=AS_OF,
        )
    shutil.rmtree(export)
    spec_file = store_root / artifacts_bucket / config.feature_spec_key
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(spec.to_json(), encoding="utf-8")
    return Workload(
        config=config,
        definition=definition,
        parameters=build_parameters(config),
        store_root=store_root,
        artifacts_bucket=artifacts_bucket,
        spec_file=spec_file,
        patients=patients,
    )


# --- one run of each way --------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a run trained: compared between the ways, and between runs."""

    model_sha256: str
    metric: float
    registered: bool


@dataclass(frozen=True)
class Timed:
    seconds: float
    steps: dict[str, float]
    outcome: Outcome


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gate_metric(report: Mapping[str, Any], metric_name: str) -> float:
    value: Any = report
    for part in GATE_METRIC_PATHS[metric_name].split("."):
        value = value[part]
    return float(value)


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """The step programs' prints, kept for a failure's message (both ways alike)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def _tail(buffer: io.StringIO) -> str:
    text = " ".join(buffer.getvalue().split())
    return text[-OUTPUT_TAIL_CHARACTERS:]


def interpreted(workload: Workload, scratch: Path) -> Timed:
    """The definition through the interpreter; the run's outputs removed afterwards."""
    packages: list[dict[str, Any]] = []

    def register(arguments: dict[str, Any]) -> str:
        packages.append(arguments)
        config = workload.config
        return (
            f"arn:aws:sagemaker:{config.region}:{config.account_id}:model-package/"
            f"{config.model_package_group_name}/{len(packages)}"
        )

    with captured_output() as output:
        started = time.perf_counter()
        try:
            interpreter = PipelineInterpreter(
                workload.definition,
                store=FolderObjectStore(workload.store_root),
                scratch=scratch,
                register=register,
            )
            run = interpreter.run(workload.parameters)
        except PipelineDefinitionError as problem:
            raise BenchError(f"the interpreter refused the definition: {problem}") from None
        seconds = time.perf_counter() - started
    try:
        statuses = {record.name: record.status for record in run.steps}
        below_gate = statuses.get(BELOW_THRESHOLD_STEP) == "Failed"
        if run.status != "Succeeded" and not below_gate:
            raise BenchError(f"the interpreted run failed: {run.failure_reason} ({_tail(output)})")
        store = FolderObjectStore(workload.store_root)
        model_uri = run.step(TRAIN_STEP).properties["ModelArtifacts"]["S3ModelArtifacts"]
        outputs = run.step(EVALUATE_STEP).properties["ProcessingOutputConfig"]["Outputs"]
        report_uri = f"{outputs[EVALUATION_OUTPUT]['S3Output']['S3Uri']}/{EVALUATION_REPORT}"
        report = json.loads(_object(store, report_uri).read_text(encoding="utf-8"))
        outcome = Outcome(
            model_sha256=sha256_hex(archived_model(_object(store, model_uri))),
            metric=gate_metric(report, workload.config.metric_name),
            registered=run.status == "Succeeded" and len(packages) == 1,
        )
    finally:
        shutil.rmtree(workload.run_folder(run.execution_id), ignore_errors=True)
        shutil.rmtree(scratch / run.execution_id, ignore_errors=True)
    return Timed(seconds, {r.name: r.seconds for r in run.steps}, outcome)


def _object(store: FolderObjectStore, uri: str) -> Path:
    bucket, key = split_uri(uri)
    return store.root / bucket / key


def archived_model(archive: Path) -> bytes:
    """The Booster file inside a training job's model.tar.gz."""
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(XGBOOST_MODEL_FILE)
        if member is None:
            raise BenchError(f"{archive}: holds no {XGBOOST_MODEL_FILE}")
        with member:
            return member.read()


def step_named(definition: Mapping[str, Any], name: str) -> dict[str, Any]:
    pending = list(definition["Steps"])
    while pending:
        step = pending.pop(0)
        if step["Name"] == name:
            return dict(step)
        arguments = step.get("Arguments", {})
        pending += [*arguments.get("IfSteps", []), *arguments.get("ElseSteps", [])]
    raise BenchError(f"the definition has no step {name}")


def program_arguments(
    workload: Workload, step: str, folders: Mapping[str, Path]
) -> tuple[str, list[str]]:
    """The step's program and its ContainerArguments from the definition, with parameters
    resolved and every container path mapped into the local folder standing for it."""
    app = step_named(workload.definition, step)["Arguments"]["AppSpecification"]
    module = str(app["ContainerEntrypoint"][-1])
    arguments = []
    for argument in app.get("ContainerArguments", []):
        if isinstance(argument, dict) and set(argument) == {"Get"}:
            name = str(argument["Get"]).removeprefix("Parameters.")
            if name not in workload.parameters:
                raise BenchError(f"{step}: argument {argument} is not a given parameter")
            arguments.append(workload.parameters[name])
        elif isinstance(argument, str) and argument.startswith(CONTAINER_PREFIX):
            arguments.append(str(_local_path(step, argument, folders)))
        else:
            arguments.append(str(argument))
    return module, arguments


def _local_path(step: str, argument: str, folders: Mapping[str, Path]) -> Path:
    path = PurePosixPath(argument)
    for container in sorted(folders, key=len, reverse=True):
        if path.is_relative_to(container):
            return folders[container] / path.relative_to(container)
    raise BenchError(
        f"{step}: the definition's argument {argument} has no local folder in the direct "
        "path (the definition changed: the bench must follow it)"
    )


def call_program(step: str, module: str, argv: list[str]) -> None:
    programs: dict[str, Callable[[list[str]], int]] = {
        "ml.preprocess": preprocess.main,
        "ml.evaluate": evaluate.main,
        "ml.monitor_baseline": monitor_baseline.main,
    }
    if module not in programs:
        raise BenchError(f"{step}: the definition runs {module}, which the direct path does not")
    with captured_output() as output:
        try:
            status = programs[module](argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    if status:
        raise BenchError(f"{step}: {module} exited {status} ({_tail(output)})")


def train_directly(workload: Workload, dataset: Path, job: Path) -> Path:
    """The Train step's built-in algorithm contract, by hand: hyperparameters.json and
    inputdataconfig.json from the definition, each channel the dataset's split file."""
    arguments = step_named(workload.definition, TRAIN_STEP)["Arguments"]
    config_folder = job / "input/config"
    config_folder.mkdir(parents=True)
    channels = {}
    for channel in arguments["InputDataConfig"]:
        name = str(channel["ChannelName"])
        folder = job / "input/data" / name
        folder.mkdir(parents=True)
        os.link(dataset / SPLIT_FILES[name], folder / SPLIT_FILES[name])
        source = channel["DataSource"]["S3DataSource"]
        channels[name] = {
            "ContentType": channel.get("ContentType", ""),
            "TrainingInputMode": "File",
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
        }
    hyperparameters = train_hyperparameters(arguments)
    (config_folder / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config_folder / "inputdataconfig.json").write_text(json.dumps(channels))
    model = job / "model"
    argv = ["--input", str(job / "input"), "--model-dir", str(model)]
    with captured_output() as output:
        status = training.main([*argv, "--failure-file", str(job / "failure")])
    if status:
        raise BenchError(f"{TRAIN_STEP}: ml.xgboost_training exited {status} ({_tail(output)})")
    return model


def train_hyperparameters(arguments: Mapping[str, Any]) -> dict[str, str]:
    """The Train step's HyperParameters, as CreateTrainingJob passes them."""
    return dict(arguments["HyperParameters"])


def direct(workload: Workload, scratch: Path) -> Timed:
    """The four step programs called one after the other, then the gate's comparison."""
    work = Path(tempfile.mkdtemp(prefix="direct-", dir=scratch))
    dataset, model = work / "dataset", work / "train/model"
    evaluation, baseline = work / "evaluation", work / "baseline"
    steps: dict[str, float] = {}
    try:
        started = time.perf_counter()
        module, argv = program_arguments(
            workload,
            PREPROCESS_STEP,
            {
                f"{PROCESSING}/input/features": workload.offline_folder,
                f"{PROCESSING}/input/spec": workload.spec_file.parent,
                f"{PROCESSING}/output/dataset": dataset,
            },
        )
        call_program(PREPROCESS_STEP, module, argv)
        steps[PREPROCESS_STEP] = time.perf_counter() - started
        mark = time.perf_counter()
        train_directly(workload, dataset, work / "train")
        steps[TRAIN_STEP] = time.perf_counter() - mark
        for step, folders in (
            (
                EVALUATE_STEP,
                {
                    f"{PROCESSING}/input/model": model,
                    f"{PROCESSING}/input/dataset": dataset,
                    f"{PROCESSING}/output/evaluation": evaluation,
                },
            ),
            (
                BASELINE_STEP,
                {
                    f"{PROCESSING}/input/dataset": dataset,
                    f"{PROCESSING}/output/baseline": baseline,
                },
            ),
        ):
            mark = time.perf_counter()
            module, argv = program_arguments(workload, step, folders)
            call_program(step, module, argv)
            steps[step] = time.perf_counter() - mark
        mark = time.perf_counter()
        config = workload.config
        report = json.loads((evaluation / EVALUATION_REPORT).read_text(encoding="utf-8"))
        metric = gate_metric(report, config.metric_name)
        registered = metric >= config.metric_threshold
        steps[GATE_STEP] = time.perf_counter() - mark
        seconds = time.perf_counter() - started
        outcome = Outcome(
            model_sha256=sha256_hex((model / XGBOOST_MODEL_FILE).read_bytes()),
            metric=metric,
            registered=registered,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Timed(seconds, steps, outcome)


def check_same_model(expected: Outcome, found: Outcome, where: str) -> None:
    if found != expected:
        raise BenchError(
            f"{where} trained a different model: {_outcome_text(found)}, against "
            f"{_outcome_text(expected)}"
        )


def _outcome_text(outcome: Outcome) -> str:
    return (
        f"model sha256 {outcome.model_sha256[:12]}, metric {outcome.metric:.6f}, "
        f"{'registered' if outcome.registered else 'below the gate'}"
    )


# --- results --------------------------------------------------------------------------------


@dataclass
class WayRuns:
    seconds: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)
    # Each run's time outside every step (the interpreter's ordering, resolving, records).
    between_steps: list[float] = field(default_factory=list)

    def add(self, timed: Timed) -> None:
        self.seconds.append(timed.seconds)
        self.between_steps.append(timed.seconds - sum(timed.steps.values()))
        for name, seconds in timed.steps.items():
            self.steps.setdefault(name, []).append(seconds)

    def median(self) -> float:
        return statistics.median(self.seconds)

    def step_median(self, name: str) -> float | None:
        samples = self.steps.get(name)
        return statistics.median(samples) if samples else None


@dataclass
class MlDemoRun:
    synth_seconds: float
    seconds: float
    peak_rss_bytes: int | None
    tree_peak_rss_bytes: int | None
    seconds_total: float
    steps: list[dict[str, Any]]
    metric: dict[str, Any]


@dataclass
class MlBench:
    started: str
    machine: dict[str, Any]
    patients: int
    runs: int
    load_before: float
    metric_name: str
    ways: dict[str, WayRuns] = field(default_factory=lambda: {way: WayRuns() for way in WAYS})
    outcome: Outcome | None = None
    ml_demo: MlDemoRun | None = None
    finished: str = ""

    def ratio(self) -> float:
        return self.ways[INTERPRETED].median() / self.ways[DIRECT].median()


def overhead_met(ratio: float, target: float = OVERHEAD_TARGET) -> bool:
    return ratio <= target


def verdict(ratio: float, target: float = OVERHEAD_TARGET) -> str:
    return "met" if overhead_met(ratio, target) else "NOT met"


WAY_HEADER: Final = ("way", "median s", "min s", "max s", "runs")
STEP_HEADER: Final = ("step", "interpreted s", "direct s", "interpreted - direct s")
RATIO_HEADER: Final = ("ratio", "value", "target", "verdict")
ML_DEMO_HEADER: Final = ("ml-demo step", "status", "seconds")
STEP_ORDER: Final = (
    PREPROCESS_STEP,
    TRAIN_STEP,
    EVALUATE_STEP,
    BASELINE_STEP,
    GATE_STEP,
    REGISTER_STEP,
    BELOW_THRESHOLD_STEP,
)
WAY_TITLES: Final = {
    INTERPRETED: "interpreted (PipelineInterpreter, folder object store)",
    DIRECT: "direct (the step programs' main, local folders)",
}


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def way_rows(bench: MlBench) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for way in WAYS:
        summary = Summary.of(bench.ways[way].seconds)
        rows.append(
            (
                WAY_TITLES[way],
                _s(summary.median),
                _s(summary.minimum),
                _s(summary.maximum),
                str(summary.runs),
            )
        )
    return rows


def step_rows(bench: MlBench) -> list[tuple[str, ...]]:
    interpreted_runs, direct_runs = bench.ways[INTERPRETED], bench.ways[DIRECT]
    rows: list[tuple[str, ...]] = []
    for name in STEP_ORDER:
        a, b = interpreted_runs.step_median(name), direct_runs.step_median(name)
        if a is None and b is None:
            continue
        difference = a - b if a is not None and b is not None else None
        rows.append((name, _s(a, 3), _s(b, 3), _s(difference, 3)))
    a, b = (statistics.median(w.between_steps) for w in (interpreted_runs, direct_runs))
    rows.append(("(between steps)", _s(a, 3), _s(b, 3), _s(a - b, 3)))
    return rows


def ratio_rows(bench: MlBench) -> list[tuple[str, ...]]:
    ratio = bench.ratio()
    return [
        (
            "interpreted / direct, the training pipeline",
            f"{ratio:.2f}",
            f"<= {OVERHEAD_TARGET:g}",
            verdict(ratio),
        )
    ]


def ml_demo_rows(run: MlDemoRun) -> list[tuple[str, ...]]:
    return [
        (str(entry.get("step")), str(entry.get("status")), _s(entry.get("seconds")))
        for entry in run.steps
    ]


def summary_sentences(bench: MlBench) -> list[str]:
    lines = []
    if bench.outcome is not None:
        outcome = bench.outcome
        lines.append(
            f"Same model from both ways in every run: yes (xgboost-model sha256 "
            f"{outcome.model_sha256[:16]}..., {bench.metric_name} "
            f"{outcome.metric:.4f} on the held-out split, "
            f"{'registered' if outcome.registered else 'below the gate, not registered'}); "
            f"{bench.patients:,} patients, median of {bench.runs} runs after a warm-up each."
        )
    if bench.ml_demo is not None:
        demo = bench.ml_demo
        lines.append(
            f"make ml-demo end to end: {demo.seconds:.0f} s wall ({demo.seconds_total:.0f} s by "
            f"its run.json; peak RSS {megabytes(demo.peak_rss_bytes)} largest process, "
            f"{megabytes(demo.tree_peak_rss_bytes)} tree), after a local synth of "
            f"{demo.synth_seconds:.1f} s."
        )
    else:
        lines.append("make ml-demo: not measured (--quick or --no-ml-demo).")
    return lines


def render(bench: MlBench, table: Callable[..., list[str]]) -> list[str]:
    lines = [
        *table(WAY_HEADER, way_rows(bench)),
        "",
        *table(STEP_HEADER, step_rows(bench)),
        "",
        *table(RATIO_HEADER, ratio_rows(bench)),
    ]
    if bench.ml_demo is not None:
        lines += ["", *table(ML_DEMO_HEADER, ml_demo_rows(bench.ml_demo))]
    return [*lines, "", *summary_sentences(bench)]


def render_markdown(bench: MlBench) -> str:
    machine = bench.machine
    head = (
        f"Model loop, measured {bench.started[:10]} on {machine.get('cpu_model', '?')}, "
        f"{machine.get('usable_cpus', '?')} CPUs, load {bench.load_before:.2f} at the start; "
        f"the interpreter against the direct calls on {bench.patients:,} patients."
    )
    return "\n".join([head, "", *render(bench, markdown_table)]) + "\n"


def report_json(bench: MlBench) -> dict[str, Any]:
    ratio = bench.ratio()
    return {
        **asdict(bench),
        "medians": {way: bench.ways[way].median() for way in WAYS},
        "ratio": ratio,
        "target": OVERHEAD_TARGET,
        "target_met": overhead_met(ratio),
    }


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    runs: int
    patients: int
    ml_demo: bool
    output: Path
    markdown: Path
    max_load: float
    max_wait_seconds: float


def _log(line: str) -> None:
    print(f"bench-ml: {line}", file=sys.stderr, flush=True)


def measure_overhead(bench: MlBench, workload: Workload, scratch: Path, runs: int) -> None:
    """A warm-up of each way (their outcomes compared), then `runs` alternating rounds."""
    ways: dict[str, Callable[[Workload, Path], Timed]] = {
        INTERPRETED: interpreted,
        DIRECT: direct,
    }
    expected: Outcome | None = None
    for index in range(runs + 1):
        label = "warm-up (untimed)" if index == 0 else f"round {index}"
        for way in WAYS:
            timed = ways[way](workload, scratch)
            _log(f"{label}: {way} {timed.seconds:.2f} s")
            if expected is None:
                expected = timed.outcome
            check_same_model(expected, timed.outcome, f"the {way} run ({label})")
            if index > 0:
                bench.ways[way].add(timed)
    bench.outcome = expected


def source_revision_environment(base: Mapping[str, str]) -> dict[str, str]:
    """What `make ml-demo` synthesizes with: the commit and repository, so the registered
    versions are traceable (unless the caller named them already)."""
    found: dict[str, str] = {}

    def git(*arguments: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *arguments],
            capture_output=True,
            text=True,
            check=False,
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    if not base.get("PHI_SOURCE_COMMIT") and (commit := git("rev-parse", "HEAD")):
        found["PHI_SOURCE_COMMIT"] = commit
    if not base.get("PHI_SOURCE_REPOSITORY"):
        remote = git("config", "--get", "remote.origin.url") or f"file://{REPO_ROOT}"
        if "@" in remote and "//" in remote:  # no credentials in a registered version
            scheme, _, rest = remote.partition("//")
            remote = f"{scheme}//{rest.split('@', 1)[1]}"
        found["PHI_SOURCE_REPOSITORY"] = remote
    return found


def measure_ml_demo(scratch: Path, base: Mapping[str, str]) -> MlDemoRun:
    environment = {**bench_environment(base), "PYTHONPATH": str(REPO_ROOT)}
    synth, reports = scratch / "synth-local", scratch / "ml-reports"
    synthesis = run_measured(
        [sys.executable, str(REPO_ROOT / "main.py"), "--out", str(synth), BENCH_ENVIRONMENT],
        environment={
            **environment,
            **source_revision_environment(environment),
            "PHI_TARGET": "local",
        },
    )
    _log(f"local synth of {BENCH_ENVIRONMENT}: {synthesis.seconds:.1f} s")
    _log("ml-demo (about 8 minutes)")
    command = [
        sys.executable, "-m", "tools.ml_demo", BENCH_ENVIRONMENT, "--out", str(synth),
        "--reports", str(reports),
    ]  # fmt: skip
    sample: Sample = run_measured(command, environment=environment, accepted=(0, 1))
    run_file = reports / BENCH_ENVIRONMENT / RUN_FILE
    if not run_file.is_file():
        raise BenchError(f"ml-demo exited {sample.exit_code} and wrote no {run_file}")
    document = json.loads(run_file.read_text(encoding="utf-8"))
    if sample.exit_code != 0 or not document.get("succeeded"):
        raise BenchError(f"ml-demo did not close the loop: {document.get('failure', '?')}")
    _log(f"ml-demo: {sample.seconds:.0f} s")
    return MlDemoRun(
        synth_seconds=synthesis.seconds,
        seconds=sample.seconds,
        peak_rss_bytes=sample.peak_rss_bytes,
        tree_peak_rss_bytes=sample.tree_peak_rss_bytes,
        seconds_total=float(document.get("seconds_total", 0.0)),
        steps=[
            {k: entry.get(k) for k in ("step", "status", "seconds")}
            for entry in document.get("steps", [])
        ],
        metric=dict(document.get("metric", {})),
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_bench(settings: Settings, base: Mapping[str, str]) -> MlBench:
    with tempfile.TemporaryDirectory(prefix="phi-bench-ml-") as scratch_name:
        scratch = Path(scratch_name)
        _log(f"population of {settings.patients:,} patients into the offline store (untimed)")
        workload = stage_workload(scratch, settings.patients)
        waited = wait_for_quiet_machine(settings.max_load, settings.max_wait_seconds)
        bench = MlBench(
            started=_now(),
            machine={**machine_info(), "waited_for_load_seconds": waited},
            patients=settings.patients,
            runs=settings.runs,
            load_before=os.getloadavg()[0],
            metric_name=workload.config.metric_name,
        )
        measure_overhead(bench, workload, scratch, settings.runs)
        if settings.ml_demo:
            bench.ml_demo = measure_ml_demo(scratch, base)
        bench.finished = _now()
    return bench


# --- command line ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other bad input (argparse would add the usage).
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def parse_arguments(argv: Sequence[str] | None) -> Settings:
    parser = _Parser(prog="python -m tools.bench_ml", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_PATIENTS} patients, {QUICK_RUNS} runs, no ml-demo",
    )
    parser.add_argument(
        "--runs", type=positive_int, help=f"timed runs of each way (default {DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--patients",
        type=positive_int,
        help=f"patients of the overhead runs (default {DEFAULT_PATIENTS})",
    )
    parser.add_argument(
        "--ml-demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run `make ml-demo` end to end once, about 8 minutes (default: yes, no in --quick)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help="Markdown tables")
    parser.add_argument("--max-load", type=non_negative, default=DEFAULT_MAX_LOAD)
    parser.add_argument("--max-wait", type=non_negative, default=DEFAULT_MAX_WAIT_SECONDS)
    arguments = parser.parse_args(argv)
    for path in (arguments.output, arguments.markdown):
        if path.is_dir():
            parser.error(f"{path} is a directory; name a file")
    if arguments.output.resolve() == arguments.markdown.resolve():
        parser.error("--output and --markdown name the same file")
    quick = arguments.quick
    return Settings(
        runs=arguments.runs or (QUICK_RUNS if quick else DEFAULT_RUNS),
        patients=arguments.patients or (QUICK_PATIENTS if quick else DEFAULT_PATIENTS),
        ml_demo=arguments.ml_demo if arguments.ml_demo is not None else not quick,
        output=arguments.output,
        markdown=arguments.markdown,
        max_load=arguments.max_load,
        max_wait_seconds=arguments.max_wait,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_arguments(argv)
    try:
        bench = run_bench(settings, os.environ)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(report_json(bench), indent=2) + "\n", encoding="utf-8")
    settings.markdown.parent.mkdir(parents=True, exist_ok=True)
    settings.markdown.write_text(render_markdown(bench), encoding="utf-8")
    print("\n".join(render(bench, text_table)))
    print(f"results: {settings.output}, {settings.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
