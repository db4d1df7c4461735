"""Split a FHIR export into patient partitions that each hold everything about their patients.

A HealthLake export is one file set per resource type, so no file holds a whole patient: a
shard of it could not compute a single record. This step routes every usable line by its
patient (a stable CRC-32 of the patient id, so any machine agrees) into one of N partition
files; `ShardedByS3Key` then hands each build instance whole partitions, and each instance's
output is independent of the others'.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, Final

from ml.fhir_export import ExportReader

PARTITION_FILE: Final = "part-{index:05d}.ndjson"


def partition_of(patient_id: str, partitions: int) -> int:
    return zlib.crc32(patient_id.encode()) % partitions


def partition_export(
    files: Iterable[Path], output: Path, *, partitions: int, reader: ExportReader
) -> list[Path]:
    """Write the usable lines of files into `partitions` files under output (which must
    exist and be empty); returns the files written (empty partitions are not written)."""
    with ExitStack() as stack:
        handles: dict[int, BinaryIO] = {}
        for path in files:
            for _, raw, _, patient in reader.lines_of(path):
                index = partition_of(patient, partitions)
                handle = handles.get(index)
                if handle is None:
                    handle = stack.enter_context(
                        (output / PARTITION_FILE.format(index=index)).open("wb")
                    )
                    handles[index] = handle
                handle.write(raw if raw.endswith(b"\n") else raw + b"\n")
    return sorted(output / PARTITION_FILE.format(index=index) for index in handles)
