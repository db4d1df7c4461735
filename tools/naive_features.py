"""The naive way from a FHIR export to feature records: the benchmark's baseline, not used by
the platform.

Every line is parsed with the standard library's JSON parser into fhirclient's FHIR R4 object
model (validated, as an application built on a FHIR library would), and the rows are built in
Python, one patient at a time. It follows the same rules as `ml.feature_records` (the latest
active Consent decides; a vital counts from its effective time; stays are records from their
discharge and count the inpatient admissions of the year before), and `tools.bench_features`
checks that both produce identical tables before it compares their speed.

The input is a clean export (the bench generates it): bad lines are the columnar reader's job
and are not re-implemented here; a line fhirclient refuses raises.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
from fhirclient.models.condition import Condition
from fhirclient.models.consent import Consent
from fhirclient.models.encounter import Encounter
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

from ml.feature_records import (
    FINISHED,
    PRIOR_ADMISSION_WINDOW_SECONDS,
    SECONDS_PER_DAY,
    VITAL_FEATURES,
    VOID_ENCOUNTER_STATUSES,
    feature_store_time,
    group_table,
)
from ml.feature_spec import Entity, FeatureSpec
from ml.fhir_codes import INPATIENT, LOINC, SECONDARY_USE_PURPOSES

MODELS: Final[dict[str, Any]] = {
    "Patient": Patient,
    "Encounter": Encounter,
    "Observation": Observation,
    "Condition": Condition,
    "Consent": Consent,
}
_VITAL_FEATURE_OF: Final = {loinc: name for name, (loinc, _) in VITAL_FEATURES.items()}
_VOID_OBSERVATION_STATUSES: Final = frozenset({"entered-in-error", "cancelled"})


@dataclass
class NaiveExport:
    """Every resource of the export as fhirclient objects, by type, in export order."""

    resources: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    @property
    def count(self) -> int:
        return sum(len(objects) for objects in self.resources.values())


def read_export(files: Iterable[Path]) -> NaiveExport:
    export = NaiveExport()
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                resource = json.loads(line)
                kind = resource["resourceType"]
                export.resources[kind].append(MODELS[kind](resource, strict=True))
    return export


def _patient(reference: Any) -> str:
    return str(reference.reference).removeprefix("Patient/")


def _covers_secondary_use(purposes: Sequence[str]) -> bool:
    return not purposes or any(p in SECONDARY_USE_PURPOSES for p in purposes)


def _purposes(provision: Any) -> list[str]:
    return [coding.code for coding in provision.purpose or [] if coding.code is not None]


def excluded_patients(export: NaiveExport, *, needs_patient_permit: bool) -> set[str]:
    latest: dict[str, tuple[float, Any]] = {}
    for consent in export.resources["Consent"]:
        if consent.status != "active":
            continue
        patient = _patient(consent.patient)
        moment = consent.dateTime.datetime.timestamp()
        decision = consent.provision.type if consent.provision else None
        known = latest.get(patient)
        if known is None or moment > known[0] or (moment == known[0] and decision == "deny"):
            latest[patient] = (moment, consent)
    excluded = set()
    for resource in export.resources["Patient"]:
        patient = resource.id
        if patient not in latest:
            if needs_patient_permit:
                excluded.add(patient)
            continue
        provision = latest[patient][1].provision
        decision = provision.type if provision else None
        purposes = _purposes(provision) if provision else []
        nested = [p for p in (provision.provision or []) if p.type == "deny"] if provision else []
        denied = (decision == "deny" and _covers_secondary_use(purposes)) or any(
            _covers_secondary_use(_purposes(p)) for p in nested
        )
        permitted = decision == "permit" and _covers_secondary_use(purposes) and not denied
        if denied or (needs_patient_permit and not permitted):
            excluded.add(patient)
    return excluded


def _millis(epoch_seconds: float) -> int:
    return round(epoch_seconds * 1000)


def vitals_rows(export: NaiveExport, included: set[str]) -> list[dict[str, Any]]:
    """One row per patient and measurement time, each vital's latest value at or before it."""
    by_patient: dict[str, list[tuple[int, float, str, float]]] = defaultdict(list)
    for observation in export.resources["Observation"]:
        patient = _patient(observation.subject)
        if patient not in included or observation.status in _VOID_OBSERVATION_STATUSES:
            continue
        codes = [
            c.code
            for c in (observation.code.coding or [])
            if c.system == LOINC and c.code in _VITAL_FEATURE_OF
        ]
        quantity = observation.valueQuantity
        if not codes or quantity is None or quantity.value is None:
            continue
        moment = observation.effectiveDateTime.datetime.timestamp()
        by_patient[patient].append(
            (_millis(moment), moment, _VITAL_FEATURE_OF[codes[0]], float(quantity.value))
        )
    rows = []
    for patient in sorted(by_patient):
        # Sorted by time only (stable), so at one time the last in the export wins.
        measurements = sorted(by_patient[patient], key=lambda m: m[0])
        latest: dict[str, float] = {}
        first_moment = 0.0
        for index, (millis, moment, feature, value) in enumerate(measurements):
            if index == 0 or measurements[index - 1][0] != millis:
                first_moment = moment  # the record's time: the first measurement at it
            latest[feature] = value
            following = measurements[index + 1][0] if index + 1 < len(measurements) else None
            if following == millis:
                continue
            row: dict[str, Any] = {
                "patient_id": patient,
                "event_time": feature_store_time(first_moment),
            }
            for name, (_, integral) in VITAL_FEATURES.items():
                known = latest.get(name)
                row[name] = None if known is None else (round(known) if integral else known)
            rows.append(row)
    return rows


def stay_rows(export: NaiveExport, included: set[str]) -> list[dict[str, Any]]:
    """One row per finished inpatient stay of an included patient."""
    admissions: dict[str, list[int]] = defaultdict(list)
    encounters = export.resources["Encounter"]
    for encounter in encounters:
        patient = _patient(encounter.subject)
        if (
            patient in included
            and encounter.class_fhir.code == INPATIENT
            and encounter.status not in VOID_ENCOUNTER_STATUSES
        ):
            admissions[patient].append(_millis(encounter.period.start.datetime.timestamp()))
    rows = []
    for encounter in encounters:
        patient = _patient(encounter.subject)
        start = encounter.period.start.datetime.timestamp()
        end = encounter.period.end.datetime.timestamp() if encounter.period.end else None
        if (
            patient not in included
            or encounter.class_fhir.code != INPATIENT
            or encounter.status in VOID_ENCOUNTER_STATUSES
            or encounter.status != FINISHED
            or end is None
            or end < start
        ):
            continue
        window_start = _millis(start - PRIOR_ADMISSION_WINDOW_SECONDS)
        prior = sum(1 for a in admissions[patient] if window_start <= a < _millis(start))
        hospitalization = encounter.hospitalization
        disposition = hospitalization.dischargeDisposition if hospitalization else None
        codes = [c.code for c in (disposition.coding or [])] if disposition else []
        rows.append(
            {
                "encounter_id": encounter.id,
                "patient_id": patient,
                "admitted_at": start,
                "discharged_at": end,
                "length_of_stay_days": math.floor((end - start) / SECONDS_PER_DAY),
                "prior_admissions": prior,
                "discharge_disposition": codes[0] if codes else None,
            }
        )
    return rows


_ROW_TYPES: Final = {
    "patient_id": pa.string(),
    "event_time": pa.string(),
    "heart_rate": pa.float64(),
    "systolic_bp": pa.int64(),
    "diastolic_bp": pa.int64(),
    "spo2": pa.float64(),
    "encounter_id": pa.string(),
    "admitted_at": pa.float64(),
    "discharged_at": pa.float64(),
    "length_of_stay_days": pa.int64(),
    "prior_admissions": pa.int64(),
    "discharge_disposition": pa.string(),
}


def _arrays(rows: list[dict[str, Any]], names: Iterable[str]) -> dict[str, pa.Array]:
    return {name: pa.array([row[name] for row in rows], _ROW_TYPES[name]) for name in names}


def build_tables(export: NaiveExport, spec: FeatureSpec) -> dict[str, pa.Table]:
    """Every declared group's table, shaped by the same `group_table` as the columnar build."""
    everyone = {patient.id for patient in export.resources["Patient"]}
    included = everyone - excluded_patients(
        export, needs_patient_permit=spec.basis.needs_patient_permit
    )
    derived: dict[Entity, dict[str, pa.Array]] = {}
    tables = {}
    for group in spec.groups:
        if group.entity not in derived:
            if group.entity is Entity.PATIENT_VITALS:
                rows = vitals_rows(export, included)
                names = ("patient_id", "event_time", *VITAL_FEATURES)
            else:
                rows = stay_rows(export, included)
                names = tuple(n for n in _ROW_TYPES if n not in {"event_time", *VITAL_FEATURES})
            derived[group.entity] = _arrays(rows, names)
        tables[group.name] = group_table(group, derived[group.entity], spec.basis.label)
    return tables
