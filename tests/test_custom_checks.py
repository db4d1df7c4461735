"""The custom checkov checks (policies/checks), run the way the gate runs them: real checkov,
`--framework terraform_json`, offline.

- Every check file found in policies/checks (not `_*.py` helpers) must have fixtures under
  tests/fixtures/checks/<file stem>/<case>/cdk.tf.json. Each fixture lists, in its top-level
  `"//": {"expect": [...]}` (a comment key Terraform and checkov skip), exactly which resources
  the check passes and fails there; a check needs at least one of each. A new check without
  fixtures fails `test_check_passes_and_fails_its_fixtures`.
- The real synthesized dev, eu-research and prod environments (with the organization stacks)
  pass every check, and each check passes on at least one of their resources.
- For every check, a copy of a real stack with the guarded property switched off fails that
  check on exactly the resource that lost it, while the untouched stack passes it there.

checkov runs twice (fixtures; real + mutated stacks), in a subprocess whose sockets refuse to
connect, so a check or checkov itself reaching for the network is a test failure.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import main
from policies.catalog import load_catalog

REPO = Path(__file__).resolve().parents[1]
CHECKS_DIR = REPO / "policies" / "checks"
FIXTURES_DIR = REPO / "tests" / "fixtures" / "checks"
CHECK_FILES = sorted(p for p in CHECKS_DIR.glob("*.py") if not p.name.startswith("_"))
PASSED, FAILED = "PASSED", "FAILED"
NETWORK_MARKER = "CHECKOV-NETWORK-ATTEMPT"

# Runs checkov's console entry point with every socket connection and name lookup refused.
OFFLINE_CHECKOV = f"""
import socket, sys
def refuse(*args, **kwargs):
    print("{NETWORK_MARKER}", args[1:3], file=sys.stderr, flush=True)
    raise OSError("checkov must not use the network")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from checkov.main import Checkov
sys.argv = ["checkov", *sys.argv[1:]]
sys.exit(Checkov().run())
"""


# --- running checkov ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    check_id: str
    stack: str  # the stack directory, relative to the scanned root
    resource: str  # `aws_vpc.<name>`, `provider.aws`
    result: str


@dataclass(frozen=True)
class Scan:
    results: list[Result]
    stderr: str

    def of(self, check_id: str, stack_prefix: str = "") -> set[tuple[str, str, str]]:
        return {
            (r.stack, r.resource, r.result)
            for r in self.results
            if r.check_id == check_id and r.stack.startswith(stack_prefix)
        }


def checkov_environment() -> dict[str, str]:
    """No platform key, no update check (it asks PyPI), no mapping download."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_"))
    }
    environment.update(CKV_SKIP_PACKAGE_UPDATE_CHECK="true", BC_SKIP_MAPPING="TRUE")
    return environment


def resource_address(root: Path, file_path: str, resource: str) -> str:
    """checkov names a Python resource check's resource `resource.<name>` under terraform_json
    (it drops the type); the name is unique in a stack, so the file gives the type back."""
    if not resource.startswith("resource."):
        return resource
    name = resource.removeprefix("resource.")
    document = json.loads((root / file_path.lstrip("/")).read_text())
    types = [t for t, named in document["resource"].items() if name in named]
    assert len(types) == 1, f"{name} in {file_path}: types {types}"
    return f"{types[0]}.{name}"


def run_checkov(root: Path) -> Scan:
    command = [
        sys.executable,
        "-c",
        OFFLINE_CHECKOV,
        "--directory",
        str(root),
        "--framework",
        "terraform_json",
        "--external-checks-dir",
        str(CHECKS_DIR),
        "--check",
        "CKV_PHI_*",
        "--skip-download",
        "--output",
        "json",
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=checkov_environment(),
        cwd=REPO,
        timeout=900,
        check=False,
    )
    # checkov exits 1 when a check fails (the fixtures and mutations make sure some do).
    assert completed.returncode in (0, 1), completed.stderr[-4000:]
    report = json.loads(completed.stdout)
    results = []
    for key, status in (("passed_checks", PASSED), ("failed_checks", FAILED)):
        for record in report.get("results", {}).get(key, []):
            results.append(
                Result(
                    check_id=record["check_id"],
                    stack=str(Path(record["file_path"].lstrip("/")).parent),
                    resource=resource_address(root, record["file_path"], record["resource"]),
                    result=status,
                )
            )
    return Scan(results, completed.stderr)


@cache
def check_of(check_file: Path) -> Any:
    return importlib.import_module(f"policies.checks.{check_file.stem}").check


def expectations(fixture: Path) -> list[dict[str, str]]:
    return list(json.loads(fixture.read_text())["//"]["expect"])


@pytest.fixture(scope="module")
def fixture_scan() -> Scan:
    return run_checkov(FIXTURES_DIR)


# --- the checks themselves ------------------------------------------------------------------


@pytest.mark.parametrize("check_file", CHECK_FILES, ids=lambda p: p.stem)
def test_check_file_defines_one_documented_phi_check(check_file: Path) -> None:
    module = importlib.import_module(f"policies.checks.{check_file.stem}")
    check = module.check
    assert re.fullmatch(r"CKV_PHI_[1-9][0-9]*", check.id)
    assert check.name.startswith("Ensure ")
    docstring = " ".join((module.__doc__ or "").split())
    assert docstring.startswith(f'{check.id} "{check.name}"'), (
        f"{check_file.name}: the docstring must open with the id and name checkov prints"
    )


def test_check_ids_are_unique_and_are_the_catalogs() -> None:
    ids = [check_of(p).id for p in CHECK_FILES]
    assert len(ids) == len(set(ids)), ids
    cited = {
        check_id
        for control in load_catalog().controls
        for check_id in control.static_checks
        if check_id.startswith("CKV_PHI_")
    }
    assert cited == set(ids), (
        f"cited by policies/controls.yaml but not implemented: {sorted(cited - set(ids))}; "
        f"implemented but cited by no control: {sorted(set(ids) - cited)}"
    )


def test_required_endpoints_are_the_network_layers() -> None:
    """One definition (modules/endpoints.py) for the layer that creates and the check that
    judges: the check must not carry a copy of its own."""
    from modules import network  # noqa: PLC0415 (loads cdktf: only this test needs it)
    from policies.checks import vpc_required_privatelink_endpoints as endpoints  # noqa: PLC0415

    assert endpoints.REQUIRED_INTERFACE_ENDPOINTS is network.REQUIRED_INTERFACE_ENDPOINTS
    assert endpoints.GATEWAY_ENDPOINTS is network.GATEWAY_ENDPOINTS


@pytest.mark.parametrize("check_file", CHECK_FILES, ids=lambda p: p.stem)
def test_check_passes_and_fails_its_fixtures(check_file: Path, fixture_scan: Scan) -> None:
    check_id = check_of(check_file).id
    fixtures = sorted((FIXTURES_DIR / check_file.stem).glob("*/cdk.tf.json"))
    assert fixtures, f"no fixtures: add tests/fixtures/checks/{check_file.stem}/<case>/cdk.tf.json"
    expected = set()
    for fixture in fixtures:
        stack = str(fixture.parent.relative_to(FIXTURES_DIR))
        for expectation in expectations(fixture):
            assert expectation["check"] == check_id, f"{stack}: expects {expectation['check']}"
            expected.add((stack, expectation["resource"], expectation["result"]))
    assert {PASSED, FAILED} <= {result for _, _, result in expected}, (
        f"{check_file.stem}: fixtures need a passing and a failing case"
    )
    assert fixture_scan.of(check_id, f"{check_file.stem}/") == expected


def test_checkov_stays_offline_and_no_check_crashes(fixture_scan: Scan) -> None:
    assert NETWORK_MARKER not in fixture_scan.stderr
    assert "Traceback" not in fixture_scan.stderr, fixture_scan.stderr[-4000:]


# --- real synthesized stacks ------------------------------------------------------------------
# What each check fails when its guarantee is removed from a real stack is the mutation corpus's
# job (tools/mutants, run through the gate by tests/test_mutants.py); here: every check passes
# the real stacks, judges something there, and has at least one mutant in the corpus.


@pytest.fixture(scope="module")
def real_scan(tmp_path_factory: pytest.TempPathFactory) -> Scan:
    """dev, eu-research and prod synthesized (bootstrap and the organization's stacks come
    along); one checkov run over them."""
    out = tmp_path_factory.mktemp("synth") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev", "eu-research", "prod"], out)
    root = tmp_path_factory.mktemp("scan")
    shutil.copytree(out / "stacks", root / "real")
    return run_checkov(root)


def test_real_stacks_pass_every_check(real_scan: Scan) -> None:
    failures = [r for r in real_scan.results if r.result == FAILED]
    assert not failures
    passed_ids = {r.check_id for r in real_scan.results if r.result == PASSED}
    assert passed_ids == {check_of(p).id for p in CHECK_FILES}, "a check judged nothing"
    assert NETWORK_MARKER not in real_scan.stderr
    assert "Traceback" not in real_scan.stderr, real_scan.stderr[-4000:]


def test_every_check_has_a_mutant_in_the_corpus() -> None:
    from tools.mutants.corpus import MUTANTS  # noqa: PLC0415

    custom = {check_of(p).id for p in CHECK_FILES}
    assert custom <= {m.check_id for m in MUTANTS}, sorted(custom - {m.check_id for m in MUTANTS})
