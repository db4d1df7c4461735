"""The enclave host's bootstrap (launch template user data): the vsock proxy may reach the
regional KMS endpoint and nothing else, the enclave runs in production mode (its PCRs, hence
its attestation, are real) with the resources the allocator reserved, the image run is the
measured one, and the parent starts only with a wrapped data key. Each detector has a twin
that catches a doctored script."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from ml.enclave import contract
from ml.enclave.parent import parse_arguments
from modules.enclave_bootstrap import (
    ALLOCATOR_CONFIG,
    MAX_USER_DATA_BYTES,
    VSOCK_PROXY_ALLOWLIST,
    VSOCK_PROXY_OVERRIDE,
    EnclaveBootstrapConfig,
    render,
)
from modules.network import s3_gateway_endpoint_policy
from tests.iam import iam_allows

PCR0 = "e5" * 48
REGION = "eu-west-1"
VALUES: dict[str, Any] = {
    "environment": "unit",
    "account_id": "123456789012",
    "region": REGION,
    "image_sha384": PCR0,
    "memory_mib": 3072,
    "cpu_count": 2,
    "artifacts_bucket": "unit-ml-artifacts",
    "endpoint_name": "phi-ml-unit-readmission",
}


def script(**overrides: Any) -> str:
    return render(EnclaveBootstrapConfig(**{**VALUES, **overrides}))


def written_file(text: str, path: str) -> str:
    """The body the script writes to `path` (its quoted here-document)."""
    match = re.search(rf"cat > {re.escape(path)} <<'PHI_ML_EOF'\n(.*?)PHI_ML_EOF\n", text, re.S)
    assert match, f"the script writes no {path}"
    return match.group(1)


def proxy_destinations(text: str) -> list[tuple[str, int]]:
    """Where the vsock proxy may connect: its allowlist, and what its unit starts it for."""
    allowlist = yaml.safe_load(written_file(text, VSOCK_PROXY_ALLOWLIST))
    allowed = [(entry["address"], int(entry["port"])) for entry in allowlist["allowlist"]]
    for line in written_file(text, VSOCK_PROXY_OVERRIDE).splitlines():
        if line.startswith("ExecStart=/"):
            words = shlex.split(line.removeprefix("ExecStart="))
            allowed.append((words[2], int(words[3])))
    return allowed


def run_enclave_lines(text: str) -> list[list[str]]:
    return [
        shlex.split(line.partition("=")[2] if line.startswith("ExecStart=") else line)
        for line in text.splitlines()
        if "nitro-cli run-enclave" in line
    ]


# --- the proxy reaches KMS only -----------------------------------------------------------------


def test_the_proxy_reaches_only_the_regional_kms_endpoint() -> None:
    destinations = proxy_destinations(script())
    assert set(destinations) == {(f"kms.{REGION}.amazonaws.com", 443)}
    allowlist = yaml.safe_load(written_file(script(), VSOCK_PROXY_ALLOWLIST))
    assert allowlist == {"allowlist": [{"address": f"kms.{REGION}.amazonaws.com", "port": 443}]}


def test_the_allowlist_detector_sees_an_extra_destination() -> None:
    """Twin: the package's own allowlist lists every region; one more entry is caught."""
    doctored = script().replace(
        "- {address: kms.eu-west-1.amazonaws.com, port: 443}\n",
        "- {address: kms.eu-west-1.amazonaws.com, port: 443}\n"
        "- {address: s3.eu-west-1.amazonaws.com, port: 443}\n",
    )
    assert ("s3.eu-west-1.amazonaws.com", 443) in proxy_destinations(doctored)


def test_the_region_follows_the_environment() -> None:
    assert set(proxy_destinations(script(region="eu-central-1"))) == {
        ("kms.eu-central-1.amazonaws.com", 443)
    }


# --- production mode, with what the allocator reserved ------------------------------------------


def test_the_enclave_never_runs_in_debug_mode() -> None:
    text = script()
    (command,) = run_enclave_lines(text)
    assert "--debug-mode" not in command
    assert "--attach-console" not in command
    assert "--debug-mode" not in text


def test_the_debug_detector_sees_debug_mode() -> None:
    """Twin: a run-enclave line with --debug-mode is found."""
    doctored = script().replace("run-enclave --eif-path", "run-enclave --debug-mode --eif-path")
    (command,) = run_enclave_lines(doctored)
    assert "--debug-mode" in command


def test_the_enclave_gets_what_the_allocator_reserved() -> None:
    text = script()
    allocator = yaml.safe_load(written_file(text, ALLOCATOR_CONFIG))
    assert allocator == {"memory_mib": 3072, "cpu_count": 2}
    (command,) = run_enclave_lines(text)
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options == {
        "--eif-path": str(contract.HOST_IMAGE),
        "--cpu-count": "2",
        "--memory": "3072",
        "--enclave-cid": str(contract.ENCLAVE_CID),
    }


def test_the_allocator_starts_before_the_enclave() -> None:
    text = script()
    allocator = text.index("systemctl enable --now nitro-enclaves-allocator.service")
    assert allocator < text.index("systemctl enable --now phi-ml-enclave.service")
    unit = written_file(text, "/etc/systemd/system/phi-ml-enclave.service")
    assert "Requires=nitro-enclaves-allocator.service" in unit


# --- the measured image ---------------------------------------------------------------------------


def test_the_image_is_fetched_by_its_measurement_and_checked() -> None:
    text = script()
    assert f"s3://unit-ml-artifacts/{contract.image_object(PCR0)}" in text
    check = text.index("nitro-cli describe-eif")
    assert f'if [ "$measured" != {PCR0} ]' in text
    assert check < text.index("systemctl enable --now phi-ml-enclave.service")


def test_the_packages_come_from_amazon_linux() -> None:
    assert (
        "dnf install -y aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel python3-boto3"
        in script()
    )


# Anonymous, as dnf's requests to the AL2023 mirrors are; the key is the mirror list dnf reads.
REPOSITORY_OBJECT = (
    "arn:aws:s3:::al2023-repos-{region}-de612dc2/core/mirrors/latest/aarch64/mirror.list"
)


def packages_reachable(region: str, gateway_region: str) -> bool:
    """Whether the VPC's S3 gateway endpoint (the hosts' only path out) admits dnf's reads."""
    return iam_allows(
        s3_gateway_endpoint_policy(VALUES["account_id"], gateway_region),
        "s3:GetObject",
        REPOSITORY_OBJECT.format(region=region),
    )


def test_the_packages_the_script_installs_can_be_downloaded_through_the_vpc() -> None:
    text = script()
    assert "dnf install" in text
    assert packages_reachable(REGION, gateway_region=REGION)


def test_another_regions_repository_is_not_reachable() -> None:
    assert not packages_reachable("us-east-1", gateway_region=REGION)


def test_the_parent_starts_only_with_a_wrapped_data_key() -> None:
    text = script()
    fetch = f"s3://unit-ml-artifacts/{contract.WRAPPED_DATA_KEY_OBJECT}"
    assert fetch in text
    guarded = text[text.index(f"if aws s3 cp --only-show-errors --region {REGION} {fetch} ") :]
    assert "systemctl enable --now phi-ml-token-parent.service" in guarded.split("else", 1)[0]
    unit = written_file(text, "/etc/systemd/system/phi-ml-token-parent.service")
    assert "User=phi-ml-parent" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    arguments = shlex.split(exec_start.removeprefix("ExecStart="))
    assert arguments[:3] == ["/usr/bin/python3", str(contract.HOST_PARENT_ARCHIVE), "serve"]
    assert arguments[arguments.index("--key-alias") + 1] == (
        f"arn:aws:kms:{REGION}:123456789012:alias/phi-ml/unit/patient-tokens"
    )
    assert arguments[arguments.index("--endpoint-name") + 1] == "phi-ml-unit-readmission"


def test_the_parent_runs_with_the_arguments_it_parses() -> None:
    """The rendered command line is one the parent's own parser accepts."""
    unit = written_file(script(), "/etc/systemd/system/phi-ml-token-parent.service")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    parsed = parse_arguments(shlex.split(exec_start.removeprefix("ExecStart="))[2:])
    assert parsed.region == REGION
    assert str(parsed.wrapped_data_key) == str(contract.HOST_WRAPPED_DATA_KEY)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_script_is_valid_bash(tmp_path: Path) -> None:
    path = tmp_path / "user-data.sh"
    path.write_text(script())
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_the_script_fits_ec2_user_data() -> None:
    assert len(script().encode()) <= MAX_USER_DATA_BYTES


# --- the configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "rule"),
    [
        ({"image_sha384": PCR0.upper()}, "96 lower-case hex"),
        ({"image_sha384": PCR0[:64]}, "96 lower-case hex"),
        ({"region": "ireland"}, "not an AWS region"),
        ({"memory_mib": 32}, "greater than or equal to 64"),
        ({"cpu_count": 0}, "greater than or equal to 1"),
        ({"endpoint_name": "bad name; rm -rf /"}, "should match pattern"),
    ],
)
def test_bad_values_are_refused_before_rendering(override: dict[str, Any], rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        script(**override)


def test_good_values_render() -> None:
    """Twin of the refusals."""
    text = script()
    assert text.startswith("#!/bin/bash\n")
    assert "\nset -euo pipefail\n" in text
