"""From the columns of an export to the records of every declared feature group.

Consent first: a patient whose latest active Consent denies secondary use (or who lacks the
permit a consent-based basis needs) contributes nothing, before any feature is computed.
Then each group is computed with numpy over whole columns, point-in-time correct: a vital
sign counts for a record only from its effective time, a stay's record is true from its
discharge, and prior admissions look only backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
import pyarrow as pa

from ml.feature_spec import PROCESSING_BASIS_FEATURE, Entity, FeatureSpec, GroupSpec
from ml.fhir_codes import DIASTOLIC_BP, HEART_RATE, SECONDARY_USE_PURPOSES, SPO2, SYSTOLIC_BP
from ml.fhir_export import VITAL_CODES, Columns

SECONDS_PER_DAY: Final = 86_400
PRIOR_ADMISSION_WINDOW_SECONDS: Final = 365 * SECONDS_PER_DAY
# Encounters that never happened do not count as admissions.
VOID_ENCOUNTER_STATUSES: Final = frozenset({"cancelled", "entered-in-error"})
FINISHED: Final = "finished"
ARROW_TYPES: Final = {"Integral": pa.int64(), "Fractional": pa.float64(), "String": pa.string()}
# Feature name -> (vital code, integral?) for the vitals group.
VITAL_FEATURES: Final = {
    "heart_rate": (HEART_RATE, False),
    "systolic_bp": (SYSTOLIC_BP, True),
    "diastolic_bp": (DIASTOLIC_BP, True),
    "spo2": (SPO2, False),
}
# Milliseconds keep every FHIR second-resolution time exact inside one int64 sort key.
_TIME_BITS: Final = 42


def feature_store_time(epoch_seconds: float) -> str:
    """Feature Store's String event-time format: yyyy-MM-dd'T'HH:mm:ssZ (UTC)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _covers_secondary_use(purposes: Sequence[str]) -> bool:
    # A provision with no purpose applies to every purpose.
    return not purposes or any(p in SECONDARY_USE_PURPOSES for p in purposes)


@dataclass(frozen=True)
class ConsentOutcome:
    included: frozenset[str]
    excluded_by_consent: frozenset[str]


def consent_outcome(columns: Columns, *, needs_patient_permit: bool) -> ConsentOutcome:
    """Which patients may be processed. The latest active Consent (by its dateTime) decides:
    a deny covering secondary use (top level or a nested provision) excludes; under a
    consent-based basis only a permit covering secondary use includes."""
    latest: dict[str, tuple[float, int]] = {}
    for index, patient in enumerate(columns.consent_patient):
        if not columns.consent_active[index]:
            continue
        moment = columns.consent_time[index]
        known = latest.get(patient)
        # Same time: the deny wins (the conservative reading of two simultaneous decisions).
        if (
            known is None
            or moment > known[0]
            or (moment == known[0] and columns.consent_decision[index] == "deny")
        ):
            latest[patient] = (moment, index)
    excluded = set()
    for patient in columns.patients:
        decided = latest.get(patient)
        if decided is None:
            if needs_patient_permit:
                excluded.add(patient)
            continue
        index = decided[1]
        decision = columns.consent_decision[index]
        purposes = columns.consent_purposes[index]
        denied = (decision == "deny" and _covers_secondary_use(purposes)) or any(
            _covers_secondary_use(nested) for nested in columns.consent_nested_denials[index]
        )
        permitted = decision == "permit" and _covers_secondary_use(purposes) and not denied
        if denied or (needs_patient_permit and not permitted):
            excluded.add(patient)
    return ConsentOutcome(
        included=frozenset(columns.patients) - excluded, excluded_by_consent=frozenset(excluded)
    )


def _patient_codes(patients: Sequence[str], included: frozenset[str]) -> dict[str, int]:
    """A dense integer per included patient, in id order (so sort keys are stable)."""
    return {patient: code for code, patient in enumerate(sorted(included & set(patients)))}


def _keys(patient_codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    millis = np.round(times * 1000).astype(np.int64)
    return (patient_codes.astype(np.int64) << _TIME_BITS) | millis


def vitals_columns(columns: Columns, included: frozenset[str]) -> dict[str, pa.Array]:
    """One row per (patient, measurement time): each vital's latest value at or before it."""
    codes = _patient_codes(columns.patients, included)
    keep = np.fromiter(
        (p in codes for p in columns.vital_patient), bool, len(columns.vital_patient)
    )
    patient = np.fromiter(
        (codes.get(p, -1) for p in columns.vital_patient), np.int64, len(columns.vital_patient)
    )[keep]
    times = np.asarray(columns.vital_time, dtype=np.float64)[keep]
    vital = np.asarray(columns.vital_code, dtype=np.int64)[keep]
    values = np.asarray(columns.vital_value, dtype=np.float64)[keep]
    keys = _keys(patient, times)
    record_keys, first = np.unique(keys, return_index=True)
    record_patient = patient[first]
    record_time = times[first]
    names = sorted(codes, key=codes.__getitem__)
    result: dict[str, pa.Array] = {
        "patient_id": pa.array([names[i] for i in record_patient], pa.string()),
        "event_time": pa.array([feature_store_time(t) for t in record_time], pa.string()),
    }
    for feature, (loinc, integral) in VITAL_FEATURES.items():
        mine = vital == VITAL_CODES.index(loinc)
        # Several measurements at the same time: the last one in the export wins, stably.
        order = np.argsort(keys[mine], kind="stable")
        code_keys = keys[mine][order]
        code_values = values[mine][order]
        code_patient = patient[mine][order]
        if len(code_keys):
            position = np.searchsorted(code_keys, record_keys, side="right") - 1
            safe = np.maximum(position, 0)
            # The latest earlier measurement must be this patient's, not the previous one's.
            found = (position >= 0) & (code_patient[safe] == record_patient)
            latest = np.where(found, code_values[safe], np.nan)
        else:
            found = np.zeros(len(record_keys), bool)
            latest = np.full(len(record_keys), np.nan)
        if integral:
            result[feature] = pa.array(
                np.round(np.where(found, latest, 0.0)).astype(np.int64),
                pa.int64(),
                mask=~found,
            )
        else:
            result[feature] = pa.array(latest, pa.float64(), mask=~found)
    return result


def stay_columns(columns: Columns, included: frozenset[str]) -> dict[str, pa.Array]:
    """One row per finished inpatient stay of an included patient, true from its discharge."""
    codes = _patient_codes(columns.patients, included)
    count = len(columns.encounter_id)
    admission = np.fromiter(
        (
            columns.encounter_inpatient[i]
            and columns.encounter_status[i] not in VOID_ENCOUNTER_STATUSES
            and columns.encounter_patient[i] in codes
            for i in range(count)
        ),
        bool,
        count,
    )
    patient = np.fromiter((codes.get(p, -1) for p in columns.encounter_patient), np.int64, count)
    start = np.asarray(columns.encounter_start, dtype=np.float64)
    end = np.asarray([np.nan if e is None else e for e in columns.encounter_end], np.float64)
    # Prior admissions: every admission of the patient that started in the year before.
    admission_keys = np.sort(_keys(patient[admission], start[admission]))
    upper = np.searchsorted(admission_keys, _keys(patient, start), side="left")
    lower = np.searchsorted(
        admission_keys, _keys(patient, start - PRIOR_ADMISSION_WINDOW_SECONDS), side="left"
    )
    prior = upper - lower
    finished = np.fromiter(
        (columns.encounter_status[i] == FINISHED for i in range(count)), bool, count
    )
    record = admission & finished & ~np.isnan(end) & (end >= start)
    rows = np.flatnonzero(record)
    return {
        "encounter_id": pa.array([columns.encounter_id[i] for i in rows], pa.string()),
        "patient_id": pa.array([columns.encounter_patient[i] for i in rows], pa.string()),
        "admitted_at": pa.array(start[rows], pa.float64()),
        "discharged_at": pa.array(end[rows], pa.float64()),
        "length_of_stay_days": pa.array(
            np.floor((end[rows] - start[rows]) / SECONDS_PER_DAY).astype(np.int64), pa.int64()
        ),
        "prior_admissions": pa.array(prior[rows].astype(np.int64), pa.int64()),
        "discharge_disposition": pa.array(
            [columns.encounter_disposition[i] for i in rows], pa.string()
        ),
    }


def group_table(group: GroupSpec, derived: dict[str, pa.Array], basis_label: str) -> pa.Table:
    """The group's declared features, in declared order and type, sorted by record
    identifier then event time (so any two builds of the same input are identical)."""
    rows = len(next(iter(derived.values()))) if derived else 0
    arrays = []
    for feature in group.features:
        if feature.name == PROCESSING_BASIS_FEATURE:
            arrays.append(pa.array([basis_label] * rows, pa.string()))
        else:
            arrays.append(derived[feature.name].cast(ARROW_TYPES[feature.type]))
    table = pa.Table.from_arrays(arrays, names=[f.name for f in group.features])
    return table.sort_by([(group.record_identifier, "ascending"), (group.event_time, "ascending")])


@dataclass(frozen=True)
class BuiltGroups:
    tables: dict[str, pa.Table]
    consent: ConsentOutcome


def build_groups(columns: Columns, spec: FeatureSpec) -> BuiltGroups:
    consent = consent_outcome(columns, needs_patient_permit=spec.basis.needs_patient_permit)
    derived: dict[Entity, dict[str, pa.Array]] = {}
    tables = {}
    for group in spec.groups:
        entity = group.entity
        if entity not in derived:
            compute = vitals_columns if entity is Entity.PATIENT_VITALS else stay_columns
            derived[entity] = compute(columns, consent.included)
        tables[group.name] = group_table(group, derived[entity], spec.basis.label)
    return BuiltGroups(tables, consent)
