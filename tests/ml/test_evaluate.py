"""The Evaluate step: the report's numbers are the ones sklearn gives on the model's own
predictions, the schema is Model Monitor's, and bad inputs are refused with one line and no
output, each property with the input that would break it."""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

from ml import evaluate as evaluate_module
from ml.dataset_manifest import DatasetManifest, ManifestFeature, Split, sha256_of
from ml.evaluate import EvaluationError, evaluate, main
from ml.model_quality import GATE_METRIC_PATHS
from ml.sagemaker_paths import (
    DATASET_MANIFEST,
    EVALUATION_REPORT,
    MODEL_ARCHIVE,
    MODEL_DIGEST,
    SPLIT_FILES,
    XGBOOST_MODEL_FILE,
)

FEATURES = 4
SCALARS = (
    "recall",
    "precision",
    "accuracy",
    "recall_best_constant_classifier",
    "precision_best_constant_classifier",
    "accuracy_best_constant_classifier",
    "true_positive_rate",
    "true_negative_rate",
    "false_positive_rate",
    "false_negative_rate",
    "auc",
    "f0_5",
    "f1",
    "f2",
    "f0_5_best_constant_classifier",
    "f1_best_constant_classifier",
    "f2_best_constant_classifier",
)
CURVES = ("receiver_operating_characteristic_curve", "precision_recall_curve")


@pytest.fixture(autouse=True)
def _no_exit_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never /opt: the exit message goes to a folder that does not exist unless a test makes it.
    monkeypatch.setattr(
        evaluate_module, "PROCESSING_EXIT_MESSAGE", tmp_path / "opt-ml-output" / "message"
    )


def sample(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a logistic model of the first two features; 5% of values missing."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, FEATURES))
    chance = 1 / (1 + np.exp(-(2.0 * features[:, 0] - 1.5 * features[:, 1] - 0.5)))
    labels = (rng.random(rows) < chance).astype(np.int64)
    features[rng.random(features.shape) < 0.05] = np.nan
    return labels, features


def write_dataset(root: Path, labels: np.ndarray, features: np.ndarray) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        ",".join([str(int(label)), *("" if math.isnan(v) else repr(float(v)) for v in row)])
        for label, row in zip(labels, features, strict=True)
    ]
    path = root / SPLIT_FILES["test"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_manifest(root, rows=len(labels), positives=int(np.sum(labels)))
    return root


def write_manifest(root: Path, *, rows: int, positives: int) -> None:
    path = root / SPLIT_FILES["test"]
    split = Split(path.name, sha256_of(path), rows=rows, positives=positives, patients=rows)
    DatasetManifest(
        as_of="2026-06-30T00:00:00Z",
        label="readmitted_30d",
        features=tuple(ManifestFeature(f"f{i}", "Fractional") for i in range(FEATURES)),
        split_seed=7,
        split_shares={"validation": 0.15, "test": 0.15},
        splits={"test": split},
        inputs=(),
    ).write(root / DATASET_MANIFEST)


def train(labels: np.ndarray, features: np.ndarray, objective: str = "binary:logistic") -> Any:
    parameters = {"objective": objective, "max_depth": 3, "eta": 0.3, "seed": 0, "nthread": 1}
    data = xgb.DMatrix(features, label=labels, missing=np.nan)
    return xgb.train(parameters, data, num_boost_round=20)


def pack(booster: xgb.Booster, folder: Path, extra: list[tarfile.TarInfo] | None = None) -> Path:
    """model.tar.gz as a training job uploads /opt/ml/model, optionally with hostile members."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = bytes(booster.save_raw())
    with tarfile.open(folder / MODEL_ARCHIVE, "w:gz") as tar:
        member = tarfile.TarInfo(XGBOOST_MODEL_FILE)
        member.size = len(raw)
        tar.addfile(member, io.BytesIO(raw))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return folder


@pytest.fixture(scope="module")
def real_model() -> Any:
    return train(*sample(600, seed=1))


@pytest.fixture
def world(tmp_path: Path, real_model: xgb.Booster) -> dict[str, Any]:
    labels, features = sample(400, seed=2)
    return {
        "model": pack(real_model, tmp_path / "model"),
        "dataset": write_dataset(tmp_path / "dataset", labels, features),
        "output": tmp_path / "evaluation",
        "labels": labels,
        "features": features,
        "booster": real_model,
    }


def scores_of(booster: xgb.Booster, features: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(features, missing=np.nan)).astype(np.float64)


def run(world: dict[str, Any], *extra: str) -> int:
    return main(
        [
            "--model",
            str(world["model"]),
            "--dataset",
            str(world["dataset"]),
            "--output",
            str(world["output"]),
            *extra,
        ]
    )


def refused(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """Exit 2, exactly one stderr line, nothing written; that line."""
    assert run(world) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("evaluate: error: ")
    assert "Traceback" not in err
    assert not world["output"].exists()
    return err


def test_auc_is_sklearns_on_the_models_predictions(world: dict[str, Any]) -> None:
    report = evaluate(world["model"], world["dataset"], world["output"])
    auc = report["binary_classification_metrics"]["auc"]["value"]
    scores = scores_of(world["booster"], world["features"])
    assert auc == pytest.approx(roc_auc_score(world["labels"], scores), abs=1e-12)
    # The twin: a score-direction bug would report the inverted ranking's AUC.
    assert auc > 0.75
    assert auc != pytest.approx(roc_auc_score(world["labels"], -scores), abs=0.1)


def test_a_model_of_shuffled_labels_scores_near_chance(
    world: dict[str, Any], tmp_path: Path
) -> None:
    labels, features = sample(600, seed=1)
    shuffled = np.random.default_rng(3).permutation(labels)
    noise = pack(train(shuffled, features), tmp_path / "noise")
    # 2000 test rows: a model of noise still varies by the noise it learned (seen 0.45-0.56 over
    # shuffle seeds), so the margin is wide; the real model is far outside it.
    dataset = write_dataset(tmp_path / "large", *sample(2000, seed=2))
    real = evaluate(world["model"], dataset, tmp_path / "real")
    chance = evaluate(noise, dataset, tmp_path / "chance")
    real_auc = real["binary_classification_metrics"]["auc"]["value"]
    chance_auc = chance["binary_classification_metrics"]["auc"]["value"]
    assert abs(chance_auc - 0.5) < 0.15
    assert real_auc > chance_auc + 0.2


def test_the_confusion_matrix_counts_every_row_at_the_threshold(world: dict[str, Any]) -> None:
    scores = scores_of(world["booster"], world["features"])
    labels = world["labels"]
    # A threshold equal to a score: that row is a predicted positive (score >= threshold).
    threshold = float(np.sort(scores)[len(scores) // 2])
    report = evaluate(world["model"], world["dataset"], world["output"], threshold=threshold)
    matrix = report["binary_classification_metrics"]["confusion_matrix"]
    counts = {(a, p): matrix[a][p] for a in "01" for p in "01"}
    assert sum(counts.values()) == len(labels) == report["dataset"]["item_count"]
    predicted = scores >= threshold
    assert counts["1", "1"] == np.sum(predicted & (labels == 1))
    assert counts["0", "1"] == np.sum(predicted & (labels == 0))
    assert counts["1", "0"] == np.sum(~predicted & (labels == 1))
    # The twin: '>' instead of '>=' would lose the rows that score exactly the threshold.
    assert counts["0", "1"] + counts["1", "1"] != np.sum(scores > threshold)
    metrics = report["binary_classification_metrics"]
    tp, fp = counts["1", "1"], counts["0", "1"]
    assert metrics["precision"]["value"] == pytest.approx(tp / (tp + fp))
    assert metrics["recall"]["value"] == pytest.approx(tp / np.sum(labels == 1))


def test_the_best_constant_classifier_is_the_better_constant_per_metric(
    world: dict[str, Any],
) -> None:
    metrics = evaluate(world["model"], world["dataset"], world["output"])[
        "binary_classification_metrics"
    ]
    share = float(np.mean(world["labels"]))
    assert metrics["accuracy_best_constant_classifier"]["value"] == pytest.approx(
        max(share, 1 - share)
    )
    assert metrics["recall_best_constant_classifier"]["value"] == 1.0
    assert metrics["precision_best_constant_classifier"]["value"] == pytest.approx(share)
    assert metrics["f1_best_constant_classifier"]["value"] == pytest.approx(2 * share / (share + 1))
    # The model beats the baseline it is compared with.
    assert metrics["accuracy"]["value"] > metrics["accuracy_best_constant_classifier"]["value"]


@pytest.mark.parametrize(("rows", "has_deviation"), [(199, False), (200, True)])
def test_standard_deviation_only_from_200_rows(
    tmp_path: Path, real_model: xgb.Booster, rows: int, has_deviation: bool
) -> None:
    labels, features = sample(rows, seed=4)
    model = pack(real_model, tmp_path / "model")
    dataset = write_dataset(tmp_path / "dataset", labels, features)
    metrics = evaluate(model, dataset, tmp_path / "out")["binary_classification_metrics"]
    for name in SCALARS:
        deviation = metrics[name]["standard_deviation"]
        if has_deviation:
            assert isinstance(deviation, float) and deviation >= 0, name
        else:
            assert deviation == "NaN", name
    if has_deviation:
        assert metrics["auc"]["standard_deviation"] > 0


def test_the_report_has_model_monitors_schema_and_the_gate_paths_resolve(
    world: dict[str, Any],
) -> None:
    evaluate(world["model"], world["dataset"], world["output"])
    written = json.loads((world["output"] / EVALUATION_REPORT).read_text(encoding="utf-8"))
    assert written["version"] == 0.0 and written["dataset"] == {"item_count": 400}
    metrics = written["binary_classification_metrics"]
    assert set(metrics) == {*SCALARS, *CURVES, "confusion_matrix"}
    assert all(set(metrics[name]) == {"value", "standard_deviation"} for name in SCALARS)

    def resolve(path: str) -> Any:
        node: Any = written
        for key in path.split("."):
            node = node[key]
        return node

    for name, path in GATE_METRIC_PATHS.items():
        assert resolve(path) == metrics[name]["value"]
        assert isinstance(resolve(path), float)
    with pytest.raises(KeyError):  # the twin: a path the report does not have
        resolve("binary_classification_metrics.roc_auc.value")


def test_curves_are_thinned_keep_their_ends_and_the_run_is_deterministic(
    tmp_path: Path, real_model: xgb.Booster
) -> None:
    labels, features = sample(3000, seed=5)
    model = pack(real_model, tmp_path / "model")
    dataset = write_dataset(tmp_path / "dataset", labels, features)
    first = evaluate(model, dataset, tmp_path / "a")["binary_classification_metrics"]
    evaluate(model, dataset, tmp_path / "b")
    roc = first["receiver_operating_characteristic_curve"]
    pr = first["precision_recall_curve"]
    assert 2 < len(roc["false_positive_rates"]) <= 100 and len(pr["recalls"]) <= 100
    assert (roc["false_positive_rates"][0], roc["true_positive_rates"][0]) == (0.0, 0.0)
    assert (roc["false_positive_rates"][-1], roc["true_positive_rates"][-1]) == (1.0, 1.0)
    assert pr["recalls"][0] == 0.0 and pr["recalls"][-1] == 1.0
    assert pr["recalls"] == sorted(pr["recalls"])
    assert (tmp_path / "a" / EVALUATION_REPORT).read_bytes() == (
        tmp_path / "b" / EVALUATION_REPORT
    ).read_bytes()


def test_cli_writes_the_report_and_prints_the_auc(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(world, "--threshold", "0.4") == 0
    out = capsys.readouterr().out
    report = json.loads((world["output"] / EVALUATION_REPORT).read_text(encoding="utf-8"))
    auc = report["binary_classification_metrics"]["auc"]["value"]
    assert out.count("\n") == 1 and f"AUC {auc:.4f}" in out
    # The report and the scored archive's digest, no temp file left.
    assert sorted(p.name for p in world["output"].iterdir()) == [EVALUATION_REPORT, MODEL_DIGEST]
    digest = json.loads((world["output"] / MODEL_DIGEST).read_text())["model_archive_sha256"]
    archive = world["model"] / MODEL_ARCHIVE
    assert digest == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_a_folder_holding_xgboost_model_directly_gives_the_same_report(
    world: dict[str, Any], tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    plain.joinpath(XGBOOST_MODEL_FILE).write_bytes(bytes(world["booster"].save_raw()))
    from_archive = evaluate(world["model"], world["dataset"], tmp_path / "a")
    assert evaluate(plain, world["dataset"], tmp_path / "b") == from_archive
    # Only an archive has a digest to record; the plain folder's run names none.
    assert (tmp_path / "a" / MODEL_DIGEST).is_file()
    assert not (tmp_path / "b" / MODEL_DIGEST).exists()


def test_a_changed_test_split_is_refused_naming_the_file(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    exit_message = tmp_path / "opt-ml-output" / "message"
    exit_message.parent.mkdir()
    test_csv = world["dataset"] / SPLIT_FILES["test"]
    text = test_csv.read_text(encoding="utf-8")
    test_csv.write_text(text.replace("1,", "0,", 1), encoding="utf-8")
    err = refused(world, capsys)
    assert str(test_csv) in err and "changed since preprocess" in err
    assert exit_message.read_text(encoding="utf-8").strip() in err
    # The twin: the bytes the manifest describes are accepted.
    test_csv.write_text(text, encoding="utf-8")
    assert run(world) == 0


def test_an_archive_with_a_member_outside_it_is_refused(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    escape = tarfile.TarInfo("../escaped")
    escape.size = 1
    pack(world["booster"], world["model"], [escape])
    err = refused(world, capsys)
    assert str(world["model"] / MODEL_ARCHIVE) in err and "'../escaped'" in err
    assert not (world["model"].parent / "escaped").exists()


def test_an_archive_with_a_link_is_refused(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    link = tarfile.TarInfo("config")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    pack(world["booster"], world["model"], [link])
    assert "not a regular file" in refused(world, capsys)


def test_a_single_class_test_split_is_refused(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    labels = np.zeros(len(world["labels"]), dtype=np.int64)
    write_dataset(world["dataset"], labels, world["features"])
    err = refused(world, capsys)
    assert str(world["dataset"] / SPLIT_FILES["test"]) in err and "AUC is undefined" in err


def test_a_model_that_does_not_output_probabilities_is_refused(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    regression = train(world["labels"], world["features"], objective="reg:squarederror")
    pack(regression, world["model"])
    err = refused(world, capsys)
    assert "reg:squarederror, not binary:logistic" in err and MODEL_ARCHIVE in err


def test_a_malformed_csv_is_refused_with_its_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    test_csv = world["dataset"] / SPLIT_FILES["test"]
    lines = test_csv.read_text(encoding="utf-8").splitlines()
    lines[6] = lines[6].rsplit(",", 1)[0] + ",high"
    test_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_manifest(world["dataset"], rows=400, positives=int(np.sum(world["labels"])))
    err = refused(world, capsys)
    assert f"{test_csv}: line 7, field 5: 'high' is not a finite number" in err


def test_missing_inputs_are_refused_in_process_too(world: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"neither model\.tar\.gz nor xgboost-model"):
        evaluate(tmp_path, world["dataset"], world["output"])
    with pytest.raises(EvaluationError, match="no dataset manifest"):
        evaluate(world["model"], tmp_path, world["output"])
    assert not world["output"].exists()
