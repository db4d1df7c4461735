"""Load the model a SageMaker training job of the built-in XGBoost algorithm wrote: its
model.tar.gz (the job's ModelArtifacts) or a plain `xgboost-model`, as the 3.0-5 serving
container loads it (Booster().load_model), and only a binary:logistic classifier, whose
predictions are the probabilities the evaluation and the endpoint return. Evaluate and the
serving program share it."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path, PurePosixPath

import xgboost as xgb
from xgboost.core import XGBoostError

from ml.model_quality import REQUIRED_OBJECTIVE
from ml.sagemaker_paths import MODEL_ARCHIVE, XGBOOST_MODEL_FILE


class ModelError(ValueError):
    """The model cannot be used; the message names the file."""


def _archive_booster_bytes(archive: Path) -> bytearray:
    """The bytes of `xgboost-model` in a SageMaker model archive, read without extracting.

    Every member is checked, not only the one read: an archive with an absolute or '..' path,
    a link or a device is not what a training job uploads, so the whole artifact is distrusted.
    Reading the member into memory (no extraction) means nothing is written outside the output.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            found: list[tarfile.TarInfo] = []
            for member in tar.getmembers():
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise ModelError(f"{archive}: member '{member.name}' leaves the archive")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ModelError(
                        f"{archive}: member '{member.name}' is not a regular file (link or device)"
                    )
                if tuple(part for part in path.parts if part != ".") == (XGBOOST_MODEL_FILE,):
                    found.append(member)
            if not found:
                raise ModelError(f"{archive}: has no '{XGBOOST_MODEL_FILE}'")
            if len(found) > 1:
                # tar keeps duplicates and extraction keeps the last: which one is meant is unclear
                raise ModelError(f"{archive}: holds '{XGBOOST_MODEL_FILE}' more than once")
            handle = tar.extractfile(found[0])
            if handle is None:  # pragma: no cover - isfile() members always have data
                raise ModelError(f"{archive}: '{XGBOOST_MODEL_FILE}' cannot be read")
            with handle:
                return bytearray(handle.read())
    except (tarfile.TarError, EOFError, OSError) as problem:
        raise ModelError(f"{archive}: not a readable .tar.gz ({problem})") from None


def _model_bytes(model: Path) -> tuple[bytearray, Path]:
    """The Booster's bytes and the file they came from: a model.tar.gz (the training job's
    artifact) or a plain `xgboost-model` (an in-process run), given as a file or a folder."""
    if model.is_dir():
        if (model / MODEL_ARCHIVE).is_file():
            model = model / MODEL_ARCHIVE
        elif (model / XGBOOST_MODEL_FILE).is_file():
            model = model / XGBOOST_MODEL_FILE
        else:
            raise ModelError(f"{model}: holds neither {MODEL_ARCHIVE} nor {XGBOOST_MODEL_FILE}")
    if not model.is_file():
        raise ModelError(f"{model}: no such model file")
    if model.name.endswith((".tar.gz", ".tgz")):
        return _archive_booster_bytes(model), model
    try:
        return bytearray(model.read_bytes()), model
    except OSError as problem:
        raise ModelError(f"{model}: cannot be read ({problem.strerror})") from None


def _first_line(problem: Exception) -> str:
    # XGBoost errors carry a native stack trace after the first line; the report needs one line.
    lines = str(problem).strip().splitlines()
    return lines[0] if lines else type(problem).__name__


def load_booster(model: Path) -> tuple[xgb.Booster, Path]:
    """Load the Booster as the 3.0-5 serving container does (Booster().load_model) and insist
    on binary:logistic, whose predictions are the probabilities that AUC and the threshold need.
    """
    raw, source = _model_bytes(model)
    booster = xgb.Booster()
    try:
        booster.load_model(raw)
    except XGBoostError as problem:
        raise ModelError(
            f"{source}: not a model saved by Booster.save_model ({_first_line(problem)})"
        ) from None
    try:
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    except (XGBoostError, ValueError, KeyError, TypeError):
        raise ModelError(f"{source}: the model's configuration names no objective") from None
    if objective != REQUIRED_OBJECTIVE:
        raise ModelError(
            f"{source}: objective is {objective}, not {REQUIRED_OBJECTIVE}"
            " (its predictions are not probabilities)"
        )
    return booster, source
