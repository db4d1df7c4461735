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
FEATURE_BUILD_JOB: Final = "feature-build-job"  # the processing job that wrote the features
REQUIRED_CUSTOMER_METADATA: Final = (
    DATASET_MANIFEST_URI,
    DATASET_MANIFEST_SHA256,
    FEATURES_AS_OF,
    FEATURE_BUILD_JOB,
)
# MetadataProperties fields (the registry's provenance block).
REQUIRED_METADATA_PROPERTIES: Final = ("GeneratedBy", "CommitId", "Repository")
# An image reference pinned by digest (`<repository>@sha256:<64 hex>`), never a tag.
IMAGE_BY_DIGEST: Final = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
