"""Where SageMaker puts a job's inputs and takes its outputs, inside the container.

Processing jobs: every ProcessingInput and ProcessingOutput LocalPath must begin with
/opt/ml/processing/; the instance's host name is in /opt/ml/config/resourceconfig.json.
Training jobs (the built-in XGBoost algorithm's contract): channel c is /opt/ml/input/data/c,
hyperparameters are /opt/ml/input/config/hyperparameters.json (every value a string), the model
is whatever /opt/ml/model holds when the job ends (uploaded as model.tar.gz), and the first
1024 characters of /opt/ml/output/failure become the job's FailureReason.

The step programs take these as the defaults of their path arguments, so the same program runs
in the container and in-process under a scratch root (tests, `make ml-demo`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

# Unset in SageMaker. An in-process run (`tools.pipeline_interpreter`) sets it to the scratch
# folder standing in for one instance's "/", for the one file a program finds by a fixed path
# rather than by an argument: the processing cluster's resourceconfig.json.
CONTAINER_ROOT_VARIABLE: Final = "PHI_ML_CONTAINER_ROOT"
RESOURCE_CONFIG: Final = Path("/opt/ml/config/resourceconfig.json")

PROCESSING: Final = Path("/opt/ml/processing")
PROCESSING_INPUT: Final = PROCESSING / "input"
PROCESSING_OUTPUT: Final = PROCESSING / "output"

TRAINING_INPUT: Final = Path("/opt/ml/input")
TRAINING_CHANNELS: Final = TRAINING_INPUT / "data"
HYPERPARAMETERS: Final = TRAINING_INPUT / "config" / "hyperparameters.json"
MODEL_DIR: Final = Path("/opt/ml/model")
FAILURE_FILE: Final = Path("/opt/ml/output/failure")

# The built-in XGBoost algorithm saves its Booster here (Booster.save_model, UBJSON in 3.x).
XGBOOST_MODEL_FILE: Final = "xgboost-model"
# SageMaker uploads /opt/ml/model as this archive (TrainingJob.ModelArtifacts.S3ModelArtifacts).
MODEL_ARCHIVE: Final = "model.tar.gz"

# What the dataset step writes and the later steps read (file names inside their folders).
DATASET_MANIFEST: Final = "manifest.json"
# {"manifest_sha256": ...}: the manifest's digest, for the pipeline to read as a property file.
DATASET_DIGEST: Final = "dataset-digest.json"
SPLIT_FILES: Final = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}
EVALUATION_REPORT: Final = "evaluation.json"
# {"model_archive_sha256": ...}: the digest of the archive Evaluate scored, beside the report
# (not inside it: the report keeps Model Monitor's model-quality schema the registry renders).
MODEL_DIGEST: Final = "model-digest.json"
BASELINE_STATISTICS: Final = "statistics.json"
BASELINE_CONSTRAINTS: Final = "constraints.json"


def resource_config() -> Path:
    """This instance's resourceconfig.json (under the in-process container root if one is set)."""
    root = os.environ.get(CONTAINER_ROOT_VARIABLE)
    return Path(root) / RESOURCE_CONFIG.relative_to("/") if root else RESOURCE_CONFIG
