"""Partition, then build on shards: the union of the shards' records equals one build over the
whole export, byte for byte after sorting, however whole partitions are dealt to instances
(ShardedByS3Key hands each instance whole S3 objects)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ml.feature_builder import build, partition
from ml.fhir_codes import DIASTOLIC_BP, HEART_RATE, SPO2, SYSTOLIC_BP
from ml.fhir_export import export_files
from ml.offline_store import read_group, relative_data_path
from tests.ml import exports
from tests.ml.exports import consent, patient, stay, vital

WRITE_TIME = datetime(2026, 7, 1, tzinfo=UTC)
PARTITIONS = 8


def population(patients: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311  (reproducible test data, not secrets)
    resources: list[dict[str, Any]] = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for p in range(patients):
        pid = f"pat-{p:04d}"
        resources.append(patient(pid))
        if rng.random() < 0.1:
            resources.append(consent(f"c-{p}", pid, "2024-12-01T00:00:00Z", "deny"))
        admitted = start + timedelta(days=rng.randint(0, 300))
        for s in range(rng.randint(1, 3)):
            discharged = admitted + timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 23))
            resources.append(
                stay(
                    f"enc-{p}-{s}",
                    pid,
                    f"{admitted:%Y-%m-%dT%H:%M:%SZ}",
                    f"{discharged:%Y-%m-%dT%H:%M:%SZ}",
                )
            )
            moment = admitted
            while moment <= discharged:
                for index, code in enumerate((HEART_RATE, SYSTOLIC_BP, DIASTOLIC_BP, SPO2)):
                    resources.append(
                        vital(
                            f"obs-{p}-{s}-{moment:%m%d%H}-{index}",
                            pid,
                            code,
                            f"{moment:%Y-%m-%dT%H:%M:%SZ}",
                            round(rng.uniform(60, 130), 1),
                        )
                    )
                moment += timedelta(hours=rng.randint(6, 30))
            admitted = discharged + timedelta(days=rng.randint(3, 60))
    return resources


def canonical(out: Path) -> dict[str, bytes]:
    """Each group's records, sorted, as bytes."""
    found = {}
    for group in exports.spec().groups:
        table = read_group(out / relative_data_path(group, exports.OFFLINE_STORE))
        rows = (
            sorted(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) for row in table.to_pylist())
            if table.num_rows
            else []
        )
        found[group.name] = b"\n".join(rows)
    return found


def build_on(files: list[Path], out: Path, shard: str) -> dict[str, Any]:
    return build(
        files,
        exports.spec(),
        offline_output=out,
        online_output=None,
        shard=shard,
        write_time=WRITE_TIME,
    ).report


@pytest.fixture(scope="module")
def export_and_partitions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("sharding")
    export = exports.write(root / "export", population(60, seed=3))
    report = partition(
        export_files(export), root / "partitions", partitions=PARTITIONS, max_bad_line_share=0.01
    )
    assert report["input"]["bad_lines"] == 0
    return export, sorted((root / "partitions").glob("*.ndjson"))


def deal(files: list[Path], instances: int, how: str) -> list[list[Path]]:
    if how == "round-robin":
        return [files[i::instances] for i in range(instances)]
    size = -(-len(files) // instances)
    return [files[i * size : (i + 1) * size] for i in range(instances)]


@pytest.mark.parametrize(
    ("instances", "how"), [(2, "round-robin"), (2, "halves"), (3, "round-robin")]
)
def test_the_union_of_shards_equals_one_build(
    tmp_path: Path, export_and_partitions: tuple[Path, list[Path]], instances: int, how: str
) -> None:
    export, partitions = export_and_partitions
    whole = tmp_path / "whole"
    single = build_on(export_files(export), whole, "local")
    union = tmp_path / "union"
    reports = [
        build_on(files, union, f"algo-{i + 1}")
        for i, files in enumerate(deal(partitions, instances, how))
    ]
    assert canonical(union) == canonical(whole)
    assert all(canonical(whole).values())
    for group, records in single["records_per_group"].items():
        assert sum(r["records_per_group"][group] for r in reports) == records
    assert (
        sum(r["patients_excluded_by_consent"] for r in reports)
        == single["patients_excluded_by_consent"]
        > 0
    )
    # Shards never overwrite each other's files: every file of every shard is still there.
    assert sum(sum(r["offline_files_per_group"].values()) for r in reports) == len(
        list(union.rglob("*.parquet"))
    )


def test_the_twin_a_lost_partition_breaks_the_union(
    tmp_path: Path, export_and_partitions: tuple[Path, list[Path]]
) -> None:
    export, partitions = export_and_partitions
    build_on(export_files(export), tmp_path / "whole", "local")
    build_on(partitions[1:], tmp_path / "union", "algo-1")
    assert canonical(tmp_path / "union") != canonical(tmp_path / "whole")


def test_a_partition_holds_whole_patients(export_and_partitions: tuple[Path, list[Path]]) -> None:
    _, partitions = export_and_partitions
    owner: dict[str, Path] = {}
    for path in partitions:
        for line in path.read_bytes().splitlines():
            resource = orjson.loads(line)
            reference = resource.get("subject", resource.get("patient", {})).get("reference")
            pid = (
                resource["id"] if resource["resourceType"] == "Patient" else reference.split("/")[1]
            )
            assert owner.setdefault(pid, path) == path
    assert len(set(owner.values())) == len(partitions) > 1
