"""The GitHub Actions workflows: valid against GitHub's workflow schema (offline, through the
schemas vendored in check-jsonschema), and holding the properties that make them safe to run
against regulated accounts: actions pinned by commit, least privilege per job, OIDC only where
credentials are needed, every command they run present in this repository, promotion through
protected environments with the synthesized output's digest compared before each apply.

Every property is a function returning the problems it finds; each is shown to find nothing
in the real workflows and to catch a broken copy.
"""

from __future__ import annotations

import copy
import itertools
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
PULL_REQUEST = WORKFLOWS / "pull-request.yml"
PROMOTE = WORKFLOWS / "promote.yml"
SETUP_ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

PINNED_ACTION = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
MAKE_COMMAND = re.compile(r"(?:^|[\s;&|(])make\s+((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)([a-z][\w-]*)")
PYTHON_MODULE = re.compile(r"python3?\s+-m\s+([A-Za-z_][\w.]*)")
NEEDS_OUTPUT = re.compile(r"needs\.([\w-]+)\.outputs\.([\w-]+)")
STEP_OUTPUT = re.compile(r"steps\.([\w-]+)\.outputs\.([\w-]+)")
OIDC_ACTION = "aws-actions/configure-aws-credentials"
SARIF_ACTION = "github/codeql-action/upload-sarif"
# GitHub environment -> the ENV that `make apply` and `make verify` take there.
PROTECTED_ENVIRONMENTS = {
    "staging": "staging",
    "production": "prod",
    "eu-research": "eu-research",
    "organization": "org",
}
PROMOTION_CHAIN = ("dev", "staging", "prod")

Workflow = dict[str, Any]
Check = Callable[[Workflow], list[str]]


# --- reading workflows ---------------------------------------------------------------------


def load(path: Path) -> Workflow:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return dict(workflow)


def jobs(workflow: Workflow) -> dict[str, dict[str, Any]]:
    return dict(workflow.get("jobs", {}))


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def uses(step: dict[str, Any]) -> str:
    return str(step.get("uses", ""))


def run_text(step: dict[str, Any]) -> str:
    return str(step.get("run", ""))


def step_index(job: dict[str, Any], predicate: Callable[[dict[str, Any]], bool]) -> int | None:
    return next((i for i, step in enumerate(steps(job)) if predicate(step)), None)


def runs(fragment: str) -> Callable[[dict[str, Any]], bool]:
    return lambda step: fragment in run_text(step)


def uses_action(action: str) -> Callable[[dict[str, Any]], bool]:
    return lambda step: uses(step).startswith(f"{action}@")


def needs_of(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def all_run_texts(workflow: Workflow) -> Iterator[str]:
    for job in jobs(workflow).values():
        for step in steps(job):
            yield run_text(step)


def makefile_targets(makefile: Path = REPO / "Makefile") -> set[str]:
    targets: set[str] = set()
    for line in makefile.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_. -]*?)\s*::?(?!=)", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


def module_exists(module: str) -> bool:
    base = REPO.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()


# --- properties ----------------------------------------------------------------------------


def unpinned_actions(workflow: Workflow) -> list[str]:
    """Every action from another repository is pinned to a full commit SHA (a tag can move)."""
    return [
        f"{name}: {uses(step)} is not pinned to a commit SHA"
        for name, job in jobs(workflow).items()
        for step in steps(job)
        if uses(step) and not uses(step).startswith("./") and not PINNED_ACTION.match(uses(step))
    ]


def permission_problems(workflow: Workflow) -> list[str]:
    """Nothing granted at the workflow level; each job asks only for what its steps use."""
    problems = []
    if workflow.get("permissions") != {}:
        problems.append("workflow: permissions must be {} (each job declares its own)")
    for name, job in jobs(workflow).items():
        granted = job.get("permissions")
        if not isinstance(granted, dict):
            problems.append(f"{name}: no explicit permissions")
            continue
        oidc = step_index(job, uses_action(OIDC_ACTION)) is not None
        sarif = step_index(job, uses_action(SARIF_ACTION)) is not None
        comments = step_index(job, runs("tools.ci_comment")) is not None
        allowed = {"contents": "read"}
        if oidc:
            allowed["id-token"] = "write"
        if sarif:
            allowed |= {"security-events": "write", "actions": "read"}
        if comments:
            allowed["pull-requests"] = "write"
        for scope, level in granted.items():
            if allowed.get(scope) != level:
                problems.append(f"{name}: {scope}: {level} is more than its steps need")
        if oidc and granted.get("id-token") != "write":
            problems.append(f"{name}: uses OIDC credentials without id-token: write")
        if sarif and granted.get("security-events") != "write":
            problems.append(f"{name}: uploads SARIF without security-events: write")
    return problems


def missing_limits(workflow: Workflow) -> list[str]:
    """A workflow-level concurrency group, and a timeout on every job."""
    problems = [] if "group" in workflow.get("concurrency", {}) else ["workflow: no concurrency"]
    problems += [
        f"{name}: no timeout-minutes"
        for name, job in jobs(workflow).items()
        if not isinstance(job.get("timeout-minutes"), int)
    ]
    return problems


def missing_commands(workflow: Workflow, targets: set[str] | None = None) -> list[str]:
    """Every `make X` is a Makefile target; every `python -m X` a module of this repository."""
    targets = makefile_targets() if targets is None else targets
    problems = []
    for text in all_run_texts(workflow):
        for _, target in MAKE_COMMAND.findall(text):
            if target not in targets:
                problems.append(f"make {target}: no such Makefile target")
        for module in PYTHON_MODULE.findall(text):
            if not module_exists(module):
                problems.append(f"python -m {module}: no such module in the repository")
    return problems


def dangling_references(workflow: Workflow) -> list[str]:
    """needs.J.outputs.O names a job J this job needs and an output J declares;
    steps.S.outputs names a step S with that id earlier in the same job."""
    problems = []
    all_jobs = jobs(workflow)
    for name, job in all_jobs.items():
        text = yaml.safe_dump(job)
        for needed, output in NEEDS_OUTPUT.findall(text):
            if needed not in needs_of(job):
                problems.append(f"{name}: refers to needs.{needed} without needing it")
            elif output not in all_jobs.get(needed, {}).get("outputs", {}):
                problems.append(f"{name}: needs.{needed}.outputs.{output} is not declared")
        step_ids = [step.get("id") for step in steps(job)]
        outputs_text = yaml.safe_dump(job.get("outputs", {}))
        for index, step in enumerate(steps(job)):
            for step_id, _ in STEP_OUTPUT.findall(yaml.safe_dump(step)):
                if step_id not in step_ids[:index]:
                    problems.append(f"{name}: step {index} reads steps.{step_id} before it runs")
        for step_id, _ in STEP_OUTPUT.findall(outputs_text):
            if step_id not in step_ids:
                problems.append(f"{name}: outputs read steps.{step_id}, which does not exist")
    return problems


def pull_request_problems(workflow: Workflow) -> list[str]:
    """The pull-request pipeline: tests, the gate's SARIF to code scanning after `make scan`,
    plans of the changed stacks under OIDC, one updated comment, the evidence report kept."""
    problems = []
    if "pull_request" not in workflow.get("on", {}):
        problems.append("on: not triggered by pull_request")
    all_jobs = jobs(workflow).values()

    def job_with(predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        return next((job for job in all_jobs if step_index(job, predicate) is not None), None)

    if job_with(runs("make test")) is None:
        problems.append("no job runs make test")
    gate = job_with(runs("make scan"))
    if gate is None:
        problems.append("no job runs the gate (make scan)")
    else:
        scan, sarif = (
            step_index(gate, runs("make scan")),
            step_index(gate, uses_action(SARIF_ACTION)),
        )
        if sarif is None or scan is None or sarif < scan:
            problems.append("the gate's SARIF is not uploaded after make scan")
        elif "results.sarif" not in str(steps(gate)[sarif].get("with", {}).get("sarif_file")):
            problems.append("the uploaded SARIF is not the gate's results.sarif")
        report = step_index(gate, runs("make report"))
        kept = step_index(
            gate,
            lambda s: (
                uses(s).startswith("actions/upload-artifact@")
                and str(s.get("with", {}).get("path", "")).startswith("reports")
            ),
        )
        if report is None or kept is None or kept < report:
            problems.append("the evidence report (make report -> reports/) is not kept")
    if job_with(runs("tools.synth_digest changed")) is None:
        problems.append("no job decides which stacks changed (synth_digest changed)")
    plan = job_with(runs("make plan-aws"))
    if plan is None or step_index(plan, uses_action(OIDC_ACTION)) is None:
        problems.append("no job plans the changed stacks with OIDC credentials")
    elif "vars" not in str(steps(plan)[step_index(plan, uses_action(OIDC_ACTION)) or 0]):
        problems.append("the plan role does not come from a repository variable")
    if job_with(runs("tools.ci_comment")) is None:
        problems.append("no job posts the plan comment")
    return problems


def apply_jobs(workflow: Workflow) -> dict[str, dict[str, Any]]:
    return {
        n: j for n, j in jobs(workflow).items() if step_index(j, runs("make apply")) is not None
    }


def applied_environment(job: dict[str, Any]) -> str:
    index = step_index(job, runs("make apply"))
    match = re.search(r"ENV=([\w-]+)", run_text(steps(job)[index or 0]))
    return match.group(1) if match else ""


def promotion_problems(workflow: Workflow) -> list[str]:
    """Every apply: in a GitHub environment, after the gate and the digest comparison, with
    OIDC credentials, followed by `make verify` of the same environment. Staging and prod
    compare against the digest recorded where the output passed the environment below."""
    problems = []
    if "main" not in workflow.get("on", {}).get("push", {}).get("branches", []):
        problems.append("on: not triggered by a push to main")
    appliers = apply_jobs(workflow)
    by_environment = {applied_environment(job): name for name, job in appliers.items()}
    for name, job in appliers.items():
        env = applied_environment(job)
        environment = job.get("environment")
        environment_name = environment.get("name") if isinstance(environment, dict) else environment
        if not environment_name:
            problems.append(f"{name}: applies {env} outside a GitHub environment")
        elif environment_name in PROTECTED_ENVIRONMENTS and (
            PROTECTED_ENVIRONMENTS[environment_name] != env
        ):
            problems.append(f"{name}: environment {environment_name} applies ENV={env}")
        # make scan synthesizes: the digest is compared after it, on the very bytes applied.
        order = [
            step_index(job, runs("make scan")),
            step_index(job, runs("tools.synth_digest verify")),
            step_index(job, uses_action(OIDC_ACTION)),
            step_index(job, runs("make apply")),
            step_index(job, runs(f"make verify ENV={env}")),
        ]
        if None in order or order != sorted(order):  # type: ignore[type-var]
            problems.append(
                f"{name}: steps out of order or missing (make scan, digest verify, credentials,"
                f" make apply, make verify ENV={env}): {order}"
            )
    for env in ("staging", "prod"):
        if env not in by_environment:
            problems.append(f"no job applies {env}")
    protected = {
        job.get("environment")
        for job in appliers.values()
        if isinstance(job.get("environment"), str)
    }
    for environment_name in ("staging", "production"):
        if environment_name not in protected:
            problems.append(f"no apply job runs in the {environment_name} environment")
    return problems + digest_chain_problems(appliers, by_environment)


def digest_chain_problems(
    appliers: dict[str, dict[str, Any]], by_environment: dict[str, str]
) -> list[str]:
    """Each upper environment compares with the digest that the one below recorded after its
    `make verify` passed."""
    problems = []
    for lower, upper in itertools.pairwise(PROMOTION_CHAIN):
        lower_job, upper_job = by_environment.get(lower), by_environment.get(upper)
        if lower_job is None or upper_job is None:
            continue
        verify = step_index(appliers[upper_job], runs("tools.synth_digest verify"))
        expected = yaml.safe_dump(steps(appliers[upper_job])[verify or 0])
        if f"needs.{lower_job}.outputs.digest" not in expected:
            problems.append(f"{upper_job}: does not compare with the digest that passed {lower}")
        output = str(appliers[lower_job].get("outputs", {}).get("digest", ""))
        recorded = STEP_OUTPUT.search(output)
        lower_steps = steps(appliers[lower_job])
        record = next(
            (i for i, s in enumerate(lower_steps) if recorded and s.get("id") == recorded.group(1)),
            None,
        )
        verified = step_index(appliers[lower_job], runs(f"make verify ENV={lower}"))
        if (
            record is None
            or "tools.synth_digest record" not in run_text(lower_steps[record])
            or verified is None
            or record < verified
        ):
            problems.append(f"{lower_job}: its digest output is not recorded after make verify")
    return problems


# --- schema validation (offline) -----------------------------------------------------------


def check_jsonschema(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    if not CHECK_JSONSCHEMA.is_file():
        pytest.fail(
            f"{CHECK_JSONSCHEMA} is missing: check-jsonschema is a dev dependency "
            "(pyproject.toml); run `make setup`"
        )
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("path", [PULL_REQUEST, PROMOTE], ids=lambda p: p.name)
def test_workflow_is_valid_against_the_github_workflow_schema(path: Path) -> None:
    for schema in ("vendor.github-workflows", "custom.github-workflows-require-timeout"):
        result = check_jsonschema(schema, path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_setup_action_is_valid_against_the_github_action_schema() -> None:
    result = check_jsonschema("vendor.github-actions", SETUP_ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


BREAKAGES: dict[str, Callable[[Workflow], None]] = {
    "job without runs-on": lambda w: jobs(w)["gate"].pop("runs-on"),
    "unknown permission level": lambda w: jobs(w)["gate"]["permissions"].update(contents="admin"),
    "timeout that is not a number": lambda w: jobs(w)["gate"].update({"timeout-minutes": "soon"}),
    "step with both run and uses": lambda w: steps(jobs(w)["gate"])[0].update(run="true"),
    "unknown trigger": lambda w: w.update(on={"pull_requests": {}}),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_workflow_fails_schema_validation(tmp_path: Path, breakage: str) -> None:
    workflow = load(PROMOTE)
    BREAKAGES[breakage](workflow)
    broken = tmp_path / "promote.yml"
    broken.write_text(yaml.safe_dump(workflow, sort_keys=False))
    result = check_jsonschema("vendor.github-workflows", broken)
    assert result.returncode == 1, f"{breakage} passed validation:\n{result.stdout}"
    assert str(broken) in result.stdout + result.stderr


def test_a_job_without_timeout_fails_the_timeout_schema(tmp_path: Path) -> None:
    workflow = load(PULL_REQUEST)
    jobs(workflow)["test"].pop("timeout-minutes")
    broken = tmp_path / "pull-request.yml"
    broken.write_text(yaml.safe_dump(workflow, sort_keys=False))
    result = check_jsonschema("custom.github-workflows-require-timeout", broken)
    assert result.returncode == 1, result.stdout


# --- properties, each with its failing twin ------------------------------------------------

COMMON_CHECKS: dict[str, Check] = {
    "actions pinned": unpinned_actions,
    "least privilege": permission_problems,
    "limits": missing_limits,
    "commands exist": missing_commands,
    "references resolve": dangling_references,
}


@pytest.mark.parametrize("check", sorted(COMMON_CHECKS))
@pytest.mark.parametrize("path", [PULL_REQUEST, PROMOTE], ids=lambda p: p.name)
def test_workflow_property_holds(path: Path, check: str) -> None:
    assert COMMON_CHECKS[check](load(path)) == []


def test_setup_action_pins_its_actions_and_runs_existing_targets() -> None:
    action = yaml.safe_load(SETUP_ACTION.read_text())
    as_workflow = {"jobs": {"setup": {"steps": action["runs"]["steps"]}}}
    assert unpinned_actions(as_workflow) == []
    assert missing_commands(as_workflow) == []


def test_pull_request_pipeline_is_complete() -> None:
    assert pull_request_problems(load(PULL_REQUEST)) == []


def test_promotion_pipeline_is_complete() -> None:
    assert promotion_problems(load(PROMOTE)) == []


def test_only_jobs_with_aws_credentials_get_an_oidc_token() -> None:
    for path in (PULL_REQUEST, PROMOTE):
        for name, job in jobs(load(path)).items():
            oidc = step_index(job, uses_action(OIDC_ACTION)) is not None
            assert (job["permissions"].get("id-token") == "write") == oidc, f"{path.name}: {name}"


def test_staging_and_production_are_protected_environments() -> None:
    appliers = apply_jobs(load(PROMOTE))
    environments = {applied_environment(job): job.get("environment") for job in appliers.values()}
    assert environments["staging"] == "staging"
    assert environments["prod"] == "production"
    assert environments["dev"] == "dev"


def mutated(path: Path, change: Callable[[Workflow], object]) -> Workflow:
    workflow = copy.deepcopy(load(path))
    change(workflow)
    return workflow


def _swap_apply_before_digest(workflow: Workflow) -> None:
    job = jobs(workflow)["production"]
    verify, apply = (
        step_index(job, runs("synth_digest verify")),
        step_index(job, runs("make apply")),
    )
    assert verify is not None and apply is not None
    job["steps"][verify], job["steps"][apply] = job["steps"][apply], job["steps"][verify]


def _compare_prod_with_the_gate(workflow: Workflow) -> None:
    job = jobs(workflow)["production"]
    step = steps(job)[step_index(job, runs("synth_digest verify")) or 0]
    step["env"]["EXPECTED_DIGEST"] = "${{ needs.gate.outputs.digest }}"
    job["needs"] = ["staging", "gate"]


def _record_dev_digest_before_verify(workflow: Workflow) -> None:
    job = jobs(workflow)["dev"]
    record = step_index(job, lambda s: s.get("id") == "passed")
    assert record is not None
    job["steps"].insert(0, job["steps"].pop(record))


FAILING_TWINS: dict[str, tuple[Path, Callable[[Workflow], object], Check]] = {
    "tag instead of SHA": (
        PULL_REQUEST,
        lambda w: steps(jobs(w)["test"])[0].update(uses="actions/checkout@v4"),
        unpinned_actions,
    ),
    "id-token on a job without AWS": (
        PULL_REQUEST,
        lambda w: jobs(w)["gate"]["permissions"].update({"id-token": "write"}),
        permission_problems,
    ),
    "contents: write": (
        PROMOTE,
        lambda w: jobs(w)["dev"]["permissions"].update(contents="write"),
        permission_problems,
    ),
    "OIDC without id-token": (
        PROMOTE,
        lambda w: jobs(w)["production"]["permissions"].pop("id-token"),
        permission_problems,
    ),
    "permissions at the workflow level": (
        PULL_REQUEST,
        lambda w: w.update(permissions="write-all"),
        permission_problems,
    ),
    "job without permissions": (
        PROMOTE,
        lambda w: jobs(w)["gate"].pop("permissions"),
        permission_problems,
    ),
    "no timeout": (PROMOTE, lambda w: jobs(w)["staging"].pop("timeout-minutes"), missing_limits),
    "no concurrency": (PULL_REQUEST, lambda w: w.pop("concurrency"), missing_limits),
    "make target that does not exist": (
        PROMOTE,
        lambda w: jobs(w)["dev"]["steps"].append({"run": "make deploy-everything ENV=dev"}),
        missing_commands,
    ),
    "python module that does not exist": (
        PULL_REQUEST,
        lambda w: jobs(w)["changes"]["steps"].append({"run": ".venv/bin/python -m tools.nothing"}),
        missing_commands,
    ),
    "output of a job not needed": (
        PROMOTE,
        lambda w: jobs(w)["production"].update(needs="gate"),
        dangling_references,
    ),
    "output of a step that does not exist": (
        PROMOTE,
        lambda w: jobs(w)["dev"]["outputs"].update(digest="${{ steps.nothing.outputs.digest }}"),
        dangling_references,
    ),
    "prod outside a GitHub environment": (
        PROMOTE,
        lambda w: jobs(w)["production"].pop("environment"),
        promotion_problems,
    ),
    "staging environment applying prod": (
        PROMOTE,
        lambda w: jobs(w)["staging"].update(environment="production"),
        promotion_problems,
    ),
    "apply before the digest comparison": (PROMOTE, _swap_apply_before_digest, promotion_problems),
    "prod compared with the gate, not staging": (
        PROMOTE,
        _compare_prod_with_the_gate,
        promotion_problems,
    ),
    "dev digest recorded before verify": (
        PROMOTE,
        _record_dev_digest_before_verify,
        promotion_problems,
    ),
    "no verify after apply": (
        PROMOTE,
        lambda w: jobs(w)["staging"]["steps"].pop(
            step_index(jobs(w)["staging"], runs("make verify")) or 0
        ),
        promotion_problems,
    ),
    "no SARIF upload": (
        PULL_REQUEST,
        lambda w: jobs(w)["gate"]["steps"].pop(
            step_index(jobs(w)["gate"], uses_action(SARIF_ACTION)) or 0
        ),
        pull_request_problems,
    ),
    "plans without OIDC": (
        PULL_REQUEST,
        lambda w: jobs(w)["plan"]["steps"].pop(
            step_index(jobs(w)["plan"], uses_action(OIDC_ACTION)) or 0
        ),
        pull_request_problems,
    ),
    "no plan comment": (
        PULL_REQUEST,
        lambda w: w["jobs"].pop("comment"),
        pull_request_problems,
    ),
}


@pytest.mark.parametrize("twin", sorted(FAILING_TWINS))
def test_property_check_catches_a_broken_copy(twin: str) -> None:
    path, change, check = FAILING_TWINS[twin]
    new_problems = set(check(mutated(path, change))) - set(check(load(path)))
    assert new_problems, f"{check.__name__} missed: {twin}"


def test_makefile_target_parser_reads_targets_not_variables(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "VENV := .venv\nOUT ?= x\n.PHONY: a b\n\na b: dep ## two\n\techo c: d\nsetup: $(STAMP)\n"
    )
    assert makefile_targets(makefile) == {"a", "b", "setup"}
    assert missing_commands({"jobs": {"j": {"steps": [{"run": "make a ENV=x"}]}}}, {"a"}) == []
    assert missing_commands({"jobs": {"j": {"steps": [{"run": "make VAR=1 z"}]}}}, {"a"}) != []
