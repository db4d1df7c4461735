"""Model versions as the register step leaves them in a registry (for the runtime checks'
tests): traceable to a dataset manifest, a commit, images by digest, metrics and a baseline."""

from __future__ import annotations

from typing import Any

from requirements.model_lineage import (
    DATASET_MANIFEST_SHA256,
    DATASET_MANIFEST_URI,
    FEATURE_BUILD_JOB,
    FEATURES_AS_OF,
    MODEL_ARCHIVE_SHA256,
    PROCESSING_IMAGE,
    TRAINING_IMAGE,
)

ARTIFACTS = "s3://acme-phi-dev-ml-artifacts/runs/exec-1"
IMAGE = "111111111111.dkr.ecr.us-east-1.amazonaws.com/phi-ml-serving@sha256:" + "ab" * 32


def lineage(account: str = "111111111111", region: str = "us-east-1") -> dict[str, Any]:
    """CreateModelPackage arguments of a fully traceable version."""
    return {
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"{ARTIFACTS}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "MetadataProperties": {
            "GeneratedBy": f"arn:aws:sagemaker:{region}:{account}:pipeline/p/execution/exec-1",
            "CommitId": "0123456789abcdef0123456789abcdef01234567",
            "Repository": "https://git.example.org/phi-ml-platform",
        },
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"{ARTIFACTS}/evaluation/evaluation.json",
                }
            }
        },
        "DriftCheckBaselines": {
            "ModelDataQuality": {
                "Constraints": {
                    "ContentType": "application/json",
                    "S3Uri": f"{ARTIFACTS}/baseline/constraints.json",
                },
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"{ARTIFACTS}/baseline/statistics.json",
                },
            }
        },
        "CustomerMetadataProperties": {
            DATASET_MANIFEST_URI: f"{ARTIFACTS}/dataset/manifest.json",
            DATASET_MANIFEST_SHA256: "cd" * 32,
            FEATURES_AS_OF: "2026-06-30T00:00:00Z",
            FEATURE_BUILD_JOB: (
                f"arn:aws:sagemaker:{region}:{account}:pipeline/p-features/execution/build-1"
            ),
            MODEL_ARCHIVE_SHA256: "ef" * 32,
            PROCESSING_IMAGE: (
                f"{account}.dkr.ecr.{region}.amazonaws.com/phi-ml/model-steps@sha256:" + "12" * 32
            ),
            TRAINING_IMAGE: "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
        },
    }


def register(sagemaker: Any, group: str, *, approve: str | None = None, **changes: Any) -> str:
    """Register a version (PendingManualApproval), then approve it with the comment `approve`
    if given. `changes` replace top-level CreateModelPackage arguments (None drops one)."""
    arguments = {**lineage(), **changes}
    arguments = {k: v for k, v in arguments.items() if v is not None}
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval", **arguments
    )["ModelPackageArn"]
    if approve is not None:
        update: dict[str, Any] = {"ModelApprovalStatus": "Approved"}
        if approve:
            update["ApprovalDescription"] = approve
        # moto's UpdateModelPackage drops CustomerMetadataProperties it is not given again.
        if "CustomerMetadataProperties" in arguments:
            update["CustomerMetadataProperties"] = arguments["CustomerMetadataProperties"]
        sagemaker.update_model_package(ModelPackageArn=arn, **update)
    return str(arn)
