"""The pre-commit configuration: valid for pre-commit, every hook local and calling a tool that
exists in this repository (nothing fetched from the network), the same checks as `make lint`,
and the hooks really failing on bad code (run by pre-commit in a scratch git repository)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_workflows import makefile_targets

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / ".pre-commit-config.yaml"
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"


def hooks(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def pre_commit(*arguments: str, home: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """pre-commit with its cache in `home`, never in the user's or the repository's folders."""
    if not PRE_COMMIT.is_file():
        pytest.fail(f"{PRE_COMMIT} is missing: pre-commit is a dev dependency; run `make setup`")
    environment = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return subprocess.run(
        [str(PRE_COMMIT), *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def entry_problems(config: dict[str, Any], targets: set[str]) -> list[str]:
    """Every hook is local, runs a system command, and that command exists here."""
    problems = []
    for repo in config["repos"]:
        if repo["repo"] != "local":
            problems.append(f"{repo['repo']}: hooks must be local (no network to fetch them)")
    for hook in hooks(config):
        if hook.get("language") != "system":
            problems.append(f"{hook['id']}: language {hook.get('language')} installs from the net")
        command = shlex.split(hook["entry"])
        if command[0] == "make":
            if command[1] not in targets:
                problems.append(f"{hook['id']}: make {command[1]}: no such Makefile target")
        elif command[0].startswith(".venv/bin/"):
            if not (REPO / command[0]).is_file():
                problems.append(f"{hook['id']}: {command[0]} is not installed (make setup)")
        else:
            problems.append(f"{hook['id']}: {command[0]} is neither .venv/bin nor make")
    return problems


def test_config_is_valid_for_pre_commit(tmp_path: Path) -> None:
    result = pre_commit("validate-config", str(CONFIG), home=tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_config_fails_validation(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    del hooks(config)[0]["entry"]
    broken = tmp_path / ".pre-commit-config.yaml"
    broken.write_text(yaml.safe_dump(config))
    result = pre_commit("validate-config", str(broken), home=tmp_path / "cache")
    assert result.returncode != 0
    assert "entry" in result.stdout + result.stderr


def test_every_hook_is_local_and_its_command_exists() -> None:
    assert entry_problems(yaml.safe_load(CONFIG.read_text()), makefile_targets()) == []


def test_entry_check_catches_remote_hooks_and_missing_commands() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["repos"].append(
        {
            "repo": "https://github.com/astral-sh/ruff-pre-commit",
            "rev": "v0.17.6",
            "hooks": [{"id": "ruff", "entry": "ruff", "language": "python"}],
        }
    )
    hooks(config)[0]["entry"] = ".venv/bin/not-installed"
    problems = entry_problems(config, {"scan"})
    assert any("hooks must be local" in p for p in problems)
    assert any("installs from the net" in p for p in problems)
    assert any(".venv/bin/not-installed is not installed" in p for p in problems)
    assert entry_problems(yaml.safe_load(CONFIG.read_text()), set()) != []


def test_hooks_cover_lint_format_types_and_the_gate() -> None:
    by_id = {hook["id"]: hook for hook in hooks(yaml.safe_load(CONFIG.read_text()))}
    assert by_id["ruff-check"]["entry"].startswith(".venv/bin/ruff check")
    assert by_id["ruff-format"]["entry"].startswith(".venv/bin/ruff format")
    assert by_id["synth-and-gate"]["entry"] == "make scan"
    assert re.search(r"modules/", by_id["synth-and-gate"]["files"])
    # mypy over the same packages as `make lint`, so a commit sees what CI sees.
    lint = next(
        line.split("mypy", 1)[1].split()
        for line in (REPO / "Makefile").read_text().splitlines()
        if "/mypy " in line
    )
    assert shlex.split(by_id["mypy"]["entry"])[1:] == lint


@pytest.fixture
def scratch_repository(tmp_path: Path) -> Path:
    """A git repository with this configuration, ruff's settings and this .venv."""
    if shutil.which("git") is None:
        pytest.fail("git is not on PATH")
    repository = tmp_path / "repo"
    repository.mkdir()
    shutil.copy(CONFIG, repository)
    shutil.copy(REPO / "pyproject.toml", repository)
    (repository / ".venv").symlink_to(REPO / ".venv")
    subprocess.run(["git", "init", "-q"], cwd=repository, check=True)
    return repository


def run_hook(repository: Path, hook: str, source: str) -> subprocess.CompletedProcess[str]:
    (repository / "sample.py").write_text(source)
    subprocess.run(
        ["git", "add", "sample.py", ".pre-commit-config.yaml"], cwd=repository, check=True
    )
    return pre_commit("run", hook, "--all-files", cwd=repository, home=repository.parent / "cache")


@pytest.mark.parametrize(
    ("hook", "clean", "dirty"),
    [
        ("ruff-check", "import os\n\nprint(os.sep)\n", "import os\n"),
        ("ruff-format", 'print("formatted")\n', "print( 'not formatted' )\n"),
    ],
)
def test_hook_passes_clean_code_and_fails_dirty_code(
    scratch_repository: Path, hook: str, clean: str, dirty: str
) -> None:
    passed = run_hook(scratch_repository, hook, clean)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    failed = run_hook(scratch_repository, hook, dirty)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Failed" in failed.stdout
