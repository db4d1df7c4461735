"""The cdktf CLI (npm cdktf-cli@0.21.0, pinned in package-lock.json) with this cdktf.json:
`cdktf synth` yields exactly what `make synth` (main.py) yields, so `cdktf diff` and
`cdktf deploy` work on the same stacks; and the stacks declare the dependencies that make
`cdktf deploy '*'` apply them in a working order.

The CLI is installed by `npm ci --ignore-scripts` into node_modules/ (about 20-30 s). Without
it the CLI comparison is skipped, saying so; the dependency checks read main.py's output and
always run.

What is legitimately different between the two: nothing. The CLI runs `python3 main.py` with
CDKTF_OUTDIR set, main.py writes the same manifest, cdk.tf.json and Lambda bundles
byte for byte (bundles are built deterministically), so every file is compared exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import main

REPO = Path(__file__).resolve().parent.parent
CDKTF = REPO / "node_modules" / ".bin" / "cdktf"
BOOTSTRAP = "bootstrap"
GOVERNANCE = "org-governance"

requires_cli = pytest.mark.skipif(
    not CDKTF.is_file(),
    reason=(
        "the cdktf CLI is not installed (node_modules/.bin/cdktf): "
        "npm ci --ignore-scripts --no-audit --no-fund"
    ),
)


def synthesize_with_main(destination: Path) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize([], destination)
    return destination


def synthesize_with_cli(destination: Path) -> Path:
    environment = {
        **os.environ,
        # cdktf.json runs `python3 main.py`: the python3 of this virtual environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PHI_TARGET": "aws",
        "CHECKPOINT_DISABLE": "1",
        "CI": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    completed = subprocess.run(
        [str(CDKTF), "synth", "--output", str(destination)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return destination


def differences(expected: Path, actual: Path) -> list[str]:
    """Every file present in one output only or different between the two."""

    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    left, right = files(expected), files(actual)
    found = [f"only in {expected}: {name}" for name in sorted(left.keys() - right.keys())]
    found += [f"only in {actual}: {name}" for name in sorted(right.keys() - left.keys())]
    for name in sorted(left.keys() & right.keys()):
        if name.endswith(".json"):
            if json.loads(left[name]) != json.loads(right[name]):
                found.append(f"{name}: different JSON")
        elif left[name] != right[name]:
            found.append(f"{name}: different bytes")
    return found


@pytest.fixture(scope="module")
def main_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_with_main(tmp_path_factory.mktemp("main") / "cdktf.out")


@pytest.fixture(scope="module")
def cli_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_with_cli(tmp_path_factory.mktemp("cli") / "cdktf.out")


def dependencies(outdir: Path) -> dict[str, list[str]]:
    """Each stack's declared dependencies, as cdktf deploy reads them from the manifest."""
    stacks = json.loads((outdir / "manifest.json").read_text())["stacks"]
    return {name: list(entry.get("dependencies", [])) for name, entry in stacks.items()}


@requires_cli
def test_cli_synth_yields_the_same_stacks_as_make_synth(
    main_output: Path, cli_output: Path
) -> None:
    assert sorted(dependencies(cli_output)) == sorted(dependencies(main_output))
    assert dependencies(cli_output) == dependencies(main_output)


@requires_cli
def test_cli_synth_yields_the_same_terraform_byte_for_byte(
    main_output: Path, cli_output: Path
) -> None:
    assert differences(main_output, cli_output) == []


def test_the_comparison_detects_a_different_stack(main_output: Path, tmp_path: Path) -> None:
    altered = Path(shutil.copytree(main_output, tmp_path / "altered"))
    stack = altered / "stacks" / "dev-data" / "cdk.tf.json"
    configuration = json.loads(stack.read_text())
    configuration["resource"]["aws_s3_bucket"].popitem()
    stack.write_text(json.dumps(configuration))
    shutil.rmtree(altered / "stacks" / "prod-ml")
    found = differences(main_output, altered)
    assert "stacks/dev-data/cdk.tf.json: different JSON" in found
    assert f"only in {main_output}: stacks/prod-ml/cdk.tf.json" in found
    assert differences(main_output, main_output) == []


def test_cdktf_json_runs_main_py_into_the_synth_directory() -> None:
    config = json.loads((REPO / "cdktf.json").read_text())
    assert config["language"] == "python"
    assert config["app"] == "python3 main.py"
    assert config["output"] == "cdktf.out"
    # Prebuilt bindings: `cdktf get` must have nothing to generate.
    assert not config.get("terraformProviders")


# --- the order `cdktf deploy '*'` follows -------------------------------------------------


def upstream(stacks: dict[str, list[str]], name: str) -> set[str]:
    """Every stack `name` depends on, directly or through others."""
    found: set[str] = set()
    pending = list(stacks[name])
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(stacks[current])
    return found


def remote_state_reads(outdir: Path, name: str) -> set[str]:
    configuration = json.loads((outdir / "stacks" / name / "cdk.tf.json").read_text())
    reads = configuration.get("data", {}).get("terraform_remote_state", {})
    return {key.removeprefix("cross-stack-reference-input-") for key in reads}


def backend(outdir: Path, name: str) -> str:
    configuration = json.loads((outdir / "stacks" / name / "cdk.tf.json").read_text())
    return str(next(iter(configuration["terraform"]["backend"])))


def test_every_stack_depends_on_the_stacks_whose_state_it_reads(main_output: Path) -> None:
    stacks = dependencies(main_output)
    for name in stacks:
        assert remote_state_reads(main_output, name) <= set(stacks[name]), name


def test_every_s3_backend_stack_is_deployed_after_bootstrap(main_output: Path) -> None:
    # bootstrap creates the state bucket that every S3 backend's `terraform init` needs.
    stacks = dependencies(main_output)
    late = [
        name
        for name in stacks
        if name != BOOTSTRAP
        and backend(main_output, name) == "s3"
        and BOOTSTRAP not in upstream(stacks, name)
    ]
    assert late == []


def test_the_organization_is_deployed_before_the_stacks_that_need_it(main_output: Path) -> None:
    # org-governance creates the member accounts, the organization's trusted access for the
    # organization trail, and the delegated administrators of GuardDuty and Security Hub.
    stacks = dependencies(main_output)
    late = [
        name
        for name in stacks
        if name not in {BOOTSTRAP, GOVERNANCE} and GOVERNANCE not in upstream(stacks, name)
    ]
    assert late == []


def test_the_order_checks_catch_a_missing_dependency() -> None:
    stacks: dict[str, list[str]] = {
        BOOTSTRAP: [],
        GOVERNANCE: [BOOTSTRAP],
        "dev-data": [GOVERNANCE],
        "dev-ml": ["dev-data"],
        "dev-orphan": [],
    }
    assert upstream(stacks, "dev-ml") == {"dev-data", GOVERNANCE, BOOTSTRAP}
    assert BOOTSTRAP not in upstream(stacks, "dev-orphan")
