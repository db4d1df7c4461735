"""The Train step's program where SageMaker's built-in XGBoost container is not at hand: the
same training, on the same contract, in-process (tests, `make ml-demo`).

    python -m ml.xgboost_training [--input ROOT] [--model-dir DIR] [--failure-file FILE]

On AWS the pipeline's TrainingStep runs the built-in algorithm image (sagemaker-xgboost 3.0-5,
algorithm mode) and this program is not shipped; here it follows that container's contract so
a definition that would fail there fails here too:

- hyperparameters from ROOT/config/hyperparameters.json, every value a string, validated as the
  container validates them (ml.hyperparameters: num_round required, unknown keys refused);
- channels ROOT/data/train (required) and ROOT/data/validation (optional), each declared
  `text/csv` in ROOT/config/inputdataconfig.json (the container's default is libsvm), CSV with
  the label in the first column and no header, every file of the channel read;
- `num_round` boosting rounds, early stopping on the validation channel's last metric when
  `early_stopping_rounds` is given, as the container does;
- the Booster saved with Booster.save_model to MODEL_DIR/xgboost-model (UBJSON in xgboost 3.x),
  which SageMaker then uploads as model.tar.gz;
- a failure writes its reason to /opt/ml/output/failure (the job's FailureReason) and exits
  non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import xgboost as xgb

from ml.hyperparameters import HyperparameterError, parse
from ml.sagemaker_paths import FAILURE_FILE, MODEL_DIR, TRAINING_INPUT, XGBOOST_MODEL_FILE

EXIT_FAILED: Final = 2
CSV: Final = "text/csv"
TRAIN: Final = "train"
VALIDATION: Final = "validation"
# Keys the container turns into arguments of xgboost.train rather than booster parameters.
_TRAIN_ARGUMENTS: Final = ("num_round", "early_stopping_rounds")


class TrainingError(Exception):
    """The job cannot train (a hyperparameter, a channel, the data)."""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(
            f"{path}: missing (SageMaker writes it for every training job)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as problem:
        raise TrainingError(f"{path}: not JSON ({problem})") from None


def _channel(root: Path, name: str, data_config: Mapping[str, Any]) -> xgb.DMatrix | None:
    folder = root / "data" / name
    declared = data_config.get(name)
    if declared is None:
        if name == TRAIN:
            raise TrainingError(f"{root / 'config/inputdataconfig.json'}: no '{TRAIN}' channel")
        return None
    content_type = str(declared.get("ContentType", "text/libsvm"))
    if content_type != CSV:
        raise TrainingError(
            f"channel '{name}': ContentType {content_type}, but the dataset is CSV "
            f"(declare {CSV}: the algorithm's default is libsvm)"
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        raise TrainingError(f"{folder}: channel '{name}' holds no data")
    try:
        # The container's own CSV reading: label in column 0, a directory read whole.
        return xgb.DMatrix(f"{folder}?format=csv&label_column=0")
    except xgb.core.XGBoostError as problem:
        first = str(problem).strip().splitlines()[0] if str(problem).strip() else "unreadable"
        raise TrainingError(
            f"{folder}: channel '{name}' is not label-first CSV ({first})"
        ) from None


def train(root: Path, model_dir: Path) -> Path:
    """Train as the built-in algorithm does; the saved model's path."""
    strings = _json(root / "config" / "hyperparameters.json")
    if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
        raise TrainingError(
            "hyperparameters.json: every value must be a string, as SageMaker writes it"
        )
    try:
        typed = parse(strings)
    except HyperparameterError as problem:
        raise TrainingError(f"hyperparameters.json: {problem}") from None
    data_config = _json(root / "config" / "inputdataconfig.json")
    if not isinstance(data_config, dict):
        raise TrainingError("inputdataconfig.json: not an object of channels")
    train_matrix = _channel(root, TRAIN, data_config)
    assert train_matrix is not None
    validation_matrix = _channel(root, VALIDATION, data_config)
    params = {k: v for k, v in typed.items() if k not in _TRAIN_ARGUMENTS}
    evals = [(train_matrix, TRAIN)]
    if validation_matrix is not None:
        evals.append((validation_matrix, VALIDATION))
    stopping = typed.get("early_stopping_rounds")
    if stopping is not None and validation_matrix is None:
        raise TrainingError("early_stopping_rounds needs a validation channel")
    booster = xgb.train(
        params,
        train_matrix,
        num_boost_round=int(typed["num_round"]),
        evals=evals,
        early_stopping_rounds=int(stopping) if stopping is not None else None,
        verbose_eval=False,
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / XGBOOST_MODEL_FILE
    with warnings.catch_warnings():
        # xgboost 3 announces that an extension-less name is saved as UBJSON, its default.
        warnings.simplefilter("ignore", UserWarning)
        booster.save_model(str(path))
    return path


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.xgboost_training", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--input", type=Path, default=TRAINING_INPUT, help="the job's /opt/ml/input"
    )
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--failure-file", type=Path, default=FAILURE_FILE)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        path = train(arguments.input, arguments.model_dir)
    except TrainingError as problem:
        message = str(problem)
        print(f"xgboost_training: error: {message}", file=sys.stderr)
        if arguments.failure_file.parent.is_dir():
            arguments.failure_file.write_text(message[:1024], encoding="utf-8")
        return EXIT_FAILED
    print(f"xgboost_training: model saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
