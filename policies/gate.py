"""The policy gate: checkov over every synthesized stack, our exemptions applied, one verdict.

    python -m policies.gate [--out SYNTH_DIR] [--results DIR] [--exemptions FILE]

Runs checkov (its built-in Terraform checks plus ours in policies/checks) over each
SYNTH_DIR/stacks/<stack>/cdk.tf.json, names every result by stack and Terraform address with its
cdktf construct path and the catalog controls it evidences, applies policies/exemptions.yaml,
prints the failures and exemptions as a table, and writes DIR/findings.json, DIR/results.sarif
and DIR/junit.xml. Exit 0 only with no unexempted failure, 1 otherwise, 2 on a usage or
configuration error (one line per problem, naming the file and what is wrong; nothing written).

Checkov never reaches the network here: no API key, no platform download, no update check, and
every proxy variable pointed at a loopback port where nothing answers, in case something tries
anyway. It runs in a scratch directory with a scratch home and reads only the named stack files,
so no .checkov.yaml can skip a check behind the gate's back.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from policies.catalog import DEFAULT_CATALOG, Catalog, CatalogError, load_catalog
from policies.exemptions import DEFAULT_EXEMPTIONS, Exemptions, ExemptionsError, load_exemptions
from policies.findings import Finding, Findings, Source, Status, write_findings

CHECKS_DIR = Path(__file__).with_name("checks")
DEFAULT_OUT = Path("cdktf.out")
DEFAULT_RESULTS = Path("reports/scan")
STACK_FILE = "cdk.tf.json"
CHECKOV_TIMEOUT_SECONDS = 1800
# Port 9 (discard) on loopback: nothing listens, so a connection attempt fails at once, locally.
UNREACHABLE_PROXY = "http://127.0.0.1:9"
UNMAPPED = "(unmapped)"

# Variables that steer checkov towards the Prisma Cloud / Bridgecrew platform or change what it
# checks; the gate decides these itself, whatever the caller's environment holds.
_CHECKOV_VARIABLE_PREFIXES = ("BC_", "CKV_", "CHECKOV_", "PRISMA_")
_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
_LOAD_FAILURE = re.compile(r"Cannot load external check '[^']*' from (?P<path>\S+)")


class GateError(Exception):
    """A usage or configuration problem: the gate cannot give a verdict (exit 2)."""


# --- checkov, offline ---------------------------------------------------------------------


def checkov_environment(inherited: Mapping[str, str], home: Path) -> dict[str, str]:
    """The environment checkov runs in: the caller's, minus anything that would reach the
    platform or change the check set, plus the switches that keep it offline."""
    environment = {
        name: value
        for name, value in inherited.items()
        if not name.startswith(_CHECKOV_VARIABLE_PREFIXES)
        and name.upper() not in {"NO_PROXY", *(v.upper() for v in _PROXY_VARIABLES)}
    }
    environment.update(
        {
            # No mapping/guideline download from the platform (also what --skip-download sets).
            "BC_SKIP_MAPPING": "TRUE",
            # No "new version available" lookup on pypi.org at import time.
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",
            # Not used by the terraform_json framework; off in case a future version reads them.
            "CKV_GITHUB_CONFIG_FETCH_DATA": "FALSE",
            "CKV_GITLAB_CONFIG_FETCH_DATA": "FALSE",
            "CKV_VALIDATE_SECRETS": "FALSE",
            "LOG_LEVEL": "WARNING",
            # A fresh home: no ~/.checkov.yaml, no cached platform answers.
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            # Loading our checks leaves no __pycache__ in policies/checks.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    environment.update(dict.fromkeys(_PROXY_VARIABLES, UNREACHABLE_PROXY))
    return environment


def checkov_command(
    stack_files: Sequence[Path], report_dir: Path, checks_dir: Path | None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "checkov.main",
        "--framework",
        "terraform_json",
        "--output",
        "json",
        "--output-file-path",
        str(report_dir),
        "--skip-download",
        "--skip-results-upload",
        "--download-external-modules",
        "false",
    ]
    if checks_dir is not None:
        command += ["--external-checks-dir", str(checks_dir)]
    # Named files, not a directory: only the synthesized stacks are read, whatever else sits
    # beside them (plans, state, a stray .checkov.yaml).
    command += ["--file", *(str(path) for path in stack_files)]
    return command


@dataclass(frozen=True)
class CheckovRun:
    # Checkov's records, each with "outcome": passed, failed or skipped.
    results: tuple[dict[str, Any], ...]
    version: str
    seconds: float


def custom_checks_dir(checks_dir: Path) -> Path | None:
    """The external checks directory to hand to checkov, or None when it holds no checks yet.
    Checkov silently loads nothing from a directory without __init__.py; refuse that."""
    if not checks_dir.is_dir():
        return None
    sources = [p for p in checks_dir.rglob("*") if p.suffix in {".py", ".yaml", ".yml"}]
    checks = [p for p in sources if p.name != "__init__.py" and "__pycache__" not in p.parts]
    if not checks:
        return None
    for check in checks:
        if check.suffix == ".py" and not (check.parent / "__init__.py").exists():
            raise GateError(
                f"{check.parent}: has no __init__.py, so checkov would skip {check.name} "
                "without a word; add an empty __init__.py"
            )
    # Absolute: checkov runs in a scratch directory.
    return checks_dir.resolve()


def run_checkov(stack_files: Sequence[Path], *, checks_dir: Path | None) -> CheckovRun:
    with tempfile.TemporaryDirectory(prefix="phi-gate-") as scratch:
        workdir = Path(scratch)
        (workdir / "home").mkdir()
        report_dir = workdir / "report"
        command = checkov_command(stack_files, report_dir, checks_dir)
        started = time.perf_counter()
        try:
            completed = subprocess.run(
                command,
                cwd=workdir,  # no .checkov.yaml from the caller's directory
                env=checkov_environment(os.environ, workdir / "home"),
                capture_output=True,
                text=True,
                timeout=CHECKOV_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GateError(f"checkov did not finish in {CHECKOV_TIMEOUT_SECONDS} s") from None
        seconds = time.perf_counter() - started
        refuse_unloaded_checks(completed.stderr)
        report_file = report_dir / "results_json.json"
        # 0: all passed, 1: some failed; anything else is checkov itself failing.
        if completed.returncode not in {0, 1} or not report_file.exists():
            tail = " | ".join(completed.stderr.strip().splitlines()[-3:])
            raise GateError(f"checkov failed (exit {completed.returncode}): {tail}")
        document = json.loads(report_file.read_text(encoding="utf-8"))
    return read_checkov_report(document, seconds)


def refuse_unloaded_checks(stderr: str) -> None:
    """Raise GateError for a custom check checkov could not import. Checkov only logs it and
    scans on without the check: a gate that silently dropped one of our checks would pass what
    it should fail."""
    lines = stderr.splitlines()
    for number, line in enumerate(lines):
        match = _LOAD_FAILURE.search(line)
        if match:
            cause = next(
                (
                    later.strip()
                    for later in lines[number + 1 :]
                    if later and not later.startswith((" ", "Traceback"))
                ),
                "see checkov's output",
            )
            raise GateError(f"{match.group('path')}: checkov cannot load this check ({cause})")


def read_checkov_report(document: Any, seconds: float) -> CheckovRun:
    """Checkov's JSON: one report, a list of reports (one per framework), or a bare summary
    when it found nothing to scan."""
    reports = document if isinstance(document, list) else [document]
    results: list[dict[str, Any]] = []
    version = ""
    for report in reports:
        summary = report.get("summary", report)
        version = version or str(summary.get("checkov_version", ""))
        outcomes = report.get("results", {})
        errors = outcomes.get("parsing_errors", [])
        if errors:
            raise GateError(f"checkov could not parse {', '.join(map(str, errors))}")
        for key, outcome in (
            ("passed_checks", "passed"),
            ("failed_checks", "failed"),
            ("skipped_checks", "skipped"),
        ):
            results += [{**record, "outcome": outcome} for record in outcomes.get(key, [])]
    return CheckovRun(results=tuple(results), version=version, seconds=seconds)


# --- naming what checkov found ------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    name: str
    file: Path  # absolute path of its cdk.tf.json
    configuration: dict[str, Any]


def find_stacks(outdir: Path) -> dict[str, Stack]:
    """Every SYNTH_DIR/stacks/<name>/cdk.tf.json, by stack name."""
    stacks_dir = outdir / "stacks"
    if not stacks_dir.is_dir():
        raise GateError(f"{stacks_dir}: no such directory (synthesize first: make synth)")
    stacks: dict[str, Stack] = {}
    for file in sorted(stacks_dir.glob(f"*/{STACK_FILE}")):
        try:
            configuration = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise GateError(f"{file}: not readable Terraform JSON ({error})") from None
        if not isinstance(configuration, dict):
            raise GateError(f"{file}: not a Terraform JSON configuration (expected an object)")
        stacks[file.parent.name] = Stack(file.parent.name, file.resolve(), configuration)
    if not stacks:
        raise GateError(
            f"{stacks_dir}: no stacks/<name>/{STACK_FILE} (synthesize first: make synth)"
        )
    return stacks


def terraform_address(stack: Stack, checkov_resource: str) -> tuple[str, str]:
    """Checkov's name for a resource -> (Terraform address, cdktf construct path).

    Checkov's terraform_json runner says `resource.<name>` / `data.<name>` for its Python
    checks, `<type>.<name>` for graph checks and `provider.<name>` for provider checks; cdktf
    names are unique within a stack, so the type is found by looking the name up."""
    configuration = stack.configuration
    kind, _, rest = checkov_resource.partition(".")
    if kind == "provider":
        return checkov_resource, ""
    if kind in {"resource", "data"} and "." not in rest:
        section = configuration.get(kind, {})
        owners = [type_ for type_, blocks in section.items() if rest in blocks]
        if len(owners) != 1:
            raise GateError(
                f"{stack.file}: checkov reported {checkov_resource!r}, which names "
                f"{len(owners)} {kind} blocks in this stack"
            )
        type_ = owners[0]
        address = f"{type_}.{rest}" if kind == "resource" else f"data.{type_}.{rest}"
        return address, _construct_path(section[type_][rest])
    section_name, type_, name = (
        ("data", *rest.split(".", 1)) if kind == "data" else ("resource", kind, rest)
    )
    block = configuration.get(section_name, {}).get(type_, {}).get(name)
    if block is None:
        raise GateError(
            f"{stack.file}: checkov reported {checkov_resource!r}, which is not in this stack"
        )
    return checkov_resource, _construct_path(block)


def _construct_path(block: Any) -> str:
    metadata = block.get("//", {}).get("metadata", {}) if isinstance(block, dict) else {}
    return str(metadata.get("path", ""))


def controls_by_check(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """Each check id with the catalog controls that list it, in catalog order."""
    evidenced: dict[str, list[str]] = {}
    for control in catalog.controls:
        for check in control.static_checks:
            evidenced.setdefault(check, []).append(control.id)
    return {check: tuple(ids) for check, ids in evidenced.items()}


def to_findings(run: CheckovRun, stacks: Mapping[str, Stack], catalog: Catalog) -> list[Finding]:
    """Checkov's records as findings (pass/fail, before exemptions), named by stack and
    Terraform address, with construct path, controls and the file line."""
    by_file = {stack.file: stack for stack in stacks.values()}
    controls = controls_by_check(catalog)
    findings: list[Finding] = []
    for record in run.results:
        file = Path(str(record.get("file_abs_path", ""))).resolve()
        stack = by_file.get(file)
        if stack is None:
            raise GateError(f"checkov reported a file the gate did not ask for: {file}")
        address, construct_path = terraform_address(stack, str(record["resource"]))
        detail = _detail(record)
        findings.append(
            Finding(
                check_id=str(record["check_id"]),
                check_name=str(record.get("check_name") or record["check_id"]),
                status=Status.PASSED if record["outcome"] == "passed" else Status.FAILED,
                source=Source.STATIC,
                stack=stack.name,
                resource=address,
                construct_path=construct_path,
                controls=controls.get(str(record["check_id"]), ()),
                detail=detail,
                file=(Path("stacks") / stack.name / STACK_FILE).as_posix(),
                line=int((record.get("file_line_range") or [0])[0]),
            )
        )
    return sorted(findings, key=lambda f: (f.stack, f.check_id, f.resource))


def _detail(record: Mapping[str, Any]) -> str:
    if record["outcome"] == "skipped":
        # Our exemptions are the only way to accept a failure; a checkov skip counts as one.
        return "skipped by checkov itself, which the gate does not accept: use exemptions.yaml"
    if record["outcome"] != "failed":
        return ""
    keys = (record.get("check_result") or {}).get("evaluated_keys") or []
    return f"checkov evaluated: {', '.join(map(str, keys))}" if keys else ""


# --- the verdict ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiredExemption:
    description: str
    expires: str
    owner: str
    failures: int  # failures it would have covered, now counted


@dataclass(frozen=True)
class Scan:
    """What checkov found, named and mapped, before exemptions: judge it as often as needed."""

    outdir: Path
    stacks: tuple[str, ...]
    findings: tuple[Finding, ...]
    catalog_checks: frozenset[str]
    control_titles: Mapping[str, str]
    checkov_version: str
    checkov_seconds: float
    seconds: float


@dataclass(frozen=True)
class GateResult:
    findings: Findings
    stacks: tuple[str, ...]
    expired: tuple[ExpiredExemption, ...]
    unused: tuple[str, ...]  # descriptions of entries in force that matched no failure
    silent_catalog_checks: tuple[str, ...]  # catalog checks with no result in this scan
    control_titles: Mapping[str, str]
    checkov_version: str
    checkov_seconds: float
    gate_seconds: float  # everything else: reading stacks, naming, exemptions

    @property
    def unexempted(self) -> list[Finding]:
        return self.findings.failed()

    @property
    def exit_code(self) -> int:
        return 1 if self.unexempted else 0

    def count(self, status: Status) -> int:
        return sum(1 for finding in self.findings.findings if finding.status is status)


def scan(outdir: Path, *, catalog: Catalog, checks_dir: Path = CHECKS_DIR) -> Scan:
    started = time.perf_counter()
    stacks = find_stacks(outdir)
    run = run_checkov(
        [stack.file for stack in stacks.values()], checks_dir=custom_checks_dir(checks_dir)
    )
    if not run.results:
        raise GateError(f"{outdir}: checkov ran no check on {len(stacks)} stacks")
    findings = to_findings(run, stacks, catalog)
    return Scan(
        outdir=outdir,
        stacks=tuple(stacks),
        findings=tuple(findings),
        catalog_checks=frozenset(controls_by_check(catalog)),
        control_titles={control.id: control.title for control in catalog.controls},
        checkov_version=run.version,
        checkov_seconds=run.seconds,
        seconds=time.perf_counter() - started,
    )


def judge(scanned: Scan, exemptions: Exemptions, *, today: dt.date | None = None) -> GateResult:
    """Apply exemptions: a failure covered by an entry in force becomes EXEMPT; one covered
    only by expired entries stays FAILED and names them."""
    started = time.perf_counter()
    today = today or dt.date.today()
    used: set[int] = set()
    expired_hits: dict[int, int] = {}
    judged: list[Finding] = []
    for finding in scanned.findings:
        if finding.status is not Status.FAILED:
            judged.append(finding)
            continue
        covering = exemptions.covering(finding.check_id, finding.stack, finding.resource)
        in_force = [i for i in covering if exemptions.entries[i].in_force(today)]
        if in_force:
            used.add(in_force[0])
            entry = exemptions.entries[in_force[0]]
            judged.append(
                replace(finding, status=Status.EXEMPT, exemption=entry.as_finding_exemption())
            )
            continue
        for index in covering:
            expired_hits[index] = expired_hits.get(index, 0) + 1
        lapsed = ", ".join(
            f"exemptions[{i}] expired {exemptions.entries[i].expires.isoformat()}" for i in covering
        )
        detail = "; ".join(filter(None, [finding.detail, lapsed]))
        judged.append(replace(finding, detail=detail))
    expired = tuple(
        ExpiredExemption(
            description=exemptions.describe(index),
            expires=entry.expires.isoformat(),
            owner=entry.owner,
            failures=expired_hits.get(index, 0),
        )
        for index, entry in enumerate(exemptions.entries)
        if not entry.in_force(today)
    )
    unused = tuple(
        exemptions.describe(index)
        for index, entry in enumerate(exemptions.entries)
        if entry.in_force(today) and index not in used
    )
    reported = {finding.check_id for finding in scanned.findings}
    return GateResult(
        findings=Findings(source=Source.STATIC, target=str(scanned.outdir), findings=tuple(judged)),
        stacks=scanned.stacks,
        expired=expired,
        unused=unused,
        silent_catalog_checks=tuple(sorted(scanned.catalog_checks - reported)),
        control_titles=scanned.control_titles,
        checkov_version=scanned.checkov_version,
        checkov_seconds=scanned.checkov_seconds,
        gate_seconds=scanned.seconds - scanned.checkov_seconds + time.perf_counter() - started,
    )


def run_gate(
    outdir: Path,
    *,
    exemptions_path: Path = DEFAULT_EXEMPTIONS,
    catalog_path: Path = DEFAULT_CATALOG,
    checks_dir: Path = CHECKS_DIR,
    today: dt.date | None = None,
) -> GateResult:
    """Scan `outdir` and judge it. Raises GateError, ExemptionsError or CatalogError on a bad
    input, before checkov runs where it can."""
    exemptions = load_exemptions(exemptions_path, today=today)
    catalog = load_catalog(catalog_path)
    return judge(scan(outdir, catalog=catalog, checks_dir=checks_dir), exemptions, today=today)


# --- what the gate prints and writes -------------------------------------------------------


def _controls_cell(controls: Sequence[str]) -> str:
    if not controls:
        return UNMAPPED
    shown = ", ".join(controls[:2])
    return f"{shown} +{len(controls) - 2}" if len(controls) > 2 else shown


def render_table(result: GateResult) -> str:
    """Failures first, then exemptions; passes are counted in the summary, not listed."""
    order = {Status.FAILED: 0, Status.ERROR: 1, Status.EXEMPT: 2}
    listed = sorted(
        (f for f in result.findings.findings if f.status in order),
        key=lambda f: (order[f.status], f.stack, f.check_id, f.resource),
    )
    header = ("STATUS", "CONTROLS", "CHECK", "STACK", "RESOURCE", "CONSTRUCT PATH")
    rows = [header] + [
        (
            f.status.value.upper(),
            _controls_cell(f.controls),
            f.check_id,
            f.stack,
            f.resource,
            f.construct_path or "-",
        )
        for f in listed
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) if listed else ""


def report_lines(result: GateResult, *, results_dir: Path | None = None) -> Iterable[str]:
    table = render_table(result)
    if table:
        yield table
    for lapsed in result.expired:
        consequence = (
            f"its {lapsed.failures} failure(s) count again"
            if lapsed.failures
            else "it matches no failure either: remove it"
        )
        yield (
            f"expired exemption: {lapsed.description} expired {lapsed.expires} "
            f"(owner {lapsed.owner}); {consequence}"
        )
    for description in result.unused:
        yield f"warning: unused exemption: {description} matches no failure: remove it"
    if result.silent_catalog_checks:
        yield (
            f"note: {len(result.silent_catalog_checks)} catalog check(s) gave no result here "
            "(no resource of their kind in these stacks, or not installed): "
            + ", ".join(result.silent_catalog_checks)
        )
    if results_dir is not None:
        yield f"results: {results_dir}/findings.json, results.sarif, junit.xml"
    verdict = "PASS" if result.exit_code == 0 else "FAIL"
    failed = len(result.unexempted)
    yield (
        f"gate: {verdict}: {failed} unexempted failure(s), {result.count(Status.EXEMPT)} exempt, "
        f"{result.count(Status.PASSED)} passed in {len(result.stacks)} stacks "
        f"(checkov {result.checkov_version}: {result.checkov_seconds:.1f} s, "
        f"gate {result.gate_seconds:.1f} s)"
    )


def write_results(result: GateResult, results_dir: Path) -> None:
    # Imported here: the outputs module is only needed once there is something to write.
    from policies.outputs import write_junit, write_sarif  # noqa: PLC0415

    write_findings(results_dir / "findings.json", result.findings)
    write_sarif(
        results_dir / "results.sarif",
        result.findings,
        scan_root=Path(result.findings.target),
        repo_root=Path.cwd(),
        control_titles=result.control_titles,
        tool_version=result.checkov_version,
    )
    write_junit(results_dir / "junit.xml", result.findings, stacks=result.stacks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policies.gate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="synthesized directory")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where to write")
    parser.add_argument("--exemptions", type=Path, default=DEFAULT_EXEMPTIONS)
    parser.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    parser.add_argument(
        "--checks", type=Path, default=CHECKS_DIR, help="custom checkov checks directory"
    )
    arguments = parser.parse_args(argv)
    try:
        result = run_gate(
            arguments.out,
            exemptions_path=arguments.exemptions,
            catalog_path=arguments.catalog,
            checks_dir=arguments.checks,
        )
    except (GateError, ExemptionsError, CatalogError) as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    write_results(result, arguments.results)
    for line in report_lines(result, results_dir=arguments.results):
        print(line)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
