"""The Baseline step: Model Monitor's statistics.json / constraints.json from the training
features, and what a monitoring run reports against them; each property beside the input or
the claim that would break it."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.dataset_manifest import DatasetManifest, InputFile, ManifestFeature, Split
from ml.monitor_baseline import (
    KLLSketch,
    baseline,
    compute_constraints,
    compute_statistics,
    detect_violations,
    main,
)

ROOT = Path(__file__).resolve().parents[2]
ROWS = 1500  # under the sketch's bottom capacity (2050): the baseline sketches are exact
TYPES = ("Integral", "Fractional", "Fractional")
NAMES = ("length_of_stay_days", "creatinine_mg_dl", "sodium_change_mmol_l")


def draw(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Features as the payload orders them: an Integral count, a positive lab value and a
    change that is mostly negative."""
    return np.column_stack(
        [
            rng.poisson(4.0, rows) + 1.0,
            rng.normal(1.1, 0.3, rows).clip(0.2),
            rng.normal(-3.0, 1.0, rows),
        ]
    )


def field(value: float, kind: str) -> str:
    if np.isnan(value):
        return ""  # the dataset contract: a missing value is an empty field
    return str(int(value)) if kind == "Integral" else repr(float(value))


def write_dataset(
    root: Path,
    label: np.ndarray,
    features: np.ndarray,
    types: tuple[str, ...] = TYPES,
    names: tuple[str, ...] = NAMES,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        ",".join([str(int(y)), *(field(v, k) for v, k in zip(row, types, strict=True))])
        for y, row in zip(label, features, strict=True)
    ]
    train = root / "train.csv"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    DatasetManifest(
        as_of="2026-06-30T00:00:00Z",
        label="readmitted_30d",
        features=tuple(ManifestFeature(n, k) for n, k in zip(names, types, strict=True)),
        split_seed=7,
        split_shares={"validation": 0.15, "test": 0.15},
        splits={
            "train": Split(
                file="train.csv",
                sha256=hashlib.sha256(train.read_bytes()).hexdigest(),
                rows=len(lines),
                positives=int(label.sum()),
                patients=len(lines),
            )
        },
        inputs=(InputFile("encounters/x.parquet", "0" * 64, 2048),),
    ).write(root / "manifest.json")
    return root


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20260630)
    label = rng.integers(0, 2, ROWS).astype(float)
    features = draw(rng, ROWS)
    features[rng.random(ROWS) < 0.08, 1] = np.nan  # creatinine not always measured
    return label, features


@pytest.fixture(scope="module")
def built(
    data: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("baseline")
    dataset = write_dataset(root / "dataset", *data)
    statistics, constraints = baseline(dataset, root / "out")
    return statistics, constraints, root / "out"


def numbers(statistics: dict[str, Any], index: int) -> dict[str, Any]:
    entry: dict[str, Any] = statistics["features"][index]["numerical_statistics"]
    return entry


def level_zero(statistics: dict[str, Any], index: int) -> list[float]:
    data: list[list[float]] = numbers(statistics, index)["distribution"]["kll"]["sketch"]["data"]
    return data[0]


def test_features_are_the_payload_columns_without_the_label(
    built: tuple[dict[str, Any], dict[str, Any], Path], data: tuple[np.ndarray, np.ndarray]
) -> None:
    statistics, constraints, out = built
    label, features = data
    assert [f["name"] for f in statistics["features"]] == ["_c0", "_c1", "_c2"]
    assert [f["inferred_type"] for f in statistics["features"]] == list(TYPES)
    assert [f["name"] for f in constraints["features"]] == ["_c0", "_c1", "_c2"]
    assert statistics["dataset"]["item_count"] == ROWS
    # The label's values are no feature's; the same comparison does find the features' own.
    sketches = [level_zero(statistics, i) for i in range(3)]
    assert label.tolist() not in sketches
    assert sketches[0] == features[:, 0].tolist()
    assert json.loads((out / "statistics.json").read_text()) == statistics
    assert json.loads((out / "constraints.json").read_text()) == constraints


def test_moments_are_numpys(
    built: tuple[dict[str, Any], dict[str, Any], Path], data: tuple[np.ndarray, np.ndarray]
) -> None:
    statistics, _, _ = built
    label, features = data
    for index in range(3):
        present = features[:, index][~np.isnan(features[:, index])]
        stats = numbers(statistics, index)
        assert stats["mean"] == float(np.mean(present))
        assert stats["sum"] == float(np.sum(present))
        assert stats["min"] == float(np.min(present))
        assert stats["max"] == float(np.max(present))
        # Deequ's StandardDeviation is the population one (ddof=0), not the sample one.
        assert stats["std_dev"] == float(np.std(present))
        assert stats["std_dev"] != float(np.std(present, ddof=1))
    # The first feature's statistics are not the label's (column 0 of train.csv).
    assert numbers(statistics, 0)["mean"] != float(np.mean(label))


def test_num_missing_counts_the_empty_fields(
    built: tuple[dict[str, Any], dict[str, Any], Path], data: tuple[np.ndarray, np.ndarray]
) -> None:
    statistics, constraints, _ = built
    _, features = data
    missing = int(np.isnan(features[:, 1]).sum())
    assert missing > 0
    common = {"num_present": ROWS - missing, "num_missing": missing}
    assert numbers(statistics, 1)["common"] == common
    assert constraints["features"][1]["completeness"] == (ROWS - missing) / ROWS
    assert numbers(statistics, 0)["common"] == {"num_present": ROWS, "num_missing": 0}
    assert constraints["features"][0]["completeness"] == 1.0


def test_the_sketch_holds_every_value_while_n_is_at_most_k(
    built: tuple[dict[str, Any], dict[str, Any], Path], data: tuple[np.ndarray, np.ndarray]
) -> None:
    statistics, _, _ = built
    _, features = data
    for index in range(3):
        kll = numbers(statistics, index)["distribution"]["kll"]
        assert kll["sketch"]["parameters"] == {"c": 0.64, "k": 2048.0}
        present = features[:, index][~np.isnan(features[:, index])]
        assert kll["sketch"]["data"] == [present.tolist()]  # one level, in row order
    exact = KLLSketch()
    exact.update(range(2050))  # Deequ's bottom level holds 2 * (1024 + 1) before compacting
    assert exact.levels == [[float(v) for v in range(2050)]]
    assert exact.rank_error_bound == 0
    # One more value compacts: every other of the sorted 2050 moves up, the newest stays.
    exact.update([-1.0])
    assert exact.levels == [[-1.0], [float(v) for v in range(0, 2050, 2)]]
    assert exact.count == 2051
    assert exact.rank_error_bound == 1
    # Deequ's offset schedule, not a coin: the second compaction of a level promotes the odd
    # positions. 2339 more values take the sketch over its 2050 + 1314 capacity again.
    exact.update(range(2051, 2051 + 2339))
    assert exact.levels == [
        [],
        [float(v) for v in [*range(0, 2050, 2), *range(2051, 4390, 2)]],
    ]
    assert exact.rank_error_bound == 2


def test_quantiles_at_20000_are_within_the_error_bound() -> None:
    values = np.random.default_rng(3).lognormal(0.0, 0.8, 20_000)
    sketch = KLLSketch()
    sketch.update(values.tolist())
    ordered = np.sort(values)
    # Approximate now: fewer items than values, on several levels, yet every value counted.
    assert sum(len(level) for level in sketch.levels) < values.size
    assert len(sketch.levels) > 1
    assert sketch.count == values.size
    bound = sketch.rank_error_bound
    assert 0 < bound <= 0.01 * values.size
    errors = []
    for q in np.linspace(0.01, 0.99, 99):
        estimate = sketch.quantile(float(q))
        errors.append(abs(int(np.searchsorted(ordered, estimate, side="right")) - q * values.size))
    # The chosen item's sketch rank reaches q * n by less than its own weight (the top level's).
    assert max(errors) <= bound + (1 << (len(sketch.levels) - 1))
    ranks = [abs(sketch.rank(float(ordered[j])) - (j + 1)) for j in range(0, values.size, 37)]
    assert max(ranks) <= bound
    assert max(ranks) > 0  # truly approximate: some ranks are off


def test_buckets_cover_min_to_max_and_sum_to_num_present(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    statistics, _, _ = built
    for index in range(3):
        stats = numbers(statistics, index)
        buckets = stats["distribution"]["kll"]["buckets"]
        assert len(buckets) == 10
        assert buckets[0]["lower_bound"] == stats["min"]
        assert buckets[-1]["upper_bound"] == stats["max"]
        assert all(a["upper_bound"] == b["lower_bound"] for a, b in itertools.pairwise(buckets))
        assert sum(b["count"] for b in buckets) == stats["common"]["num_present"]
    # Counting present values, not rows: the column with missing values sums below item_count.
    assert sum(b["count"] for b in numbers(statistics, 1)["distribution"]["kll"]["buckets"]) < ROWS
    # Beyond the exact range the counts come from the sketch and still sum to num_present.
    stays = np.random.default_rng(11).permutation(20_000).astype(float)
    wide = compute_statistics(stays[:, None], ["Integral"])
    counts = [b["count"] for b in numbers(wide, 0)["distribution"]["kll"]["buckets"]]
    assert sum(counts) == 20_000
    sketch = KLLSketch()
    sketch.update(stays.tolist())
    # Each bucket is truly 2000; a count is two ranks, each within the sketch's bound.
    assert 0 < max(abs(c - 2000) for c in counts) <= 2 * sketch.rank_error_bound


def test_std_dev_and_buckets_match_a_model_monitor_statistics_file() -> None:
    # aws/sagemaker-python-sdk@master-v2:
    # tests/data/pipeline/quality_check_step/data_quality/statistics.json, _c0, _c5 and _c3:
    # the values' multiset is recovered from the file's own exact (one-level) sketches.
    cases = [
        ({1.0: 24, 2.0: 21, 3.0: 55}, 0.8330066026148891, [24, 0, 0, 0, 0, 21, 0, 0, 0, 55]),
        (
            {0.0: 29, 1.0: 20, 2.0: 27, 3.0: 19, 4.0: 4, 5.0: 1},
            1.252836781069266,
            [29, 0, 20, 0, 27, 0, 19, 0, 4, 1],
        ),
        (
            {0.0: 67, 1.0: 26, 2.0: 3, 3.0: 1, 4.0: 1, 5.0: 1, 8.0: 1},
            1.1178550889985697,
            [67, 26, 3, 1, 0, 1, 1, 0, 0, 1],
        ),
    ]
    for counts, std_dev, buckets in cases:
        column = np.repeat(list(counts), list(counts.values()))[:, None]
        stats = numbers(compute_statistics(column, ["Fractional"]), 0)
        # numpy's two-pass variance and Deequ's running m2 may differ in the last bit.
        assert stats["std_dev"] == pytest.approx(std_dev, rel=1e-12)
        assert stats["std_dev"] != pytest.approx(float(np.std(column, ddof=1)), rel=1e-6)
        assert [b["count"] for b in stats["distribution"]["kll"]["buckets"]] == buckets
    column = np.repeat([1.0, 2.0, 3.0], [24, 21, 55])[:, None]
    first = numbers(compute_statistics(column, ["Fractional"]), 0)
    bounds = [b["lower_bound"] for b in first["distribution"]["kll"]["buckets"]]
    assert bounds == pytest.approx([1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8])


def test_is_non_negative_follows_the_minimum(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    _, constraints, _ = built
    flags = [f["num_constraints"]["is_non_negative"] for f in constraints["features"]]
    assert flags == [True, True, False]


def test_constraints_carry_the_monitoring_config(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    statistics, constraints, _ = built
    assert constraints["version"] == 0.0
    assert constraints["monitoring_config"] == {
        "evaluate_constraints": "Enabled",
        "emit_metrics": "Enabled",
        "datatype_check_threshold": 1.0,
        "domain_content_threshold": 1.0,
        "distribution_constraints": {
            "perform_comparison": "Enabled",
            "comparison_threshold": 0.1,
            "comparison_method": "Robust",
        },
    }
    tuned = compute_constraints(statistics, drift_threshold=0.25)
    assert tuned["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.25
    for wrong in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="drift threshold"):
            compute_constraints(statistics, drift_threshold=wrong)


def batch(rows: int = 300, seed: int = 99) -> np.ndarray:
    return draw(np.random.default_rng(seed), rows)


def test_no_violation_on_a_batch_from_the_training_distribution(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    statistics, constraints, _ = built
    for seed in (1, 2, 3):
        assert detect_violations(statistics, constraints, batch(seed=seed)) == []


def test_a_shifted_batch_raises_a_drift_violation(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    statistics, constraints, _ = built
    shifted = batch()
    shifted[:, 1] += 0.6  # creatinine two standard deviations up
    violations = detect_violations(statistics, constraints, shifted)
    assert [(v["feature_name"], v["constraint_check_type"]) for v in violations] == [
        ("_c1", "baseline_drift_check")
    ]
    assert violations[0]["description"].startswith("Numerical distance: ")
    assert violations[0]["description"].endswith("exceeds numerical threshold: 0.1")


def test_drift_against_a_compacted_baseline() -> None:
    rng = np.random.default_rng(5)
    statistics = compute_statistics(rng.normal(0.0, 1.0, (20_000, 1)), ["Fractional"])
    assert len(level_zero(statistics, 0)) < 20_000
    constraints = compute_constraints(statistics)
    assert detect_violations(statistics, constraints, rng.normal(0.0, 1.0, (500, 1))) == []
    drifted = detect_violations(statistics, constraints, rng.normal(0.5, 1.0, (500, 1)))
    assert [v["constraint_check_type"] for v in drifted] == ["baseline_drift_check"]


def test_fractions_in_an_integral_column_fail_the_data_type_check(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    statistics, constraints, _ = built
    rows = batch()
    rows[::4, 0] += 0.5  # a quarter of the stays no longer whole days
    violations = detect_violations(statistics, constraints, rows)
    assert [(v["feature_name"], v["constraint_check_type"]) for v in violations] == [
        ("_c0", "data_type_check")
    ]
    assert violations[0]["description"] == (
        "Data type match requirement is not met. Expected data type: Integral, "
        "Expected match: 100.0%. Observed: Only 75.0% of data is Integral."
    )
    # Fractions in a Fractional column are what it holds.
    rows = batch()
    rows[:, 1] = np.round(rows[:, 1], 1) + 0.01
    assert detect_violations(statistics, constraints, rows) == []


def test_a_short_batch_is_missing_a_column_and_a_long_one_has_an_extra(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    statistics, constraints, _ = built
    short = detect_violations(statistics, constraints, batch()[:, :2])
    assert [(v["feature_name"], v["constraint_check_type"]) for v in short] == [
        ("_c2", "missing_column_check")
    ]
    long = detect_violations(statistics, constraints, np.column_stack([batch(), batch()[:, 0]]))
    assert [(v["feature_name"], v["constraint_check_type"]) for v in long] == [
        ("_c3", "extra_column_check")
    ]


def test_less_complete_than_the_baseline_fails_the_completeness_check(
    built: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    statistics, constraints, _ = built
    rows = batch()
    rows[::2, 2] = np.nan  # half the sodium changes missing; the baseline had all
    violations = detect_violations(statistics, constraints, rows)
    assert [(v["feature_name"], v["constraint_check_type"]) for v in violations] == [
        ("_c2", "completeness_check")
    ]
    # As complete as the baseline (92%) passes: its completeness is the observed share.
    rows = batch()
    rows[::25, 1] = np.nan
    assert detect_violations(statistics, constraints, rows) == []


def test_a_feature_with_no_value_keeps_its_type_and_only_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    features = draw(rng, 50)
    features[:, 1] = np.nan
    dataset = write_dataset(tmp_path / "dataset", rng.integers(0, 2, 50), features)
    statistics, constraints = baseline(dataset, tmp_path / "out")
    assert statistics["features"][1] == {
        "name": "_c1",
        "inferred_type": "Fractional",
        "numerical_statistics": {"common": {"num_present": 0, "num_missing": 50}},
    }
    assert constraints["features"][1] == {
        "name": "_c1",
        "inferred_type": "Fractional",
        "completeness": 0.0,
    }
    assert "num_constraints" in constraints["features"][0]
    # No sketch to compare: a batch with values there is not drift, nor incomplete.
    assert detect_violations(statistics, constraints, draw(rng, 40)) == []


def test_the_program_writes_both_files_and_one_line(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "dataset", *data)
    out = tmp_path / "out"
    assert main(["--dataset", str(dataset), "--output", str(out), "--drift-threshold", "0.2"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert len(captured.out.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["constraints.json", "statistics.json"]
    written = json.loads((out / "constraints.json").read_text())
    assert written["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.2


def test_a_digest_mismatch_exits_2_with_one_line_and_writes_nothing(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "dataset", *data)
    train = dataset / "train.csv"
    text = train.read_text()
    train.write_text(("1" if text[0] == "0" else "0") + text[1:])  # one label flipped
    out = tmp_path / "out"
    assert main(["--dataset", str(dataset), "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("monitor_baseline: error: ")
    assert str(train) in lines[0]
    assert "sha256" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("second_field", "expected"),
    [
        ("1.2x", "line 3, field 3: '1.2x' is not a finite number"),
        ("inf", "line 3, field 3: 'inf' is not a finite number"),
        ("nan", "line 3, field 3: 'nan' is not a finite number"),
        ("1.2,7", "line 3 has 5 fields, expected 4"),
    ],
)
def test_bad_training_rows_exit_2_naming_the_file(
    data: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    second_field: str,
    expected: str,
) -> None:
    label, features = data
    dataset = write_dataset(tmp_path / "dataset", label[:20], features[:20])
    train = dataset / "train.csv"
    lines = train.read_text().splitlines()
    fields = lines[2].split(",")
    fields[2] = second_field
    lines[2] = ",".join(fields)
    train.write_text("\n".join(lines) + "\n")
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["splits"]["train"]["sha256"] = hashlib.sha256(train.read_bytes()).hexdigest()
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    assert main(["--dataset", str(dataset), "--output", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert str(train) in lines[0]
    assert expected in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_fraction_in_an_integral_training_column_is_refused(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label, features = data
    fractional = features[:20].copy()
    fractional[3, 0] = 2.5
    # Written as Fractional text, declared Integral: the manifest and the data disagree.
    dataset = write_dataset(tmp_path / "dataset", label[:20], fractional, ("Fractional",) * 3)
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["features"][0]["type"] = "Integral"
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    assert main(["--dataset", str(dataset), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "line 4" in error
    assert "Integral" in error


def test_bad_arguments_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    for threshold in ("0", "1.5", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["--drift-threshold", threshold])
        assert exit_.value.code == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("monitor_baseline: error: ")


def test_as_a_module_it_fails_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ml.monitor_baseline", "--dataset", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"monitor_baseline: error: {tmp_path / 'manifest.json'}: no dataset manifest "
        "(the preprocess step writes it)"
    ]
