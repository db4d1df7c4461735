"""Benchmarks: how long a pull request waits for synth, validate, scan and the whole gate on
this machine, against the naive provider import, and how that grows with the environments.

    python -m tools.bench [--runs N] [--heavy-runs M] [--quick] [--scale 1,4,16]
                          [--output reports/bench.json] [--markdown reports/bench.md]
                          [--max-load 1.5] [--max-wait 600]

Measured, each in a fresh process with fresh output directories:

1. the naive baseline, `python -c "import cdktf_cdktf_provider_aws"` (the plain import);
2. synth of every environment, `python main.py --out TMP` (what `make synth` runs);
3. validate, `python -m tools.terraform validate --out TMP` (every stack, both cores), and each
   stack validated alone with one job, whose sum is the time without parallelism;
4. scan, `python -m policies.gate`, and bare checkov over the same stacks with the same checks
   (the gate's own checkov command line and environment, policies.gate.checkov_command), and
   preflight, `python -m policies.preflight`, over the same stacks (`make preflight`);
5. the pull-request gate as a whole: synth + validate + scan + `python -m policies.report`.

(1), (2) and (4) run --runs times (default 5); the expensive ones, (3) and (5) and the growth
runs, --heavy-runs times (default 3), except the single-stack validates and the validates of the
growth scales, which run in the first round only (about three minutes; the sum of 22 separate
single-stack samples varies less than one parallel run does). So the default run takes 11 to 17
minutes on two cores. Runs are interleaved (round 1 of everything, then round 2, ...) so
that a change of load on a shared machine spreads over every measurement instead of skewing one.

Growth: N generated copies of environments/dev (unique name, account, bucket prefix, CIDRs, VPN
peer, HealthLake datastore and pipeline names; org kept as it is) in a temporary environments
folder, for each N of --scale: synth and scan time, and validate for N <= 4 (validate costs
about 3 s per stack; at 16 environments, 83 stacks, one run would take four minutes and tell
no more than the single-stack times already do). A least-squares line time = fixed +
per_environment x N gives the fixed cost, the cost per environment and R^2.

Memory: the peak resident set of the largest single process (os.wait4's ru_maxrss) and the
peak of the RSS summed over the whole process tree (python + node + terraform/checkov), read
from /proc every 0.1 s (no psutil needed; None where /proc is absent). Shared pages count once
per process in the sum, so it is an upper bound.

Before timing: one untimed synth and validate of the smallest stack (fails fast when terraform
or the provider mirror is missing), then, while the one-minute load average is above
--max-load, waits in 60 s steps up to --max-wait seconds; the load is recorded either way.

Targets are reported met / not met, never enforced: exit 0 whenever the benchmark ran, 1 when
a measured command failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.gate import CHECKS_DIR, checkov_command, checkov_environment, custom_checks_dir
from tools.cli import positive_int

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS_DIR = REPO_ROOT / "environments"
ENVIRONMENT_FILE = "environment.yaml"
BINDINGS_PACKAGE = "cdktf_cdktf_provider_aws"

DEFAULT_RUNS = 5
DEFAULT_HEAVY_RUNS = 3
DEFAULT_SCALES = (1, 4, 16)
QUICK_SCALES = (1, 4)
DEFAULT_OUTPUT = Path("reports/bench.json")
DEFAULT_MARKDOWN = Path("reports/bench.md")
DEFAULT_MAX_LOAD = 1.5
DEFAULT_MAX_WAIT_SECONDS = 600
LOAD_WAIT_STEP_SECONDS = 60
# Validate at growth scales up to this many environments (see the module docstring).
VALIDATE_GROWTH_MAX_ENVIRONMENTS = 4
# Rounds that also validate every stack alone and validate the growth scales (see above).
VALIDATE_DETAIL_RUNS = 1
MEMORY_SAMPLE_SECONDS = 0.1
# Generated copies get 10.(100+i).0.0/16, 203.0.113.(10+i) and a /20 of 172.16.0.0/12 each.
MAX_GENERATED_ENVIRONMENTS = 99
TEMPLATE_ENVIRONMENT = "dev"
ORGANIZATION_ENVIRONMENT = "org"
GENERATED_PREFIX = "bench"
# Linear enough to say "linear": the fitted line is within 10 % of every measured point.
LINEAR_TOLERANCE = 0.10
OUTPUT_TAIL_LINES = 15
# The gate exits 1 on an unexempted failure: a verdict, not a failure of the measurement.
# Generated copies are not covered by exemptions.yaml (it names dev/staging/prod stacks).
GATE_EXIT_CODES = (0, 1)


class BenchError(Exception):
    """A measured command failed, or the benchmark cannot run as asked."""


# --- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    median: float
    minimum: float
    maximum: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no samples to summarize")
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass(frozen=True)
class LinearFit:
    """y = fixed + per_unit * x, by least squares."""

    fixed: float
    per_unit: float
    r_squared: float
    # The largest |measured - fitted| / measured over the points. R^2 alone says little with
    # three points at 1, 4 and 16: the largest one dominates it (y = x^2 still scores 0.98).
    max_relative_residual: float

    def predict(self, x: float) -> float:
        return self.fixed + self.per_unit * x

    @property
    def linear(self) -> bool:
        return self.max_relative_residual <= LINEAR_TOLERANCE


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if len(set(xs)) < 2:
        raise ValueError("a line needs at least two distinct x values")
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    per_unit = sxy / sxx
    fixed = mean_y - per_unit * mean_x
    residuals = [y - (fixed + per_unit * x) for x, y in zip(xs, ys, strict=True)]
    total = sum((y - mean_y) ** 2 for y in ys)
    # Every y equal: the flat line fits them exactly.
    r_squared = 1.0 - sum(r**2 for r in residuals) / total if total > 0 else 1.0
    relative = [abs(r) / abs(y) for r, y in zip(residuals, ys, strict=True) if y != 0]
    # + 0.0: no "-0.0 s" in a report.
    return LinearFit(fixed + 0.0, per_unit + 0.0, r_squared, max(relative, default=0.0))


# --- measuring one command --------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    seconds: float
    exit_code: int
    load_before: float  # one-minute load average when the command started
    peak_rss_bytes: int | None  # largest single process of the tree
    tree_peak_rss_bytes: int | None  # RSS summed over the live tree, sampled


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, resident pages) of every process, from /proc/<pid>/stat."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:  # gone since the directory listing
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = text[text.rindex(b")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[21]))
    return table


def tree_rss_bytes(root: int, table: Mapping[int, tuple[int, int]]) -> int:
    """Resident bytes of `root` and every descendant in `table`."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            total += table[pid][1]
        pending.extend(children.get(pid, ()))
    return total * os.sysconf("SC_PAGE_SIZE")


class TreeMemorySampler(threading.Thread):
    """Peak of the RSS summed over a process tree, sampled until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self._root = root
        self._stopped = threading.Event()
        self.available = Path("/proc/self/stat").is_file()
        self.peak = 0

    def run(self) -> None:
        while self.available:
            self.peak = max(self.peak, tree_rss_bytes(self._root, _process_table()))
            if self._stopped.wait(MEMORY_SAMPLE_SECONDS):
                return

    def stop(self) -> int | None:
        self._stopped.set()
        self.join()
        return self.peak if self.available else None


def _max_rss_bytes(ru_maxrss: int) -> int:
    # Linux reports kilobytes, macOS bytes.
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


def _display(command: Sequence[str]) -> str:
    return " ".join(
        "python" if part == sys.executable else (f"'{part}'" if " " in part else part)
        for part in command
    )


def run_measured(
    command: Sequence[str],
    *,
    environment: Mapping[str, str],
    cwd: Path = REPO_ROOT,
    accepted: Sequence[int] = (0,),
) -> Sample:
    """Run `command` to completion, timing it and its memory; BenchError on another exit."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        sampler = TreeMemorySampler(process.pid)
        sampler.start()
        try:
            # wait4, not Popen.wait: it also returns the resource usage of the finished tree.
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            sampler.stop()
            raise
        seconds = time.perf_counter() - started
        tree_peak = sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped already
        if process.returncode not in accepted:
            output.seek(0)
            lines = output.read().decode(errors="replace").strip().splitlines()
            tail = "\n".join(f"  {line}" for line in lines[-OUTPUT_TAIL_LINES:])
            raise BenchError(
                f"`{_display(command)}` exited {process.returncode} after {seconds:.1f} s:\n{tail}"
            )
    return Sample(
        seconds=seconds,
        exit_code=process.returncode,
        load_before=load,
        peak_rss_bytes=_max_rss_bytes(usage.ru_maxrss),
        tree_peak_rss_bytes=tree_peak,
    )


def combined(samples: Sequence[Sample]) -> Sample:
    """Commands run one after the other as one: times add up, memory is the highest."""

    def highest(values: Iterator[int | None]) -> int | None:
        known = [value for value in values if value is not None]
        return max(known) if known else None

    return Sample(
        seconds=sum(s.seconds for s in samples),
        exit_code=next((s.exit_code for s in samples if s.exit_code), 0),
        load_before=samples[0].load_before,
        peak_rss_bytes=highest(s.peak_rss_bytes for s in samples),
        tree_peak_rss_bytes=highest(s.tree_peak_rss_bytes for s in samples),
    )


# --- generated environments -------------------------------------------------------------------


def generated_name(index: int) -> str:
    return f"{GENERATED_PREFIX}-{index:02d}"


def generated_account_id(index: int) -> str:
    return f"{700_000_000_000 + index:012d}"


def _replace_in_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_in_strings(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: _replace_in_strings(item, old, new) for key, item in value.items()}
    return value


def environment_copy(template: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The template environment as copy `index` (1-based): everything an account, a region's
    IP plan or S3's global namespace needs unique is made unique; the rest is the template."""
    if not 1 <= index <= MAX_GENERATED_ENVIRONMENTS:
        raise ValueError(f"copy index {index} outside 1-{MAX_GENERATED_ENVIRONMENTS}")
    name = generated_name(index)
    # Role ARNs and the environment's own ECR images name its account.
    copy: dict[str, Any] = _replace_in_strings(
        dict(template), str(template["account_id"]), generated_account_id(index)
    )
    copy["name"] = name
    copy["account_id"] = generated_account_id(index)
    copy["storage"]["bucket_prefix"] = f"acme-phi-{name}"
    copy["network"]["vpc_cidr"] = f"10.{100 + index}.0.0/16"
    vpn = copy.get("ingest", {}).get("vpn")
    if vpn is not None:
        block = index - 1
        vpn["peer_ip"] = f"203.0.113.{10 + index}"
        vpn["bgp_asn"] = 65000 + index
        vpn["onprem_cidrs"] = [f"172.{16 + block // 16}.{block % 16 * 16}.0/20"]
    ml = copy["ml"]
    if ml.get("fhir") is not None:
        ml["fhir"]["datastore_name"] = f"acme-phi-{name}-fhir"
    ml["pipeline"]["name"] = f"phi-ml-{name}-readmission"
    # Each copy is an estate of its own for what crosses accounts: it promotes to itself and
    # builds its own images (the template's production and image accounts are not generated).
    ml["registry"]["production_account_id"] = copy["account_id"]
    ml.pop("images", None)
    return copy


def generate_environments(
    count: int,
    destination: Path,
    *,
    source: Path = ENVIRONMENTS_DIR,
    template: str = TEMPLATE_ENVIRONMENT,
    organization: str = ORGANIZATION_ENVIRONMENT,
) -> list[str]:
    """Write `count` copies of `source/template` and the organization environment, governing
    them, into `destination` (an environments folder for main.py --environments-dir); return
    the names of the copies."""
    if not 1 <= count <= MAX_GENERATED_ENVIRONMENTS:
        raise BenchError(f"cannot generate {count} environments (1-{MAX_GENERATED_ENVIRONMENTS})")
    template_file = source / template / ENVIRONMENT_FILE
    try:
        document = yaml.safe_load(template_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise BenchError(f"{template_file}: cannot be read as YAML ({error})") from None
    if not isinstance(document, dict) or document.get("kind") != "workload":
        raise BenchError(f"{template_file}: not a workload environment to copy")
    organization_file = source / organization / ENVIRONMENT_FILE
    if not organization_file.is_file():
        raise BenchError(f"{organization_file}: no such organization environment")
    try:
        governing = yaml.safe_load(organization_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise BenchError(f"{organization_file}: cannot be read as YAML ({error})") from None
    names = []
    for index in range(1, count + 1):
        # A deep copy through YAML: the template's nested dicts must not be shared.
        copy = environment_copy(yaml.safe_load(yaml.safe_dump(document)), index)
        folder = destination / copy["name"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ENVIRONMENT_FILE).write_text(
            f"# generated by tools.bench: copy {index} of {template}\n"
            + yaml.safe_dump(copy, sort_keys=False),
            encoding="utf-8",
        )
        names.append(copy["name"])
    # The organization governs every copy's account, as it must any workload's.
    governing["governance"]["accounts"] += [
        {
            "name": name,
            "email": f"aws-{name}@acme-health.example",
            "ou": "NonProd",
            "role": "workload",
        }
        for name in names
    ]
    (destination / organization).mkdir(parents=True, exist_ok=True)
    (destination / organization / ENVIRONMENT_FILE).write_text(
        f"# generated by tools.bench: {organization} governing {len(names)} copies\n"
        + yaml.safe_dump(governing, sort_keys=False),
        encoding="utf-8",
    )
    return names


# --- the commands -----------------------------------------------------------------------------


def bench_environment(base: Mapping[str, str]) -> dict[str, str]:
    environment = dict(base)
    # jsii's end-of-life banner for Node 20 is noise; the Makefile silences it the same way.
    environment["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    environment.pop("PHI_TARGET", None)  # the real target, as `make synth`
    environment.pop("PHI_PLAIN_PROVIDER_IMPORT", None)  # the platform's own import strategy
    environment.pop("PHI_ENVIRONMENTS_DIR", None)  # named explicitly where wanted
    return environment


def naive_import_command() -> list[str]:
    return [sys.executable, "-c", f"import {BINDINGS_PACKAGE}"]


def synth_command(outdir: Path, environments_dir: Path | None = None) -> list[str]:
    command = [sys.executable, "main.py", "--out", str(outdir)]
    return command + (["--environments-dir", str(environments_dir)] if environments_dir else [])


def validate_command(
    outdir: Path, *, stacks: Sequence[str] = (), jobs: int | None = None
) -> list[str]:
    command = [sys.executable, "-m", "tools.terraform", "validate", "--out", str(outdir)]
    return command + (["--jobs", str(jobs)] if jobs else []) + list(stacks)


def scan_command(outdir: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "policies.gate", "--out", str(outdir), "--results", str(results)]


def preflight_command(outdir: Path, results: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "policies.preflight",
        "--out",
        str(outdir),
        "--results",
        str(results),
    ]


def report_command(outdir: Path, findings: Path, report_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "policies.report",
        "--out",
        str(outdir),
        "--static",
        str(findings),
        "--report-dir",
        str(report_dir),
    ]


def stack_names(outdir: Path) -> list[str]:
    return sorted(p.parent.name for p in (outdir / "stacks").glob("*/cdk.tf.json"))


def stack_files(outdir: Path) -> list[Path]:
    # The gate scans every stacks/<name>/cdk.tf.json, by absolute path (policies.gate.find_stacks).
    return sorted(p.resolve() for p in (outdir / "stacks").glob("*/cdk.tf.json"))


def run_bare_checkov(outdir: Path, base: Mapping[str, str]) -> Sample:
    """Checkov exactly as the gate starts it (same command line, environment, scratch working
    directory), without anything the gate does around it."""
    with tempfile.TemporaryDirectory(prefix="phi-bench-checkov-") as scratch:
        workdir = Path(scratch)
        (workdir / "home").mkdir()
        command = checkov_command(
            stack_files(outdir), workdir / "report", custom_checks_dir(CHECKS_DIR)
        )
        return run_measured(
            command,
            environment=checkov_environment(base, workdir / "home"),
            cwd=workdir,
            accepted=GATE_EXIT_CODES,  # checkov: 1 when a check failed
        )


# --- the report -------------------------------------------------------------------------------


@dataclass
class Measurement:
    title: str
    command: str
    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> Summary:
        return Summary.of([s.seconds for s in self.samples])

    def peak_rss_bytes(self) -> int | None:
        known = [s.peak_rss_bytes for s in self.samples if s.peak_rss_bytes is not None]
        return max(known) if known else None

    def tree_peak_rss_bytes(self) -> int | None:
        known = [s.tree_peak_rss_bytes for s in self.samples if s.tree_peak_rss_bytes is not None]
        return max(known) if known else None


@dataclass
class GrowthPoint:
    environments: int
    stacks: int
    synth: list[Sample] = field(default_factory=list)
    scan: list[Sample] = field(default_factory=list)
    validate: list[Sample] = field(default_factory=list)

    def median(self, part: str) -> float | None:
        samples: list[Sample] = getattr(self, part)
        return statistics.median(s.seconds for s in samples) if samples else None

    def synth_and_scan(self) -> float | None:
        synth, scan = self.median("synth"), self.median("scan")
        return synth + scan if synth is not None and scan is not None else None


@dataclass(frozen=True)
class Ratio:
    key: str
    title: str
    value: float | None  # None: a part was not measured
    limit: float | None  # the target (value <= limit), if there is one

    @property
    def met(self) -> bool | None:
        if self.value is None or self.limit is None:
            return None
        return self.value <= self.limit

    def verdict(self) -> str:
        if self.limit is None:
            return "-"
        return {True: "met", False: "NOT MET", None: "not measured"}[self.met]


# Keys of BenchReport.measurements.
NAIVE = "naive_import"
SYNTH = "synth"
VALIDATE = "validate"
VALIDATE_SINGLE_SUM = "validate_single_sum"
SCAN = "scan"
PREFLIGHT = "preflight"
BARE_CHECKOV = "bare_checkov"
GATE = "pull_request_gate"


@dataclass
class BenchReport:
    started: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    load_start: tuple[float, float, float]
    waited_seconds: float
    measurements: dict[str, Measurement]
    stacks: list[str] = field(default_factory=list)
    # Stack -> seconds of each single-stack validate run.
    single_stack_seconds: dict[str, list[float]] = field(default_factory=dict)
    growth: list[GrowthPoint] = field(default_factory=list)
    finished: str = ""
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def median(self, key: str) -> float | None:
        measurement = self.measurements.get(key)
        return measurement.summary().median if measurement and measurement.samples else None


def _quotient(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def ratios(report: BenchReport) -> list[Ratio]:
    smallest = min(report.growth, key=lambda p: p.environments, default=None)
    at_16 = next((p for p in report.growth if p.environments == 16), None)
    at_1 = next((p for p in report.growth if p.environments == 1), None)
    largest = max(report.growth, key=lambda p: p.environments, default=None)
    listed = [
        Ratio(
            "synth_vs_naive_import",
            "synth (all environments) / naive import",
            _quotient(report.median(SYNTH), report.median(NAIVE)),
            0.4,
        ),
        Ratio(
            "scan_vs_bare_checkov",
            "scan (gate) / bare checkov",
            _quotient(report.median(SCAN), report.median(BARE_CHECKOV)),
            1.5,
        ),
        Ratio(
            "preflight_vs_scan",
            "preflight / scan (gate)",
            _quotient(report.median(PREFLIGHT), report.median(SCAN)),
            0.5,
        ),
        Ratio(
            "validate_parallel_vs_single_sum",
            "validate (parallel) / sum of single-stack validates",
            _quotient(report.median(VALIDATE), report.median(VALIDATE_SINGLE_SUM)),
            0.6,
        ),
        Ratio(
            "growth_16_vs_1",
            "synth + scan: 16 environments / 1",
            _quotient(
                at_16.synth_and_scan() if at_16 else None,
                at_1.synth_and_scan() if at_1 else None,
            ),
            6.0,
        ),
    ]
    if largest is not None and smallest is not None and (largest, smallest) != (at_16, at_1):
        listed.append(
            Ratio(
                "growth_largest_vs_smallest",
                f"synth + scan: {largest.environments} environments / {smallest.environments}",
                _quotient(largest.synth_and_scan(), smallest.synth_and_scan()),
                None,
            )
        )
    return listed


@dataclass(frozen=True)
class GrowthFits:
    synth: LinearFit
    scan: LinearFit
    synth_and_scan: LinearFit
    validate: LinearFit | None  # two or more scales validated

    @property
    def linear(self) -> bool:
        return self.synth_and_scan.linear


def growth_fits(points: Sequence[GrowthPoint]) -> GrowthFits | None:
    """Lines through the medians of each scale; None with fewer than two scales."""
    measured = [p for p in points if p.synth and p.scan]
    if len({p.environments for p in measured}) < 2:
        return None
    sizes = [float(p.environments) for p in measured]

    def line(part: str) -> LinearFit:
        return fit_line(sizes, [p.median(part) or 0.0 for p in measured])

    validated = [p for p in measured if p.validate]
    return GrowthFits(
        synth=line("synth"),
        scan=line("scan"),
        synth_and_scan=fit_line(sizes, [p.synth_and_scan() or 0.0 for p in measured]),
        validate=(
            fit_line(
                [float(p.environments) for p in validated],
                [p.median("validate") or 0.0 for p in validated],
            )
            if len(validated) >= 2
            else None
        ),
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def megabytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 2**30:.2f} GB" if value >= 2**30 else f"{value / 2**20:.0f} MB"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


MEASUREMENT_ORDER = (
    NAIVE,
    SYNTH,
    VALIDATE,
    VALIDATE_SINGLE_SUM,
    SCAN,
    PREFLIGHT,
    BARE_CHECKOV,
    GATE,
)


def _measurement_rows(report: BenchReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for key in MEASUREMENT_ORDER:
        measurement = report.measurements.get(key)
        if measurement is None or not measurement.samples:
            continue
        summary = measurement.summary()
        rows.append(
            (
                measurement.title,
                _seconds(summary.median),
                _seconds(summary.minimum),
                _seconds(summary.maximum),
                str(summary.runs),
                megabytes(measurement.peak_rss_bytes()),
                megabytes(measurement.tree_peak_rss_bytes()),
            )
        )
    return rows


def _growth_rows(report: BenchReport) -> list[tuple[str, ...]]:
    return [
        (
            str(point.environments),
            str(point.stacks),
            _seconds(point.median("synth")),
            _seconds(point.median("scan")),
            _seconds(point.synth_and_scan()),
            _seconds(point.median("validate")),
            str(len(point.synth)),
        )
        for point in sorted(report.growth, key=lambda p: p.environments)
    ]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    cells = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


MEASUREMENT_HEADER = ("measurement", "median s", "min s", "max s", "runs", "peak RSS", "tree RSS")
GROWTH_HEADER = ("envs", "stacks", "synth s", "scan s", "synth+scan s", "validate s", "runs")
RATIO_HEADER = ("ratio", "value", "target", "verdict")


def growth_sentence(report: BenchReport) -> str:
    fits = growth_fits(report.growth)
    if fits is None:
        return "Growth: fewer than two environment counts measured, so no fit."
    points = [p for p in sorted(report.growth, key=lambda p: p.environments) if p.synth]
    times = ", ".join(f"{_seconds(p.synth_and_scan())} s for {p.environments}" for p in points)
    fit = fits.synth_and_scan
    shape = (
        f"linear (the line is within {fit.max_relative_residual:.1%} of every point"
        if fits.linear
        else f"not linear (the line misses a point by {fit.max_relative_residual:.1%}"
    )
    sentence = (
        f"Growth (generated copies of `dev`): synth + scan takes {times} environments; "
        f"{shape}, R² {fit.r_squared:.3f}): {fit.per_unit:.1f} s per environment on top of a "
        f"fixed {fit.fixed:.1f} s paid once whatever the number of environments "
        f"(synth {fits.synth.fixed:.1f} s, scan {fits.scan.fixed:.1f} s)."
    )
    growth = next(r for r in ratios(report) if r.key == "growth_16_vs_1")
    if growth.value is not None:
        sentence += (
            f" 16 environments cost {growth.value:.1f} x one (target <= 6: {growth.verdict()})."
        )
    if fits.validate is not None:
        sentence += (
            f" Validate adds {fits.validate.per_unit:.1f} s per environment "
            f"(fixed {fits.validate.fixed:.1f} s)."
        )
    return sentence


def render_text(report: BenchReport) -> str:
    lines = [
        f"benchmark on {report.machine.get('cpu_model', '?')} "
        f"({report.machine.get('usable_cpus', '?')} CPUs usable), "
        f"load {report.load_start[0]:.2f} at start, {report.load_end[0]:.2f} at end",
        "",
        *text_table(MEASUREMENT_HEADER, _measurement_rows(report)),
        "",
        *text_table(
            RATIO_HEADER,
            [
                (r.title, _ratio(r.value), "-" if r.limit is None else f"<= {r.limit}", r.verdict())
                for r in ratios(report)
            ],
        ),
    ]
    if report.growth:
        lines += ["", *text_table(GROWTH_HEADER, _growth_rows(report))]
        fits = growth_fits(report.growth)
        if fits is not None:
            for name, fit in (
                ("synth", fits.synth),
                ("scan", fits.scan),
                ("synth+scan", fits.synth_and_scan),
                ("validate", fits.validate),
            ):
                if fit is not None:
                    lines.append(
                        f"fit {name}: {fit.fixed:.1f} s fixed + {fit.per_unit:.2f} s x N "
                        f"(R² {fit.r_squared:.3f}, worst point off by "
                        f"{fit.max_relative_residual:.1%})"
                    )
        lines += ["", growth_sentence(report)]
    return "\n".join(lines) + "\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def render_markdown(report: BenchReport) -> str:
    machine = report.machine
    memory = machine.get("memory_bytes")
    lines = [
        f"Measured {report.started[:10]} on {machine.get('cpu_model', '?')}, "
        f"{machine.get('usable_cpus', '?')} CPUs, "
        f"{megabytes(memory) if isinstance(memory, int) else '?'} RAM, "
        f"Python {machine.get('python', '?')}, terraform {machine.get('terraform', '?')}, "
        f"checkov {machine.get('checkov', '?')}, Node {machine.get('node', '?')}; "
        f"one-minute load average {report.load_start[0]:.2f} before measuring, "
        f"{report.load_end[0]:.2f} at the end (the benchmark's own processes included; a "
        f"shared machine). Median of the runs shown (`make bench`).",
        "",
        *markdown_table(
            ("step", "median s", "min-max s", "runs", "peak memory (process / tree)"),
            [
                (row[0], row[1], f"{row[2]}-{row[3]}", row[4], f"{row[5]} / {row[6]}")
                for row in _measurement_rows(report)
            ],
        ),
        "",
        *markdown_table(
            ("target", "measured", "limit", ""),
            [
                (r.title, _ratio(r.value), "-" if r.limit is None else f"<= {r.limit}", r.verdict())
                for r in ratios(report)
            ],
        ),
    ]
    if report.growth:
        lines += [
            "",
            *markdown_table(
                ("environments", "stacks", "synth s", "scan s", "synth + scan s", "validate s"),
                [row[:6] for row in _growth_rows(report)],
            ),
            "",
            growth_sentence(report),
        ]
    return "\n".join(lines) + "\n"


def report_json(report: BenchReport) -> dict[str, Any]:
    fits = growth_fits(report.growth)
    return {
        "started": report.started,
        "finished": report.finished,
        "machine": report.machine,
        "settings": report.settings,
        "load_average": {
            "start": list(report.load_start),
            "end": list(report.load_end),
            "waited_seconds": report.waited_seconds,
        },
        "memory_method": (
            "peak_rss_bytes: largest single process of the tree (os.wait4 ru_maxrss); "
            "tree_peak_rss_bytes: RSS summed over the live process tree from /proc every "
            f"{MEMORY_SAMPLE_SECONDS} s (psutil not used)"
        ),
        "measurements": {
            key: {
                "title": m.title,
                "command": m.command,
                "summary": asdict(m.summary()) if m.samples else None,
                "samples": [asdict(s) for s in m.samples],
            }
            for key, m in report.measurements.items()
        },
        "stacks": report.stacks,
        "single_stack_seconds": report.single_stack_seconds,
        "growth": {
            "template": TEMPLATE_ENVIRONMENT,
            "points": [
                {
                    "environments": p.environments,
                    "stacks": p.stacks,
                    **{
                        part: [asdict(s) for s in getattr(p, part)]
                        for part in ("synth", "scan", "validate")
                    },
                }
                for p in report.growth
            ],
            "fits": asdict(fits) if fits else None,
        },
        "ratios": [{**asdict(r), "met": r.met} for r in ratios(report)],
    }


# --- the machine ------------------------------------------------------------------------------


def _command_output(command: Sequence[str]) -> str:
    try:
        completed = subprocess.run(
            list(command), capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def _proc_field(path: str, name: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def machine_info() -> dict[str, Any]:
    memory_kb = _proc_field("/proc/meminfo", "MemTotal").removesuffix(" kB")
    terraform_json = _command_output(["terraform", "version", "-json"])
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "?",
        "cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": int(memory_kb) * 1024 if memory_kb.isdigit() else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "terraform": json.loads(terraform_json).get("terraform_version", "")
        if terraform_json
        else "",
        "checkov": _version("checkov"),
        "node": _command_output(["node", "--version"]).removeprefix("v"),
        "cdktf": _version("cdktf"),
        "provider_bindings": _version("cdktf-cdktf-provider-aws"),
        "provider_mirror": os.environ.get("PHI_PROVIDER_MIRROR", ""),
        "git_commit": _command_output(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"]),
    }


def wait_for_quiet_machine(
    max_load: float,
    max_wait_seconds: float,
    *,
    load: Callable[[], float] = lambda: os.getloadavg()[0],
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> float:
    """Sleep in LOAD_WAIT_STEP_SECONDS steps while the load is above `max_load`, for at most
    `max_wait_seconds`; return the seconds waited."""
    waited = 0.0
    while (current := load()) > max_load and waited < max_wait_seconds:
        step = min(LOAD_WAIT_STEP_SECONDS, max_wait_seconds - waited)
        log(f"bench: load average {current:.2f} > {max_load}: waiting {step:.0f} s")
        sleep(step)
        waited += step
    if load() > max_load:
        log(f"bench: load still {load():.2f} after {waited:.0f} s: measuring anyway (recorded)")
    return waited


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    runs: int
    heavy_runs: int
    scales: tuple[int, ...]
    output: Path
    markdown: Path
    max_load: float
    max_wait_seconds: float


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, settings: Settings, scratch: Path, base: Mapping[str, str]) -> None:
        self.settings = settings
        self.scratch = scratch
        self.environment = bench_environment(base)
        self._counter = 0

    def fresh(self, name: str) -> Path:
        """A new, not yet existing path under the scratch directory."""
        self._counter += 1
        return self.scratch / f"{self._counter:04d}-{name}"

    def run(self, label: str, command: Sequence[str], **options: Any) -> Sample:
        sample = run_measured(command, environment=self.environment, **options)
        _log(f"bench: {label}: {sample.seconds:.1f} s")
        return sample

    def synthesized(self, environments_dir: Path | None = None) -> tuple[Path, Sample]:
        outdir = self.fresh("synth")
        return outdir, self.run("synth", synth_command(outdir, environments_dir))

    def copy_of(self, outdir: Path) -> Path:
        # terraform init writes .terraform into each stack: every validate gets a clean copy.
        copy = self.fresh("validate")
        shutil.copytree(outdir, copy)
        return copy

    def preflight(self) -> list[str]:
        _log("bench: preflight (untimed): synth, and validate of one stack")
        outdir, _ = self.synthesized()
        stacks = stack_names(outdir)
        if not stacks:
            raise BenchError(f"synth wrote no stacks into {outdir}")
        smallest = min(stacks, key=lambda s: (outdir / "stacks" / s / "cdk.tf.json").stat().st_size)
        try:
            self.run(
                f"validate {smallest}", validate_command(self.copy_of(outdir), stacks=[smallest])
            )
        except BenchError as error:
            mirror = self.environment.get("PHI_PROVIDER_MIRROR", "")
            hint = (
                f"PHI_PROVIDER_MIRROR={mirror}"
                if mirror
                else "PHI_PROVIDER_MIRROR is not set, so terraform downloads from the registry "
                "(offline: `make bench` sets it, or set it to the mirror directory)"
            )
            raise BenchError(f"{error}\n  ({hint})") from None
        return stacks

    def round(self, report: BenchReport, index: int) -> None:
        settings, measurements = self.settings, report.measurements
        outdir: Path | None = None
        if index < settings.runs:
            measurements[NAIVE].samples.append(self.run("naive import", naive_import_command()))
            outdir, synth = self.synthesized()
            measurements[SYNTH].samples.append(synth)
            measurements[SCAN].samples.append(
                self.run("scan", scan_command(outdir, self.fresh("scan")), accepted=GATE_EXIT_CODES)
            )
            measurements[PREFLIGHT].samples.append(
                self.run(
                    "preflight",
                    preflight_command(outdir, self.fresh("preflight")),
                    accepted=GATE_EXIT_CODES,
                )
            )
            bare = run_bare_checkov(outdir, self.environment)
            _log(f"bench: bare checkov: {bare.seconds:.1f} s")
            measurements[BARE_CHECKOV].samples.append(bare)
        if index < settings.heavy_runs:
            if outdir is None:
                outdir, _ = self.synthesized()  # untimed: only its output is needed
            measurements[VALIDATE].samples.append(
                self.run("validate", validate_command(self.copy_of(outdir)))
            )
            detailed = index < VALIDATE_DETAIL_RUNS
            if detailed:
                measurements[VALIDATE_SINGLE_SUM].samples.append(
                    self.validate_alone(report, outdir)
                )
            measurements[GATE].samples.append(self.gate())
            for point in report.growth:
                self.grow(point, validate=detailed)
        self.clean()

    def validate_alone(self, report: BenchReport, outdir: Path) -> Sample:
        """Every stack validated by itself, one job: what validate costs without parallelism."""
        singles = self.copy_of(outdir)
        samples = []
        for stack in stack_names(singles):
            sample = self.run(
                f"validate {stack} alone", validate_command(singles, stacks=[stack], jobs=1)
            )
            report.single_stack_seconds.setdefault(stack, []).append(sample.seconds)
            samples.append(sample)
        total = combined(samples)
        _log(f"bench: sum of single-stack validates: {total.seconds:.1f} s")
        return total

    def clean(self) -> None:
        # A round's output (synth, terraform init, reports) is not needed after it.
        for path in self.scratch.iterdir():
            if path.name[:4].isdigit():
                shutil.rmtree(path, ignore_errors=True)

    def gate(self) -> Sample:
        outdir, synth = self.synthesized()
        validate = self.run("gate: validate", validate_command(outdir))
        results = self.fresh("scan")
        scan = self.run("gate: scan", scan_command(outdir, results), accepted=GATE_EXIT_CODES)
        report = self.run(
            "gate: report",
            report_command(outdir, results / "findings.json", self.fresh("report")),
        )
        whole = combined([synth, validate, scan, report])
        _log(f"bench: pull-request gate: {whole.seconds:.1f} s")
        return whole

    def grow(self, point: GrowthPoint, *, validate: bool) -> None:
        environments_dir = self.scratch / f"environments-{point.environments}"
        outdir, synth = self.synthesized(environments_dir)
        point.synth.append(synth)
        point.stacks = len(stack_names(outdir))
        point.scan.append(
            self.run(
                f"scan of {point.environments} environments",
                scan_command(outdir, self.fresh("scan")),
                accepted=GATE_EXIT_CODES,
            )
        )
        if validate and point.environments <= VALIDATE_GROWTH_MAX_ENVIRONMENTS:
            point.validate.append(
                self.run(
                    f"validate of {point.environments} environments",
                    validate_command(self.copy_of(outdir)),
                )
            )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_bench(settings: Settings, base: Mapping[str, str]) -> BenchReport:
    titles = {
        NAIVE: ("naive import (plain bindings import)", naive_import_command()),
        SYNTH: ("synth, all environments", synth_command(Path("TMP"))),
        VALIDATE: ("validate, all stacks (parallel)", validate_command(Path("TMP"))),
        VALIDATE_SINGLE_SUM: (
            "validate, sum of single stacks",
            validate_command(Path("TMP"), stacks=["STACK"], jobs=1),
        ),
        SCAN: ("scan (policy gate)", scan_command(Path("TMP"), Path("TMP2"))),
        PREFLIGHT: ("preflight (deployability)", preflight_command(Path("TMP"), Path("TMP2"))),
        BARE_CHECKOV: (
            "bare checkov, same checks",
            checkov_command([Path("TMP/stacks/STACK/cdk.tf.json")], Path("REPORT"), CHECKS_DIR),
        ),
        GATE: (
            "pull-request gate (synth+validate+scan+report)",
            ["synth", "validate", "scan", "report"],
        ),
    }
    with tempfile.TemporaryDirectory(prefix="phi-bench-") as scratch_name:
        scratch = Path(scratch_name)
        bench = Bench(settings, scratch, base)
        stacks = bench.preflight()
        for count in settings.scales:
            generate_environments(count, scratch / f"environments-{count}")
        waited = wait_for_quiet_machine(settings.max_load, settings.max_wait_seconds)
        report = BenchReport(
            started=_now(),
            machine=machine_info(),
            settings={
                "runs": settings.runs,
                "heavy_runs": settings.heavy_runs,
                "scales": list(settings.scales),
                "validate_detail_runs": VALIDATE_DETAIL_RUNS,
                "validate_growth_max_environments": VALIDATE_GROWTH_MAX_ENVIRONMENTS,
                "max_load": settings.max_load,
            },
            load_start=os.getloadavg(),
            waited_seconds=waited,
            measurements={
                key: Measurement(title, _display(command))
                for key, (title, command) in titles.items()
            },
            stacks=stacks,
            growth=[GrowthPoint(count, 0) for count in settings.scales],
        )
        for index in range(max(settings.runs, settings.heavy_runs)):
            _log(f"bench: round {index + 1}")
            bench.round(report, index)
        report.finished = _now()
        report.load_end = os.getloadavg()
    return report


# --- command line -----------------------------------------------------------------------------


def parse_scales(text: str) -> tuple[int, ...]:
    try:
        scales = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of environment counts (e.g. 1,4,16)"
        ) from None
    if any(not 1 <= n <= MAX_GENERATED_ENVIRONMENTS for n in scales):
        raise argparse.ArgumentTypeError(
            f"'{text}': every environment count must be 1-{MAX_GENERATED_ENVIRONMENTS}"
        )
    if len(set(scales)) != len(scales):
        raise argparse.ArgumentTypeError(f"'{text}': an environment count is repeated")
    if len(scales) < 2:
        raise argparse.ArgumentTypeError(f"'{text}': growth needs at least two counts to fit")
    return tuple(sorted(scales))


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must not be negative")
    return value


def parse_arguments(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--runs", type=positive_int, help=f"runs of the quick measurements (default {DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--heavy-runs",
        type=positive_int,
        help=f"runs of validate, the whole gate and growth (default {DEFAULT_HEAVY_RUNS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 run of everything, scales 1,4 (unless given)",
    )
    parser.add_argument(
        "--scale",
        type=parse_scales,
        help="environment counts of the growth runs (default 1,4,16)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help="Markdown table")
    parser.add_argument(
        "--max-load",
        type=non_negative,
        default=DEFAULT_MAX_LOAD,
        help=f"wait while the 1-minute load average is above this (default {DEFAULT_MAX_LOAD})",
    )
    parser.add_argument(
        "--max-wait",
        type=non_negative,
        default=DEFAULT_MAX_WAIT_SECONDS,
        help=f"seconds to wait for that at most (default {DEFAULT_MAX_WAIT_SECONDS})",
    )
    arguments = parser.parse_args(argv)
    for path in (arguments.output, arguments.markdown):
        if path.exists() and path.is_dir():
            parser.error(f"{path} is a directory; name a file")
    if arguments.output == arguments.markdown:
        parser.error("--output and --markdown name the same file")
    quick = arguments.quick
    return Settings(
        runs=arguments.runs or (1 if quick else DEFAULT_RUNS),
        heavy_runs=arguments.heavy_runs or (1 if quick else DEFAULT_HEAVY_RUNS),
        scales=arguments.scale or (QUICK_SCALES if quick else DEFAULT_SCALES),
        output=arguments.output,
        markdown=arguments.markdown,
        max_load=arguments.max_load,
        max_wait_seconds=arguments.max_wait,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_arguments(argv)
    try:
        report = run_bench(settings, os.environ)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(report_json(report), indent=2) + "\n", encoding="utf-8")
    settings.markdown.parent.mkdir(parents=True, exist_ok=True)
    settings.markdown.write_text(render_markdown(report), encoding="utf-8")
    print(render_text(report), end="")
    print(f"results: {settings.output}, {settings.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
