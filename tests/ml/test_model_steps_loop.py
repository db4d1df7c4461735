"""The step programs chained as the pipeline chains them, in-process on the synthetic
population: features -> Preprocess -> Train -> Evaluate -> Baseline. The population's signal
clears the gate deterministically; the same data with shuffled labels deterministically does
not (a model that learns nothing must never reach a reviewer)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ml import evaluate, monitor_baseline, xgboost_training
from ml.dataset_manifest import read_manifest, sha256_of
from tests.ml import exports

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
PATIENTS = 1500
GATE = 0.75
HYPERPARAMETERS = {
    "num_round": "300",
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": "3",
    "eta": "0.05",
    "subsample": "0.8",
    "min_child_weight": "5",
    "early_stopping_rounds": "30",
    "seed": "7",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exports.synthetic_dataset(tmp_path_factory.mktemp("loop"), PATIENTS, 7, AS_OF)


def train_and_evaluate(dataset: Path, work: Path) -> float:
    job = work / "input"
    (job / "config").mkdir(parents=True)
    for channel in ("train", "validation"):
        (job / "data" / channel).mkdir(parents=True)
        shutil.copy(dataset / f"{channel}.csv", job / "data" / channel)
    (job / "config" / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    channels = {c: {"ContentType": "text/csv"} for c in ("train", "validation")}
    (job / "config" / "inputdataconfig.json").write_text(json.dumps(channels))
    xgboost_training.train(job, work / "model")
    report = evaluate.evaluate(work / "model", dataset, work / "evaluation")
    return float(report["binary_classification_metrics"]["auc"]["value"])


def test_the_synthetic_population_clears_the_gate(dataset: Path, tmp_path: Path) -> None:
    first = train_and_evaluate(dataset, tmp_path / "a")
    assert first >= GATE
    assert train_and_evaluate(dataset, tmp_path / "b") == first  # deterministic


def shuffled(dataset: Path, out: Path) -> Path:
    """The same dataset with the training and validation labels permuted (manifest updated)."""
    shutil.copytree(dataset, out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(11)
    for split in ("train", "validation"):
        path = out / f"{split}.csv"
        rows = [line.split(",", 1) for line in path.read_text(encoding="utf-8").splitlines()]
        labels = [label for label, _ in rows]
        rng.shuffle(labels)
        lines = (f"{label},{rest}\n" for label, (_, rest) in zip(labels, rows, strict=True))
        path.write_text("".join(lines), encoding="utf-8")
        manifest["splits"][split]["sha256"] = sha256_of(path)
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def test_the_twin_shuffled_labels_never_clear_it(dataset: Path, tmp_path: Path) -> None:
    noise = shuffled(dataset, tmp_path / "shuffled")
    assert train_and_evaluate(noise, tmp_path / "work") < 0.6


def test_the_baseline_is_of_the_training_features_in_payload_order(
    dataset: Path, tmp_path: Path
) -> None:
    statistics, constraints = monitor_baseline.baseline(dataset, tmp_path / "baseline")
    manifest = read_manifest(dataset / "manifest.json")
    names = [f["name"] for f in statistics["features"]]
    assert names == [f"_c{i}" for i in range(len(manifest.features))]
    assert statistics["dataset"]["item_count"] == manifest.splits["train"].rows
    assert [f["inferred_type"] for f in constraints["features"]] == [
        f.type for f in manifest.features
    ]
