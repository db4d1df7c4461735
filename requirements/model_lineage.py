"""What every registered model version must carry so an auditor can trace it (FDA PCCP
traceability, EU AI Act Articles 10 and 12): the registry's own fields, and the customer
metadata keys the register step writes and the runtime checks read.

SageMaker limits CustomerMetadataProperties to 50 keys of 1-128 characters and values of
1-256 characters; the keys below fit its pattern ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*).
"""

from __future__ import annotations

import re
from typing import Final

# CustomerMetadataProperties keys.
DATASET_MANIFEST_URI: Final = "dataset-manifest-uri"  # s3:// URI of the dataset manifest
DATASET_MANIFEST_SHA256: Final = "dataset-manifest-sha256"  # its digest, hex
FEATURES_AS_OF: Final = "features-as-of"  # the point-in-time cut-off of the training join
# The feature build that wrote the features: the features pipeline's execution ARN (its
# parameters name the FHIR export it read).
FEATURE_BUILD_JOB: Final = "feature-build-job"
# Images by digest (the serving image is the package's own InferenceSpecification).
PROCESSING_IMAGE: Final = "processing-image"
TRAINING_IMAGE: Final = "training-image"
# sha256 of the model archive the training job wrote, as Evaluate read it: what promotion
# copies between accounts is checked against it.
MODEL_ARCHIVE_SHA256: Final = "model-archive-sha256"
REQUIRED_CUSTOMER_METADATA: Final = (
    DATASET_MANIFEST_URI,
    DATASET_MANIFEST_SHA256,
    FEATURES_AS_OF,
    FEATURE_BUILD_JOB,
    PROCESSING_IMAGE,
    TRAINING_IMAGE,
    MODEL_ARCHIVE_SHA256,
)
# Written on a version the rollback function took out of service (with its status set to
# Rejected and the reason in ApprovalDescription), so the registry's history shows it.
ROLLED_BACK_AT: Final = "rolled-back-at"  # ISO 8601 UTC
ROLLED_BACK_TO: Final = "rolled-back-to"  # the package ARN the endpoint returned to
ROLLED_BACK_ENDPOINT: Final = "rolled-back-endpoint"
# Written on a package promoted from another account's registry (never retrained there).
PROMOTED_FROM: Final = "promoted-from"  # the source package ARN
# MetadataProperties fields (the registry's provenance block).
REQUIRED_METADATA_PROPERTIES: Final = ("GeneratedBy", "CommitId", "Repository")
# Repository/CommitId of a synthesis that was not told its commit: present, but no evidence.
UNRECORDED_REVISION: Final = "unrecorded"
# An image reference pinned by digest (`<repository>@sha256:<64 hex>`), never a tag.
IMAGE_BY_DIGEST: Final = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
