"""Write feature records the way SageMaker Feature Store's offline store (Glue table format)
lays them out, and read them back.

Layout (SageMaker developer guide, "Feature Store offline store URI structure"):

    <ResolvedOutputS3Uri>/year=YYYY/month=MM/day=DD/hour=HH/<latest event time>_<16 chars>.parquet

where ResolvedOutputS3Uri is `<S3Uri>/<account>/sagemaker/<region>/offline-store/
<group>-<creation epoch>/data`, partitions are hours of the record's event time, and every
row carries the three columns Feature Store adds: `write_time`, `api_invocation_time` and
`is_deleted`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ml.feature_spec import GroupSpec

# The columns Feature Store appends to every offline record (Glue types timestamp, boolean).
SYSTEM_COLUMNS: Final = ("write_time", "api_invocation_time", "is_deleted")
TIMESTAMP: Final = pa.timestamp("ms", tz="UTC")
PARQUET_COMPRESSION: Final = "snappy"
_RANDOM_SUFFIX_LENGTH: Final = 16


def relative_data_path(group: GroupSpec, offline_store_uri: str) -> str:
    """The group's data folder relative to the offline store URI the job's output is
    uploaded to (`<group>/<account>/sagemaker/<region>/offline-store/<group>-<ts>/data`)."""
    resolved = group.resolved_output_s3_uri.rstrip("/")
    root = offline_store_uri.rstrip("/") + "/"
    if not resolved.startswith(root):
        raise ValueError(
            f"feature group '{group.name}': its offline data "
            f"({group.resolved_output_s3_uri}) is not under the offline store {offline_store_uri}"
        )
    return resolved[len(root) :]


def offline_store_uri_of(groups: tuple[GroupSpec, ...]) -> str:
    """The offline store URI every group's S3Uri lives under (`<offline store><group>`, as
    the features layer declares it), read off the resolved URIs."""
    roots = set()
    for group in groups:
        resolved = group.resolved_output_s3_uri
        at = resolved.find(f"/{group.name}/")
        if at < 0:
            raise ValueError(
                f"feature group '{group.name}': {resolved} is not below a folder named for it"
            )
        roots.add(resolved[: at + 1])
    if len(roots) != 1:
        raise ValueError(f"feature groups do not share one offline store: {sorted(roots)}")
    return roots.pop()


def event_epochs(table: pa.Table, group: GroupSpec) -> np.ndarray:
    column = table.column(group.event_time)
    if pa.types.is_string(column.type):
        parsed = pc.strptime(column, format="%Y-%m-%dT%H:%M:%SZ", unit="s")
        return np.asarray(parsed.cast(pa.int64()).to_numpy(zero_copy_only=False), np.float64)
    return np.asarray(column.to_numpy(zero_copy_only=False), np.float64)


def with_system_columns(table: pa.Table, write_time: datetime) -> pa.Table:
    count = table.num_rows
    stamp = pa.array([write_time] * count, TIMESTAMP)
    return (
        table.append_column("write_time", stamp)
        .append_column("api_invocation_time", stamp)
        .append_column("is_deleted", pa.array([False] * count, pa.bool_()))
    )


@dataclass(frozen=True)
class WrittenFile:
    group: str
    path: Path
    rows: int


def _suffix(*parts: str) -> str:
    """Feature Store's 16 random characters, derived instead from what the file holds and
    which shard wrote it: two shards never collide, and a rerun rewrites the same names."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:_RANDOM_SUFFIX_LENGTH]


def write_group(
    table: pa.Table,
    group: GroupSpec,
    *,
    data_root: Path,
    shard: str,
    write_time: datetime,
) -> Iterator[WrittenFile]:
    """Write one group's records under data_root (the group's ResolvedOutputS3Uri mirrored
    locally), one Parquet file per event-time hour."""
    if table.num_rows == 0:
        return
    epochs = event_epochs(table, group)
    hours = (epochs // 3600).astype(np.int64)
    order = np.argsort(hours, kind="stable")
    hours_sorted = hours[order]
    boundaries = np.flatnonzero(np.diff(hours_sorted)) + 1
    # Ordered by hour once, then each hour a zero-copy slice: an offline store is thousands of
    # small files, and a take() per file was a tenth of the build.
    ordered = with_system_columns(table, write_time).take(pa.array(order))
    epochs_sorted = epochs[order]
    starts = [0, *boundaries.tolist()]
    ends = [*boundaries.tolist(), len(order)]
    for start, end in zip(starts, ends, strict=True):
        hour = datetime.fromtimestamp(int(hours_sorted[start]) * 3600, UTC)
        latest = datetime.fromtimestamp(float(epochs_sorted[start:end].max()), UTC)
        folder = data_root / (f"year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{latest:%Y%m%dT%H%M%SZ}_{_suffix(group.name, shard, f'{hour:%Y%m%d%H}')}.parquet"
        rows = ordered.slice(start, end - start)
        # An open file, not a path: pyarrow would otherwise resolve a filesystem per file. No
        # dictionary pages: a file holds one hour's few records, where a dictionary saves no
        # bytes (same store size) and building it was an eighth of the build.
        with pa.OSFile(str(folder / name), "wb") as sink:
            pq.write_table(rows, sink, compression=PARQUET_COMPRESSION, use_dictionary=False)
        yield WrittenFile(group.name, folder / name, rows.num_rows)


def read_group(data_root: Path) -> pa.Table:
    """Every record below a group's data folder (all shards, all hours), as one table."""
    files = sorted(data_root.rglob("*.parquet"))
    if not files:
        return pa.table({})
    # One dataset scan over the listed files (no Hive partition columns added): a group holds
    # one small file per event-time hour, and opening them one by one is most of the cost.
    return ds.dataset([str(path) for path in files], format="parquet").to_table()
