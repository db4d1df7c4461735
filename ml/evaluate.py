"""The Evaluate step: score the trained model on the held-out test split and write the report
that gates and documents it.

    python -m ml.evaluate [--model DIR] [--dataset DIR] [--output DIR] [--threshold 0.5]

It runs in a SageMaker Processing container (the sagemaker-xgboost 3.0-5 image: xgboost 3.0.5,
scikit-learn 1.5.2), so its defaults are the Processing paths: --model holds the training job's
model.tar.gz (inside it `xgboost-model`, written by Booster.save_model), --dataset holds the
preprocess step's manifest.json and test.csv, and evaluation.json is written to --output
(with model-digest.json: the sha256 of the archive it scored).

The report has the schema of Model Monitor's model-quality statistics for binary classification
(https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html), so
the model registry shows it as the version's model quality and the pipeline's condition step
reads a gate metric from it through a property file (ml.model_quality.GATE_METRIC_PATHS).

Refusals (exit 2, one line on stderr, nothing written): a model file that is missing, unsafe or
not a binary:logistic Booster; a test split whose sha256 is not the manifest's (the data changed
since preprocess); a malformed CSV; a test split with only one class (AUC is undefined, and a
model must not be gated on an undefined metric).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray
from sklearn.metrics import (  # type: ignore[import-untyped]
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ml.dataset_splits import SplitError, read_split
from ml.sagemaker_paths import (
    DATASET_MANIFEST,
    EVALUATION_REPORT,
    MODEL_ARCHIVE,
    MODEL_DIGEST,
    PROCESSING_INPUT,
    PROCESSING_OUTPUT,
)
from ml.xgboost_model import ModelError, load_booster

EXIT_BAD_INPUT: Final = 2
DEFAULT_MODEL: Final = PROCESSING_INPUT / "model"
DEFAULT_DATASET: Final = PROCESSING_INPUT / "dataset"
DEFAULT_OUTPUT: Final = PROCESSING_OUTPUT / "evaluation"
# The first 1 KB of this file becomes DescribeProcessingJob.ExitMessage, so a failed step says
# why in the console, not only in CloudWatch. Written only where the directory exists (the
# container), never created.
PROCESSING_EXIT_MESSAGE: Final = Path("/opt/ml/output/message")

# Model Monitor gives a standard deviation only from 200 samples on, computed over 5 random
# samples of 80% of the data; the seed is fixed so the same model and data give the same report.
DEVIATION_MIN_ROWS: Final = 200
DEVIATION_SAMPLES: Final = 5
DEVIATION_SHARE: Final = 0.8
DEVIATION_SEED: Final = 20260630
# Curves are thinned to this many points: enough to draw, small enough for the registry page.
CURVE_POINTS: Final = 100

_REPORT_VERSION: Final = 0.0
_NAN: Final = "NaN"


class EvaluationError(ValueError):
    """The inputs cannot be evaluated; the message names the file and what is wrong with it."""


Floats = NDArray[np.float64]
Labels = NDArray[np.int64]


# --- the test split -------------------------------------------------------------------------


def _test_split(dataset: Path, expected_features: int | None) -> tuple[Path, Labels, Floats]:
    """The test split, checked against the manifest (ml.dataset_splits) and the model: the
    manifest's feature count, and both classes present."""
    try:
        split = read_split(dataset, "test")
    except SplitError as problem:
        raise EvaluationError(str(problem)) from None
    manifest, path, labels = split.manifest, split.path, split.labels
    if expected_features is not None and expected_features != len(manifest.features):
        raise EvaluationError(
            f"{dataset / DATASET_MANIFEST}: lists {len(manifest.features)} features but the"
            f" model was trained on {expected_features}"
        )
    positives = int(labels.sum())
    if positives in (0, len(labels)):
        raise EvaluationError(
            f"{path}: every row has label {labels[0]}; AUC is undefined on one class,"
            " and a model must not be gated on an undefined metric"
        )
    return path, labels, split.features


# --- the metrics ----------------------------------------------------------------------------


def _ratio(part: float, whole: float, empty: float) -> float:
    return part / whole if whole else empty


def _fbeta(precision: float, recall: float, beta: float) -> float:
    weight = beta * beta
    denominator = weight * precision + recall
    if math.isnan(denominator):
        return math.nan
    return (1 + weight) * precision * recall / denominator if denominator else 0.0


def _from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Metrics of one confusion matrix. A precision with no predicted positive is 0 (as sklearn's
    zero_division=0): a model that flags nobody is not precise. A rate over an absent class is
    NaN; that happens only in a resample, and then that metric has no standard deviation."""
    precision = _ratio(tp, tp + fp, 0.0)
    recall = _ratio(tp, tp + fn, math.nan)
    return {
        "recall": recall,
        "precision": precision,
        "accuracy": (tp + tn) / (tp + fp + tn + fn),
        "f0_5": _fbeta(precision, recall, 0.5),
        "f1": _fbeta(precision, recall, 1.0),
        "f2": _fbeta(precision, recall, 2.0),
    }


def _best_constant(positives: int, negatives: int) -> dict[str, float]:
    """The best constant classifier's score on each metric: the better of "always 0" and
    "always 1", chosen metric by metric, with the conventions of _from_counts.

    So accuracy is the majority class's share, max(p, 1 - p) for prevalence p; recall,
    precision and the F scores are those of always predicting 1 (recall 1, precision p), since
    always predicting 0 scores 0 on them. A model worth registering beats each of these.
    (Model Monitor's documented example scores "always 1" on accuracy too; the majority class is
    the honest baseline for accuracy, and the other metrics agree with Model Monitor's.)
    """
    always_one = _from_counts(positives, negatives, 0, 0)
    always_zero = _from_counts(0, 0, negatives, positives)
    return {
        f"{name}_best_constant_classifier": float(np.fmax(always_one[name], always_zero[name]))
        for name in always_one
    }


def _confusion(labels: Labels, scores: Floats, threshold: float) -> tuple[int, int, int, int]:
    predicted = scores >= threshold
    actual = labels == 1
    tp = int(np.count_nonzero(predicted & actual))
    fp = int(np.count_nonzero(predicted & ~actual))
    fn = int(np.count_nonzero(~predicted & actual))
    tn = len(labels) - tp - fp - fn
    return tp, fp, tn, fn


def _scalars(labels: Labels, scores: Floats, threshold: float) -> dict[str, float]:
    """Every scalar metric of the report, on one sample."""
    tp, fp, tn, fn = _confusion(labels, scores, threshold)
    positives, negatives = tp + fn, tn + fp
    values = _from_counts(tp, fp, tn, fn)
    values |= _best_constant(positives, negatives)
    values |= {
        "true_positive_rate": _ratio(tp, positives, math.nan),
        "true_negative_rate": _ratio(tn, negatives, math.nan),
        "false_positive_rate": _ratio(fp, negatives, math.nan),
        "false_negative_rate": _ratio(fn, positives, math.nan),
        "auc": float(roc_auc_score(labels, scores)) if positives and negatives else math.nan,
    }
    return values


def _deviations(labels: Labels, scores: Floats, threshold: float) -> dict[str, float | str]:
    """Each metric's standard deviation over DEVIATION_SAMPLES random samples of
    DEVIATION_SHARE of the rows, without replacement, as Model Monitor documents it; the sample
    standard deviation (ddof=1) of those estimates. "NaN" below DEVIATION_MIN_ROWS rows, or where
    a sample left the metric undefined (a sample without one of the classes)."""
    rows = len(labels)
    if rows < DEVIATION_MIN_ROWS:
        return {}
    rng = np.random.default_rng(DEVIATION_SEED)
    size = int(rows * DEVIATION_SHARE)
    samples: list[dict[str, float]] = []
    for _ in range(DEVIATION_SAMPLES):
        chosen = rng.choice(rows, size=size, replace=False)
        samples.append(_scalars(labels[chosen], scores[chosen], threshold))
    deviations: dict[str, float | str] = {}
    for name in samples[0]:
        estimates = np.array([sample[name] for sample in samples], dtype=np.float64)
        spread = float(np.std(estimates, ddof=1))
        deviations[name] = spread if math.isfinite(spread) else _NAN
    return deviations


def _thin(count: int) -> NDArray[np.intp]:
    """At most CURVE_POINTS evenly spaced indices of a curve, always keeping both ends."""
    if count <= CURVE_POINTS:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, CURVE_POINTS).round().astype(np.intp))


def _floats(values: Floats) -> list[float]:
    return [float(value) for value in values]


def binary_classification_metrics(
    labels: Labels, scores: Floats, *, threshold: float = 0.5
) -> dict[str, Any]:
    """The `binary_classification_metrics` object of Model Monitor's model-quality statistics.

    The confusion matrix maps actual to predicted class ("1" -> "0" counts false negatives); a
    score >= threshold predicts 1. The ROC curve runs from (0, 0) to (1, 1) and the
    precision-recall curve by ascending recall, as in the documented example.
    """
    values = _scalars(labels, scores, threshold)
    deviations = _deviations(labels, scores, threshold)
    tp, fp, tn, fn = _confusion(labels, scores, threshold)
    false_positive_rates, true_positive_rates, _ = roc_curve(labels, scores)
    precisions, recalls, _ = precision_recall_curve(labels, scores)
    # sklearn lists precision-recall by descending recall; the documented schema ascends.
    precisions, recalls = precisions[::-1], recalls[::-1]
    roc_points, pr_points = _thin(len(true_positive_rates)), _thin(len(recalls))

    def scalar(name: str) -> dict[str, float | str]:
        return {"value": values[name], "standard_deviation": deviations.get(name, _NAN)}

    return {
        "confusion_matrix": {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}},
        **{
            name: scalar(name)
            for name in (
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
            )
        },
        "receiver_operating_characteristic_curve": {
            "false_positive_rates": _floats(false_positive_rates[roc_points]),
            "true_positive_rates": _floats(true_positive_rates[roc_points]),
        },
        "precision_recall_curve": {
            "precisions": _floats(precisions[pr_points]),
            "recalls": _floats(recalls[pr_points]),
        },
        **{
            name: scalar(name)
            for name in (
                "auc",
                "f0_5",
                "f1",
                "f2",
                "f0_5_best_constant_classifier",
                "f1_best_constant_classifier",
                "f2_best_constant_classifier",
            )
        },
    }


# --- the step -------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> None:
    # A temp file in the same folder, then a rename: the uploaded folder never holds half a
    # report, and a failed run leaves nothing behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            # mkstemp makes the file 0600; the report holds no patient data and is read by other
            # users of an in-process run, as any output written the ordinary way would be.
            os.fchmod(handle.fileno(), 0o644)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def evaluate(model: Path, dataset: Path, output: Path, *, threshold: float = 0.5) -> dict[str, Any]:
    """Score `model` on the test split in `dataset`; write output/evaluation.json; the report.

    Raises EvaluationError (and writes nothing) when the inputs cannot be evaluated.
    """
    if not 0.0 <= threshold <= 1.0:
        raise EvaluationError(f"threshold {threshold} is not a probability in [0, 1]")
    try:
        booster, _ = load_booster(model)
    except ModelError as problem:
        raise EvaluationError(str(problem)) from None
    _, labels, features = _test_split(dataset, booster.num_features())
    # All trees, unnamed features, as the 3.0-5 serving container predicts
    # (serve_utils.predict: no best_ntree_limit on a 3.x Booster, validate_features=False),
    # so the report describes what the endpoint will answer.
    scores = booster.predict(xgb.DMatrix(features, missing=np.nan), validate_features=False)
    report = {
        "version": _REPORT_VERSION,
        "dataset": {"item_count": len(labels)},
        "binary_classification_metrics": binary_classification_metrics(
            labels, scores.astype(np.float64), threshold=threshold
        ),
    }
    # allow_nan=False: every value of a two-class split is defined, and a NaN would be invalid JSON
    # for the registry and the condition step.
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    outputs = [(EVALUATION_REPORT, text)]
    if (model / MODEL_ARCHIVE).is_file():
        # What was scored, by digest: the registry records it, and promotion to another
        # account copies the archive only if its bytes still hash to it. (A folder holding
        # the Booster file itself, as in a local check, has no archive to name.)
        digest = {"model_archive_sha256": archive_sha256(model)}
        outputs.append((MODEL_DIGEST, json.dumps(digest, indent=2) + "\n"))
    for name, content in outputs:
        try:
            _write_atomically(output / name, content)
        except OSError as problem:
            raise EvaluationError(
                f"{output / name}: cannot be written ({problem.strerror})"
            ) from None
    return report


def archive_sha256(model: Path) -> str:
    """sha256 (hex) of the model archive in the --model folder, as SageMaker delivered it."""
    hasher = hashlib.sha256()
    with (model / MODEL_ARCHIVE).open("rb") as archive:
        for block in iter(lambda: archive.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _probability(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a probability in [0, 1]")
    return number


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="folder with model.tar.gz"
    )
    parser.add_argument(
        "--dataset", type=Path, default=DEFAULT_DATASET, help="folder with manifest.json, test.csv"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="folder for evaluation.json"
    )
    parser.add_argument(
        "--threshold", type=_probability, default=0.5, help="score >= this predicts 1 (0.5)"
    )
    return parser.parse_args(argv)


def _exit_message(message: str) -> None:
    if not PROCESSING_EXIT_MESSAGE.parent.is_dir():
        return
    with contextlib.suppress(OSError):  # a courtesy: stderr already has the message
        PROCESSING_EXIT_MESSAGE.write_text(message + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        report = evaluate(
            arguments.model, arguments.dataset, arguments.output, threshold=arguments.threshold
        )
    except EvaluationError as error:
        message = " ".join(str(error).split())  # one line, whatever a library put in it
        print(f"evaluate: error: {message}", file=sys.stderr)
        _exit_message(message)
        return EXIT_BAD_INPUT
    metrics = report["binary_classification_metrics"]
    print(
        f"evaluate: AUC {metrics['auc']['value']:.4f} on {report['dataset']['item_count']} test"
        f" rows (accuracy {metrics['accuracy']['value']:.4f} at threshold"
        f" {arguments.threshold}); report {arguments.output / EVALUATION_REPORT}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
