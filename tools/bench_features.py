"""Benchmark of the data path, FHIR export -> feature records (`make bench` runs it after
tools.bench).

    python -m tools.bench_features [--quick] [--patients 1000] [--runs 3]
        [--growth 1000,3000,10000,30000,100000] [--output reports/bench-features.json]
        [--markdown reports/bench-features.md] [--max-load 1.5] [--max-wait 600]

Measured, each in a fresh process, on synthetic exports (`ml.synthetic_fhir`, seed 7) and the
feature groups `environments/dev` declares:

1. Throughput, side by side on one export of --patients: reading the export and building every
   group's table, in one process on one core, the columnar way (`ml.fhir_export` +
   `ml.feature_records`: orjson into column lists, numpy over whole columns) against the naive
   way (`tools.naive_features`: every line into fhirclient's R4 object model, rows in Python).
   Their tables must be identical (compared as Arrow tables) or the bench fails. Resources per
   CPU-second is the per-core rate. Target: the columnar way at least 10x the naive way.
2. Two shards on two cores: the export partitioned (`ml.feature_builder partition`, untimed),
   then the whole build job (read, build, write the offline store's Parquet layout) over every
   partition in one process, against two processes at once, each over half of them (what
   ShardedByS3Key gives two instances). The union of the two shards' records must equal the
   single build's. Target: at least 1.7x.
3. Growth: the columnar read + build once on an export of each --growth size; the exponent b
   of seconds = a x resources^b fitted on logarithms ("linear" when b is within 0.1 of 1), and
   the least-squares line seconds = fixed + per_resource x resources with its R^2 and its
   largest relative residual.

Runs are interleaved (columnar, naive, columnar, ...; one shard, two shards, ...) so a change
of load spreads over both sides. Targets are reported met / not met, never enforced: exit 0
when the benchmark ran, 1 when a measured command failed or the outputs differ, 2 for a usage
error. The internal `measure` subcommand is the timed process of (1) and (3).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa
from pyarrow import ipc

from environments.layer_configs import layer_configs
from environments.loader import load_environment
from environments.schema import WorkloadEnvironment
from ml.feature_records import build_groups
from ml.feature_spec import FeatureSpec, read_spec
from ml.fhir_export import ExportReader, export_files
from ml.offline_store import offline_store_uri_of, read_group, relative_data_path
from tools import naive_features
from tools.bench import (
    DEFAULT_MAX_LOAD,
    DEFAULT_MAX_WAIT_SECONDS,
    REPO_ROOT,
    BenchError,
    LinearFit,
    Sample,
    Summary,
    fit_line,
    machine_info,
    markdown_table,
    megabytes,
    non_negative,
    run_measured,
    text_table,
    wait_for_quiet_machine,
)
from tools.cli import positive_int
from tools.feature_flow import environment_path

COLUMNAR: Final = "columnar"
NAIVE: Final = "naive"
WAYS: Final = (COLUMNAR, NAIVE)
DEFAULT_PATIENTS: Final = 1000
QUICK_PATIENTS: Final = 200
DEFAULT_RUNS: Final = 3
DEFAULT_GROWTH: Final = (1000, 3000, 10_000, 30_000, 100_000)
QUICK_GROWTH: Final = (100, 300, 1000)
SEED: Final = 7
AS_OF: Final = "2026-06-30T00:00:00+00:00"
BENCH_ENVIRONMENT: Final = "dev"
# Eight partitions dealt round-robin: each of two shards gets four whole patient partitions.
PARTITIONS: Final = 8
SHARDS: Final = 2
WRITE_TIME: Final = "2026-07-01T00:00:00+00:00"
THROUGHPUT_TARGET: Final = 10.0
SHARD_TARGET: Final = 1.7
# Growth is linear when time grows as resources^b with b within this of 1.
LINEAR_EXPONENT_TOLERANCE: Final = 0.1
DEFAULT_OUTPUT: Final = Path("reports/bench-features.json")
DEFAULT_MARKDOWN: Final = Path("reports/bench-features.md")


# --- the timed process ----------------------------------------------------------------------


def read_and_build(
    way: str, files: Sequence[Path], spec: FeatureSpec
) -> tuple[int, dict[str, pa.Table]]:
    """(resources read, each group's table) the given way."""
    if way == COLUMNAR:
        reader = ExportReader()
        reader.read_files(files)
        reader.drop_unknown_subjects()
        built = build_groups(reader.columns, spec)
        return sum(reader.report.resources.values()), built.tables
    export = naive_features.read_export(files)
    return export.count, naive_features.build_tables(export, spec)


def measure(way: str, export: Path, spec_file: Path, tables: Path | None, result: Path) -> None:
    spec = read_spec(spec_file)
    files = export_files(export)
    started, cpu_started = time.perf_counter(), time.process_time()
    resources, built = read_and_build(way, files, spec)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if tables is not None:  # untimed: the tables the parent compares
        tables.mkdir(parents=True, exist_ok=True)
        for name, table in built.items():
            with ipc.new_file(tables / f"{name}.arrow", table.schema) as writer:
                writer.write_table(table)
    result.write_text(
        json.dumps(
            {
                "way": way,
                "resources": resources,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "records": {name: table.num_rows for name, table in built.items()},
            }
        ),
        encoding="utf-8",
    )


def read_tables(folder: Path) -> dict[str, pa.Table]:
    return {
        path.stem: ipc.open_file(pa.memory_map(str(path))).read_all()
        for path in sorted(folder.glob("*.arrow"))
    }


def identical(tables: Mapping[str, pa.Table], others: Mapping[str, pa.Table]) -> bool:
    """The same groups, each with the same schema, rows and row order."""
    return tables.keys() == others.keys() and all(
        tables[name].equals(others[name]) for name in tables
    )


# --- inputs ---------------------------------------------------------------------------------


def bench_spec(environment_name: str = BENCH_ENVIRONMENT) -> FeatureSpec:
    """The spec the environment's stack hands the job, with AWS-shaped resolved locations."""
    environment = load_environment(environment_path(environment_name))
    if not isinstance(environment, WorkloadEnvironment):
        raise BenchError(f"{environment_name} is not a workload environment")
    root = "s3://bench-feature-offline/feature-store/"
    resolved = {
        group.name: (
            f"{root}{group.name}/{environment.account_id}/sagemaker/{environment.region}/"
            f"offline-store/{group.name}-1780000000/data"
        )
        for group in environment.ml.features.groups
    }
    return layer_configs(environment).feature_build.feature_spec(resolved)


def generate_command(patients: int, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "ml.synthetic_fhir", f"--patients={patients}", f"--seed={SEED}",
        f"--as-of={AS_OF}", f"--out={out}",
    ]  # fmt: skip


def measure_command(
    way: str, export: Path, spec: Path, result: Path, tables: Path | None
) -> list[str]:
    command = [
        sys.executable, "-m", "tools.bench_features", "measure", f"--way={way}",
        f"--input={export}", f"--spec={spec}", f"--result={result}",
    ]  # fmt: skip
    return [*command, f"--tables={tables}"] if tables is not None else command


def partition_command(export: Path, out: Path, report: Path) -> list[str]:
    return [
        sys.executable, "-m", "ml.feature_builder", "partition", f"--input={export}",
        f"--output={out}", f"--partitions={PARTITIONS}", f"--report={report}",
    ]  # fmt: skip


def build_command(inputs: Path, spec: Path, offline: Path, report: Path, shard: str) -> list[str]:
    return [
        sys.executable, "-m", "ml.feature_builder", "build", f"--input={inputs}",
        f"--spec={spec}", f"--offline-output={offline}", f"--report={report}",
        f"--write-time={WRITE_TIME}", f"--shard={shard}",
    ]  # fmt: skip


def run_at_once(commands: Sequence[Sequence[str]], environment: Mapping[str, str]) -> float:
    """Wall seconds from starting every command to the last one's end; BenchError on a failure."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            list(c),
            cwd=REPO_ROOT,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for c in commands
    ]
    failures = []
    for process in processes:
        _, error = process.communicate()
        if process.returncode:
            failures.append(error.decode(errors="replace").strip().splitlines()[-1:])
    if failures:
        raise BenchError(f"a shard's build failed: {failures}")
    return time.perf_counter() - started


def parquet_files(offline: Path) -> int:
    return sum(1 for _ in offline.rglob("*.parquet"))


def canonical_records(offline: Path, spec: FeatureSpec) -> dict[str, list[bytes]]:
    """Each group's offline records, sorted, as bytes (shard order and file names aside)."""
    root = offline_store_uri_of(spec.groups)
    found = {}
    for group in spec.groups:
        table = read_group(offline / relative_data_path(group, root))
        found[group.name] = sorted(
            orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str) for row in table.to_pylist()
        )
    return found


# --- results --------------------------------------------------------------------------------


@dataclass
class WayRuns:
    resources: int = 0
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_rss_bytes: list[int] = field(default_factory=list)

    def per_core(self) -> float:
        return self.resources / statistics.median(self.cpu_seconds)


@dataclass
class GrowthRun:
    patients: int
    resources: int
    export_bytes: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int | None


@dataclass
class FeatureBench:
    started: str
    machine: dict[str, Any]
    patients: int
    load_before: float
    throughput: dict[str, WayRuns] = field(default_factory=dict)
    identical_tables: bool = False
    records: dict[str, int] = field(default_factory=dict)
    one_shard_seconds: list[float] = field(default_factory=list)
    two_shard_seconds: list[float] = field(default_factory=list)
    shard_union_identical: bool = False
    # Parquet files each way wrote: one per group and event-time hour a shard holds records
    # of, so two shards together write more files than one (the hours do not split).
    one_shard_files: int = 0
    two_shard_files: list[int] = field(default_factory=list)
    growth: list[GrowthRun] = field(default_factory=list)

    def throughput_ratio(self) -> float:
        return self.throughput[COLUMNAR].per_core() / self.throughput[NAIVE].per_core()

    def shard_speedup(self) -> float:
        return statistics.median(self.one_shard_seconds) / statistics.median(self.two_shard_seconds)

    def growth_fit(self) -> LinearFit | None:
        if len({g.resources for g in self.growth}) < 2:
            return None
        return fit_line([g.resources for g in self.growth], [g.seconds for g in self.growth])

    def growth_exponent(self) -> float | None:
        """b in seconds = a * resources^b, fitted on logarithms: 1 is linear growth. Unlike
        the straight line's residuals, it weighs the small exports as much as the large ones,
        where a fixed cost of a second or two dominates."""
        points = [(g.resources, g.seconds) for g in self.growth if g.seconds > 0]
        if len({r for r, _ in points}) < 2:
            return None
        return fit_line([math.log(r) for r, _ in points], [math.log(s) for _, s in points]).per_unit


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else "NOT met"


def ratio_rows(bench: FeatureBench) -> list[tuple[str, ...]]:
    throughput, shards = bench.throughput_ratio(), bench.shard_speedup()
    return [
        (
            "columnar / naive, resources per core-second",
            f"{throughput:.1f}",
            f">= {THROUGHPUT_TARGET:g}",
            _verdict(throughput, THROUGHPUT_TARGET),
        ),
        (
            "two shards / one shard, whole build job",
            f"{shards:.2f}",
            f">= {SHARD_TARGET:g}",
            _verdict(shards, SHARD_TARGET),
        ),
    ]


def throughput_rows(bench: FeatureBench) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for way in WAYS:
        runs = bench.throughput[way]
        wall = Summary.of(runs.seconds)
        rows.append(
            (
                way,
                f"{runs.resources:,}",
                f"{wall.median:.2f}",
                f"{statistics.median(runs.cpu_seconds):.2f}",
                f"{runs.per_core():,.0f}",
                megabytes(max(runs.peak_rss_bytes, default=None)),
                str(wall.runs),
            )
        )
    return rows


def growth_rows(bench: FeatureBench) -> list[tuple[str, ...]]:
    return [
        (
            f"{g.patients:,}",
            f"{g.resources:,}",
            megabytes(g.export_bytes),
            f"{g.seconds:.1f}",
            f"{g.resources / g.cpu_seconds:,.0f}",
            megabytes(g.peak_rss_bytes),
        )
        for g in bench.growth
    ]


THROUGHPUT_HEADER: Final = (
    "way",
    "resources",
    "median s",
    "CPU s",
    "resources / core-s",
    "peak RSS",
    "runs",
)
RATIO_HEADER: Final = ("ratio", "value", "target", "verdict")
GROWTH_HEADER: Final = (
    "patients",
    "resources",
    "export",
    "read + build s",
    "resources / core-s",
    "peak RSS",
)


def summary_sentences(bench: FeatureBench) -> list[str]:
    lines = [
        f"Identical tables from both ways: {'yes' if bench.identical_tables else 'NO'} "
        f"({', '.join(f'{n} {c:,} records' for n, c in bench.records.items())}).",
        f"One shard {statistics.median(bench.one_shard_seconds):.1f} s, two shards at once "
        f"{statistics.median(bench.two_shard_seconds):.1f} s (median of "
        f"{len(bench.one_shard_seconds)}); the union equals the single build: "
        f"{'yes' if bench.shard_union_identical else 'NO'}.",
    ]
    if bench.two_shard_files:
        lines.append(
            f"Offline-store files written: one shard {bench.one_shard_files:,}, two shards "
            f"{' + '.join(f'{n:,}' for n in bench.two_shard_files)} = "
            f"{sum(bench.two_shard_files):,} (one per group and event-time hour each shard "
            "holds records of: the hours do not split between shards, so neither does that "
            "part of the work)."
        )
    fit, exponent = bench.growth_fit(), bench.growth_exponent()
    if fit is not None and exponent is not None:
        shape = "linear" if abs(exponent - 1) <= LINEAR_EXPONENT_TOLERANCE else "not linear"
        lines.append(
            f"Growth {bench.growth[0].patients:,}-{bench.growth[-1].patients:,} patients: "
            f"{shape}: seconds grow as resources^{exponent:.2f} (log-log fit); the line "
            f"seconds = {fit.fixed:.2f} + {fit.per_unit * 1e6:.2f} per million resources, "
            f"R^2 {fit.r_squared:.4f}, is within {fit.max_relative_residual:.1%} of every point."
        )
    return lines


def render(bench: FeatureBench, table: Any) -> list[str]:
    return [
        *table(THROUGHPUT_HEADER, throughput_rows(bench)),
        "",
        *table(RATIO_HEADER, ratio_rows(bench)),
        "",
        *table(GROWTH_HEADER, growth_rows(bench)),
        "",
        *summary_sentences(bench),
    ]


def render_markdown(bench: FeatureBench) -> str:
    machine = bench.machine
    head = (
        f"FHIR -> features, measured {bench.started[:10]} on {machine.get('cpu_model', '?')}, "
        f"{machine.get('usable_cpus', '?')} CPUs, load {bench.load_before:.2f} at the start; "
        f"throughput and shards on {bench.patients:,} patients."
    )
    return "\n".join([head, "", *render(bench, markdown_table)]) + "\n"


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    patients: int
    runs: int
    growth: tuple[int, ...]
    output: Path
    markdown: Path
    max_load: float
    max_wait_seconds: float


def _log(line: str) -> None:
    print(f"bench-features: {line}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, settings: Settings, scratch: Path, environment: Mapping[str, str]) -> None:
        self.settings, self.scratch, self.environment = settings, scratch, environment
        self.spec = bench_spec()
        self.spec_file = scratch / "feature-spec.json"
        self.spec_file.write_text(self.spec.to_json(), encoding="utf-8")

    def command(self, label: str, command: Sequence[str]) -> Sample:
        sample = run_measured(command, environment=self.environment)
        _log(f"{label}: {sample.seconds:.1f} s")
        return sample

    def export(self, patients: int) -> Path:
        out = self.scratch / f"export-{patients}"
        shutil.rmtree(out, ignore_errors=True)
        self.command(f"generate {patients:,} patients (untimed)", generate_command(patients, out))
        return out

    def measured(
        self, way: str, export: Path, tables: Path | None = None
    ) -> tuple[dict[str, Any], Sample]:
        result = self.scratch / f"result-{way}.json"
        sample = self.command(way, measure_command(way, export, self.spec_file, result, tables))
        return json.loads(result.read_text(encoding="utf-8")), sample

    def throughput(self, bench: FeatureBench, export: Path) -> None:
        for index in range(self.settings.runs):
            for way in WAYS:
                tables = self.scratch / f"tables-{way}" if index == 0 else None
                result, sample = self.measured(way, export, tables)
                runs = bench.throughput.setdefault(way, WayRuns(resources=result["resources"]))
                runs.seconds.append(result["seconds"])
                runs.cpu_seconds.append(result["cpu_seconds"])
                if sample.peak_rss_bytes is not None:
                    runs.peak_rss_bytes.append(sample.peak_rss_bytes)
                bench.records = result["records"]
        columnar, naive = (read_tables(self.scratch / f"tables-{way}") for way in WAYS)
        bench.identical_tables = identical(columnar, naive)
        if not bench.identical_tables:
            raise BenchError("the columnar and the naive way built different tables")

    def shards(self, bench: FeatureBench, export: Path) -> None:
        partitions = self.scratch / "partitions"
        self.command(
            "partition (untimed)",
            partition_command(export, partitions, self.scratch / "partition-report"),
        )
        files = sorted(partitions.glob("*.ndjson"))
        halves = []
        for index in range(SHARDS):
            half = self.scratch / f"shard-input-{index + 1}"
            half.mkdir()
            for path in files[index::SHARDS]:
                os.link(path, half / path.name)
            halves.append(half)
        for index in range(self.settings.runs):
            one, two = self.scratch / f"one-{index}", self.scratch / f"two-{index}"
            report = self.scratch / f"reports-{index}"
            sample = self.command(
                "one shard",
                build_command(partitions, self.spec_file, one, report / "one", "algo-1"),
            )
            bench.one_shard_seconds.append(sample.seconds)
            # Both shards write into one offline folder, as both instances upload to one prefix.
            commands = [
                build_command(
                    half, self.spec_file, two / f"algo-{n + 1}", report / "two", f"algo-{n + 1}"
                )
                for n, half in enumerate(halves)
            ]
            seconds = run_at_once(commands, self.environment)
            _log(f"two shards at once: {seconds:.1f} s")
            bench.two_shard_seconds.append(seconds)
            if index == 0:
                bench.one_shard_files = parquet_files(one)
                bench.two_shard_files = [
                    parquet_files(two / f"algo-{n + 1}") for n in range(SHARDS)
                ]
                single = canonical_records(one, self.spec)
                union: dict[str, list[bytes]] = {}
                for n in range(SHARDS):
                    for name, rows in canonical_records(two / f"algo-{n + 1}", self.spec).items():
                        union.setdefault(name, []).extend(rows)
                bench.shard_union_identical = single == {k: sorted(v) for k, v in union.items()}
                if not bench.shard_union_identical:
                    raise BenchError("the union of the two shards differs from one build")
            shutil.rmtree(one)
            shutil.rmtree(two)

    def growth(self, bench: FeatureBench) -> None:
        for patients in self.settings.growth:
            export = self.export(patients)
            size = sum(p.stat().st_size for p in export.rglob("*.ndjson"))
            result, sample = self.measured(COLUMNAR, export)
            bench.growth.append(
                GrowthRun(
                    patients,
                    result["resources"],
                    size,
                    result["seconds"],
                    result["cpu_seconds"],
                    sample.peak_rss_bytes,
                )
            )
            shutil.rmtree(export)


def run_bench(settings: Settings, base: Mapping[str, str]) -> FeatureBench:
    waited = wait_for_quiet_machine(settings.max_load, settings.max_wait_seconds)
    bench = FeatureBench(
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine={**machine_info(), "waited_for_load_seconds": waited},
        patients=settings.patients,
        load_before=os.getloadavg()[0],
    )
    environment = {**base, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryDirectory(prefix="phi-bench-features-") as scratch:
        run = Run(settings, Path(scratch), environment)
        export = run.export(settings.patients)
        run.throughput(bench, export)
        run.shards(bench, export)
        shutil.rmtree(export)
        run.growth(bench)
    return bench


def report_json(bench: FeatureBench) -> dict[str, Any]:
    fit = bench.growth_fit()
    return {
        **asdict(bench),
        "throughput_ratio": bench.throughput_ratio(),
        "shard_speedup": bench.shard_speedup(),
        "growth_fit": asdict(fit) | {"linear": fit.linear} if fit else None,
        "growth_exponent": bench.growth_exponent(),
        "targets": {"throughput_ratio": THROUGHPUT_TARGET, "shard_speedup": SHARD_TARGET},
    }


# --- command line ---------------------------------------------------------------------------


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of patient counts"
        ) from None
    if len(sizes) < 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"'{text}': growth needs at least two positive counts")
    return sizes


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_features", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_PATIENTS} patients, 1 run, growth {QUICK_GROWTH}",
    )
    parser.add_argument(
        "--patients",
        type=positive_int,
        help=f"patients of the throughput and shard runs (default {DEFAULT_PATIENTS})",
    )
    parser.add_argument(
        "--runs", type=positive_int, help=f"runs of each side (default {DEFAULT_RUNS})"
    )
    parser.add_argument("--growth", type=parse_sizes, help="patient counts of the growth runs")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help="Markdown tables")
    parser.add_argument("--max-load", type=non_negative, default=DEFAULT_MAX_LOAD)
    parser.add_argument("--max-wait", type=non_negative, default=DEFAULT_MAX_WAIT_SECONDS)
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("measure", help="(internal) one timed read + build")
    one.add_argument("--way", choices=WAYS, required=True)
    one.add_argument("--input", type=Path, required=True)
    one.add_argument("--spec", type=Path, required=True)
    one.add_argument("--result", type=Path, required=True)
    one.add_argument("--tables", type=Path)
    return parser.parse_args(argv)


def settings_of(arguments: argparse.Namespace) -> Settings:
    quick = arguments.quick
    return Settings(
        patients=arguments.patients or (QUICK_PATIENTS if quick else DEFAULT_PATIENTS),
        runs=arguments.runs or (1 if quick else DEFAULT_RUNS),
        growth=arguments.growth or (QUICK_GROWTH if quick else DEFAULT_GROWTH),
        output=arguments.output,
        markdown=arguments.markdown,
        max_load=arguments.max_load,
        max_wait_seconds=arguments.max_wait,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.command == "measure":
        measure(arguments.way, arguments.input, arguments.spec, arguments.tables, arguments.result)
        return 0
    settings = settings_of(arguments)
    try:
        bench = run_bench(settings, os.environ)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(report_json(bench), indent=2) + "\n", encoding="utf-8")
    settings.markdown.write_text(render_markdown(bench), encoding="utf-8")
    print("\n".join(render(bench, text_table)))
    print(f"results: {settings.output}, {settings.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
