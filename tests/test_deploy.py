"""tools.deploy: terraform in each stack of a real account, as CI's plan and apply run it.

No AWS account is reachable here, so terraform itself is replaced by a small fake on PATH
that records every invocation (directory and arguments) and answers as terraform would: a
saved plan file from `plan -out`, the plan's JSON from `show -json`, the detailed exit code.
What is tested is what tools.deploy decides: which stacks, in which order, with which flags,
applying exactly the saved plan, skipping what depends on a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tools import deploy
from tools.cli import UsageError
from tools.terraform import (
    FIRST_APPLY_OVERRIDE_FILE,
    FIRST_APPLY_STATE_FILE,
    Outcome,
    StackResult,
)

FAKE_TERRAFORM = '''#!{python}
"""A stand-in for terraform: logs each call, answers from the behaviour file."""
import json, os, sys
from pathlib import Path

stack = Path.cwd().name
arguments = sys.argv[1:]
with open(os.environ["FAKE_TERRAFORM_LOG"], "a") as log:
    log.write(json.dumps({{"stack": stack, "arguments": arguments}}) + "\\n")
behaviour = json.loads(Path(os.environ["FAKE_TERRAFORM_BEHAVIOUR"]).read_text()).get(stack, {{}})
command = arguments[0]
first_apply = Path("{override}").is_file()
if command == "init":
    if behaviour.get("missing_bucket") and not first_apply and not Path(".fake-bucket").is_file():
        print('Error: Failed to get existing workspaces: S3 bucket "'
              + behaviour["missing_bucket"] + '" does not exist.', file=sys.stderr)
        sys.exit(1)
    sys.exit(behaviour.get("init", 0))
if command == "state":
    if arguments[1] == "push":
        Path(".fake-remote").write_text(Path(arguments[-1]).read_text())
        sys.exit(behaviour.get("push", 0))
    print(Path(".fake-remote").read_text())
    sys.exit(0)
if command == "plan":
    if behaviour.get("plan", 2) in (0, 2):
        out = next(a.split("=", 1)[1] for a in arguments if a.startswith("-out="))
        Path(out).write_text("saved plan of " + stack)
    else:
        print("Error: AccessDenied: not allowed to read " + stack, file=sys.stderr)
    sys.exit(behaviour.get("plan", 2))
if command == "show":
    changes = behaviour.get("changes", [["create"]] if behaviour.get("plan", 2) == 2 else [])
    resource_changes = [
        {{"address": f"aws_s3_bucket.b{{i}}", "change": {{"actions": actions}}}}
        for i, actions in enumerate(changes)
    ]
    if "-json" in arguments:
        print(json.dumps({{"resource_changes": resource_changes}}))
    else:
        print("Terraform will perform the following actions: " + stack)
    sys.exit(0)
if command == "apply":
    saved = Path(arguments[-1])
    if not saved.is_file() or saved.read_text() != "saved plan of " + stack:
        print("Error: no saved plan", file=sys.stderr)
        sys.exit(1)
    if behaviour.get("apply", 0):
        print("Error: apply failed in " + stack, file=sys.stderr)
    elif first_apply:  # the local backend's state; the bucket now exists
        state = {{"serial": 1, "resources": [{{"type": "aws_s3_bucket"}}], "outputs": {{}}}}
        Path("{local_state}").write_text(json.dumps(state))
        Path(".fake-bucket").touch()
    sys.exit(behaviour.get("apply", 0))
sys.exit(3)
'''


def provider(environment: str, *, path_style: bool = False) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "region": "us-east-1",
        "allowed_account_ids": ["111111111111"],
        "default_tags": [{"tags": {"environment": environment}}],
    }
    if path_style:
        settings["s3_use_path_style"] = True
    return {"aws": [settings]}


STACKS: dict[str, tuple[str, list[str], str]] = {
    # name: (environment, dependencies, backend)
    "bootstrap": ("org", [], "s3"),
    "org-scratch": ("org", [], "local"),
    "org-governance": ("org", [], "s3"),
    "x-data": ("x", [], "s3"),
    "x-network": ("x", ["x-data"], "s3"),
    "x-ml": ("x", ["x-data", "x-network"], "s3"),
    "x-security": ("x", ["x-data"], "s3"),
    "y-data": ("y", [], "s3"),
}


def backend_settings(backend: str, stack: str) -> dict[str, Any]:
    return {"bucket": "tfstate-bucket", "key": f"{stack}.tfstate"} if backend == "s3" else {}


def write_synthesized(outdir: Path, *, path_style: bool = False) -> Path:
    manifest: dict[str, Any] = {"version": "0.21.0", "stacks": {}}
    for name, (environment, dependencies, backend) in STACKS.items():
        directory = outdir / "stacks" / name
        directory.mkdir(parents=True)
        configuration = {
            "provider": provider(environment, path_style=path_style),
            "terraform": {"backend": {backend: backend_settings(backend, name)}},
            "resource": {"aws_s3_bucket": {"b": {"bucket": name}}},
        }
        if dependencies:  # as cdktf writes a cross-stack reference
            configuration["data"] = {
                "terraform_remote_state": {
                    f"cross-stack-reference-input-{dependency}": {"backend": "s3"}
                    for dependency in dependencies
                }
            }
        (directory / "cdk.tf.json").write_text(json.dumps(configuration))
        manifest["stacks"][name] = {
            "name": name,
            "workingDirectory": f"stacks/{name}",
            "dependencies": dependencies,
        }
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    return outdir


class FakeTerraform:
    def __init__(self, directory: Path) -> None:
        self.bin = directory / "bin"
        self.bin.mkdir()
        executable = self.bin / "terraform"
        executable.write_text(
            FAKE_TERRAFORM.format(
                python=sys.executable,
                override=FIRST_APPLY_OVERRIDE_FILE,
                local_state=FIRST_APPLY_STATE_FILE,
            )
        )
        executable.chmod(executable.stat().st_mode | stat.S_IEXEC)
        self.log = directory / "terraform.log"
        self.behaviour = directory / "behaviour.json"
        self.behave({})

    def behave(self, behaviour: dict[str, dict[str, Any]]) -> None:
        self.behaviour.write_text(json.dumps(behaviour))

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKE_TERRAFORM_LOG": str(self.log),
            "FAKE_TERRAFORM_BEHAVIOUR": str(self.behaviour),
            "PHI_PROVIDER_MIRROR": "",
        }

    def calls(self) -> list[tuple[str, list[str]]]:
        if not self.log.is_file():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [(entry["stack"], entry["arguments"]) for entry in entries]

    def commands(self, stack: str) -> list[str]:
        return [arguments[0] for name, arguments in self.calls() if name == stack]


@pytest.fixture
def terraform(tmp_path: Path) -> FakeTerraform:
    return FakeTerraform(tmp_path)


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    return write_synthesized(tmp_path / "cdktf.out")


def run(
    terraform: FakeTerraform, outdir: Path, plans: Path, command: str, **selection: Any
) -> tuple[list[StackResult], list[StackResult]]:
    return deploy.run(
        command,
        outdir,
        stack_names=selection.get("stacks", ()),
        environment_name=selection.get("environment"),
        plans_dir=plans,
        jobs=2,
        environment=terraform.environment(),
    )


def test_apply_runs_one_environment_in_dependency_order(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    results, by_hand = run(terraform, outdir, tmp_path / "plans", "apply", environment="x")
    assert sorted(r.stack for r in results) == ["x-data", "x-ml", "x-network", "x-security"]
    assert all(r.outcome is Outcome.APPLIED for r in results)
    assert by_hand == []
    order = [stack for stack, arguments in terraform.calls() if arguments[0] == "apply"]
    assert order.index("x-data") < order.index("x-network") < order.index("x-ml")
    assert order.index("x-data") < order.index("x-security")
    assert {stack for stack, _ in terraform.calls()} == {
        "x-data",
        "x-network",
        "x-ml",
        "x-security",
    }


def test_apply_applies_the_saved_plan_with_the_state_lock(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    run(terraform, outdir, tmp_path / "plans", "apply", environment="x")
    for stack, arguments in terraform.calls():
        if arguments[0] == "plan":
            assert f"-out={deploy.PLAN_FILE}" in arguments
            assert "-lock=false" not in arguments
            assert "-input=false" in arguments
        if arguments[0] == "apply":
            assert arguments[-1] == deploy.PLAN_FILE, stack
    assert terraform.commands("x-data") == ["init", "plan", "show", "show", "apply"]


def test_a_stack_without_changes_is_not_applied(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({"x-network": {"plan": 0}})
    results, _ = run(terraform, outdir, tmp_path / "plans", "apply", environment="x")
    by_stack = {r.stack: r for r in results}
    assert "apply" not in terraform.commands("x-network")
    assert by_stack["x-network"].note == "no changes: nothing applied"
    assert "apply" in terraform.commands("x-ml")


def test_a_failed_apply_skips_the_stacks_that_depend_on_it(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({"x-network": {"apply": 1}})
    plans = tmp_path / "plans"
    results, _ = run(terraform, outdir, plans, "apply", environment="x")
    by_stack = {r.stack: r.outcome for r in results}
    assert by_stack == {
        "x-data": Outcome.APPLIED,
        "x-network": Outcome.FAILED,
        "x-ml": Outcome.SKIPPED,
        "x-security": Outcome.APPLIED,
    }
    assert terraform.commands("x-ml") == []
    assert "apply failed in x-network" in (plans / "x-network.apply.log").read_text()
    summary = json.loads((plans / "x-ml.json").read_text())
    assert summary["outcome"] == "skipped"
    assert "x-network did not succeed" in summary["problem"]


def test_plan_runs_the_named_stacks_without_the_lock_and_writes_summaries(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({"x-ml": {"changes": [["create"], ["delete", "create"], ["no-op"]]}})
    plans = tmp_path / "plans"
    results, _ = run(terraform, outdir, plans, "plan", stacks=["x-ml", "y-data"])
    assert {r.stack: r.outcome for r in results} == {
        "x-ml": Outcome.PLANNED,
        "y-data": Outcome.PLANNED,
    }
    assert all(arguments[0] != "apply" for _, arguments in terraform.calls())
    plan_calls = [arguments for _, arguments in terraform.calls() if arguments[0] == "plan"]
    assert all("-lock=false" in arguments for arguments in plan_calls)
    summary = json.loads((plans / "x-ml.json").read_text())
    assert (summary["add"], summary["change"], summary["destroy"]) == (2, 0, 1)
    assert summary["environment"] == "x"
    assert summary["resource_changes"] == [
        {"address": "aws_s3_bucket.b0", "actions": ["create"]},
        {"address": "aws_s3_bucket.b1", "actions": ["delete", "create"]},
    ]
    assert "x-ml" in (plans / "x-ml.plan.txt").read_text()


def test_a_failed_plan_is_summarized_with_terraforms_error(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({"x-ml": {"plan": 1}})
    plans = tmp_path / "plans"
    results, _ = run(terraform, outdir, plans, "plan", stacks=["x-ml", "x-data"])
    assert {r.stack: r.outcome for r in results}["x-ml"] is Outcome.FAILED
    summary = json.loads((plans / "x-ml.json").read_text())
    assert summary["outcome"] == "FAILED"
    assert "AccessDenied" in summary["problem"]


def test_local_backend_stacks_are_left_to_a_person(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    plans = tmp_path / "plans"
    results, by_hand = run(
        terraform, outdir, plans, "plan", stacks=["org-scratch", "org-governance"]
    )
    assert [r.stack for r in results] == ["org-governance"]
    assert [r.stack for r in by_hand] == ["org-scratch"]
    assert terraform.commands("org-scratch") == []
    note = json.loads((plans / "org-scratch.json").read_text())["note"]
    assert "its state would be lost with this machine" in note


def test_output_for_the_emulator_is_refused(terraform: FakeTerraform, tmp_path: Path) -> None:
    local = write_synthesized(tmp_path / "local", path_style=True)
    with pytest.raises(UsageError, match="synthesized for the local emulator"):
        run(terraform, local, tmp_path / "plans", "apply", environment="x")
    assert terraform.calls() == []


def test_unknown_environment_names_the_known_ones(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UsageError, match=r"no stack of environment 'z'.*org, x, y"):
        run(terraform, outdir, tmp_path / "plans", "apply", environment="z")
    with pytest.raises(UsageError, match="no stack named nope"):
        run(terraform, outdir, tmp_path / "plans", "plan", stacks=["nope"])


def test_main_exit_status(
    terraform: FakeTerraform,
    outdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in terraform.environment().items():
        monkeypatch.setenv(name, value)
    arguments = ["--out", str(outdir), "--plans", str(tmp_path / "plans"), "--jobs", "1"]
    assert deploy.main(["apply", "--environment", "y", *arguments]) == 0
    assert "y-data" in capsys.readouterr().out
    terraform.behave({"y-data": {"init": 1}})
    assert deploy.main(["apply", "--environment", "y", *arguments]) == 1
    assert deploy.main(["apply", "--environment", "nowhere", *arguments]) == 2


# --- bootstrap: the first apply, and what the other commands say before it -------------------


def test_bootstrap_applies_locally_first_then_moves_the_state_into_its_bucket(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({"bootstrap": {"missing_bucket": "tfstate-bucket"}})
    plans = tmp_path / "plans"
    results, by_hand = run(terraform, outdir, plans, "bootstrap")
    assert by_hand == []
    [result] = results
    assert result.outcome is Outcome.APPLIED, result.problem
    assert result.note.startswith("first apply: state moved into s3://")
    assert terraform.commands("bootstrap") == [
        "init",  # S3 backend: the bucket does not exist
        "init",  # local backend, through the override
        "plan",
        "show",
        "show",
        "apply",
        "init",  # S3 backend again, the bucket now exists
        "state",  # push
        "state",  # pull, to compare
    ]
    stack = outdir / "stacks" / "bootstrap"
    assert not (stack / FIRST_APPLY_STATE_FILE).exists()
    assert not (stack / FIRST_APPLY_OVERRIDE_FILE).exists()
    summary = json.loads((plans / "bootstrap.json").read_text())
    assert summary["outcome"] == "applied"
    assert summary["note"] == result.note  # written after the push, not before
    assert summary["resource_changes"] == [{"address": "aws_s3_bucket.b0", "actions": ["create"]}]
    # Only bootstrap: nothing else is touched.
    assert {name for name, _ in terraform.calls()} == {"bootstrap"}


def test_bootstrap_keeps_the_local_state_when_the_push_fails(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({"bootstrap": {"missing_bucket": "tfstate-bucket", "push": 1}})
    [result], _ = run(terraform, outdir, tmp_path / "plans", "bootstrap")
    assert result.outcome is Outcome.FAILED
    local_state = outdir / "stacks" / "bootstrap" / FIRST_APPLY_STATE_FILE
    assert f"the state stays in {local_state}" in result.problem
    assert local_state.exists()


def test_bootstrap_of_an_existing_bucket_is_a_plain_apply(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    [result], _ = run(terraform, outdir, tmp_path / "plans", "bootstrap")
    assert result.outcome is Outcome.APPLIED
    assert "first apply" not in result.note
    assert terraform.commands("bootstrap") == ["init", "init", "plan", "show", "show", "apply"]


def test_an_apply_before_bootstrap_fails_and_says_to_bootstrap(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({name: {"missing_bucket": "tfstate-bucket"} for name in STACKS})
    results, _ = run(terraform, outdir, tmp_path / "plans", "plan", stacks=["x-data"])
    [result] = results
    assert result.outcome is Outcome.FAILED
    assert "state bucket tfstate-bucket does not exist yet: run `make bootstrap` once" in (
        result.problem
    )


def test_an_apply_that_fails_otherwise_does_not_mention_bootstrap(
    terraform: FakeTerraform, outdir: Path, tmp_path: Path
) -> None:
    terraform.behave({"x-data": {"init": 1}})
    [result], _ = run(terraform, outdir, tmp_path / "plans", "plan", stacks=["x-data"])
    assert result.outcome is Outcome.FAILED
    assert "bootstrap" not in result.problem


def test_bootstrap_refuses_emulator_output_and_output_without_bootstrap(
    terraform: FakeTerraform, tmp_path: Path
) -> None:
    local = write_synthesized(tmp_path / "local", path_style=True)
    with pytest.raises(UsageError, match="synthesized for the local emulator"):
        run(terraform, local, tmp_path / "plans", "bootstrap")
    without = write_synthesized(tmp_path / "without")
    shutil.rmtree(without / "stacks" / "bootstrap")
    manifest = json.loads((without / "manifest.json").read_text())
    del manifest["stacks"]["bootstrap"]
    (without / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="has no bootstrap stack"):
        run(terraform, without, tmp_path / "plans", "bootstrap")
    assert terraform.calls() == []
