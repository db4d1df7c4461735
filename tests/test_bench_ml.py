"""The model-loop benchmark (tools/bench_ml.py): both ways must train the same model and a
different one must fail the bench, the direct way must take the definition's own arguments,
the target must be able to fail, bad arguments end in one line. One small real run of the
overhead bench (200 patients, one round); no ml-demo, and no timing is asserted: speed is
what the benchmark measures, not what a test may depend on."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tools import bench_ml
from tools.bench import BenchError, Sample
from tools.bench_ml import (
    DIRECT,
    INTERPRETED,
    MlBench,
    Outcome,
    WayRuns,
    Workload,
    check_same_model,
)

# Small and still a real model: with seed 7 every split of 200 patients holds both outcomes
# and the model clears dev's gate (150 leaves the validation split without a readmission).
PATIENTS = 200
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return bench_ml.stage_workload(tmp_path_factory.mktemp("bench-ml"), PATIENTS)


def bench_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--runs=1",
        f"--patients={PATIENTS}",
        "--no-ml-demo",
        "--max-wait=0",
        f"--output={tmp_path / 'bench-ml.json'}",
        f"--markdown={tmp_path / 'bench-ml.md'}",
        *extra,
    ]


def staged(workload: Workload) -> Any:
    return lambda scratch, patients: workload


def test_a_small_real_run_trains_the_same_model_both_ways(
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench_ml, "stage_workload", staged(workload))
    assert bench_ml.main(bench_args(tmp_path)) == 0
    report = json.loads((tmp_path / "bench-ml.json").read_text(encoding="utf-8"))
    outcome = report["outcome"]
    assert SHA256.match(outcome["model_sha256"])
    assert 0.5 < outcome["metric"] <= 1.0
    assert outcome["registered"] is (outcome["metric"] >= workload.config.metric_threshold)
    for way in (INTERPRETED, DIRECT):
        assert len(report["ways"][way]["seconds"]) == 1
        assert set(report["ways"][way]["steps"]) >= {"Preprocess", "Train", "Evaluate"}
    assert report["ratio"] == pytest.approx(
        report["medians"][INTERPRETED] / report["medians"][DIRECT]
    )
    assert report["target_met"] is (report["ratio"] <= bench_ml.OVERHEAD_TARGET)
    assert report["ml_demo"] is None
    printed = capsys.readouterr().out
    assert "Same model from both ways in every run: yes" in printed
    assert "interpreted / direct" in (tmp_path / "bench-ml.md").read_text(encoding="utf-8")


def test_the_twin_a_different_model_from_the_direct_way_fails_the_bench(
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The direct way trained with other hyperparameters than the definition's: exit 1."""
    follows = bench_ml.train_hyperparameters

    def strays(arguments: Mapping[str, Any]) -> dict[str, str]:
        return {**follows(arguments), "eta": "0.3"}

    monkeypatch.setattr(bench_ml, "stage_workload", staged(workload))
    monkeypatch.setattr(bench_ml, "train_hyperparameters", strays)
    assert bench_ml.main(bench_args(tmp_path)) == 1
    (line,) = [entry for entry in capsys.readouterr().err.splitlines() if "error" in entry]
    assert "the direct run (warm-up (untimed)) trained a different model" in line
    assert not (tmp_path / "bench-ml.json").exists()


def test_outcomes_compare_by_model_metric_and_gate() -> None:
    outcome = Outcome("a" * 64, 0.85, registered=True)
    check_same_model(outcome, Outcome("a" * 64, 0.85, registered=True), "same")
    for different in (
        replace(outcome, model_sha256="b" * 64),
        replace(outcome, metric=0.850001),
        replace(outcome, registered=False),
    ):
        with pytest.raises(BenchError, match="trained a different model"):
            check_same_model(outcome, different, "the twin")


def definition_only() -> Workload:
    configs, definition = bench_ml.bench_definition()
    return Workload(
        config=configs.pipeline,
        definition=definition,
        parameters=bench_ml.build_parameters(configs.pipeline),
        store_root=Path("/nonexistent"),
        artifacts_bucket="unused",
        spec_file=Path("/nonexistent/spec/feature-spec.json"),
        patients=0,
    )


PREPROCESS_FOLDERS = {
    "/opt/ml/processing/input/features": Path("/local/offline"),
    "/opt/ml/processing/input/spec": Path("/local/spec"),
    "/opt/ml/processing/output/dataset": Path("/local/dataset"),
}


def test_the_direct_way_takes_the_definitions_arguments_with_local_folders() -> None:
    workload = definition_only()
    module, argv = bench_ml.program_arguments(workload, "Preprocess", PREPROCESS_FOLDERS)
    assert module == "ml.preprocess"
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    assert options["--as-of"] == bench_ml.FEATURES_AS_OF
    assert options["--features"] == "/local/offline"
    assert options["--spec"] == "/local/spec/feature-spec.json"
    assert options["--output"] == "/local/dataset"
    assert options["--split-seed"] == str(workload.config.split_seed)


def test_the_twin_a_container_path_the_direct_way_does_not_know_fails() -> None:
    workload = definition_only()
    changed = copy.deepcopy(workload.definition)
    app = bench_ml.step_named(changed, "Preprocess")["Arguments"]["AppSpecification"]
    app["ContainerArguments"][app["ContainerArguments"].index("--output") + 1] = (
        "/opt/ml/processing/output/elsewhere"
    )
    with pytest.raises(BenchError, match="output/elsewhere has no local folder"):
        bench_ml.program_arguments(
            replace(workload, definition=changed), "Preprocess", PREPROCESS_FOLDERS
        )


def _bench(interpreted: float, direct: float) -> MlBench:
    bench = MlBench(
        started="2026-12-08T00:00:00+00:00",
        machine={},
        patients=PATIENTS,
        runs=1,
        load_before=0.0,
        metric_name="auc",
    )
    bench.ways = {
        INTERPRETED: WayRuns([interpreted], {"Preprocess": [interpreted]}, [0.0]),
        DIRECT: WayRuns([direct], {"Preprocess": [direct]}, [0.0]),
    }
    return bench


def test_the_target_is_met_at_most_1_2x() -> None:
    for interpreted in (1.0, 1.2):
        (row,) = bench_ml.ratio_rows(_bench(interpreted, 1.0))
        assert row[-1] == "met"


def test_the_twin_the_target_is_not_met_above_1_2x() -> None:
    (row,) = bench_ml.ratio_rows(_bench(1.21, 1.0))
    assert row[1:] == ("1.21", "<= 1.2", "NOT met")
    assert bench_ml.report_json(_bench(1.21, 1.0))["target_met"] is False


def test_quick_skips_ml_demo_unless_asked() -> None:
    full, quick = bench_ml.parse_arguments([]), bench_ml.parse_arguments(["--quick"])
    assert (full.runs, full.patients, full.ml_demo) == (5, 1500, True)
    assert (quick.runs, quick.patients, quick.ml_demo) == (2, 300, False)
    assert bench_ml.parse_arguments(["--quick", "--ml-demo"]).ml_demo is True
    assert bench_ml.parse_arguments(["--no-ml-demo"]).ml_demo is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--runs", "0"], "--runs: 0: at least 1"),
        (["--patients", "many"], "'many' is not a whole number"),
        (["--max-load", "-1"], "must not be negative"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--output", "same.json", "--markdown", "same.json"], "name the same file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_ml.main(arguments)
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line and line.startswith("python -m tools.bench_ml: error:")


def test_the_twin_a_directory_as_output_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_ml.main(["--output", str(tmp_path)])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "is a directory" in line


def fake_ml_demo(document: dict[str, Any], exit_code: int) -> Any:
    """run_measured standing in for synth (exit 0) and ml-demo (writes run.json)."""

    def run(command: list[str], *, environment: Mapping[str, str], **_: Any) -> Sample:
        if "tools.ml_demo" in command:
            reports = Path(command[command.index("--reports") + 1])
            (reports / "dev").mkdir(parents=True)
            (reports / "dev" / "run.json").write_text(json.dumps(document), encoding="utf-8")
            return Sample(480.0, exit_code, 0.0, 2**30, 2**31)
        assert environment["PHI_TARGET"] == "local"
        return Sample(4.0, 0, 0.0, None, None)

    return run


STEPS = [{"step": "phi-ml-dev-readmission/Train", "status": "Succeeded", "seconds": 1.5}]


def test_ml_demo_reports_its_wall_time_and_its_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {"succeeded": True, "seconds_total": 470.2, "steps": STEPS, "metric": {}}
    monkeypatch.setattr(bench_ml, "run_measured", fake_ml_demo(document, 0))
    run = bench_ml.measure_ml_demo(tmp_path, {})
    assert (run.synth_seconds, run.seconds, run.seconds_total) == (4.0, 480.0, 470.2)
    assert run.steps == STEPS


def test_the_twin_an_ml_demo_that_did_not_close_the_loop_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {"succeeded": False, "failure": "rollback answered x", "steps": STEPS}
    monkeypatch.setattr(bench_ml, "run_measured", fake_ml_demo(document, 1))
    with pytest.raises(BenchError, match="did not close the loop: rollback answered x"):
        bench_ml.measure_ml_demo(tmp_path, {})
