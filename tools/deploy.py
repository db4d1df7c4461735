"""Plan or apply the synthesized stacks in a real AWS account, with the credentials at hand.

    python -m tools.deploy bootstrap [--out cdktf.out] [--plans DIR]
    python -m tools.deploy plan  [--out cdktf.out] [--plans DIR] [--jobs N] STACK ...
    python -m tools.deploy apply [--out cdktf.out] [--plans DIR] [--jobs N] --environment ENV

Both run plain terraform in each stack's synthesized directory: `init` with the stack's own S3
backend (the state bucket that `bootstrap` created), then `plan -out`. `plan` runs the named
stacks side by side without taking the state lock (`-lock=false`: a pull request's read-only
plan role must not block, nor be blocked by, a deployment), and writes for each stack
DIR/<stack>.json (the summary: outcome, counts, the address and actions of every change) and
DIR/<stack>.plan.txt (terraform's own rendering of the plan). `apply` applies every stack of
one environment in dependency order, each from the plan it has just saved (what was planned is
what is applied), locking the state as usual; a stack whose plan has no changes is not applied,
and a stack whose upstream stack failed is skipped. It writes the same summaries plus
DIR/<stack>.apply.log.

The provider of every stack assumes the environment's deployment role, so the credentials need
only be allowed to assume it (in CI: the OIDC role of aws-actions/configure-aws-credentials).
`bootstrap` creates the state bucket, which also holds bootstrap's own state. Its first apply,
before the bucket exists, is `bootstrap` (run once by hand, `make bootstrap`): it applies with
a local backend, pushes the state into the new bucket, checks it and deletes the local file
(tools.terraform.deploy_bootstrap); afterwards `bootstrap` is planned and applied like any
stack, and a run that meets the missing bucket says to bootstrap first. Stacks with a local
backend are never run here (their state would be lost with the machine). Output synthesized
for the local emulator target is refused. PHI_PROVIDER_MIRROR=DIR installs hashicorp/aws from
a filesystem mirror.

Exit status: 0 when every stack succeeded, 1 when one failed, 2 for a usage error, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.cli import UsageError, add_jobs_option, run_command
from tools.terraform import (
    BOOTSTRAP_STACK,
    Changes,
    Outcome,
    Progress,
    Stack,
    StackResult,
    Terraform,
    count_changes,
    deploy_bootstrap,
    load_stacks,
    missing_state_bucket,
    print_problems,
    print_table,
    run_in_dependency_order,
    select_stacks,
    terraform_error,
)

DEFAULT_OUTDIR = Path("cdktf.out")
DEFAULT_PLANS_DIR = Path("reports/plans")
PLAN_FILE = "deploy.tfplan"
# Workload stacks carry their environment in the provider's default tags; the organization's
# stacks carry "org" there too (environments.composition.default_tags).
ENVIRONMENT_TAG = "environment"


@dataclass(frozen=True)
class ResourceChange:
    address: str
    actions: tuple[str, ...]


def stack_environment(stack: Stack) -> str:
    providers = stack.configuration().get("provider", {}).get("aws", [])
    tags = (providers[0].get("default_tags") or [{}])[0].get("tags", {}) if providers else {}
    return str(tags.get(ENVIRONMENT_TAG, ""))


def has_local_backend(stack: Stack) -> bool:
    return "local" in stack.configuration().get("terraform", {}).get("backend", {})


def resource_changes(plan: Mapping[str, Any]) -> list[ResourceChange]:
    """Every resource the plan would touch (no-ops and reads left out)."""
    return [
        ResourceChange(change["address"], tuple(change["change"]["actions"]))
        for change in plan.get("resource_changes", [])
        if set(change["change"]["actions"]) - {"no-op", "read"}
    ]


def write_summary(
    plans_dir: Path,
    stack: Stack,
    result: StackResult,
    changes: Sequence[ResourceChange] = (),
) -> None:
    counts = result.changes
    summary = {
        "stack": stack.name,
        "environment": stack_environment(stack),
        "outcome": str(result.outcome),
        "add": counts.add if counts else None,
        "change": counts.change if counts else None,
        "destroy": counts.destroy if counts else None,
        "resource_changes": [{"address": c.address, "actions": list(c.actions)} for c in changes],
        "note": result.note,
        "problem": result.problem,
    }
    (plans_dir / f"{stack.name}.json").write_text(json.dumps(summary, indent=2) + "\n")


class StackRun:
    """init, plan (and apply) of one stack, its summary written whatever happens."""

    def __init__(
        self, terraform: Terraform, plans_dir: Path, progress: Progress, *, apply: bool
    ) -> None:
        self.terraform = terraform
        self.plans_dir = plans_dir
        self.progress = progress
        self.apply = apply
        # What each stack's plan would change, kept for a summary rewritten after the run.
        self.changes: dict[str, list[ResourceChange]] = {}

    def __call__(self, stack: Stack) -> StackResult:
        self.progress.started(stack, "applying" if self.apply else "planning")
        result, self.changes[stack.name] = self._run(stack)
        write_summary(self.plans_dir, stack, result, self.changes[stack.name])
        return result

    def _failure(
        self, stack: Stack, step: str, completed: subprocess.CompletedProcess[str]
    ) -> tuple[StackResult, list[ResourceChange]]:
        problem = f"terraform {step}:\n{terraform_error(completed)}"
        bucket = missing_state_bucket(completed)
        if bucket is not None:
            problem += f"\n(state bucket {bucket} does not exist yet: run `make bootstrap` once)"
        return StackResult(stack.name, Outcome.FAILED, problem=problem), []

    def _run(self, stack: Stack) -> tuple[StackResult, list[ResourceChange]]:
        run = self.terraform.run
        init = run(stack.directory, "init", "-reconfigure")
        if init.returncode != 0:
            return self._failure(stack, "init", init)
        lock = [] if self.apply else ["-lock=false"]
        planned = run(stack.directory, "plan", "-detailed-exitcode", *lock, f"-out={PLAN_FILE}")
        if planned.returncode not in (0, 2):  # 0: no changes, 2: changes
            return self._failure(stack, "plan", planned)
        shown = run(stack.directory, "show", "-json", PLAN_FILE)
        if shown.returncode != 0:
            return self._failure(stack, "show", shown)
        rendered = run(stack.directory, "show", PLAN_FILE)
        (self.plans_dir / f"{stack.name}.plan.txt").write_text(rendered.stdout)
        plan = json.loads(shown.stdout)
        counts, changes = count_changes(plan), resource_changes(plan)
        if not self.apply:
            return StackResult(stack.name, Outcome.PLANNED, changes=counts), changes
        return self._apply(stack, counts, has_changes=planned.returncode == 2), changes

    def _apply(self, stack: Stack, counts: Changes, *, has_changes: bool) -> StackResult:
        """Apply the saved plan: exactly what was planned, or nothing when it changes nothing."""
        if not has_changes:
            return StackResult(
                stack.name, Outcome.APPLIED, changes=counts, note="no changes: nothing applied"
            )
        applied = self.terraform.run(stack.directory, "apply", PLAN_FILE)
        (self.plans_dir / f"{stack.name}.apply.log").write_text(applied.stdout + applied.stderr)
        if applied.returncode != 0:
            return StackResult(
                stack.name,
                Outcome.FAILED,
                changes=counts,
                problem=f"terraform apply:\n{terraform_error(applied)}",
            )
        return StackResult(stack.name, Outcome.APPLIED, changes=counts)


def _require_aws_target(outdir: Path, stacks: Sequence[Stack]) -> None:
    for stack in stacks:
        if stack.targets_emulator():
            raise UsageError(
                f"{outdir} was synthesized for the local emulator ({stack.name}'s provider uses "
                "s3_use_path_style); synthesize for AWS: make synth"
            )


def _runnable(stacks: Sequence[Stack], plans_dir: Path) -> tuple[list[Stack], list[StackResult]]:
    """The stacks this tool may run, and a note for each local-backend stack it may not."""
    runnable, by_hand = [], []
    for stack in stacks:
        if has_local_backend(stack):
            result = StackResult(
                stack.name,
                Outcome.SKIPPED,
                note="local backend: not run here, its state would be lost with this machine",
            )
            write_summary(plans_dir, stack, result)
            by_hand.append(result)
        else:
            runnable.append(stack)
    return runnable, by_hand


def run(
    command: str,
    outdir: Path,
    *,
    stack_names: Sequence[str],
    environment_name: str | None,
    plans_dir: Path,
    jobs: int,
    environment: Mapping[str, str],
) -> tuple[list[StackResult], list[StackResult]]:
    """Results of the stacks run, and of the local-backend stacks left to a person."""
    synthesized = load_stacks(outdir)
    if command == "bootstrap":
        return [bootstrap(synthesized, outdir, plans_dir, environment)], []
    if command == "apply":
        selected = [s for s in synthesized.values() if stack_environment(s) == environment_name]
        if not selected:
            known = sorted({stack_environment(s) for s in synthesized.values()})
            raise UsageError(
                f"no stack of environment {environment_name!r} in {outdir} "
                f"(synthesized environments: {', '.join(known)})"
            )
    else:
        if not stack_names:
            raise UsageError("name the stacks to plan")
        selected = select_stacks(synthesized, stack_names)
    _require_aws_target(outdir, selected)
    plans_dir.mkdir(parents=True, exist_ok=True)
    runnable, by_hand = _runnable(selected, plans_dir)
    if not runnable:
        return [], by_hand
    terraform = Terraform.from_environment(environment)
    progress = Progress(runnable)
    names = {stack.name for stack in runnable}
    # An apply follows the dependencies inside the environment (other environments' stacks
    # are ordered by the workflow). Plans read what is deployed, so they run side by side.
    dependencies = {
        stack.name: (set(stack.dependencies) & names if command == "apply" else set())
        for stack in runnable
    }
    task = StackRun(terraform, plans_dir, progress, apply=command == "apply")
    results = run_in_dependency_order(runnable, dependencies, task, jobs=jobs, progress=progress)
    for result in results:
        if result.outcome is Outcome.SKIPPED:
            write_summary(plans_dir, synthesized[result.stack], result)
    return results, by_hand


def bootstrap(
    synthesized: Mapping[str, Stack],
    outdir: Path,
    plans_dir: Path,
    environment: Mapping[str, str],
) -> StackResult:
    """Apply `bootstrap`, its first apply included (state pushed into the bucket it creates)."""
    if BOOTSTRAP_STACK not in synthesized:
        raise UsageError(f"{outdir} has no {BOOTSTRAP_STACK} stack (make synth)")
    stack = synthesized[BOOTSTRAP_STACK]
    _require_aws_target(outdir, [stack])
    plans_dir.mkdir(parents=True, exist_ok=True)
    terraform = Terraform.from_environment(environment)
    progress = Progress([stack])
    task = StackRun(terraform, plans_dir, progress, apply=True)

    def first_or_later_apply(stack: Stack) -> StackResult:
        return deploy_bootstrap(terraform, stack, task, progress=progress)

    # As every run here: timed, and on Ctrl-C or SIGTERM terraform is asked to stop.
    [result] = run_in_dependency_order(
        [stack], {stack.name: set()}, first_or_later_apply, jobs=1, progress=progress
    )
    # The summary StackRun wrote predates the push, which can add a note or a failure.
    write_summary(plans_dir, stack, result, task.changes.get(stack.name, ()))
    return result


def print_summary(results: Sequence[StackResult], by_hand: Sequence[StackResult]) -> None:
    def counts(changes: Changes | None) -> tuple[object, ...]:
        return ("", "", "") if changes is None else (changes.add, changes.change, changes.destroy)

    everything = [*results, *by_hand]
    print_table(
        ("stack", "outcome", "add", "change", "destroy", "seconds"),
        ((r.stack, r.outcome, *counts(r.changes), f"{r.seconds:.1f}") for r in everything),
    )
    for result in everything:
        if result.note:
            print(f"\n{result.stack}: {result.note}")
    print_problems(results)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.deploy", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bootstrapping = commands.add_parser(
        "bootstrap", help="apply bootstrap; the first time, move its state into its bucket"
    )
    bootstrapping.add_argument("--out", type=Path, default=DEFAULT_OUTDIR)
    bootstrapping.add_argument("--plans", type=Path, default=DEFAULT_PLANS_DIR)
    planning = commands.add_parser("plan", help="plan the named stacks (no state lock)")
    planning.add_argument("stacks", nargs="+", metavar="STACK")
    applying = commands.add_parser("apply", help="plan and apply one environment's stacks")
    applying.add_argument("--environment", required=True, help="e.g. dev, staging, prod, org")
    for command in (planning, applying):
        command.add_argument("--out", type=Path, default=DEFAULT_OUTDIR)
        command.add_argument("--plans", type=Path, default=DEFAULT_PLANS_DIR)
        add_jobs_option(command)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)

    def plan_or_apply() -> int:
        results, by_hand = run(
            arguments.command,
            arguments.out,
            stack_names=getattr(arguments, "stacks", ()),
            environment_name=getattr(arguments, "environment", None),
            plans_dir=arguments.plans,
            jobs=getattr(arguments, "jobs", 1),
            environment=os.environ,
        )
        print()
        print_summary(results, by_hand)
        return 0 if all(result.outcome.succeeded for result in results) else 1

    # A cancelled CI job sends SIGTERM: terraform gets SIGINT and stops gracefully.
    return run_command(plan_or_apply)


if __name__ == "__main__":
    sys.exit(main())
