"""The Train step in-process, on the built-in XGBoost container's contract: string
hyperparameters, text/csv channels with the label first, the model at /opt/ml/model/xgboost-model
(loadable by Booster.load_model), the failure reason where SageMaker reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from ml import xgboost_training

CSV_CHANNEL = {
    "ContentType": "text/csv",
    "TrainingInputMode": "File",
    "S3DistributionType": "FullyReplicated",
    "RecordWrapperType": "None",
}
HYPERPARAMETERS = {
    "num_round": "60",
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": "2",
    "eta": "0.2",
    "seed": "7",
    "early_stopping_rounds": "10",
}


def _rows(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 3))
    label = (features[:, 0] + 0.5 * rng.normal(size=count) > 0).astype(float)
    return np.column_stack([label, features])


def job(
    root: Path,
    *,
    hyperparameters: dict[str, str] = HYPERPARAMETERS,
    channels: dict[str, Any] | None = None,
) -> Path:
    """A training job's /opt/ml/input under root."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    declared = (
        channels if channels is not None else {"train": CSV_CHANNEL, "validation": CSV_CHANNEL}
    )
    (config / "inputdataconfig.json").write_text(json.dumps(declared))
    for name, seed in (("train", 1), ("validation", 2)):
        folder = root / "input" / "data" / name
        folder.mkdir(parents=True)
        np.savetxt(folder / f"{name}.csv", _rows(300, seed), delimiter=",", fmt="%.6g")
    return root / "input"


def test_the_model_is_saved_where_sagemaker_takes_it_and_loads(tmp_path: Path) -> None:
    model = xgboost_training.train(job(tmp_path), tmp_path / "model")
    assert model == tmp_path / "model" / "xgboost-model"
    booster = xgb.Booster()
    booster.load_model(str(model))
    config = json.loads(booster.save_config())
    assert config["learner"]["objective"]["name"] == "binary:logistic"
    test = _rows(200, 3)
    predictions = booster.predict(xgb.DMatrix(test[:, 1:]))
    assert ((predictions > 0.5) == test[:, 0]).mean() > 0.75  # it learned the signal
    assert predictions.min() >= 0 and predictions.max() <= 1  # probabilities


def test_every_file_of_a_channel_is_read(tmp_path: Path) -> None:
    root = job(tmp_path)
    np.savetxt(root / "data" / "train" / "more.csv", _rows(300, 4), delimiter=",", fmt="%.6g")
    assert xgboost_training._channel(root, "train", {"train": CSV_CHANNEL}).num_row() == 600  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda: {"hyperparameters": {**HYPERPARAMETERS, "num_round": "0"}},
            "num_round: '0' is outside",
        ),
        (
            lambda: {
                "hyperparameters": {k: v for k, v in HYPERPARAMETERS.items() if k != "num_round"}
            },
            "num_round: required",
        ),
        (
            lambda: {"channels": {"train": {**CSV_CHANNEL, "ContentType": "text/libsvm"}}},
            "ContentType text/libsvm",
        ),
        (lambda: {"channels": {"validation": CSV_CHANNEL}}, "no 'train' channel"),
        (
            lambda: {"channels": {"train": CSV_CHANNEL}},
            "early_stopping_rounds needs a validation channel",
        ),
    ],
    ids=["range", "required", "libsvm", "no-train", "no-validation"],
)
def test_what_the_container_refuses_fails_with_its_reason(
    tmp_path: Path, setup: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = job(tmp_path, **setup())
    failure = tmp_path / "output" / "failure"
    failure.parent.mkdir()
    code = xgboost_training.main(
        [f"--input={root}", f"--model-dir={tmp_path / 'model'}", f"--failure-file={failure}"]
    )
    assert code == 2
    assert message in failure.read_text(encoding="utf-8")
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "model" / "xgboost-model").exists()


def test_the_same_job_gives_the_same_model(tmp_path: Path) -> None:
    first = xgboost_training.train(job(tmp_path / "a"), tmp_path / "a" / "model").read_bytes()
    second = xgboost_training.train(job(tmp_path / "b"), tmp_path / "b" / "model").read_bytes()
    assert first == second
