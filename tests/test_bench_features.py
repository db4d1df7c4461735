"""The data-path benchmark (tools/bench_features.py) and its naive baseline
(tools/naive_features.py): both ways must build the same tables, the comparison must be able
to fail, the harness must run end to end. No timing is asserted: speed is what the benchmark
measures, not what a test may depend on."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from ml import synthetic_fhir
from ml.feature_records import build_groups
from ml.fhir_codes import HEART_RATE
from ml.fhir_export import ExportReader, export_files
from tools import bench_features, naive_features
from tools.bench_features import (
    COLUMNAR,
    NAIVE,
    FeatureBench,
    GrowthRun,
    Settings,
    WayRuns,
    identical,
    read_and_build,
)

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)


def _append(export: Path, kind: str, resources: list[dict[str, Any]]) -> None:
    path = next((export / kind).glob("*.ndjson"))
    with path.open("ab") as handle:
        for resource in resources:
            handle.write(orjson.dumps(resource) + b"\n")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic export plus the valid cases a clean export rarely holds: two heart rates
    at one moment (the later line wins), a vital entered in error, a cancelled stay."""
    population = synthetic_fhir.generate(80, 5, as_of=AS_OF)
    root = synthetic_fhir.write_export(population, tmp_path_factory.mktemp("bench") / "export")
    vital = next(
        o
        for o in population.resources("Observation")
        if o["code"]["coding"][0]["code"] == HEART_RATE
    )
    twin = {**vital, "id": "f" * 32, "valueQuantity": {**vital["valueQuantity"], "value": 150.5}}
    void = {**vital, "id": "e" * 32, "status": "entered-in-error"}
    stay = next(e for e in population.resources("Encounter") if e["class"]["code"] == "IMP")
    cancelled = {**stay, "id": "d" * 32, "status": "cancelled"}
    _append(root, "Observation", [twin, void])
    _append(root, "Encounter", [cancelled])
    return root


def test_both_ways_build_identical_tables(export: Path) -> None:
    spec = bench_features.bench_spec()
    files = export_files(export)
    columnar_count, columnar = read_and_build(COLUMNAR, files, spec)
    naive_count, naive = read_and_build(NAIVE, files, spec)
    assert columnar_count == naive_count > 5000
    assert all(table.num_rows > 0 for table in columnar.values())
    assert identical(columnar, naive)


def test_the_twin_one_changed_value_is_not_identical(export: Path) -> None:
    spec = bench_features.bench_spec()
    files = export_files(export)
    _, columnar = read_and_build(COLUMNAR, files, spec)
    vitals = next(name for name in columnar if "vital" in name)
    table = columnar[vitals]
    heart_rate = table.column("heart_rate").to_pylist()
    heart_rate[0] = (heart_rate[0] or 0.0) + 1.0
    changed = {
        **columnar,
        vitals: table.set_column(
            table.schema.get_field_index("heart_rate"), "heart_rate", pa.array(heart_rate)
        ),
    }
    assert not identical(columnar, changed)
    assert not identical(columnar, {vitals: table})


def test_the_naive_way_follows_the_consent_rule(export: Path) -> None:
    """An opted-out patient is absent from the naive tables exactly as from the columnar
    ones (the baseline does the same work, not less)."""
    spec = bench_features.bench_spec()
    reader = ExportReader()
    reader.read_files(export_files(export))
    excluded = build_groups(reader.columns, spec).consent.excluded_by_consent
    naive = naive_features.read_export(export_files(export))
    assert naive_features.excluded_patients(naive, needs_patient_permit=False) == set(excluded)
    assert excluded
    tables = naive_features.build_tables(naive, spec)
    found = {p for t in tables.values() for p in t.column("patient_id").to_pylist()}
    assert not found & excluded


def test_measure_writes_the_result_and_the_tables(export: Path, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(bench_features.bench_spec().to_json(), encoding="utf-8")
    result, tables = tmp_path / "result.json", tmp_path / "tables"
    argv = ["measure", f"--way={COLUMNAR}", f"--input={export}", f"--spec={spec_file}"]
    assert bench_features.main([*argv, f"--result={result}", f"--tables={tables}"]) == 0
    measured = json.loads(result.read_text(encoding="utf-8"))
    _, expected = read_and_build(COLUMNAR, export_files(export), bench_features.bench_spec())
    assert measured["resources"] > 5000
    assert measured["cpu_seconds"] > 0
    assert measured["records"] == {name: t.num_rows for name, t in expected.items()}
    assert identical(bench_features.read_tables(tables), expected)


def _bench(columnar_cpu: float, naive_cpu: float, one: float, two: float) -> FeatureBench:
    bench = FeatureBench(
        started="2026-12-07T00:00:00+00:00", machine={}, patients=10, load_before=0
    )
    bench.throughput = {
        COLUMNAR: WayRuns(1000, [columnar_cpu], [columnar_cpu], []),
        NAIVE: WayRuns(1000, [naive_cpu], [naive_cpu], []),
    }
    bench.one_shard_seconds, bench.two_shard_seconds = [one], [two]
    return bench


def test_targets_are_met_only_at_their_ratios() -> None:
    met = bench_features.ratio_rows(_bench(1.0, 10.0, 1.7, 1.0))
    assert [row[-1] for row in met] == ["met", "met"]
    missed = bench_features.ratio_rows(_bench(1.0, 9.9, 1.69, 1.0))
    assert [row[-1] for row in missed] == ["NOT met", "NOT met"]


@pytest.mark.parametrize("text", ["1000", "a,b", "0,10", "5,5"])
def test_growth_sizes_need_two_distinct_positive_counts(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"growth|patient counts"):
        bench_features.parse_sizes(text)


def test_growth_sizes_are_sorted() -> None:
    assert bench_features.parse_sizes("3000,1000") == (1000, 3000)


def test_a_small_run_end_to_end(tmp_path: Path) -> None:
    settings = Settings(
        patients=30,
        runs=1,
        growth=(20, 40),
        output=tmp_path / "bench.json",
        markdown=tmp_path / "bench.md",
        max_load=1000.0,
        max_wait_seconds=0,
    )
    bench = bench_features.run_bench(settings, os.environ)
    assert bench.identical_tables
    assert bench.shard_union_identical
    assert [g.patients for g in bench.growth] == [20, 40]
    assert bench.growth[0].resources < bench.growth[1].resources
    report = bench_features.report_json(bench)
    assert json.loads(json.dumps(report))["growth_fit"] is not None
    markdown = bench_features.render_markdown(bench)
    assert "columnar / naive" in markdown
    assert "the union equals the single build: yes" in markdown


def _grown(seconds_of: Any) -> FeatureBench:
    bench = _bench(1.0, 10.0, 2.0, 1.0)
    bench.growth = [
        GrowthRun(n, n * 90, n * 60_000, seconds_of(n), seconds_of(n), None)
        for n in (1000, 3000, 10_000, 30_000, 100_000)
    ]
    return bench


def test_linear_growth_has_exponent_one_and_quadratic_two() -> None:
    linear = _grown(lambda n: 0.5 + n / 500).growth_exponent()
    assert linear is not None and abs(linear - 1) < 0.1
    assert "linear: seconds grow as resources^" in " ".join(
        bench_features.summary_sentences(_grown(lambda n: 0.5 + n / 500))
    )
    quadratic = _grown(lambda n: (n / 1000) ** 2).growth_exponent()
    assert quadratic is not None and abs(quadratic - 2) < 0.01
    assert "not linear" in " ".join(
        bench_features.summary_sentences(_grown(lambda n: (n / 1000) ** 2))
    )
