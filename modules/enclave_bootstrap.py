"""The Nitro Enclave host's first-boot script (EC2 user data), rendered from typed values.

What a host does when it boots, in order, and why:
1. installs the Nitro Enclaves CLI (Amazon Linux 2023 packages), which brings the allocator,
   the vsock proxy and `nitro-cli`;
2. reserves the enclave's memory and vCPUs (/etc/nitro_enclaves/allocator.yaml) before any
   other service starts, so the parent can never oversubscribe them;
3. runs the vsock proxy with an allowlist of exactly one destination, the regional KMS
   endpoint on 443: the enclave has no network of its own, and this proxy is its only way
   out, so it can reach KMS and nothing else (TLS runs end to end from the enclave to KMS:
   the proxy sees bytes it cannot read);
4. fetches the enclave image (EIF) filed under its measurement, checks that the file's PCR0
   is the configured one (so a wrong image fails here, loudly, rather than at KMS), and runs
   it in production mode;
5. starts the parent service, which tokenizes requests through the enclave before they reach
   the SageMaker endpoint and has responses re-identified by it.

Everything interpolated is shell-quoted, and the values are validated before they get here.
"""

from __future__ import annotations

import re
import shlex

from pydantic import Field, field_validator

from ml.enclave import contract
from modules.config import LayerConfig

ALLOCATOR_CONFIG = "/etc/nitro_enclaves/allocator.yaml"
VSOCK_PROXY_ALLOWLIST = "/etc/nitro_enclaves/vsock-proxy.yaml"
VSOCK_PROXY_OVERRIDE = "/etc/systemd/system/nitro-enclaves-vsock-proxy.service.d/region.conf"
ENCLAVE_UNIT = "/etc/systemd/system/phi-ml-enclave.service"
PARENT_UNIT = "/etc/systemd/system/phi-ml-token-parent.service"
PARENT_USER = "phi-ml-parent"
PACKAGES = ("aws-nitro-enclaves-cli", "aws-nitro-enclaves-cli-devel", "python3-boto3")
# The EC2 limit on user data, before base64.
MAX_USER_DATA_BYTES = 16 * 1024

_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]$")


class EnclaveBootstrapConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z0-9](?:-?[a-z0-9])*$")
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str
    image_sha384: str
    memory_mib: int = Field(ge=64)
    cpu_count: int = Field(ge=1)
    # The ML artifacts bucket's name: a Terraform reference in a stack, a literal in tests.
    artifacts_bucket: str = Field(min_length=1)
    endpoint_name: str = Field(pattern=r"^[a-zA-Z0-9](?:-*[a-zA-Z0-9])*$", max_length=63)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region name")
        return value

    @field_validator("image_sha384")
    @classmethod
    def _measurement(cls, value: str) -> str:
        if not contract.SHA384_HEX.match(value):
            raise ValueError("image_sha384 must be 96 lower-case hex characters (PCR0)")
        return value


def vsock_proxy_allowlist(region: str) -> str:
    """The proxy's allowlist: the regional KMS endpoint, nothing else."""
    endpoint = contract.kms_endpoint(region)
    return f"allowlist:\n- {{address: {endpoint}, port: {contract.HTTPS_PORT}}}\n"


def allocator_config(memory_mib: int, cpu_count: int) -> str:
    return f"---\nmemory_mib: {memory_mib}\ncpu_count: {cpu_count}\n"


def patient_token_key_alias_arn(config: EnclaveBootstrapConfig) -> str:
    alias = contract.patient_token_key_alias(config.environment)
    return f"arn:aws:kms:{config.region}:{config.account_id}:{alias}"


def run_enclave_command(config: EnclaveBootstrapConfig) -> str:
    # Never --debug-mode: a debug enclave's attestation document carries all-zero PCRs, so
    # the measurement the key policy checks would say nothing about the code running (and KMS
    # would refuse it), and its console would stream the enclave's output to the parent.
    return shlex.join(
        [
            "/usr/bin/nitro-cli",
            "run-enclave",
            "--eif-path",
            str(contract.HOST_IMAGE),
            "--cpu-count",
            str(config.cpu_count),
            "--memory",
            str(config.memory_mib),
            "--enclave-cid",
            str(contract.ENCLAVE_CID),
        ]
    )


def parent_command(config: EnclaveBootstrapConfig) -> str:
    return shlex.join(
        [
            "/usr/bin/python3",
            str(contract.HOST_PARENT_ARCHIVE),
            "serve",
            "--key-alias",
            patient_token_key_alias_arn(config),
            "--region",
            config.region,
            "--endpoint-name",
            config.endpoint_name,
            "--wrapped-data-key",
            str(contract.HOST_WRAPPED_DATA_KEY),
        ]
    )


def _heredoc(path: str, body: str, *, mode: str = "0644") -> str:
    # Quoted delimiter: the shell expands nothing inside.
    return (
        f"install -m {mode} /dev/null {shlex.quote(path)}\n"
        f"cat > {shlex.quote(path)} <<'PHI_ML_EOF'\n{body}PHI_ML_EOF\n"
    )


def _s3(bucket: str, key: str) -> str:
    return shlex.quote(f"s3://{bucket}/{key}")


def render(config: EnclaveBootstrapConfig) -> str:
    """The user-data script (cloud-init runs it once, as root, at first boot)."""
    bucket = config.artifacts_bucket
    kms = contract.kms_endpoint(config.region)
    image = str(contract.HOST_IMAGE)
    proxy_unit = (
        "[Service]\n"
        "# The packaged unit looks the region up in instance metadata; it is fixed here.\n"
        "ExecStart=\n"
        f"ExecStart=/usr/bin/vsock-proxy {contract.KMS_PROXY_PORT} {kms} {contract.HTTPS_PORT} "
        f"--config {VSOCK_PROXY_ALLOWLIST}\n"
    )
    enclave_unit = (
        "[Unit]\n"
        "Description=PHI ML patient-token enclave (production mode, measured image)\n"
        "Requires=nitro-enclaves-allocator.service\n"
        "After=nitro-enclaves-allocator.service\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={run_enclave_command(config)}\n"
        "ExecStop=/usr/bin/nitro-cli terminate-enclave --all\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    parent_unit = (
        "[Unit]\n"
        "Description=PHI ML token parent: tokens to the endpoint, re-identification by the "
        "enclave\n"
        "Requires=phi-ml-enclave.service nitro-enclaves-vsock-proxy.service\n"
        "After=phi-ml-enclave.service nitro-enclaves-vsock-proxy.service\n\n"
        "[Service]\n"
        f"User={PARENT_USER}\n"
        f"ExecStart={parent_command(config)}\n"
        "Restart=always\n"
        "NoNewPrivileges=yes\n"
        "ProtectSystem=strict\n"
        "ProtectHome=yes\n"
        "PrivateTmp=yes\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    measured = shlex.quote(config.image_sha384)
    script = (
        "#!/bin/bash\n"
        "# PHI ML Nitro Enclave host bootstrap (rendered by modules/enclave_bootstrap.py).\n"
        "set -euo pipefail\n"
        "umask 027\n\n"
        f"dnf install -y {' '.join(PACKAGES)}\n"
        f"id {PARENT_USER} >/dev/null 2>&1 || useradd --system --no-create-home "
        f"--shell /sbin/nologin {PARENT_USER}\n\n"
        "# Memory and vCPUs taken from the parent for the enclave, before anything else runs.\n"
        + _heredoc(ALLOCATOR_CONFIG, allocator_config(config.memory_mib, config.cpu_count))
        + "# The enclave's only way out: the regional KMS endpoint.\n"
        + _heredoc(VSOCK_PROXY_ALLOWLIST, vsock_proxy_allowlist(config.region))
        + "install -d -m 0755 /etc/systemd/system/nitro-enclaves-vsock-proxy.service.d\n"
        + _heredoc(VSOCK_PROXY_OVERRIDE, proxy_unit)
        + "systemctl daemon-reload\n"
        "systemctl enable --now nitro-enclaves-allocator.service\n"
        "systemctl enable --now nitro-enclaves-vsock-proxy.service\n\n"
        f"install -d -m 0750 -g {PARENT_USER} {shlex.quote(str(contract.HOST_DIRECTORY))}\n"
        f"aws s3 cp --only-show-errors --region {config.region} "
        f"{_s3(bucket, contract.image_object(config.image_sha384))} {shlex.quote(image)}\n"
        f"aws s3 cp --only-show-errors --region {config.region} "
        f"{_s3(bucket, contract.parent_archive_object(config.image_sha384))} "
        f"{shlex.quote(str(contract.HOST_PARENT_ARCHIVE))}\n"
        f"chgrp {PARENT_USER} {shlex.quote(str(contract.HOST_PARENT_ARCHIVE))}\n\n"
        "# The file must be the image the key policy admits; otherwise stop here, loudly.\n"
        f"measured=$(nitro-cli describe-eif --eif-path {shlex.quote(image)} | python3 -c "
        '\'import json,sys; print(json.load(sys.stdin)["Measurements"]["PCR0"].lower())\')\n'
        f'if [ "$measured" != {measured} ]; then\n'
        f'  echo "enclave image PCR0 $measured is not the configured {config.image_sha384}" >&2\n'
        "  exit 1\n"
        "fi\n\n"
        + _heredoc(ENCLAVE_UNIT, enclave_unit)
        + _heredoc(PARENT_UNIT, parent_unit)
        + "systemctl daemon-reload\n"
        "systemctl enable --now phi-ml-enclave.service\n\n"
        "# The environment's data key, wrapped by the patient-token key (ciphertext only). The\n"
        "# first host of an environment has none yet: an operator mints it inside the enclave\n"
        f"# (python3 {contract.HOST_PARENT_ARCHIVE} mint-data-key --key-alias "
        f"{patient_token_key_alias_arn(config)} --region {config.region} --out FILE)\n"
        "# and uploads that ciphertext to the object below.\n"
        f"if aws s3 cp --only-show-errors --region {config.region} "
        f"{_s3(bucket, contract.WRAPPED_DATA_KEY_OBJECT)} "
        f"{shlex.quote(str(contract.HOST_WRAPPED_DATA_KEY))}; then\n"
        f"  chgrp {PARENT_USER} {shlex.quote(str(contract.HOST_WRAPPED_DATA_KEY))}\n"
        "  systemctl enable --now phi-ml-token-parent.service\n"
        "else\n"
        f'  echo "no wrapped data key at s3://{bucket}/{contract.WRAPPED_DATA_KEY_OBJECT}: '
        'the parent stays stopped until one is minted" >&2\n'
        "fi\n"
    )
    if len(script.encode()) > MAX_USER_DATA_BYTES:
        raise ValueError(f"user data exceeds EC2's {MAX_USER_DATA_BYTES} bytes")
    return script
