"""The AWS framework container the model steps run in, and what it ships.

SageMaker's XGBoost 3.0-5 image (sagemaker-xgboost:3.0-5-cpu-py3; aws/sagemaker-xgboost-container
branch release-3.0.5, docker/3.0-5/base/Dockerfile.cpu and requirements.txt): the Train step runs
it as the built-in algorithm, and ml/Dockerfile.model-steps builds the Preprocess, Evaluate and
Baseline image FROM it. pyproject.toml pins the same versions so that the in-process runs (tests,
`make ml-demo`) compute what the containers compute; tests/ml/test_model_steps_image.py holds
them equal. The image is x86_64 only (AWS publishes no arm64 build of 3.0-5).
"""

from __future__ import annotations

from typing import Final

XGBOOST_FRAMEWORK: Final = "3.0-5"
XGBOOST_IMAGE_TAG: Final = f"{XGBOOST_FRAMEWORK}-cpu-py3"
XGBOOST_REPOSITORY: Final = "sagemaker-xgboost"
# Python packages of that image the step programs import (numpy and pyarrow differ from the
# feature builder's pins: the steps use only APIs both versions have).
FRAMEWORK_PACKAGES: Final = {
    "xgboost": "3.0.5",
    "scikit-learn": "1.5.2",
    "scipy": "1.15.0",
    "numpy": "2.1.0",
    "pandas": "2.2.3",
    "pyarrow": "22.0.0",
}
# What pyproject.toml pins for them (xgboost-cpu is the same release without CUDA/NCCL).
PYPROJECT_PINS: Final = {"xgboost-cpu": "3.0.5", "scikit-learn": "1.5.2", "scipy": "1.15.0"}
