"""Run terraform over the synthesized stacks: validate them offline, or plan them against moto.

    python -m tools.terraform validate [--out DIR] [--jobs N] [STACK ...]
    python -m tools.terraform plan [--out DIR] [--jobs N] [STACK ...]

validate runs `terraform init -backend=false` and `terraform validate -json` in every stack (or
those named), several at a time. plan needs the local target (`PHI_TARGET=local python main.py
--out cdktf.out.local`): it starts a moto server on loopback, applies `bootstrap` (the state bucket
and key every S3 backend uses, bootstrap's own included: deploy_bootstrap), applies every stack
that another stack reads through remote state, and plans the rest, in dependency order, in a
temporary copy of the output so the synthesized directory stays exactly as main.py wrote it. Naming
stacks also runs the stacks they read. Resources moto cannot create
(tools.emulator.not_emulated_reason) are planned but left out of applies, and the summary names
them.

PHI_PROVIDER_MIRROR=DIR installs providers from a filesystem mirror (offline); unset, they come
from the registry. Either way they are cached in .cache/terraform/plugins. Exit status: 0 when
every stack succeeded, 1 when one failed, 2 for a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from tools.cli import UsageError, add_jobs_option, run_command
from tools.emulator import Emulator, not_emulated_reason, running_emulator

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache" / "terraform"
PLUGIN_CACHE_DIR = CACHE_DIR / "plugins"
EMULATOR_LOG = CACHE_DIR / "emulator.log"
MIRROR_VARIABLE = "PHI_PROVIDER_MIRROR"
DEFAULT_OUTDIR = Path("cdktf.out")
# Also named in environments.composition, which cannot be imported without starting jsii.
BOOTSTRAP_STACK = "bootstrap"
PLAN_FILE = "emulator.tfplan"
EMULATED_PLAN_FILE = "emulated-only.tfplan"
EMULATOR_OVERRIDE_FILE = "emulator_override.tf.json"
EMULATOR_MAX_RETRIES = 2
EMULATOR_REGION = "us-east-1"
EMULATOR_CREDENTIAL = "testing"
# Variables that would send the emulator run's requests elsewhere or sign them with real
# credentials. Service-specific AWS_ENDPOINT_URL_<SERVICE> variables are dropped too.
REAL_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CA_BUNDLE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
DIAGNOSTICS_SHOWN = 3
ERROR_LINES_SHOWN = 40


class Outcome(StrEnum):
    VALID = "valid"
    INVALID = "INVALID"
    INIT_FAILED = "init failed"
    APPLIED = "applied"
    PLANNED = "planned"
    FAILED = "FAILED"
    SKIPPED = "skipped"
    DESTROYED = "destroyed"
    KEPT = "kept"  # deliberately not destroyed (the state bucket, prevent_destroy resources)

    @property
    def succeeded(self) -> bool:
        return self in {
            Outcome.VALID,
            Outcome.APPLIED,
            Outcome.PLANNED,
            Outcome.DESTROYED,
            Outcome.KEPT,
        }


@dataclass(frozen=True)
class Changes:
    add: int
    change: int
    destroy: int


@dataclass(frozen=True)
class StackResult:
    stack: str
    outcome: Outcome
    seconds: float = 0.0
    resources: int | None = None
    changes: Changes | None = None
    problem: str = ""
    note: str = ""
    failed_step: str = ""  # the terraform command that failed: init, plan, show, apply, ...


@dataclass(frozen=True)
class Stack:
    name: str
    directory: Path
    dependencies: tuple[str, ...]

    def configuration(self) -> dict[str, Any]:
        return dict(json.loads((self.directory / "cdk.tf.json").read_text()))

    def resource_count(self) -> int:
        resources = self.configuration().get("resource", {})
        return sum(len(of_type) for of_type in resources.values())

    def resources(self) -> dict[str, str]:
        """Every resource's address with its configuration as JSON text."""
        return {
            f"{kind}.{name}": json.dumps(body)
            for kind, named in self.configuration().get("resource", {}).items()
            for name, body in named.items()
        }

    def targets_emulator(self) -> bool:
        # The local target's only mark in the output (see environments.composition.Target).
        providers = self.configuration().get("provider", {}).get("aws", [])
        return bool(providers) and all(p.get("s3_use_path_style") is True for p in providers)


# --- the synthesized output ---------------------------------------------------------------


REMOTE_STATE_PREFIX = "cross-stack-reference-input-"


def state_reads(directory: Path) -> tuple[str, ...]:
    """The stacks whose state this stack reads (cdktf's cross-stack references), which must be
    applied before it can even be planned."""
    configuration = json.loads((directory / "cdk.tf.json").read_text())
    remote = configuration.get("data", {}).get("terraform_remote_state", {})
    return tuple(sorted(n.removeprefix(REMOTE_STATE_PREFIX) for n in remote))


def load_stacks(outdir: Path) -> dict[str, Stack]:
    """The stacks of a synthesized directory, by name, from its manifest. A stack's
    dependencies are the stacks it reads state from; the manifest also lists deployment-order
    dependencies (the organization before its accounts' stacks) that `cdktf deploy` follows
    but that a plan or an emulator run does not need."""
    manifest_path = outdir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    entries: Mapping[str, Any] = manifest.get("stacks", {})
    if not entries:
        raise UsageError(f"no synthesized stacks in {outdir} (run `make synth` first)")
    return {
        name: Stack(
            name=name,
            directory=outdir / entry["workingDirectory"],
            dependencies=state_reads(outdir / entry["workingDirectory"]),
        )
        for name, entry in sorted(entries.items())
    }


def select_stacks(stacks: Mapping[str, Stack], names: Sequence[str]) -> list[Stack]:
    unknown = sorted(set(names) - set(stacks))
    if unknown:
        raise UsageError(f"no stack named {', '.join(unknown)} (synthesized: {', '.join(stacks)})")
    return [stacks[name] for name in (names or stacks)]


def with_dependencies(stacks: Mapping[str, Stack], wanted: Iterable[Stack]) -> list[Stack]:
    """The wanted stacks and every stack they read state from, bootstrap included."""
    needed: set[str] = set()
    pending = [stack.name for stack in wanted]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(stacks[name].dependencies)
    needed.add(BOOTSTRAP_STACK)
    return [stack for name, stack in stacks.items() if name in needed]


def emulator_dependencies(stacks: Sequence[Stack]) -> dict[str, set[str]]:
    # Every backend lives in the bucket that bootstrap creates.
    return {
        stack.name: set(stack.dependencies) | ({BOOTSTRAP_STACK} - {stack.name}) for stack in stacks
    }


# --- running terraform --------------------------------------------------------------------


def mirrored_providers(mirror: Path) -> list[str]:
    """HOSTNAME/NAMESPACE/TYPE of every provider in a filesystem mirror (either layout)."""

    def subdirectories(path: Path) -> list[Path]:
        return sorted(p for p in path.iterdir() if p.is_dir())

    if not mirror.is_dir():
        raise UsageError(f"{MIRROR_VARIABLE}={mirror} is not a directory")
    providers = [
        f"{host.name}/{namespace.name}/{provider.name}"
        for host in subdirectories(mirror)
        for namespace in subdirectories(host)
        for provider in subdirectories(namespace)
    ]
    if not providers:
        raise UsageError(
            f"{MIRROR_VARIABLE}={mirror} holds no providers "
            "(expected HOSTNAME/NAMESPACE/TYPE directories such as "
            "registry.terraform.io/hashicorp/aws)"
        )
    return providers


def cli_config_text(mirror: Path | None, plugin_cache: Path) -> str:
    """A terraform CLI configuration: the mirror if there is one, else a shared plugin cache.

    Providers found in the mirror are installed only from it; anything else still comes from
    the registry, so a provider missing from the mirror fails with terraform's own message.
    With a mirror there is no plugin cache: init links each stack straight to the read-only
    mirror, whereas a shared cache is rewritten by every init and a stack validating at that
    moment finds its provider gone ("no package ... cached in .terraform/providers").
    """
    lines = [] if mirror is not None else [f"plugin_cache_dir = {json.dumps(str(plugin_cache))}"]
    if mirror is not None:
        providers = ", ".join(json.dumps(p) for p in mirrored_providers(mirror))
        lines += [
            "provider_installation {",
            "  filesystem_mirror {",
            f"    path    = {json.dumps(str(mirror))}",
            f"    include = [{providers}]",
            "  }",
            "  direct {",
            f"    exclude = [{providers}]",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def write_cli_config(mirror: Path | None) -> Path:
    """Write the CLI configuration under .cache/terraform and return its path.

    The file is named for its content and replaced atomically, so concurrent runs with
    different settings never read each other's half-written file.
    """
    PLUGIN_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    text = cli_config_text(mirror, PLUGIN_CACHE_DIR)
    path = CACHE_DIR / f"terraformrc-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if not path.is_file() or path.read_text() != text:
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(text)
        partial.replace(path)
    return path


def configured_mirror(environment: Mapping[str, str]) -> Path | None:
    value = environment.get(MIRROR_VARIABLE, "").strip()
    return Path(value).resolve() if value else None


def terraform_environment(base: Mapping[str, str], cli_config: Path) -> dict[str, str]:
    """The caller's environment with our CLI configuration and terraform made non-interactive."""
    return {
        **base,
        # Replaces whatever the machine points at (here a /root/.terraformrc that is missing).
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }


def emulator_environment(base: Mapping[str, str], endpoint_url: str) -> dict[str, str]:
    """`base` with every AWS request going to the emulator, signed with fake credentials."""
    kept = {
        name: value
        for name, value in base.items()
        if name not in REAL_AWS_VARIABLES and not name.startswith("AWS_ENDPOINT_URL_")
    }
    return {
        **kept,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIAL,
        "AWS_REGION": EMULATOR_REGION,
        "AWS_DEFAULT_REGION": EMULATOR_REGION,
        # No profile file may add an endpoint, a CA bundle or credentials of its own.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass(frozen=True)
class Terraform:
    executable: str
    environment: Mapping[str, str]

    # Commands that would otherwise stop to ask a question nobody is there to answer.
    _PROMPTING = frozenset({"init", "plan", "apply", "destroy", "import"})

    @classmethod
    def from_environment(cls, base: Mapping[str, str]) -> Terraform:
        executable = shutil.which("terraform", path=base.get("PATH"))
        if executable is None:
            raise UsageError("terraform is not on PATH (https://developer.hashicorp.com/terraform)")
        cli_config = write_cli_config(configured_mirror(base))
        return cls(executable, terraform_environment(base, cli_config))

    def on_emulator(self, endpoint_url: str) -> Terraform:
        """This terraform with every AWS call sent to the emulator at `endpoint_url`."""
        return dataclasses.replace(
            self, environment=emulator_environment(self.environment, endpoint_url)
        )

    def run(
        self, directory: Path, command: str, *arguments: str
    ) -> subprocess.CompletedProcess[str]:
        if command == "init":
            # Terraform's plugin cache is not safe for concurrent installs: two inits at once
            # can find the provider half-linked ("provider binary not found"). Inits take a
            # second or two; everything else still runs in parallel.
            with _init_lock:
                return self._run(directory, command, *arguments)
        return self._run(directory, command, *arguments)

    def _run(
        self, directory: Path, command: str, *arguments: str
    ) -> subprocess.CompletedProcess[str]:
        flags = ["-no-color", *(["-input=false"] if command in self._PROMPTING else [])]
        # A subcommand ("state list") takes its flags after both words.
        command_line = [self.executable, *command.split(), *flags, *arguments]
        with subprocess.Popen(
            command_line,
            cwd=directory,
            env=dict(self.environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            with _running_lock:
                _running.add(process)
            try:
                stdout, stderr = process.communicate()
            finally:
                with _running_lock:
                    _running.discard(process)
        return subprocess.CompletedProcess(command_line, process.returncode, stdout, stderr)


# Terraform processes in flight, so that an interrupted run can ask them to stop: a SIGTERM,
# or a SIGINT sent to this process alone, would otherwise leave them applying to a dead emulator.
_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()
_init_lock = threading.Lock()


def interrupt_running_terraform() -> None:
    """Send SIGINT to every terraform process in flight; terraform stops gracefully on it."""
    with _running_lock:
        for process in _running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)


def terraform_error(completed: subprocess.CompletedProcess[str]) -> str:
    """Terraform's error text, from its first `Error:` line (warnings before it are noise)."""
    lines = (completed.stderr.strip() or completed.stdout.strip()).splitlines()
    first_error = next((i for i, line in enumerate(lines) if line.startswith("Error:")), 0)
    shown = lines[first_error : first_error + ERROR_LINES_SHOWN]
    if len(lines) > first_error + ERROR_LINES_SHOWN:
        shown.append(f"... ({len(lines) - first_error - ERROR_LINES_SHOWN} more lines)")
    return "\n".join(shown) or f"exit code {completed.returncode}, no output"


# --- scheduling, timing and display (shared by validate and plan) -------------------------


class Progress:
    """One line per finished stack on stderr, safe to call from worker threads."""

    def __init__(self, stacks: Sequence[Stack], stream: TextIO | None = None) -> None:
        self._total = len(stacks)
        self._counter_width = len(f"[{self._total}/{self._total}]")
        self._name_width = max(len(stack.name) for stack in stacks)
        self._finished = 0
        # Looked up now, not at import: whoever redirected stderr since (a test) gets the lines.
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def note(self, message: str) -> None:
        with self._lock:
            print(message, file=self._stream, flush=True)

    def started(self, stack: Stack, action: str) -> None:
        self.note(f"{'':>{self._counter_width}} {stack.name}: {action}")

    def finished(self, result: StackResult) -> None:
        with self._lock:
            self._finished += 1
            counter = f"[{self._finished}/{self._total}]"
            print(
                f"{counter:>{self._counter_width}} {result.stack:<{self._name_width}}  "
                f"{result.outcome:<11} {result.seconds:6.1f}s",
                file=self._stream,
                flush=True,
            )


Task = Callable[[Stack], StackResult]


def timed(task: Task) -> Task:
    def run_and_time(stack: Stack) -> StackResult:
        started = time.monotonic()
        result = task(stack)
        return dataclasses.replace(result, seconds=time.monotonic() - started)

    return run_and_time


def run_in_dependency_order(
    stacks: Sequence[Stack],
    dependencies: Mapping[str, set[str]],
    task: Task,
    *,
    jobs: int,
    progress: Progress,
) -> list[StackResult]:
    """Run `task` on every stack, up to `jobs` at once, each after the stacks it depends on.

    A stack whose dependency did not succeed is skipped, not run: its plan would only repeat
    the upstream failure.
    """
    results: dict[str, StackResult] = {}
    waiting = {stack.name: stack for stack in stacks}
    running: dict[Future[StackResult], str] = {}

    def record(result: StackResult) -> None:
        results[result.stack] = result
        progress.finished(result)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            while True:
                for ready in _release(waiting, dependencies, results, record):
                    running[pool.submit(timed(task), ready)] = ready.name
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    record(future.result())
        except BaseException:
            # Ctrl-C, SIGTERM or a bug: start nothing new and let running terraform wind down.
            interrupt_running_terraform()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if waiting:
        raise UsageError(f"dependency cycle among stacks {', '.join(sorted(waiting))}")
    return [results[stack.name] for stack in stacks]


def _release(
    waiting: dict[str, Stack],
    dependencies: Mapping[str, set[str]],
    results: Mapping[str, StackResult],
    record: Callable[[StackResult], None],
) -> list[Stack]:
    """Take the stacks that can start out of `waiting`; record those that never will."""
    ready: list[Stack] = []
    settled = True
    while settled:
        settled = False
        for name in list(waiting):
            needs = dependencies.get(name, set())
            failed = sorted(n for n in needs if n in results and not results[n].outcome.succeeded)
            if failed:
                del waiting[name]
                record(
                    StackResult(
                        name, Outcome.SKIPPED, problem=f"{', '.join(failed)} did not succeed"
                    )
                )
                settled = True  # a skip can skip stacks further down the chain
            elif needs <= results.keys():
                ready.append(waiting.pop(name))
    return ready


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    cells = [list(headers), *([str(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        line = "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
        print(line.rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def print_problems(results: Iterable[StackResult]) -> None:
    for result in results:
        if not result.outcome.succeeded:
            print(f"\n{result.stack}: {result.outcome}")
            print("\n".join(f"  {line}" for line in result.problem.splitlines()))


# --- validate ------------------------------------------------------------------------------


def format_diagnostics(diagnostics: Sequence[Mapping[str, Any]]) -> str:
    errors_first = sorted(diagnostics, key=lambda d: d.get("severity") != "error")
    blocks = []
    for diagnostic in errors_first[:DIAGNOSTICS_SHOWN]:
        where = diagnostic.get("range") or {}
        location = f"{where.get('filename')}:{where.get('start', {}).get('line')}" if where else ""
        address = diagnostic.get("address", "")
        lines = [
            f"{diagnostic.get('severity', 'error')}: {diagnostic.get('summary', '')}",
            *(f"  {line}" for line in str(diagnostic.get("detail", "")).splitlines()),
            *(
                [f"  at {' '.join(filter(None, (address, location)))}"]
                if address or location
                else []
            ),
        ]
        blocks.append("\n".join(lines))
    if len(diagnostics) > DIAGNOSTICS_SHOWN:
        blocks.append(f"... and {len(diagnostics) - DIAGNOSTICS_SHOWN} more diagnostics")
    return "\n".join(blocks)


def validate_stack(terraform: Terraform, stack: Stack) -> StackResult:
    init = terraform.run(stack.directory, "init", "-backend=false")
    if init.returncode != 0:
        return StackResult(stack.name, Outcome.INIT_FAILED, problem=terraform_error(init))
    checked = terraform.run(stack.directory, "validate", "-json")
    try:
        report = json.loads(checked.stdout)
    except json.JSONDecodeError:
        return StackResult(stack.name, Outcome.INVALID, problem=terraform_error(checked))
    if not report.get("valid"):
        problem = format_diagnostics(report.get("diagnostics", []))
        return StackResult(stack.name, Outcome.INVALID, problem=problem)
    return StackResult(stack.name, Outcome.VALID, resources=stack.resource_count())


def validate(
    outdir: Path, names: Sequence[str], *, jobs: int, environment: Mapping[str, str]
) -> list[StackResult]:
    stacks = select_stacks(load_stacks(outdir), names)
    terraform = Terraform.from_environment(environment)
    progress = Progress(stacks)
    return run_in_dependency_order(
        stacks, {}, lambda stack: validate_stack(terraform, stack), jobs=jobs, progress=progress
    )


def print_validate_summary(results: Sequence[StackResult]) -> None:
    print_table(
        ("stack", "result", "resources", "seconds"),
        (
            (r.stack, r.outcome, "" if r.resources is None else r.resources, f"{r.seconds:.1f}")
            for r in results
        ),
    )
    print_problems(results)


# --- plan against the emulator -------------------------------------------------------------


def count_changes(plan: Mapping[str, Any]) -> Changes:
    """Resource changes as terraform's `Plan: N to add, N to change, N to destroy` counts them."""
    add = change = destroy = 0
    for resource in plan.get("resource_changes", []):
        actions = resource["change"]["actions"]
        add += "create" in actions
        change += actions == ["update"]
        destroy += "delete" in actions
    return Changes(add, change, destroy)


def plan_stack(
    terraform: Terraform, stack: Stack, *, apply: bool, progress: Progress
) -> StackResult:
    """Plan one stack against the emulator; apply the plan if `apply`."""

    progress.started(stack, "init")
    # -reconfigure: the backend points at this run's emulator, whatever a copy remembered.
    init = terraform.run(stack.directory, "init", "-reconfigure")
    if init.returncode != 0:
        return failed_step(stack, "init", init)
    progress.started(stack, "plan")
    planned = terraform.run(stack.directory, "plan", "-detailed-exitcode", f"-out={PLAN_FILE}")
    if planned.returncode not in (0, 2):  # 0: no changes, 2: changes
        return failed_step(stack, "plan", planned)
    shown = terraform.run(stack.directory, "show", "-json", PLAN_FILE)
    if shown.returncode != 0:
        return failed_step(stack, "show", shown)
    changes = count_changes(json.loads(shown.stdout))
    if not apply:
        return StackResult(stack.name, Outcome.PLANNED, changes=changes)
    progress.started(stack, f"apply (+{changes.add} ~{changes.change} -{changes.destroy})")
    note, applied = apply_emulated(terraform, stack)
    if applied is not None and applied.returncode != 0:
        return failed_step(stack, "apply", applied)
    return StackResult(stack.name, Outcome.APPLIED, changes=changes, note=note)


def failed_step(
    stack: Stack, step: str, completed: subprocess.CompletedProcess[str]
) -> StackResult:
    return StackResult(
        stack.name,
        Outcome.FAILED,
        problem=f"terraform {step}:\n{terraform_error(completed)}",
        failed_step=step,
    )


def not_emulated(stack: Stack) -> list[str]:
    """Resources the emulator cannot create: of a type it lacks, or referring to one that is."""
    return sorted(not_emulated_reasons(stack))


def not_emulated_reasons(stack: Stack) -> dict[str, str]:
    """Each resource the emulator cannot create, with why: its own gap, or the resource it
    refers to (transitively) that the emulator lacks."""
    resources = stack.resources()
    reasons = {
        address: reason
        for address, body in resources.items()
        if (reason := not_emulated_reason(address.split(".")[0], json.loads(body))) is not None
    }
    while True:
        dependents = {
            address: f"refers to {referred}"
            for address, body in resources.items()
            if address not in reasons and (referred := _first_reference(body, reasons))
        }
        if not dependents:
            return dict(sorted(reasons.items()))
        reasons |= dependents


def _first_reference(body: str, addresses: Iterable[str]) -> str | None:
    # `${type.name.attribute}` in expressions, `"type.name"` in depends_on.
    return next((a for a in sorted(addresses) if f"{a}." in body or f'"{a}"' in body), None)


def apply_emulated(
    terraform: Terraform, stack: Stack
) -> tuple[str, subprocess.CompletedProcess[str] | None]:
    """Apply what the emulator can create: the saved plan, or a plan targeting all but the
    resources it cannot. Returns a note naming what was left out, and terraform's result (None
    when the emulator can create nothing of the stack, so nothing was run)."""
    left_out = not_emulated_reasons(stack)
    if not left_out:
        return "", terraform.run(stack.directory, "apply", PLAN_FILE)
    note = "not applied on the emulator: " + ", ".join(
        f"{address} ({reason})" for address, reason in left_out.items()
    )
    targets = emulated_targets(stack)
    if not targets:
        # Without any -target terraform would plan everything, left-out resources included.
        return note, None
    planned = terraform.run(stack.directory, "plan", f"-out={EMULATED_PLAN_FILE}", *targets)
    if planned.returncode != 0:
        return "", planned
    return note, terraform.run(stack.directory, "apply", EMULATED_PLAN_FILE)


def emulated_targets(stack: Stack) -> list[str]:
    """`-target` arguments for every resource the emulator can create, or none at all when it
    can create them all (no -target: the whole stack)."""
    left_out = not_emulated_reasons(stack)
    if not left_out:
        return []
    return [f"-target={a}" for a in sorted(stack.resources().keys() - set(left_out))]


def require_local_target(outdir: Path, stacks: Iterable[Stack]) -> None:
    for stack in stacks:
        if not stack.targets_emulator():
            raise UsageError(
                f"{outdir} was synthesized for AWS, not for the emulator ({stack.name}'s provider "
                "has no s3_use_path_style = true); synthesize the local target first: "
                f"PHI_TARGET=local python main.py --out {outdir}"
            )


def copy_outdir(outdir: Path, destination: Path) -> Path:
    """A clean copy: no provider links, state, lock or plan files from earlier runs."""
    leftovers = shutil.ignore_patterns(
        ".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.backup", "*.tfplan"
    )
    return Path(shutil.copytree(outdir, destination, ignore=leftovers))


def emulator_copy(outdir: Path, destination: Path) -> dict[str, Stack]:
    """The stacks of a clean copy of `outdir`, each with the emulator's retry overrides."""
    stacks = load_stacks(copy_outdir(outdir, destination))
    for stack in stacks.values():
        write_emulator_overrides(stack.directory, stack.configuration())
    return stacks


def emulator_overrides(configuration: Mapping[str, Any]) -> dict[str, Any]:
    """Terraform override settings that make a stack fail fast when the emulator is gone.

    The AWS provider retries an API call 25 times by default (network errors 9 times, about a
    minute) and the S3 backend 5 times, for every call: against a stopped emulator an apply
    takes minutes to give up. The emulator answers at once or not at all, so its runs retry
    EMULATOR_MAX_RETRIES times. Override files (`*_override.tf.json`) merge into each provider
    block (matched by alias) and replace the backend block, which is therefore repeated in
    full; AWS_MAX_ATTEMPTS would not do: the provider sets its own retry count.
    """
    overrides: dict[str, Any] = {}
    providers = configuration.get("provider", {}).get("aws", [])
    if providers:
        overrides["provider"] = {
            "aws": [
                {
                    **({"alias": p["alias"]} if "alias" in p else {}),
                    "max_retries": EMULATOR_MAX_RETRIES,
                }
                for p in providers
            ]
        }
    backend = configuration.get("terraform", {}).get("backend", {})
    if "s3" in backend:
        overrides["terraform"] = {
            "backend": {"s3": {**backend["s3"], "max_retries": EMULATOR_MAX_RETRIES}}
        }
    return overrides


@dataclass(frozen=True)
class EmulatorWorkspace:
    emulator: Emulator
    terraform: Terraform  # every AWS call goes to the emulator
    workdir: Path  # holds the copy of the synthesized output the stacks run in
    stacks: list[Stack]  # the copies, in the order asked for


@contextmanager
def emulator_workspace(
    outdir: Path,
    stacks: Sequence[Stack],
    terraform: Terraform,
    *,
    log: Path,
    progress: Progress,
    prefix: str,
) -> Iterator[EmulatorWorkspace]:
    """A moto server on loopback and a clean copy of `outdir` (with the emulator's overrides)
    to run `stacks` in; both are gone when the block ends."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as workdir,
        running_emulator(log) as emulator,
    ):
        progress.note(f"emulator: {emulator.endpoint_url} (log: {log})")
        copy = emulator_copy(outdir, Path(workdir) / "out")
        yield EmulatorWorkspace(
            emulator,
            terraform.on_emulator(emulator.endpoint_url),
            Path(workdir),
            [copy[stack.name] for stack in stacks],
        )


def write_emulator_overrides(directory: Path, configuration: Mapping[str, Any]) -> None:
    overrides = emulator_overrides(configuration)
    if overrides:
        (directory / EMULATOR_OVERRIDE_FILE).write_text(json.dumps(overrides, indent=2) + "\n")


# --- the state bucket's own state ----------------------------------------------------------

# Terraform merges override files in name order and the last backend block wins: this one
# sorts after EMULATOR_OVERRIDE_FILE.
FIRST_APPLY_OVERRIDE_FILE = "zz_first_apply_local_backend_override.tf.json"
FIRST_APPLY_STATE_FILE = "terraform.bootstrap.tfstate"
MISSING_BUCKET = re.compile(r'S3 bucket "(?P<bucket>[^"]+)" does not exist')


def s3_backend(stack: Stack) -> dict[str, Any] | None:
    backend = stack.configuration().get("terraform", {}).get("backend", {})
    return dict(backend["s3"]) if "s3" in backend else None


def missing_state_bucket(completed: subprocess.CompletedProcess[str]) -> str | None:
    """The bucket named by a failed init whose S3 backend bucket does not exist yet."""
    found = MISSING_BUCKET.search(completed.stderr) if completed.returncode != 0 else None
    return found.group("bucket") if found else None


def deploy_bootstrap(
    terraform: Terraform,
    stack: Stack,
    deploy: Callable[[Stack], StackResult],
    *,
    progress: Progress,
) -> StackResult:
    """Deploy the stack whose S3 backend is the bucket it creates (bootstrap).

    `deploy` inits, plans and applies a stack as the caller does for every stack. While the
    bucket does not exist, it runs with a local backend (an override file), and the state it
    wrote is then pushed into the bucket, read back, compared and only then deleted, so no
    state is left on the machine to be lost with the next synthesis. A local state file left by
    an earlier run that stopped before the push is pushed first. Once the bucket exists,
    `deploy` runs as for any stack. `terraform state push` refuses a state of another lineage
    or an older serial than the bucket holds, so nothing there is overwritten.
    """
    backend = s3_backend(stack)
    if backend is None:
        return deploy(stack)
    local_state = stack.directory / FIRST_APPLY_STATE_FILE
    progress.started(stack, "init (state in the bucket it creates)")
    init = terraform.run(stack.directory, "init", "-reconfigure")
    if init.returncode == 0:
        if local_state.exists():
            problem = push_local_state(terraform, stack, local_state)
            if problem:
                return push_failed(stack, problem)
        return deploy(stack)
    if missing_state_bucket(init) != backend.get("bucket"):
        return failed_step(stack, "init", init)
    return _first_apply(terraform, stack, deploy, progress=progress, backend=backend)


def _first_apply(
    terraform: Terraform,
    stack: Stack,
    deploy: Callable[[Stack], StackResult],
    *,
    progress: Progress,
    backend: Mapping[str, Any],
) -> StackResult:
    local_state = stack.directory / FIRST_APPLY_STATE_FILE
    with local_backend(stack.directory):
        progress.started(stack, "first apply, local state until the bucket exists")
        deployed = deploy(stack)
    if not deployed.outcome.succeeded:
        kept = f"\nstate so far: {local_state} (pushed into the bucket by the next run)"
        return dataclasses.replace(deployed, problem=deployed.problem + kept)
    progress.started(stack, "push the state into its bucket")
    init = terraform.run(stack.directory, "init", "-reconfigure")
    if init.returncode != 0:
        return failed_step(stack, "init", init)
    problem = push_local_state(terraform, stack, local_state)
    if problem:
        return push_failed(stack, problem)
    moved = f"first apply: state moved into s3://{backend['bucket']}/{backend.get('key', '')}"
    note = f"{deployed.note}; {moved}" if deployed.note else moved
    return dataclasses.replace(deployed, note=note)


@contextmanager
def local_backend(directory: Path) -> Iterator[None]:
    """Within the block, the stack in `directory` keeps its state in FIRST_APPLY_STATE_FILE
    (an override file replaces its S3 backend); the override is removed however it ends."""
    override = directory / FIRST_APPLY_OVERRIDE_FILE
    override.write_text(
        json.dumps({"terraform": {"backend": {"local": {"path": FIRST_APPLY_STATE_FILE}}}}) + "\n"
    )
    try:
        yield
    finally:
        override.unlink()


def push_failed(stack: Stack, problem: str) -> StackResult:
    return StackResult(stack.name, Outcome.FAILED, problem=problem, failed_step="state push")


def push_local_state(terraform: Terraform, stack: Stack, local_state: Path) -> str:
    """Push `local_state` to the stack's (initialized) S3 backend, read it back, and delete the
    local file once the bucket holds the same state. Returns the problem, or "" on success."""
    keep = f"the state stays in {local_state}"
    pushed = terraform.run(stack.directory, "state push", local_state.name)
    if pushed.returncode != 0:
        return f"terraform state push ({keep}):\n{terraform_error(pushed)}"
    pulled = terraform.run(stack.directory, "state pull")
    if pulled.returncode != 0:
        return f"terraform state pull ({keep}):\n{terraform_error(pulled)}"
    local = json.loads(local_state.read_text())
    remote = json.loads(pulled.stdout)
    # The push keeps the lineage of the (empty) state the S3 backend started: what must match
    # is what the state records.
    recorded = ("resources", "outputs")
    if any(local.get(field) != remote.get(field) for field in recorded):
        return f"the bucket's state differs from the local one after the push; {keep}"
    local_state.unlink()
    local_state.with_name(local_state.name + ".backup").unlink(missing_ok=True)
    return ""


def plan(
    outdir: Path, names: Sequence[str], *, jobs: int, environment: Mapping[str, str]
) -> list[StackResult]:
    synthesized = load_stacks(outdir)
    if BOOTSTRAP_STACK not in synthesized:
        raise UsageError(f"{outdir} has no {BOOTSTRAP_STACK} stack, which creates the state bucket")
    selected = with_dependencies(synthesized, select_stacks(synthesized, names))
    require_local_target(outdir, selected)
    terraform = Terraform.from_environment(environment)
    # Stacks read through remote state need real state, so they are applied, not only planned.
    upstream = {dependency for stack in selected for dependency in stack.dependencies}
    progress = Progress(selected)
    with emulator_workspace(
        outdir, selected, terraform, log=EMULATOR_LOG, progress=progress, prefix="phi-ml-plan-"
    ) as workspace:
        stacks, on_emulator = workspace.stacks, workspace.terraform

        def plan_and_apply(stack: Stack) -> StackResult:
            return plan_stack(on_emulator, stack, apply=True, progress=progress)

        def run(stack: Stack) -> StackResult:
            if stack.name == BOOTSTRAP_STACK:
                return deploy_bootstrap(on_emulator, stack, plan_and_apply, progress=progress)
            apply = stack.name in upstream
            return plan_stack(on_emulator, stack, apply=apply, progress=progress)

        return run_in_dependency_order(
            stacks, emulator_dependencies(stacks), run, jobs=jobs, progress=progress
        )


def print_plan_summary(results: Sequence[StackResult]) -> None:
    def counts(result: StackResult) -> tuple[object, ...]:
        changes = result.changes
        return ("", "", "") if changes is None else (changes.add, changes.change, changes.destroy)

    print_table(
        ("stack", "action", "add", "change", "destroy", "seconds"),
        ((r.stack, r.outcome, *counts(r), f"{r.seconds:.1f}") for r in results),
    )
    for result in results:
        if result.note:
            print(f"\n{result.stack}: {result.note}")
    print_problems(results)
    if any(not r.outcome.succeeded for r in results):
        print(f"\nemulator log: {EMULATOR_LOG}")


# --- command line --------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.terraform", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary, default_out in (
        ("validate", "terraform init -backend=false + validate every stack", DEFAULT_OUTDIR),
        ("plan", "apply/plan the local target against a moto server", Path("cdktf.out.local")),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("stacks", nargs="*", metavar="STACK", help="default: every stack")
        command.add_argument(
            "--out",
            type=Path,
            default=default_out,
            help=f"synthesized output (default {default_out})",
        )
        add_jobs_option(command)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    command, summarize = {
        "validate": (validate, print_validate_summary),
        "plan": (plan, print_plan_summary),
    }[arguments.command]

    def run_and_summarize() -> int:
        results = command(
            arguments.out, arguments.stacks, jobs=arguments.jobs, environment=os.environ
        )
        print()
        summarize(results)
        return 0 if all(result.outcome.succeeded for result in results) else 1

    return run_command(run_and_summarize)


if __name__ == "__main__":
    sys.exit(main())
