"""The online store's view of a group: the latest record per identifier, written with
`PutRecord` (sagemaker-featurestore-runtime), or kept as NDJSON where the job has no network.

PutRecord takes every value as a string (`ValueAsString`) and omits missing features; the
online store keeps, per identifier, the record with the latest event time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ml.feature_spec import GroupSpec


class FeatureStoreRuntime(Protocol):
    def put_record(self, **kwargs: Any) -> Any: ...


def latest_records(table: pa.Table, group: GroupSpec) -> pa.Table:
    """Per record identifier, the row with the greatest event time (the table is sorted by
    identifier then event time, so it is the last row of each identifier)."""
    if table.num_rows == 0:
        return table
    identifiers = table.column(group.record_identifier).combine_chunks()
    changes = pc.not_equal(identifiers.slice(1), identifiers.slice(0, len(identifiers) - 1))
    last = pa.concat_arrays([changes, pa.array([True])])
    return table.filter(last)


def _as_string(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def put_record_payloads(table: pa.Table) -> Iterator[list[dict[str, str]]]:
    """PutRecord's `Record` for each row: FeatureName / ValueAsString, nulls left out."""
    names = table.column_names
    for row in table.to_pylist():
        yield [
            {"FeatureName": name, "ValueAsString": _as_string(row[name])}
            for name in names
            if row[name] is not None
        ]


def put_records(client: FeatureStoreRuntime, table: pa.Table, group: GroupSpec) -> int:
    count = 0
    for record in put_record_payloads(latest_records(table, group)):
        client.put_record(FeatureGroupName=group.name, Record=record)
        count += 1
    return count


def write_online_file(table: pa.Table, group: GroupSpec, path: Path) -> int:
    """The PutRecord payloads as NDJSON, for a later ingest step that has the network a
    network-isolated processing job does not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as handle:
        for record in put_record_payloads(latest_records(table, group)):
            handle.write(orjson.dumps({"FeatureGroupName": group.name, "Record": record}))
            handle.write(b"\n")
            count += 1
    return count
