"""What the enclave host's bootstrap, the parent service and the enclave application agree on:
vsock addresses, where the artifacts live, and the encryption context of the data key.

The host's bootstrap (modules/enclave_bootstrap.py) renders these into the launch template's
user data; the parent (ml/enclave/parent.py) and the enclave (ml/enclave/app.py) take them as
their defaults, so one change here moves all three.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Final

# The enclave's vsock context id, fixed at run-enclave so the parent needs no discovery.
# 0-2 are reserved (2 is the host's hypervisor side), 3 is the parent instance.
ENCLAVE_CID: Final = 16
PARENT_CID: Final = 3
# The enclave application listens here for the parent's requests.
ENCLAVE_PORT: Final = 5000
# The parent's vsock-proxy listens here and forwards to the regional KMS endpoint only.
KMS_PROXY_PORT: Final = 8000
HTTPS_PORT: Final = 443

# On the parent instance.
HOST_DIRECTORY: Final = PurePosixPath("/opt/phi-ml/enclave")
HOST_IMAGE: Final = HOST_DIRECTORY / "patient-tokens.eif"
HOST_PARENT_ARCHIVE: Final = HOST_DIRECTORY / "parent.pyz"
HOST_WRAPPED_DATA_KEY: Final = HOST_DIRECTORY / "patient-token-data-key.bin"
# The parent's clinical API: loopback only (reached through SSM port forwarding until an
# authenticated TLS front door exists; see the README's Nitro Enclaves section).
PARENT_LISTEN_HOST: Final = "127.0.0.1"
PARENT_LISTEN_PORT: Final = 8443

# In the artifacts bucket. The image and its parent are filed under the measurement, so what a
# host runs is named by what the key policy admits.
ARTIFACTS_PREFIX: Final = "enclave/patient-tokens/"
IMAGE_FILE: Final = "enclave.eif"
PARENT_ARCHIVE_FILE: Final = "parent.pyz"
# One data key per environment (tokens must agree across hosts and over time), wrapped by the
# patient-token KMS key; only the ciphertext is ever stored.
WRAPPED_DATA_KEY_OBJECT: Final = f"{ARTIFACTS_PREFIX}data-key.bin"

SHA384_HEX: Final = re.compile(r"^[0-9a-f]{96}$")


def image_object(image_sha384: str) -> str:
    return f"{ARTIFACTS_PREFIX}{image_sha384}/{IMAGE_FILE}"


def parent_archive_object(image_sha384: str) -> str:
    return f"{ARTIFACTS_PREFIX}{image_sha384}/{PARENT_ARCHIVE_FILE}"


def patient_token_key_alias(environment: str) -> str:
    """The KMS alias of an environment's patient-token key (modules/inference.py creates it;
    the enclave decrypts only under an alias of this form)."""
    return f"alias/phi-ml/{environment}/patient-tokens"


def kms_endpoint(region: str) -> str:
    return f"kms.{region}.amazonaws.com"


def data_key_context(environment: str) -> dict[str, str]:
    """KMS encryption context of the wrapped data key: a ciphertext of another purpose or
    another environment under the same key does not decrypt as this one."""
    return {"phi-ml:purpose": "patient-tokens", "phi-ml:environment": environment}
