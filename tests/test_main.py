"""The synth entry point: atomic output, clear errors, the local target, the lazy import."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import main
from environments.loader import ENVIRONMENTS_DIR

REPO = Path(__file__).resolve().parent.parent


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with the SHA-256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def copy_environments(destination: Path) -> Path:
    for source in ENVIRONMENTS_DIR.glob("*/environment.yaml"):
        target = destination / source.parent.name / source.name
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
    return destination


def edit(path: Path, change: dict[str, Any]) -> None:
    data = yaml.safe_load(path.read_text())
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def good_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A synthesized dev environment and the digest of every file it wrote."""
    root = tmp_path_factory.mktemp("synth")
    environments = copy_environments(root / "environments")
    out = root / "cdktf.out"
    assert main.main(["dev", "--out", str(out), "--environments-dir", str(environments)]) == 0
    return environments, out, tree_digest(out)


def test_synth_writes_every_stack_of_the_named_environment(
    good_output: tuple[Path, Path, dict[str, str]],
) -> None:
    _, out, digest = good_output
    stacks = {p.name for p in (out / "stacks").iterdir()}
    assert stacks == {
        "bootstrap",
        "org-governance",
        "org-audit",
        "dev-data",
        "dev-fhir",
        "dev-network",
        "dev-ml",
        "dev-security",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stacks"]["dev-network"]["dependencies"] == ["dev-data"]
    assert sorted(manifest["stacks"]["dev-ml"]["dependencies"]) == ["dev-data", "dev-network"]
    assert "stacks/dev-data/cdk.tf.json" in digest


def test_bootstrap_keeps_its_state_in_the_bucket_it_creates(
    good_output: tuple[Path, Path, dict[str, str]],
) -> None:
    _, out, _ = good_output

    def configuration(stack: str) -> dict[str, Any]:
        return dict(json.loads((out / "stacks" / stack / "cdk.tf.json").read_text()))

    bootstrap = configuration("bootstrap")
    created = bootstrap["resource"]["aws_s3_bucket"]
    state_bucket = next(b["bucket"] for b in created.values() if "access-logs" not in b["bucket"])
    backend = bootstrap["terraform"]["backend"]
    assert set(backend) == {"s3"}, "a local backend's state is lost with the next synthesis"
    assert backend["s3"]["bucket"] == state_bucket
    assert backend["s3"]["key"] == "org/bootstrap.tfstate"
    assert backend["s3"]["encrypt"] is True
    assert backend["s3"]["kms_key_id"].endswith(":alias/phi-ml/terraform-state")
    assert backend["s3"]["use_lockfile"] is True
    # Its own key, never one another stack writes.
    others = [configuration(s)["terraform"]["backend"]["s3"] for s in ("org-audit", "dev-data")]
    assert all(o["bucket"] == state_bucket and o["key"] != backend["s3"]["key"] for o in others)


REFERENCE = re.compile(r"\$\{(?P<type>[a-z0-9_]+)\.(?P<name>[^.}]+)\.[a-z_]+\}")


def unprotected_keys_of_protected_buckets(configuration: dict[str, Any]) -> list[str]:
    """KMS keys (same stack) that encrypt a bucket with prevent_destroy but lack it themselves:
    destroying one would make the protected bucket unreadable 30 days later."""
    resources = configuration.get("resource", {})

    def protected(kind: str, name: str) -> bool:
        body = resources.get(kind, {}).get(name, {})
        return bool(body.get("lifecycle", {}).get("prevent_destroy"))

    missing = []
    encryption = resources.get("aws_s3_bucket_server_side_encryption_configuration", {})
    for sse in encryption.values():
        bucket = REFERENCE.fullmatch(sse["bucket"])
        default = sse["rule"][0]["apply_server_side_encryption_by_default"]
        key = REFERENCE.fullmatch(default.get("kms_master_key_id", ""))
        if bucket is None or key is None or key["type"] != "aws_kms_key":
            continue
        if protected("aws_s3_bucket", bucket["name"]) and not protected("aws_kms_key", key["name"]):
            missing.append(key["name"])
    return sorted(set(missing))


@pytest.fixture(scope="module")
def every_environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("all") / "cdktf.out"
    assert main.main(["--out", str(out)]) == 0
    return out


def test_every_key_of_a_protected_bucket_is_protected_too(every_environment: Path) -> None:
    checked = 0
    for stack in sorted((every_environment / "stacks").iterdir()):
        configuration = json.loads((stack / "cdk.tf.json").read_text())
        assert unprotected_keys_of_protected_buckets(configuration) == [], stack.name
        checked += len(configuration.get("resource", {}).get("aws_kms_key", {}))
    assert checked >= 20  # the check saw keys at all


def test_a_protected_bucket_with_an_unprotected_key_is_found(every_environment: Path) -> None:
    bootstrap = json.loads((every_environment / "stacks/bootstrap/cdk.tf.json").read_text())
    keys = bootstrap["resource"]["aws_kms_key"]
    state_key = next(name for name in keys if name.startswith("state-key"))
    del keys[state_key]["lifecycle"]
    assert unprotected_keys_of_protected_buckets(bootstrap) == [state_key]


BAD_INPUTS = {
    "malformed-yaml": (None, "malformed YAML at line"),
    "unknown-field": ({"networkk": {"vpc_cidr": "10.0.0.0/16"}}, "networkk: unknown field"),
    "bad-account-id": ({"account_id": "12345"}, "account_id: '12345' is not a 12-digit"),
    "invalid-cidr": ({"network.vpc_cidr": "10.10.0.0/33"}, "network.vpc_cidr:"),
    "overlapping-cidr": (
        {"ingest.vpn.onprem_cidrs": ["10.10.4.0/24"]},
        "overlaps network.vpc_cidr",
    ),
    "region-not-allowed": ({"region": "eu-west-1"}, "outside allowed_regions"),
    "short-retention": ({"logs.audit_retention_days": 365}, "logs.audit_retention_days: 365 days"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_error_and_leaves_output_untouched(
    case: str,
    good_output: tuple[Path, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, digest = good_output
    environments = copy_environments(tmp_path / "environments")
    dev_file = environments / "dev" / "environment.yaml"
    change, expected = BAD_INPUTS[case]
    if change is None:
        dev_file.write_text(dev_file.read_text().replace("region: us-east-1", "region: [us-east-1"))
    else:
        edit(dev_file, change)

    code = main.main(["dev", "--out", str(out), "--environments-dir", str(environments)])

    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {dev_file}") or errors[0].startswith("error: ")
    assert "dev/environment.yaml" in errors[0]
    assert expected in errors[0]
    assert tree_digest(out) == digest, "a failed synth changed the previous output"
    assert not list(out.parent.glob("cdktf.out.tmp-*")), "temporary output left behind"


def test_good_change_replaces_the_output(
    good_output: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    """Twin of the test above: the same run with valid input does rewrite the output."""
    _, out, digest = good_output
    scratch_out = tmp_path / "cdktf.out"
    shutil.copytree(out, scratch_out)
    environments = copy_environments(tmp_path / "environments")
    edit(environments / "dev" / "environment.yaml", {"network.vpc_cidr": "10.11.0.0/16"})

    code = main.main(["dev", "--out", str(scratch_out), "--environments-dir", str(environments)])

    assert code == 0
    assert tree_digest(scratch_out) != digest
    network = json.loads((scratch_out / "stacks/dev-network/cdk.tf.json").read_text())
    assert next(iter(network["resource"]["aws_vpc"].values()))["cidr_block"] == "10.11.0.0/16"


def test_unknown_environment_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main.main(["nope", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "nope/environment.yaml: no such environment" in error
    assert not (tmp_path / "out").exists()


def test_unknown_target_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PHI_TARGET", "moto")
    assert main.main(["dev", "--out", str(tmp_path / "out")]) == 2
    assert "PHI_TARGET='moto' is not a target" in capsys.readouterr().err


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    """JSON paths where two documents differ."""
    if isinstance(left, dict) and isinstance(right, dict):
        return [
            found
            for key in sorted(set(left) | set(right))
            for found in differences(left.get(key), right.get(key), f"{path}.{key}")
        ]
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            found
            for index, (a, b) in enumerate(zip(left, right, strict=True))
            for found in differences(a, b, f"{path}[{index}]")
        ]
    return [] if left == right else [path]


def synth_subprocess(out: Path, **environment: str) -> None:
    env = {**os.environ, **environment}
    subprocess.run(
        [sys.executable, "main.py", "--out", str(out)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )


def test_local_target_differs_only_in_path_style_addressing(tmp_path: Path) -> None:
    synth_subprocess(tmp_path / "aws", PHI_TARGET="aws")
    synth_subprocess(tmp_path / "local", PHI_TARGET="local")
    stacks = sorted(p.name for p in (tmp_path / "aws/stacks").iterdir())
    assert stacks == sorted(p.name for p in (tmp_path / "local/stacks").iterdir())
    for stack in stacks:
        aws = json.loads((tmp_path / f"aws/stacks/{stack}/cdk.tf.json").read_text())
        local = json.loads((tmp_path / f"local/stacks/{stack}/cdk.tf.json").read_text())
        # Path-style S3 in the provider, the backend, and the remote-state reads that copy
        # the backend's settings: nothing else.
        allowed = {".provider.aws[0].s3_use_path_style", ".terraform.backend.s3.use_path_style"}
        allowed |= {
            f".data.terraform_remote_state.{name}.config.use_path_style"
            for name in aws.get("data", {}).get("terraform_remote_state", {})
        }
        changed = set(differences(aws, local))
        assert changed <= allowed, f"{stack}: {sorted(changed - allowed)}"
        assert local["provider"]["aws"][0]["s3_use_path_style"] is True
        assert changed == allowed, f"{stack}: the local target must use path-style S3"
        assert local["terraform"]["backend"]["s3"]["use_lockfile"] is True


def test_lazy_provider_import_gives_byte_identical_output(tmp_path: Path) -> None:
    synth_subprocess(tmp_path / "lazy")
    synth_subprocess(tmp_path / "plain", PHI_PLAIN_PROVIDER_IMPORT="1")
    lazy, plain = tree_digest(tmp_path / "lazy"), tree_digest(tmp_path / "plain")
    assert {f"stacks/{s}/cdk.tf.json" for s in ("bootstrap", "prod-network")} <= set(lazy)
    assert lazy == plain


@pytest.mark.parametrize(("plain", "expect_all"), [("0", False), ("1", True)])
def test_lazy_provider_import_loads_only_the_submodules_in_use(
    plain: str, expect_all: bool
) -> None:
    count_loaded = (
        "import sys; from modules import aws; aws.S3Bucket; "
        "print(sum(m.startswith('cdktf_cdktf_provider_aws.') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", count_loaded],
        cwd=REPO,
        env={**os.environ, "PHI_PLAIN_PROVIDER_IMPORT": plain},
        check=True,
        capture_output=True,
        text=True,
    )
    loaded = int(result.stdout.strip())
    assert (loaded > 2000) is expect_all, loaded
