"""The model-quality report's contract between the Evaluate step, the Train step's
hyperparameters and the pipeline's gate: which metrics can gate a model, and where each is in
evaluation.json (Model Monitor's model-quality schema, binary classification)."""

from __future__ import annotations

from typing import Final

# The classifier the steps build: evaluation scores its probabilities.
REQUIRED_OBJECTIVE: Final = "binary:logistic"
# Where the pipeline's JsonGet finds each metric in evaluation.json (PropertyFile json_path);
# these are also the eval_metric values the built-in algorithm accepts for them.
GATE_METRIC_PATHS: Final = {
    "auc": "binary_classification_metrics.auc.value",
    "accuracy": "binary_classification_metrics.accuracy.value",
    "f1": "binary_classification_metrics.f1.value",
    "precision": "binary_classification_metrics.precision.value",
    "recall": "binary_classification_metrics.recall.value",
}
GATE_METRICS: Final = tuple(GATE_METRIC_PATHS)
