"""The stack that creates the state bucket keeps its own state in that bucket.

tools.terraform.deploy_bootstrap runs the first apply with a local backend (the bucket does
not exist yet), pushes the state into the bucket, reads it back and deletes the local file;
later runs use the S3 backend like every stack. These tests run real terraform against moto on
loopback with a small stand-in for `bootstrap`: a bucket that is its own backend, and an IAM
role, which AWS refuses to create twice (so a lost state shows as a failed apply).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulated import REGION, aws_client, service_trust_json, terraform_on
from tools import terraform as runner
from tools.emulator import Emulator, running_emulator

pytestmark = [
    pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH"),
    pytest.mark.terraform,
    pytest.mark.emulator,
]

KEY = "org/bootstrap.tfstate"


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    # One emulator per test: each starts from "the bucket does not exist".
    with running_emulator() as running:
        yield running


def self_hosting_stack(directory: Path, bucket: str) -> runner.Stack:
    """A bucket that is its own stack's backend, and a role, as `bootstrap` is synthesized
    (S3 backend with native locking), with the emulator's retry overrides."""
    directory.mkdir(parents=True)
    configuration = {
        "terraform": {
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": "5.100.0"}},
            "backend": {
                "s3": {
                    "bucket": bucket,
                    "key": KEY,
                    "region": REGION,
                    "encrypt": True,
                    "use_lockfile": True,
                    "use_path_style": True,
                }
            },
        },
        "provider": {"aws": [{"region": REGION, "s3_use_path_style": True}]},
        "resource": {
            "aws_s3_bucket": {"state": {"bucket": bucket}},
            "aws_s3_bucket_versioning": {
                "state": {
                    "bucket": "${aws_s3_bucket.state.id}",
                    "versioning_configuration": {"status": "Enabled"},
                }
            },
            "aws_iam_role": {
                "deployer": {
                    "name": "bootstrap-deployer",
                    "assume_role_policy": service_trust_json("ec2.amazonaws.com"),
                }
            },
        },
    }
    (directory / "cdk.tf.json").write_text(json.dumps(configuration))
    runner.write_emulator_overrides(directory, configuration)
    return runner.Stack("bootstrap", directory, ())


def deploy(terraform: runner.Terraform, stack: runner.Stack) -> runner.StackResult:
    return runner.deploy_bootstrap(
        terraform, stack, plan_and_apply(terraform), progress=quiet(stack)
    )


def plan_and_apply(terraform: runner.Terraform) -> Any:
    def run(stack: runner.Stack) -> runner.StackResult:
        return runner.plan_stack(terraform, stack, apply=True, progress=quiet(stack))

    return run


def quiet(stack: runner.Stack) -> runner.Progress:
    return runner.Progress([stack], stream=io.StringIO())


def stored_state(emulator: Emulator, bucket: str) -> dict[str, Any]:
    body = aws_client(emulator, "s3").get_object(Bucket=bucket, Key=KEY)["Body"].read()
    return dict(json.loads(body))


def addresses(state: dict[str, Any]) -> set[str]:
    return {f"{r['type']}.{r['name']}" for r in state["resources"]}


EVERYTHING = {"aws_s3_bucket.state", "aws_s3_bucket_versioning.state", "aws_iam_role.deployer"}


def terraform_in(
    terraform: runner.Terraform, stack: runner.Stack, *arguments: str
) -> subprocess.CompletedProcess[str]:
    return terraform.run(stack.directory, *arguments)


def test_the_first_apply_leaves_its_state_in_the_bucket_it_created(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    stack = self_hosting_stack(tmp_path / "bootstrap", "first-apply-state")

    # What deploy_bootstrap exists for: the backend's bucket is missing, so a plain run fails.
    plain = plan_and_apply(terraform)(stack)
    assert plain.outcome is runner.Outcome.FAILED
    assert plain.failed_step == "init"
    assert 'S3 bucket "first-apply-state" does not exist' in plain.problem

    result = deploy(terraform, stack)
    assert result.outcome is runner.Outcome.APPLIED, result.problem
    assert result.note == f"first apply: state moved into s3://first-apply-state/{KEY}"
    assert addresses(stored_state(emulator, "first-apply-state")) == EVERYTHING
    # Nothing on the machine: no state file, no backup, no override.
    left = sorted(p.name for p in stack.directory.iterdir() if p.name != ".terraform")
    assert runner.FIRST_APPLY_STATE_FILE not in left
    assert runner.FIRST_APPLY_OVERRIDE_FILE not in left
    assert not [name for name in left if name.endswith((".tfstate", ".backup"))], left

    # The stack now uses its S3 backend like any other: a plan changes nothing.
    planned = terraform_in(terraform, stack, "plan", "-detailed-exitcode")
    assert planned.returncode == 0, planned.stdout + planned.stderr


def test_a_second_run_uses_the_bucket_and_changes_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    stack = self_hosting_stack(tmp_path / "bootstrap", "second-run-state")
    assert deploy(terraform, stack).outcome is runner.Outcome.APPLIED
    serial = stored_state(emulator, "second-run-state")["serial"]

    again = deploy(terraform, stack)
    assert again.outcome is runner.Outcome.APPLIED, again.problem
    assert again.changes == runner.Changes(0, 0, 0)
    assert "first apply" not in again.note
    assert not (stack.directory / runner.FIRST_APPLY_STATE_FILE).exists()
    assert addresses(stored_state(emulator, "second-run-state")) == EVERYTHING
    assert stored_state(emulator, "second-run-state")["serial"] >= serial


def first_apply_without_push(terraform: runner.Terraform, stack: runner.Stack) -> None:
    """The first apply of a run that stopped before the push: local state, bucket created."""
    with runner.local_backend(stack.directory):
        applied = plan_and_apply(terraform)(stack)
    assert applied.outcome is runner.Outcome.APPLIED, applied.problem


def test_a_run_stopped_before_the_push_is_finished_by_the_next(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    stack = self_hosting_stack(tmp_path / "bootstrap", "resumed-state")
    first_apply_without_push(terraform, stack)
    assert (stack.directory / runner.FIRST_APPLY_STATE_FILE).exists()

    resumed = deploy(terraform, stack)
    assert resumed.outcome is runner.Outcome.APPLIED, resumed.problem
    assert resumed.changes == runner.Changes(0, 0, 0), "the pushed state was not used"
    assert addresses(stored_state(emulator, "resumed-state")) == EVERYTHING
    assert not (stack.directory / runner.FIRST_APPLY_STATE_FILE).exists()


def test_without_the_local_state_the_next_apply_collides_with_what_exists(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The twin of the test above: the state the push saves is what keeps the next apply
    from creating everything again."""
    terraform = terraform_on(emulator)
    stack = self_hosting_stack(tmp_path / "bootstrap", "lost-state")
    first_apply_without_push(terraform, stack)
    (stack.directory / runner.FIRST_APPLY_STATE_FILE).unlink()

    collided = deploy(terraform, stack)
    assert collided.outcome is runner.Outcome.FAILED
    assert "EntityAlreadyExists" in collided.problem or "already exists" in collided.problem


def test_a_local_state_of_another_lineage_is_never_pushed_over_the_bucket(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    stack = self_hosting_stack(tmp_path / "bootstrap", "guarded-state")
    assert deploy(terraform, stack).outcome is runner.Outcome.APPLIED
    before = stored_state(emulator, "guarded-state")

    stray = {**before, "lineage": "00000000-0000-0000-0000-000000000000", "resources": []}
    stray_file = stack.directory / runner.FIRST_APPLY_STATE_FILE
    stray_file.write_text(json.dumps(stray))

    refused = deploy(terraform, stack)
    assert refused.outcome is runner.Outcome.FAILED
    assert refused.failed_step == "state push"
    assert f"the state stays in {stray_file}" in refused.problem
    assert stray_file.exists()
    assert addresses(stored_state(emulator, "guarded-state")) == EVERYTHING


def completed(returncode: int, stderr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["terraform", "init"], returncode, "", stderr)


def test_only_a_missing_backend_bucket_counts_as_a_first_apply() -> None:
    missing = 'Error: Failed to get existing workspaces: S3 bucket "b-1" does not exist.'
    assert runner.missing_state_bucket(completed(1, missing)) == "b-1"
    assert runner.missing_state_bucket(completed(0, missing)) is None
    denied = "Error: Failed to get existing workspaces: AccessDenied: Access Denied"
    assert runner.missing_state_bucket(completed(1, denied)) is None


def test_a_stack_without_an_s3_backend_is_deployed_as_given(tmp_path: Path) -> None:
    stack = runner.Stack("bootstrap", tmp_path, ())
    (tmp_path / "cdk.tf.json").write_text(json.dumps({"terraform": {"backend": {"local": {}}}}))
    calls: list[str] = []

    def record(given: runner.Stack) -> runner.StackResult:
        calls.append(given.name)
        return runner.StackResult(given.name, runner.Outcome.APPLIED)

    terraform = runner.Terraform("terraform-is-never-run", {})
    result = runner.deploy_bootstrap(terraform, stack, record, progress=quiet(stack))
    assert result.outcome is runner.Outcome.APPLIED
    assert calls == ["bootstrap"]
