"""Faults while deploying to the local emulator: what breaks, what survives, what the operator
does about it. Each test runs the real terraform binary against a moto server on loopback.

The stacks are small and purpose-built (one SNS topic or IAM role, a pause, a second topic),
except the last test, which applies the real production data stack. Every stack keeps its
state in S3 on the emulator with native S3 locking (`use_lockfile`), exactly as the platform's
stacks do, so the state lock and its lock file are real.

What the tests establish (and the operator steps that follow from them):

(a) SIGKILL in the middle of an apply leaves the lock file (`<key>.tflock`) behind, and the
    state as it was before the apply: terraform saves state to a remote backend only when the
    apply ends, or 20 seconds after its first change (TF_STATE_PERSIST_INTERVAL may lengthen
    that, never shorten it). Resources created in that window exist but are not in the state.
    Operator: `terraform force-unlock -force <ID>` with the ID from the "Error acquiring the
    state lock" message, then apply again. A resource whose creation AWS repeats harmlessly
    (an SNS topic of the same name) is simply adopted; any other (an IAM role) fails with
    "already exists" and must be imported (`terraform import ADDRESS ID`) before the apply.
(b) A second apply while the first holds the lock fails at once with "Error acquiring the state
    lock" naming the first one's lock; the first completes.
(c) An apply right after a successful one changes nothing (here on a small stack; `make e2e`
    plans every platform stack again after its apply and lists what would still change).
(d) When the emulator stops mid-apply terraform fails with "connection refused" for the
    endpoint instead of hanging, and writes the state it could not save to `errored.tfstate`
    (operator: `terraform state push errored.tfstate` once the backend answers again, then
    force-unlock: the lock could not be released either). It gives up within seconds because
    the runner's emulator override files set the provider's and the S3 backend's max_retries
    to tools.terraform.EMULATOR_MAX_RETRIES; with the defaults (25 and 5) the same failure
    took about 80 seconds here.
(e) `terraform plan -destroy` of the production data stack is refused by prevent_destroy.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import main
from tests.emulated import REGION, aws_client, service_trust_json, terraform_on
from tools import terraform as runner
from tools.emulator import Emulator, running_emulator

pytestmark = [
    pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH"),
    pytest.mark.terraform,
    pytest.mark.emulator,
]

STATE_BUCKET = "phi-ml-fault-tests-state"
PAUSE_SECONDS = 10
# Bounds for the harness, so a hang fails the test instead of blocking the run; not timings
# under test.
HARNESS_TIMEOUT_SECONDS = 300
POLL_SECONDS = 0.2
LOCK_ERROR = "Error acquiring the state lock"


# --- the emulator, its clients and a state bucket -------------------------------------------


def create_state_bucket(emulator: Emulator) -> str:
    """The backend bucket, versioned like the platform's state bucket."""
    s3 = aws_client(emulator, "s3")
    s3.create_bucket(Bucket=STATE_BUCKET)
    s3.put_bucket_versioning(Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return STATE_BUCKET


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with running_emulator() as running:
        create_state_bucket(running)
        yield running


# --- purpose-built stacks --------------------------------------------------------------------


def topic(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, **extra}


def pause(after: str, started: Path | None = None) -> dict[str, Any]:
    """A resource that takes PAUSE_SECONDS to create: the window in which the faults strike.

    With `started`, the provisioner creates that file first: its presence proves `after` was
    created completely (the provider's reads after the create included), because terraform
    starts the pause only then.
    """
    command = f"sleep {PAUSE_SECONDS}"
    if started is not None:
        command = f"touch {shlex.quote(str(started))} && {command}"
    return {"depends_on": [after], "provisioner": [{"local-exec": {"command": command}}]}


def write_stack(directory: Path, key: str, resources: dict[str, dict[str, Any]]) -> Path:
    """A stack whose state lives in the emulator's S3 with native locking, as the platform's."""
    directory.mkdir(parents=True, exist_ok=True)
    configuration = {
        "terraform": {
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": "5.100.0"}},
            "backend": {
                "s3": {
                    "bucket": STATE_BUCKET,
                    "key": key,
                    "region": REGION,
                    "encrypt": True,
                    "use_lockfile": True,
                    "use_path_style": True,
                }
            },
        },
        "provider": {"aws": [{"region": REGION, "s3_use_path_style": True}]},
        "resource": resources,
    }
    (directory / "main.tf.json").write_text(json.dumps(configuration, indent=2))
    # The runner's fail-fast retry settings for the emulator, as every stack it runs gets them.
    runner.write_emulator_overrides(directory, configuration)
    return directory


def paused_stack(
    directory: Path,
    key: str,
    first: tuple[str, dict[str, Any]],
    *,
    pause_started: Path | None = None,
) -> Path:
    """`first`, then a pause, then a second topic: three resources created one after another."""
    first_type, first_body = first
    resources: dict[str, dict[str, Any]] = {
        first_type: {"first": first_body},
        "terraform_data": {"pause": pause(f"{first_type}.first", pause_started)},
    }
    resources.setdefault("aws_sns_topic", {})["second"] = topic(
        f"{directory.name}-second", depends_on=["terraform_data.pause"]
    )
    return write_stack(directory, key, resources)


# --- running terraform -----------------------------------------------------------------------


def run(
    terraform: runner.Terraform, directory: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [terraform.executable, *arguments, "-no-color"],
        cwd=directory,
        env=dict(terraform.environment),
        capture_output=True,
        text=True,
        timeout=HARNESS_TIMEOUT_SECONDS,
        check=False,
    )


def init(terraform: runner.Terraform, directory: Path) -> None:
    initialized = run(terraform, directory, "init", "-input=false")
    assert initialized.returncode == 0, initialized.stderr


def apply(terraform: runner.Terraform, directory: Path) -> subprocess.CompletedProcess[str]:
    return run(terraform, directory, "apply", "-auto-approve", "-input=false")


def start_apply(terraform: runner.Terraform, directory: Path) -> subprocess.Popen[str]:
    """An apply in the background, in its own process group (provider and provisioner too)."""
    return subprocess.Popen(
        [terraform.executable, "apply", "-auto-approve", "-input=false", "-no-color"],
        cwd=directory,
        env=dict(terraform.environment),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=HARNESS_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"terraform still running after {HARNESS_TIMEOUT_SECONDS}s: it hangs")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HARNESS_TIMEOUT_SECONDS
    while not condition():
        if process.poll() is not None:
            completed = finish(process)
            pytest.fail(f"terraform ended before {what}:\n{completed.stdout}\n{completed.stderr}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"no {what} within {HARNESS_TIMEOUT_SECONDS}s")
        time.sleep(POLL_SECONDS)


def topic_names(emulator: Emulator) -> list[str]:
    topics = aws_client(emulator, "sns").list_topics()["Topics"]
    return sorted(t["TopicArn"].rsplit(":", 1)[1] for t in topics)


def role_exists(emulator: Emulator, name: str) -> bool:
    roles = aws_client(emulator, "iam").list_roles()["Roles"]
    return any(role["RoleName"] == name for role in roles)


def state_resources(terraform: runner.Terraform, directory: Path) -> set[str]:
    listed = run(terraform, directory, "state", "list")
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.split())


def stored_state(emulator: Emulator, key: str) -> set[str] | None:
    """The resources in the state object the backend keeps at `key`, or None if it has none."""
    s3 = aws_client(emulator, "s3")
    try:
        body = s3.get_object(Bucket=STATE_BUCKET, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return {f"{r['type']}.{r['name']}" for r in json.loads(body).get("resources", [])}


def lock_file(emulator: Emulator, key: str) -> dict[str, Any] | None:
    """The lock `use_lockfile` keeps beside the state (`<key>.tflock`), or None."""
    s3 = aws_client(emulator, "s3")
    try:
        body = s3.get_object(Bucket=STATE_BUCKET, Key=f"{key}.tflock")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def lock_id(error_output: str) -> str:
    """The lock ID from terraform's "Error acquiring the state lock" message."""
    found = re.search(r"^\s*ID:\s+(\S+)", error_output, re.MULTILINE)
    assert found, f"no lock ID in:\n{error_output}"
    return found.group(1)


def plan_exit_code(terraform: runner.Terraform, directory: Path) -> int:
    """0: nothing to change, 2: changes; anything else fails the test with terraform's text."""
    planned = run(terraform, directory, "plan", "-detailed-exitcode", "-input=false")
    assert planned.returncode in (0, 2), planned.stderr
    return planned.returncode


def kill_mid_apply(
    terraform: runner.Terraform, directory: Path, created: Callable[[], bool]
) -> subprocess.CompletedProcess[str]:
    """Start an apply, SIGKILL it (with its provider) once `created()` holds, and return the
    next apply's result, which meets the lock the killed one left."""
    process = start_apply(terraform, directory)
    wait_for(created, "the first resource", process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    return apply(terraform, directory)


# --- (a) killed mid-apply ----------------------------------------------------------------------


def test_an_apply_killed_midway_converges_after_force_unlock(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    key = "faults/killed.tfstate"
    stack = paused_stack(tmp_path / "killed", key, ("aws_sns_topic", topic("killed-first")))
    init(terraform, stack)

    blocked = kill_mid_apply(terraform, stack, lambda: "killed-first" in topic_names(emulator))

    # The kill left the lock: the next apply is refused and names it.
    left_behind = lock_file(emulator, key)
    assert left_behind is not None, "SIGKILL released the lock"
    assert blocked.returncode == 1
    assert LOCK_ERROR in blocked.stderr
    assert lock_id(blocked.stderr) == left_behind["ID"]
    # Killed before the first state snapshot: the topic exists, no state was ever written.
    assert "killed-first" in topic_names(emulator)
    assert stored_state(emulator, key) is None

    unlocked = run(terraform, stack, "force-unlock", "-force", left_behind["ID"])
    assert unlocked.returncode == 0, unlocked.stderr
    assert lock_file(emulator, key) is None

    converged = apply(terraform, stack)
    assert converged.returncode == 0, converged.stderr
    assert plan_exit_code(terraform, stack) == 0
    # Nothing lost and nothing doubled: every resource in state, each topic once.
    assert state_resources(terraform, stack) == {
        "aws_sns_topic.first",
        "terraform_data.pause",
        "aws_sns_topic.second",
    }
    assert topic_names(emulator).count("killed-first") == 1
    assert "killed-second" in topic_names(emulator)


def test_a_resource_created_before_the_kill_that_aws_will_not_repeat_must_be_imported(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    key = "faults/killed-role.tfstate"
    role = "killed-mid-apply"
    trust = service_trust_json("lambda.amazonaws.com")
    first = ("aws_iam_role", {"name": role, "assume_role_policy": trust})
    stack = paused_stack(tmp_path / "killed-role", key, first)
    init(terraform, stack)

    blocked = kill_mid_apply(terraform, stack, lambda: role_exists(emulator, role))
    assert run(terraform, stack, "force-unlock", "-force", lock_id(blocked.stderr)).returncode == 0

    # The role exists but the state does not know it: creating it again is refused ...
    refused = apply(terraform, stack)
    assert refused.returncode == 1
    assert "EntityAlreadyExists" in refused.stderr
    assert "aws_iam_role.first" not in (stored_state(emulator, key) or set())

    # ... until the operator imports it; then the apply converges.
    imported = run(terraform, stack, "import", "-input=false", "aws_iam_role.first", role)
    assert imported.returncode == 0, imported.stderr
    converged = apply(terraform, stack)
    assert converged.returncode == 0, converged.stderr
    assert plan_exit_code(terraform, stack) == 0
    assert "aws_iam_role.first" in state_resources(terraform, stack)


# --- (b) two applies at once -------------------------------------------------------------------


def test_a_second_apply_meanwhile_fails_on_the_lock_and_the_first_completes(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    key = "faults/concurrent.tfstate"
    stack = paused_stack(tmp_path / "concurrent", key, ("aws_sns_topic", topic("both-first")))
    init(terraform, stack)

    first = start_apply(terraform, stack)
    wait_for(lambda: lock_file(emulator, key) is not None, "the state lock", first)
    holder = lock_file(emulator, key)
    assert holder is not None

    second = apply(terraform, stack)
    assert second.returncode == 1
    assert LOCK_ERROR in second.stderr
    assert "PreconditionFailed" in second.stderr or "conditional request failed" in (
        second.stderr
    ), second.stderr
    assert lock_id(second.stderr) == holder["ID"]
    assert first.poll() is None, "the first apply ended while the second was refused"

    completed = finish(first)
    assert completed.returncode == 0, completed.stderr
    assert "Apply complete! Resources: 3 added" in completed.stdout
    assert state_resources(terraform, stack) == {
        "aws_sns_topic.first",
        "terraform_data.pause",
        "aws_sns_topic.second",
    }
    assert lock_file(emulator, key) is None, "the lock outlived the apply"


# --- (c) apply twice ----------------------------------------------------------------------------


def instant_stack(directory: Path, key: str, *, tag: str) -> Path:
    return write_stack(
        directory,
        key,
        {
            "aws_sns_topic": {"alerts": topic("twice-alerts", tags={"purpose": tag})},
            # No SQS queue here: the provider waits about 25 s for its attributes to settle.
            "aws_cloudwatch_log_group": {"audit": {"name": "/twice/audit"}},
            "aws_ssm_parameter": {
                "setting": {"name": "/twice/setting", "type": "String", "value": tag}
            },
        },
    )


def test_an_apply_right_after_a_successful_one_changes_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    terraform = terraform_on(emulator)
    stack = instant_stack(tmp_path / "twice", "faults/twice.tfstate", tag="first")
    init(terraform, stack)
    assert apply(terraform, stack).returncode == 0

    again = apply(terraform, stack)
    assert again.returncode == 0, again.stderr
    assert "No changes." in again.stdout
    assert "Resources: 0 added, 0 changed, 0 destroyed" in again.stdout
    assert plan_exit_code(terraform, stack) == 0

    # The twin: a changed configuration is a change, and the same plan says so.
    instant_stack(stack, "faults/twice.tfstate", tag="second")
    assert plan_exit_code(terraform, stack) == 2


# --- (d) the emulator stops ---------------------------------------------------------------------


def test_an_emulator_that_stops_mid_apply_fails_clearly_and_keeps_the_state(
    tmp_path: Path,
) -> None:
    with ExitStack() as server:
        emulator = server.enter_context(running_emulator())
        create_state_bucket(emulator)
        terraform = terraform_on(emulator)
        pause_started = tmp_path / "pause-started"
        stack = paused_stack(
            tmp_path / "stopped",
            "faults/stopped.tfstate",
            ("aws_sns_topic", topic("gone-first")),
            pause_started=pause_started,
        )
        init(terraform, stack)
        process = start_apply(terraform, stack)
        # Not merely "the topic exists": the provider reads the topic back after creating it,
        # and an emulator stopped during those reads fails the first resource instead (seen
        # once on a loaded machine). The pause starts only after the first is complete.
        wait_for(pause_started.exists, "the pause", process)
        server.close()  # the emulator stops while terraform pauses
        assert not emulator.is_serving()

        failed = finish(process)  # bounded by the harness timeout: a hang fails the test

    assert failed.returncode == 1
    assert f"dial tcp {emulator.endpoint_url.removeprefix('http://')}" in failed.stderr
    assert "connection refused" in failed.stderr
    # Nothing lost: the state the backend could not take is on disk, ready to push.
    assert "Failed to save state" in failed.stderr
    assert "terraform state push errored.tfstate" in failed.stderr
    assert "Error releasing the state lock" in failed.stderr
    errored = json.loads((stack / "errored.tfstate").read_text())
    assert {r["type"] + "." + r["name"] for r in errored["resources"]} >= {
        "aws_sns_topic.first",
        "terraform_data.pause",
    }


# --- (e) production data stores refuse destruction ------------------------------------------


@pytest.fixture(scope="module")
def production_data(tmp_path_factory: pytest.TempPathFactory) -> runner.Stack:
    outdir = tmp_path_factory.mktemp("prod") / "cdktf.out.local"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "local")
        main.synthesize(["prod"], outdir)
    return runner.load_stacks(outdir)["prod-data"]


def test_plan_destroy_of_the_production_data_stores_is_refused(
    production_data: runner.Stack, emulator: Emulator, tmp_path: Path
) -> None:
    protected = sorted(
        address
        for address, body in production_data.resources().items()
        if json.loads(body).get("lifecycle", {}).get("prevent_destroy") is True
    )
    # The production data stores: keys, buckets and feature groups, every one protected.
    for kind in ("aws_kms_key", "aws_s3_bucket", "aws_sagemaker_feature_group"):
        stores = {a for a in production_data.resources() if a.split(".")[0] == kind}
        assert stores, f"prod-data has no {kind}"
        assert stores <= set(protected), f"{sorted(stores - set(protected))} lack prevent_destroy"

    stack = Path(shutil.copytree(production_data.directory, tmp_path / "prod-data"))
    runner.write_emulator_overrides(stack, production_data.configuration())
    backend = json.loads((stack / "cdk.tf.json").read_text())["terraform"]["backend"]["s3"]
    s3 = aws_client(emulator, "s3")
    s3.create_bucket(Bucket=backend["bucket"])
    terraform = terraform_on(emulator)
    init(terraform, stack)
    # The protected resources (and what they use), and one unprotected resource beside them.
    unprotected = next(
        a for a in production_data.resources() if a.startswith("aws_s3_bucket_versioning.")
    )
    targets = [f"-target={address}" for address in [*protected, unprotected]]
    applied = run(terraform, stack, "apply", "-auto-approve", "-input=false", *targets)
    assert applied.returncode == 0, applied.stderr

    def refusals(*targets: str) -> set[str]:
        """The resources a `plan -destroy` names as protected; asserts it was refused."""
        planned = run(terraform, stack, "plan", "-destroy", "-input=false", *targets)
        assert planned.returncode == 1, planned.stdout
        assert "Error: Instance cannot be destroyed" in planned.stderr
        # terraform wraps the message, anywhere between its words.
        pattern = r"Resource\s+(\S+)\s+has\s+lifecycle\.prevent_destroy\s+set"
        return set(re.findall(pattern, planned.stderr))

    # The whole stack: refused. Terraform stops at the first protected resources it meets in
    # destroy order (those that use the others), so each kind is also asked for on its own.
    named = refusals()
    assert named and named <= set(protected)
    for kind in ("aws_kms_key", "aws_s3_bucket", "aws_sagemaker_feature_group"):
        store = next(a for a in protected if a.split(".")[0] == kind)
        named = refusals(f"-target={store}")
        assert named and named <= set(protected)
    assert state_resources(terraform, stack) >= set(protected)

    # The twin: destroying what prevent_destroy does not cover is planned normally.
    allowed = run(terraform, stack, "plan", "-destroy", "-input=false", f"-target={unprotected}")
    assert allowed.returncode == 0, allowed.stderr
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in allowed.stdout
