"""The Preprocess step: offline-store records -> a training dataset for 30-day readmission.

    python -m ml.preprocess --as-of ISO [--features DIR] [--spec FILE] [--output DIR]
        [--split-seed 7] [--validation-share 0.15] [--test-share 0.15]

Inputs follow the processing container's contract: each declared feature group's offline
store data (its ResolvedOutputS3Uri, Feature Store's Parquet layout) under
`--features/<group name>/`, and the feature spec the stack hands the jobs. Output: one folder
(`--output`, default /opt/ml/processing/output/dataset) holding train.csv, validation.csv,
test.csv (label first, no header: the built-in XGBoost algorithm's CSV contract; a missing value
is an empty field) and manifest.json (ml.dataset_manifest: the as-of time, sha256 of every input
file and split, row counts, the split seed).

The join is point-in-time correct, as of the cut-off:

- time travel by write_time: only rows the store held at the cut-off count (write_time <= as-of),
  and only records true by then (event time <= as-of);
- a record is its latest row by event time, then write time; a latest row that is a delete
  marker (is_deleted) removes the record;
- a stay's vital signs are the patient's latest vitals record at or before its discharge, so
  nothing measured after the prediction moment leaks into its features;
- the label (readmitted within 30 days of discharge) is known only when the 30 days and the
  settling time for the readmission's own record (it is written when that stay ends) have
  passed by the cut-off; younger stays are censored (counted, not used);
- the split is by patient (a hash of the seed and the patient id), so no patient's stays are
  on both sides of the evaluation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml.dataset_manifest import (
    DEFAULT_SPLIT_SEED,
    DatasetManifest,
    InputFile,
    ManifestFeature,
    Split,
    sha256_of,
)
from ml.feature_spec import Entity, FeatureSpec, GroupSpec, SpecError, read_spec
from ml.fhir_codes import DISCHARGE_DISPOSITIONS
from ml.offline_store import event_epochs, read_group
from ml.sagemaker_paths import (
    DATASET_DIGEST,
    DATASET_MANIFEST,
    PROCESSING_INPUT,
    PROCESSING_OUTPUT,
    SPLIT_FILES,
)

EXIT_BAD_INPUT: Final = 2
LABEL: Final = "readmitted_30d"
SECONDS_PER_DAY: Final = 86_400
READMISSION_WINDOW_SECONDS: Final = 30 * SECONDS_PER_DAY
# A readmission is a record only once that stay ends: wait this long past the 30 days before a
# stay's label counts as known (longer than any stay the population holds, 15 days).
LABEL_SETTLE_SECONDS: Final = 30 * SECONDS_PER_DAY
DEFAULT_VALIDATION_SHARE: Final = 0.15
DEFAULT_TEST_SHARE: Final = 0.15
STAY_FEATURES: Final = ("length_of_stay_days", "prior_admissions")
VITAL_FEATURES: Final = ("heart_rate", "systolic_bp", "diastolic_bp", "spo2")
# Discharge dispositions one-hot, in a fixed order (the vocabulary the platform codes).
DISPOSITION_PREFIX: Final = "disposition_"
DISPOSITIONS: Final = tuple(DISCHARGE_DISPOSITIONS)
# Whole seconds below this bit, the patient's code above it (epochs fit in 2^41 until 71700).
_TIME_BITS: Final = 41
WRITE_TIME: Final = "write_time"
API_INVOCATION_TIME: Final = "api_invocation_time"
IS_DELETED: Final = "is_deleted"


class PreprocessError(Exception):
    """The input cannot make a dataset (named file and rule)."""


def training_features(spec: FeatureSpec) -> tuple[ManifestFeature, ...]:
    """The model's columns, in CSV order (the inference payload's order too)."""
    vitals, _ = _groups(spec)
    declared = {f.name: f.type for f in vitals.features}
    features = [ManifestFeature(name, "Integral") for name in STAY_FEATURES]
    features += [
        ManifestFeature(f"{DISPOSITION_PREFIX}{code}", "Integral") for code in DISPOSITIONS
    ]
    features += [
        ManifestFeature(name, "Integral" if declared[name] == "Integral" else "Fractional")
        for name in VITAL_FEATURES
    ]
    return tuple(features)


def _groups(spec: FeatureSpec) -> tuple[GroupSpec, GroupSpec]:
    by_entity = {group.entity: group for group in spec.groups}
    missing = [
        e.value for e in (Entity.PATIENT_VITALS, Entity.INPATIENT_STAY) if e not in by_entity
    ]
    if missing:
        raise PreprocessError(
            f"the feature spec declares no group keyed by {', '.join(missing)}: the readmission "
            "dataset needs a vitals group and a stays group"
        )
    vitals, stays = by_entity[Entity.PATIENT_VITALS], by_entity[Entity.INPATIENT_STAY]
    for group, needed in (
        (vitals, VITAL_FEATURES),
        (stays, (*STAY_FEATURES, "patient_id", "admitted_at", "discharge_disposition")),
    ):
        absent = sorted(set(needed) - {f.name for f in group.features})
        if absent:
            raise PreprocessError(f"feature group '{group.name}' declares no {', '.join(absent)}")
    return vitals, stays


@dataclass(frozen=True)
class GroupRows:
    """Every row the store held for a group at the cut-off, each record's rows oldest first
    (by event time, then write time, then invocation time)."""

    table: pa.Table
    files: tuple[InputFile, ...]
    counts: dict[str, int]


def _epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    """Feature Store's timestamp columns (write_time, api_invocation_time) as epoch seconds."""
    as_ms = pc.cast(pc.cast(column, pa.timestamp("ms", tz="UTC")), pa.int64())
    return np.asarray(as_ms.to_numpy(zero_copy_only=False), np.float64) / 1000.0


def visible_rows(root: Path, group: GroupSpec, as_of: float) -> GroupRows:
    """The group's rows as the store held them at `as_of` (time travel by write_time), and
    only those true by then (event time)."""
    files = tuple(
        InputFile(str(p.relative_to(root.parent)), sha256_of(p), p.stat().st_size)
        for p in sorted(root.rglob("*.parquet"))
    )
    if not files:
        raise PreprocessError(f"{root}: no offline-store Parquet for feature group '{group.name}'")
    try:
        table = read_group(root)
    except (OSError, pa.ArrowException) as problem:
        raise PreprocessError(f"{root}: the offline store cannot be read ({problem})") from None
    needed = {
        group.record_identifier,
        group.event_time,
        WRITE_TIME,
        API_INVOCATION_TIME,
        IS_DELETED,
    }
    absent = sorted(needed - set(table.column_names))
    if absent:
        raise PreprocessError(f"{root}: the offline records lack {', '.join(absent)}")
    written = _epoch_seconds(table.column(WRITE_TIME))
    invoked = _epoch_seconds(table.column(API_INVOCATION_TIME))
    event = event_epochs(table, group)
    rows = np.flatnonzero((written <= as_of) & (event <= as_of))
    identifiers = np.asarray(table.column(group.record_identifier).to_pylist(), dtype=str)
    order = np.lexsort((invoked[rows], written[rows], event[rows], identifiers[rows]))
    counts = {
        "read": table.num_rows,
        "not_yet_written": int(np.count_nonzero(written > as_of)),
        "visible": len(rows),
    }
    return GroupRows(table.take(pa.array(rows[order], pa.int64())), files, counts)


def _deleted(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column(IS_DELETED).to_numpy(zero_copy_only=False), bool)


def latest_records(rows: GroupRows, group: GroupSpec) -> tuple[pa.Table, dict[str, int]]:
    """Each record's latest row, unless that row is a delete marker (the record is gone)."""
    ids = np.asarray(rows.table.column(group.record_identifier).to_pylist(), dtype=str)
    last = np.ones(len(ids), bool)
    last[:-1] = ids[1:] != ids[:-1]
    latest = np.flatnonzero(last)
    deleted = _deleted(rows.table)[latest]
    counts = {"latest": len(latest), "deleted": int(np.count_nonzero(deleted))}
    return rows.table.take(pa.array(latest[~deleted], pa.int64())), counts


def _vitals_at(
    vitals: pa.Table, group: GroupSpec, patients: np.ndarray, moments: np.ndarray
) -> dict[str, np.ndarray]:
    """Each (patient, moment)'s vitals: the patient's latest row at or before the moment, none
    when that row deletes the record. `vitals` holds every visible row, oldest first."""
    result = {name: np.full(len(patients), np.nan) for name in VITAL_FEATURES}
    if vitals.num_rows == 0 or len(patients) == 0:
        return result
    vital_patients = np.asarray(vitals.column("patient_id").to_pylist(), dtype=str)
    # One integer per patient, and whole seconds, make one sortable int64 key per pair.
    _, codes = np.unique(np.concatenate([vital_patients, patients]), return_inverse=True)
    vital_codes, wanted_codes = codes[: len(vital_patients)], codes[len(vital_patients) :]
    keys = (vital_codes.astype(np.int64) << _TIME_BITS) | event_epochs(vitals, group).astype(
        np.int64
    )
    wanted = (wanted_codes.astype(np.int64) << _TIME_BITS) | np.floor(moments).astype(np.int64)
    # Stable: rows at the same event second stay in write order, so the last is the newest.
    order = np.argsort(keys, kind="stable")
    position = np.searchsorted(keys[order], wanted, side="right") - 1
    safe = np.maximum(position, 0)
    # The latest earlier row must be this patient's, not the previous patient's, and not a
    # delete marker.
    found = (
        (position >= 0)
        & (vital_codes[order][safe] == wanted_codes)
        & ~_deleted(vitals)[order][safe]
    )
    for name in VITAL_FEATURES:
        column = vitals.column(name).cast(pa.float64()).fill_null(np.nan)
        values = np.asarray(column.to_numpy(zero_copy_only=False), np.float64)[order]
        result[name] = np.where(found, values[safe], np.nan)
    return result


def _split_of(patient: str, seed: int, validation: float, test: float) -> str:
    digest = hashlib.sha256(f"{seed}\x1f{patient}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    if draw < test:
        return "test"
    if draw < test + validation:
        return "validation"
    return "train"


def _cell(value: float, integral: bool) -> str:
    if np.isnan(value):
        return ""
    return str(round(value)) if integral else repr(float(value))


@dataclass(frozen=True)
class Dataset:
    labels: np.ndarray
    columns: dict[str, np.ndarray]
    patients: np.ndarray
    encounters: np.ndarray
    censored: int


def build_dataset(vitals: pa.Table, stays: pa.Table, spec: FeatureSpec, as_of: float) -> Dataset:
    vitals_group, stays_group = _groups(spec)
    patients = np.asarray(stays.column("patient_id").to_pylist(), dtype=str)
    encounters = np.asarray(stays.column(stays_group.record_identifier).to_pylist(), dtype=str)
    admitted = np.asarray(
        stays.column("admitted_at").cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64
    )
    discharged = event_epochs(stays, stays_group)
    known = discharged + READMISSION_WINDOW_SECONDS + LABEL_SETTLE_SECONDS <= as_of
    # Readmitted: another stay of the patient admitted after this discharge, within 30 days.
    order = np.lexsort((admitted, patients))
    sorted_patients, sorted_admitted = patients[order], admitted[order]
    labels = np.zeros(len(stays), np.int64)
    for index in range(len(stays)):
        lo = np.searchsorted(sorted_patients, patients[index], side="left")
        hi = np.searchsorted(sorted_patients, patients[index], side="right")
        later = sorted_admitted[lo:hi]
        labels[index] = int(
            np.any(
                (later > discharged[index])
                & (later <= discharged[index] + READMISSION_WINDOW_SECONDS)
            )
        )
    columns: dict[str, np.ndarray] = {
        name: np.asarray(
            stays.column(name).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False),
            np.float64,
        )
        for name in STAY_FEATURES
    }
    disposition = np.asarray(
        [d or "" for d in stays.column("discharge_disposition").to_pylist()], dtype=str
    )
    for code in DISPOSITIONS:
        columns[f"{DISPOSITION_PREFIX}{code}"] = (disposition == code).astype(np.float64)
    columns.update(_vitals_at(vitals, vitals_group, patients, discharged))
    keep = np.flatnonzero(known)
    return Dataset(
        labels=labels[keep],
        columns={name: values[keep] for name, values in columns.items()},
        patients=patients[keep],
        encounters=encounters[keep],
        censored=int(len(stays) - len(keep)),
    )


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value} is not an ISO-8601 time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value} is not a number") from None
    if not 0 < share < 0.5:
        raise argparse.ArgumentTypeError(f"{value} is not a share in (0, 0.5)")
    return share


def preprocess(
    features: Path,
    spec_file: Path,
    output: Path,
    *,
    as_of: datetime,
    split_seed: int = DEFAULT_SPLIT_SEED,
    validation_share: float = DEFAULT_VALIDATION_SHARE,
    test_share: float = DEFAULT_TEST_SHARE,
) -> DatasetManifest:
    """Write the dataset and its manifest into `output` (atomically); the manifest."""
    try:
        spec = read_spec(spec_file)
    except SpecError as problem:
        raise PreprocessError(str(problem)) from None
    vitals_group, stays_group = _groups(spec)
    cut = as_of.timestamp()
    vitals = visible_rows(features / vitals_group.name, vitals_group, cut)
    stays = visible_rows(features / stays_group.name, stays_group, cut)
    stay_records, stay_counts = latest_records(stays, stays_group)
    dataset = build_dataset(vitals.table, stay_records, spec, cut)
    schema = training_features(spec)
    splits = np.asarray(
        [_split_of(p, split_seed, validation_share, test_share) for p in dataset.patients],
        dtype=str,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        written = {}
        order = np.argsort(dataset.encounters, kind="stable")
        for split, file_name in SPLIT_FILES.items():
            rows = order[splits[order] == split]
            if len(rows) == 0 or len(set(dataset.labels[rows].tolist())) < 2:
                raise PreprocessError(
                    f"the {split} split has {len(rows)} labelled stays and "
                    f"{int(dataset.labels[rows].sum()) if len(rows) else 0} readmissions as of "
                    f"{as_of.isoformat()}: too few to train and evaluate (needs both outcomes)"
                )
            path = stage / file_name
            with path.open("w", encoding="utf-8", newline="\n") as handle:
                for row in rows:
                    cells = [str(int(dataset.labels[row]))]
                    cells += [
                        _cell(float(dataset.columns[f.name][row]), f.type == "Integral")
                        for f in schema
                    ]
                    handle.write(",".join(cells) + "\n")
            written[split] = Split(
                file=file_name,
                sha256=sha256_of(path),
                rows=len(rows),
                positives=int(dataset.labels[rows].sum()),
                patients=len(set(dataset.patients[rows].tolist())),
            )
        manifest = DatasetManifest(
            as_of=as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
            label=LABEL,
            features=schema,
            split_seed=split_seed,
            split_shares={"validation": validation_share, "test": test_share},
            splits=written,
            inputs=vitals.files + stays.files,
            records={
                vitals_group.name: vitals.counts,
                stays_group.name: {**stays.counts, **stay_counts},
            },
            excluded={"censored": dataset.censored},
        )
        digest = manifest.write(stage / DATASET_MANIFEST)
        (stage / DATASET_DIGEST).write_text(
            json.dumps({"manifest_sha256": digest}) + "\n", encoding="utf-8"
        )
        if output.exists():
            shutil.rmtree(output)
        os.replace(stage, output)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.preprocess", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--as-of", required=True, type=_instant, help="the point-in-time cut-off")
    parser.add_argument("--features", type=Path, default=PROCESSING_INPUT / "features")
    parser.add_argument(
        "--spec", type=Path, default=PROCESSING_INPUT / "spec" / "feature-spec.json"
    )
    parser.add_argument("--output", type=Path, default=PROCESSING_OUTPUT / "dataset")
    parser.add_argument("--split-seed", type=int, default=DEFAULT_SPLIT_SEED)
    parser.add_argument("--validation-share", type=_share, default=DEFAULT_VALIDATION_SHARE)
    parser.add_argument("--test-share", type=_share, default=DEFAULT_TEST_SHARE)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        manifest = preprocess(
            arguments.features,
            arguments.spec,
            arguments.output,
            as_of=arguments.as_of,
            split_seed=arguments.split_seed,
            validation_share=arguments.validation_share,
            test_share=arguments.test_share,
        )
    except PreprocessError as problem:
        print(f"preprocess: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rows = ", ".join(
        f"{name} {split.rows} ({split.positives} readmitted)"
        for name, split in manifest.splits.items()
    )
    print(
        f"preprocess: dataset as of {manifest.as_of}: {rows}; "
        f"{manifest.excluded['censored']} stays censored"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
