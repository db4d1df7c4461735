"""The Preprocess step: a point-in-time join of offline-store records as of a cut-off (time travel
by write_time, latest non-deleted record), labels only when known, a patient-level split, and the
XGBoost CSV contract with a manifest of digests. Each property beside the input that breaks it."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml import preprocess as step
from ml.dataset_manifest import read_manifest, sha256_of
from ml.offline_store import TIMESTAMP
from ml.preprocess import PreprocessError, preprocess
from tests.ml import exports
from tests.ml.exports import STAYS, VITALS

DAY = 86_400
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
T0 = (AS_OF - timedelta(days=200)).timestamp()
WRITTEN = datetime(2026, 6, 1, tzinfo=UTC)
BASIS = "hipaa-de-identified: synthetic-population"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stay_row(
    encounter: str, patient: str, admitted: float, days: int, **extra: Any
) -> dict[str, Any]:
    return {
        "encounter_id": encounter,
        "patient_id": patient,
        "admitted_at": admitted,
        "discharged_at": admitted + days * DAY,
        "length_of_stay_days": days,
        "prior_admissions": 0,
        "discharge_disposition": "home",
        "processing_basis": BASIS,
        **extra,
    }


def vitals_row(patient: str, moment: float, heart_rate: float) -> dict[str, Any]:
    return {
        "patient_id": patient,
        "event_time": _iso(moment),
        "heart_rate": heart_rate,
        "systolic_bp": 120,
        "diastolic_bp": 80,
        "spo2": 97.0,
        "processing_basis": BASIS,
    }


class Store:
    """An offline store written row by row, each row with its own write time and delete flag."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def put(
        self, group: str, row: dict[str, Any], *, written: datetime = WRITTEN, deleted: bool = False
    ) -> None:
        spec = next(g for g in exports.spec().groups if g.name == group)
        types = {"String": pa.string(), "Integral": pa.int64(), "Fractional": pa.float64()}
        columns = {f.name: pa.array([row[f.name]], types[f.type]) for f in spec.features}
        columns["write_time"] = pa.array([written], TIMESTAMP)
        columns["api_invocation_time"] = pa.array([written], TIMESTAMP)
        columns["is_deleted"] = pa.array([deleted], pa.bool_())
        folder = self.root / group / "data" / "year=2026"
        folder.mkdir(parents=True, exist_ok=True)
        self.count += 1
        pq.write_table(pa.table(columns), folder / f"{self.count:05d}.parquet")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store whose vitals group holds one record of a patient no case uses."""
    features = Store(tmp_path / "features")
    features.put(VITALS, vitals_row("p-elsewhere", T0, 70.0))
    return features


def dataset_of(store: Store, as_of: datetime = AS_OF) -> dict[str, dict[str, float]]:
    """Each labelled stay's label and features, by encounter id (splits aside)."""
    spec = exports.spec()
    vitals_group, stays_group = (
        next(g for g in spec.groups if g.name == n) for n in (VITALS, STAYS)
    )
    cut = as_of.timestamp()
    vitals = step.visible_rows(store.root / VITALS, vitals_group, cut)
    stays, _ = step.latest_records(
        step.visible_rows(store.root / STAYS, stays_group, cut), stays_group
    )
    built = step.build_dataset(vitals.table, stays, spec, cut)
    return {
        encounter: {
            "label": float(built.labels[i]),
            **{k: float(v[i]) for k, v in built.columns.items()},
        }
        for i, encounter in enumerate(built.encounters)
    }


def test_a_stay_sees_the_vitals_of_its_discharge_not_later_ones(store: Store) -> None:
    store.put(STAYS, stay_row("e1", "p1", T0, 5))
    store.put(VITALS, vitals_row("p1", T0 + 4 * DAY, 88.0))
    store.put(VITALS, vitals_row("p1", T0 + 6 * DAY, 140.0))  # after the discharge
    assert dataset_of(store)["e1"]["heart_rate"] == 88.0


def test_the_twin_a_vital_at_the_discharge_counts(store: Store) -> None:
    store.put(STAYS, stay_row("e1", "p1", T0, 5))
    store.put(VITALS, vitals_row("p1", T0 + 5 * DAY, 140.0))
    assert dataset_of(store)["e1"]["heart_rate"] == 140.0


def test_another_patients_vitals_never_fill_a_gap(store: Store) -> None:
    store.put(STAYS, stay_row("e1", "p2", T0, 5))
    store.put(VITALS, vitals_row("p1", T0 + DAY, 88.0))
    assert str(dataset_of(store)["e1"]["heart_rate"]) == "nan"


def test_time_travel_a_row_written_after_the_cut_off_is_not_seen(store: Store) -> None:
    store.put(STAYS, stay_row("e1", "p1", T0, 5))
    later = AS_OF + timedelta(days=1)
    store.put(STAYS, stay_row("e1", "p1", T0, 5, length_of_stay_days=9), written=later)
    assert dataset_of(store)["e1"]["length_of_stay_days"] == 5
    # The twin: seen from after that write, the newer row is the record.
    assert dataset_of(store, AS_OF + timedelta(days=2))["e1"]["length_of_stay_days"] == 9


def test_a_deleted_record_is_gone_and_a_later_deletion_is_not_yet(store: Store) -> None:
    store.put(STAYS, stay_row("e1", "p1", T0, 5))
    store.put(STAYS, stay_row("e2", "p3", T0, 5))
    store.put(STAYS, stay_row("e1", "p1", T0, 5), written=WRITTEN + timedelta(days=1), deleted=True)
    store.put(STAYS, stay_row("e2", "p3", T0, 5), written=AS_OF + timedelta(days=1), deleted=True)
    seen = dataset_of(store)
    assert "e1" not in seen
    assert "e2" in seen


def test_a_deleted_vitals_record_leaves_the_stay_without_vitals(store: Store) -> None:
    store.put(STAYS, stay_row("e1", "p1", T0, 5))
    store.put(VITALS, vitals_row("p1", T0 + DAY, 88.0))
    store.put(VITALS, vitals_row("p1", T0 + 2 * DAY, 88.0), deleted=True)
    assert str(dataset_of(store)["e1"]["heart_rate"]) == "nan"


@pytest.mark.parametrize(("gap_days", "label"), [(29, 1.0), (31, 0.0)])
def test_readmission_is_a_new_admission_within_30_days(
    store: Store, gap_days: int, label: float
) -> None:
    store.put(STAYS, stay_row("e1", "p1", T0, 5))
    store.put(STAYS, stay_row("e2", "p1", T0 + (5 + gap_days) * DAY, 3))
    assert dataset_of(store)["e1"]["label"] == label


def test_a_stay_whose_outcome_is_not_yet_known_is_censored(store: Store) -> None:
    recent = (AS_OF - timedelta(days=40)).timestamp()
    store.put(STAYS, stay_row("e1", "p1", recent, 2))
    store.put(STAYS, stay_row("e2", "p2", T0, 2))
    assert set(dataset_of(store)) == {"e2"}


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    exports.synthetic_dataset(root, 300, 5, AS_OF)
    return root, root / "spec.json"


def _read(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_the_csv_is_label_first_without_a_header(synthetic_dataset: tuple[Path, Path]) -> None:
    dataset = synthetic_dataset[0] / "dataset"
    manifest = read_manifest(dataset / "manifest.json")
    for split in manifest.splits.values():
        rows = _read(dataset / split.file)
        assert len(rows) == split.rows > 0
        assert {row[0] for row in rows} == {"0", "1"}
        assert all(len(row) == 1 + len(manifest.features) for row in rows)
        assert sum(row[0] == "1" for row in rows) == split.positives
        # No header: every cell parses as a number or is empty (missing).
        assert all(cell == "" or float(cell) == float(cell) for row in rows for cell in row)


def test_no_patient_is_in_two_splits(synthetic_dataset: tuple[Path, Path]) -> None:
    root, _ = synthetic_dataset
    manifest = read_manifest(root / "dataset" / "manifest.json")
    patients = {}
    for name in manifest.splits:
        patients[name] = {p for p in _split_patients(root, name)}
    assert patients["train"] and patients["test"]
    assert not patients["train"] & patients["test"]
    assert not patients["train"] & patients["validation"]
    assert not patients["validation"] & patients["test"]


def _split_patients(root: Path, split: str) -> list[str]:
    spec = exports.spec()
    stays_group = next(g for g in spec.groups if g.name == STAYS)
    cut = (AS_OF + timedelta(days=1)).timestamp()
    stays, _ = step.latest_records(
        step.visible_rows(root / "offline" / STAYS, stays_group, cut), stays_group
    )
    return [
        p
        for p in stays.column("patient_id").to_pylist()
        if step._split_of(
            p, step.DEFAULT_SPLIT_SEED, step.DEFAULT_VALIDATION_SHARE, step.DEFAULT_TEST_SHARE
        )
        == split
    ]


def test_the_manifest_digests_every_input_and_split(synthetic_dataset: tuple[Path, Path]) -> None:
    root, _ = synthetic_dataset
    manifest = read_manifest(root / "dataset" / "manifest.json")
    parquet = sorted((root / "offline").rglob("*.parquet"))
    assert len(manifest.inputs) == len(parquet)
    by_path = {entry.path: entry.sha256 for entry in manifest.inputs}
    for path in parquet:
        assert by_path[str(path.relative_to(root / "offline"))] == sha256_of(path)
    for split in manifest.splits.values():
        assert split.sha256 == sha256_of(root / "dataset" / split.file)
    assert manifest.as_of == "2026-07-01T00:00:00Z"
    # The digest the pipeline reads as a property file is the manifest's.
    digest = (root / "dataset" / "dataset-digest.json").read_text(encoding="utf-8")
    assert (
        digest.strip()
        == f'{{"manifest_sha256": "{sha256_of(root / "dataset" / "manifest.json")}"}}'
    )
    assert manifest.excluded["censored"] > 0
    text = (root / "dataset" / "manifest.json").read_text(encoding="utf-8")
    # Counts and digests only: no patient identifier.
    patients = _split_patients(root, "train")
    assert not any(p in text for p in patients)


def test_the_same_input_gives_the_same_bytes_and_another_seed_does_not(
    synthetic_dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, spec = synthetic_dataset
    again = preprocess(root / "offline", spec, tmp_path / "again", as_of=AS_OF + timedelta(days=1))
    first = read_manifest(root / "dataset" / "manifest.json")
    assert {n: s.sha256 for n, s in again.splits.items()} == {
        n: s.sha256 for n, s in first.splits.items()
    }
    other = preprocess(
        root / "offline", spec, tmp_path / "other", as_of=AS_OF + timedelta(days=1), split_seed=8
    )
    assert other.splits["train"].sha256 != first.splits["train"].sha256


def test_a_missing_group_is_one_line_exit_2_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(exports.spec().to_json(), encoding="utf-8")
    out = tmp_path / "dataset"
    argv = ["--as-of=2026-06-30T00:00:00Z", f"--features={tmp_path / 'none'}", f"--spec={spec}"]
    assert step.main([*argv, f"--output={out}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("preprocess: error: ")
    assert "no offline-store Parquet" in error[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".dataset-*"))


def test_too_few_outcomes_to_split_is_refused(store: Store, tmp_path: Path) -> None:
    store.put(STAYS, stay_row("e1", "p1", T0, 5))
    store.put(VITALS, vitals_row("p1", T0 + DAY, 88.0))
    spec = tmp_path / "spec.json"
    spec.write_text(exports.spec().to_json(), encoding="utf-8")
    with pytest.raises(PreprocessError, match="needs both outcomes"):
        preprocess(store.root, spec, tmp_path / "dataset", as_of=AS_OF)
    assert not (tmp_path / "dataset").exists()
