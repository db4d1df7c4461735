"""Read a FHIR NDJSON export into columns, counting every line it cannot use.

The hot path parses each line with orjson and copies the handful of fields the features need
into plain column lists (no FHIR object model): what a HealthLake export needs at tens of
millions of lines. Every line is accounted for: used, skipped (a real FHIR type no feature
uses) or bad (malformed JSON, not UTF-8, not FHIR R4, no id, a duplicate id, no subject, no
time), and a bad line is reported by file and line number only, never by its content, so
reports carry no patient identifiers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeGuard

import orjson

from ml.bulk import cycle_collection_paused
from ml.fhir_codes import (
    DIASTOLIC_BP,
    EXPORTED_TYPES,
    HEART_RATE,
    INPATIENT,
    LOINC,
    R4_RESOURCE_TYPES,
    SPO2,
    SYSTOLIC_BP,
)

VITAL_CODES: Final = (HEART_RATE, SYSTOLIC_BP, DIASTOLIC_BP, SPO2)
_VITAL_INDEX: Final = {code: index for index, code in enumerate(VITAL_CODES)}
# Reasons, as reported (one vocabulary, so summaries can be counted by reason).
MALFORMED_JSON: Final = "malformed JSON"
NOT_UTF8: Final = "not UTF-8"
NOT_A_RESOURCE: Final = "not a FHIR resource (no resourceType)"
UNKNOWN_TYPE: Final = "unknown resource type (not FHIR R4)"
WRONG_FILE: Final = "resourceType differs from its export file's type"
MISSING_ID: Final = "missing or invalid id"
DUPLICATE_ID: Final = "duplicate id"
MISSING_SUBJECT: Final = "missing subject (Patient reference)"
MISSING_TIME: Final = "missing time"
INVALID_TIME: Final = "invalid time"
UNKNOWN_SUBJECT: Final = "subject is not a Patient in this input"
# Bad lines listed individually in a report; beyond this they are only counted.
LISTED_BAD_LINES: Final = 50
_PATIENT_PREFIX: Final = "Patient/"
_MAX_ID_LENGTH: Final = 64


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int
    reason: str


@dataclass
class ReadReport:
    """What was read: counts only (and file:line of bad lines), never identifiers."""

    lines: int = 0
    resources: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    bad_lines: list[BadLine] = field(default_factory=list)

    @property
    def bad_count(self) -> int:
        return sum(self.bad.values())

    @property
    def bad_share(self) -> float:
        return self.bad_count / self.lines if self.lines else 0.0

    def add_bad(self, file: str, line: int, reason: str) -> None:
        self.bad[reason] += 1
        if len(self.bad_lines) < LISTED_BAD_LINES:
            self.bad_lines.append(BadLine(file, line, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "resources": dict(sorted(self.resources.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "bad_lines": self.bad_count,
            "bad_by_reason": dict(sorted(self.bad.items())),
            "bad_line_share": round(self.bad_share, 6),
            "first_bad_lines": [
                {"file": b.file, "line": b.line, "reason": b.reason} for b in self.bad_lines
            ],
        }


@dataclass
class Columns:
    """The fields features are built from, one list per column (row i of each list belongs
    together). Times are epoch seconds (UTC)."""

    patients: list[str] = field(default_factory=list)
    patient_where: list[tuple[str, int]] = field(default_factory=list)
    # vital signs
    vital_patient: list[str] = field(default_factory=list)
    vital_time: list[float] = field(default_factory=list)
    vital_code: list[int] = field(default_factory=list)  # index into VITAL_CODES
    vital_value: list[float] = field(default_factory=list)
    vital_where: list[tuple[str, int]] = field(default_factory=list)
    # encounters
    encounter_id: list[str] = field(default_factory=list)
    encounter_patient: list[str] = field(default_factory=list)
    encounter_inpatient: list[bool] = field(default_factory=list)
    encounter_status: list[str] = field(default_factory=list)
    encounter_start: list[float] = field(default_factory=list)
    encounter_end: list[float | None] = field(default_factory=list)
    encounter_disposition: list[str | None] = field(default_factory=list)
    encounter_where: list[tuple[str, int]] = field(default_factory=list)
    # consents
    consent_patient: list[str] = field(default_factory=list)
    consent_time: list[float] = field(default_factory=list)
    consent_active: list[bool] = field(default_factory=list)
    consent_decision: list[str] = field(default_factory=list)  # permit | deny | none
    consent_purposes: list[tuple[str, ...]] = field(default_factory=list)
    consent_nested_denials: list[tuple[tuple[str, ...], ...]] = field(default_factory=list)
    consent_where: list[tuple[str, int]] = field(default_factory=list)
    # conditions are validated and counted; no declared feature reads them yet
    condition_patient: list[str] = field(default_factory=list)
    condition_where: list[tuple[str, int]] = field(default_factory=list)


class InputError(Exception):
    """The input cannot be read at all (a missing folder, an unreadable file)."""


def parse_time(value: Any) -> float | None:
    """FHIR dateTime/instant -> epoch seconds; a date alone is midnight UTC; partial dates
    (a year, a month) name no moment and are refused (None)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        if len(value) > 10:
            return None  # FHIR requires a zone whenever a time is given
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _patient_of(reference: Any) -> str | None:
    if not isinstance(reference, dict):
        return None
    value = reference.get("reference")
    if not isinstance(value, str) or not value.startswith(_PATIENT_PREFIX):
        return None
    patient = value[len(_PATIENT_PREFIX) :]
    return patient if 0 < len(patient) <= _MAX_ID_LENGTH else None


def _valid_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID_LENGTH


def _coding_codes(concept: Any, system: str | None = None) -> list[str]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [
        c["code"]
        for c in codings
        if isinstance(c, dict)
        and isinstance(c.get("code"), str)
        and (system is None or c.get("system") == system)
    ]


def _purposes(provision: dict[str, Any]) -> tuple[str, ...]:
    purposes = provision.get("purpose")
    if not isinstance(purposes, list):
        return ()
    return tuple(p["code"] for p in purposes if isinstance(p, dict) and "code" in p)


def export_files(root: Path) -> list[Path]:
    """Every NDJSON file below root, in a stable order (a HealthLake export folder, several,
    or the partitions the partition step wrote)."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*.ndjson") if p.is_file())


def _file_type(path: Path) -> str | None:
    """The resource type an export file holds (`<Type>/<Type>-<n>.ndjson`), or None for a
    file that mixes types (a partition)."""
    stem = path.stem.rsplit("-", 1)[0]
    return stem if stem in R4_RESOURCE_TYPES and path.parent.name == stem else None


class ExportReader:
    """Accumulates columns over any number of files; ids are checked for duplicates across
    all of them."""

    def __init__(self, *, display_root: Path | None = None) -> None:
        self.columns = Columns()
        self.report = ReadReport()
        self._seen: set[tuple[str, str]] = set()
        # (patient, type, file, line) of every accepted resource that refers to a patient.
        self._subjects: list[tuple[str, str, str, int]] = []
        self._display_root = display_root

    def _shown(self, path: Path) -> str:
        if self._display_root is not None:
            try:
                return str(path.relative_to(self._display_root))
            except ValueError:
                pass
        return str(path)

    def read_files(self, paths: Iterable[Path]) -> None:
        with cycle_collection_paused():
            for path in paths:
                self.read_file(path)

    def read_file(self, path: Path) -> None:
        expected = _file_type(path)
        shown = self._shown(path)
        if expected is not None and expected not in EXPORTED_TYPES:
            # A real FHIR type no feature reads (Practitioner, Medication...): counted, and
            # not parsed at all.
            try:
                with path.open("rb") as handle:
                    count = sum(1 for line in handle if line.strip())
            except OSError as error:
                raise InputError(f"{shown}: cannot be read ({error.strerror})") from None
            self.report.lines += count
            self.report.skipped[expected] += count
            return
        try:
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    self._line(raw, shown, number, expected)
        except OSError as error:
            raise InputError(f"{shown}: cannot be read ({error.strerror})") from None

    def lines_of(self, path: Path) -> Iterator[tuple[int, bytes, str, str]]:
        """(line number, raw line, resource type, patient id) of every usable line of a file;
        bad lines are accounted for and not yielded (the partition step routes by patient)."""
        shown = self._shown(path)
        expected = _file_type(path)
        if expected is not None and expected not in EXPORTED_TYPES:
            self.read_file(path)
            return
        try:
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    routed = self._line(raw, shown, number, expected)
                    if routed is not None:
                        yield number, raw, routed[0], routed[1]
        except OSError as error:
            raise InputError(f"{shown}: cannot be read ({error.strerror})") from None

    def _line(  # noqa: PLR0911  (one early return per way a line can be rejected)
        self, raw: bytes, shown: str, number: int, expected: str | None
    ) -> tuple[str, str] | None:
        if not raw.strip():
            return None  # blank lines (a trailing newline) are not lines of data
        report = self.report
        report.lines += 1
        try:
            resource = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            reason = NOT_UTF8 if "UTF-8" in str(error) else MALFORMED_JSON
            report.add_bad(shown, number, reason)
            return None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            report.add_bad(shown, number, NOT_A_RESOURCE)
            return None
        kind = resource["resourceType"]
        if kind not in R4_RESOURCE_TYPES:
            report.add_bad(shown, number, UNKNOWN_TYPE)
            return None
        if expected is not None and kind != expected:
            report.add_bad(shown, number, WRONG_FILE)
            return None
        if kind not in EXPORTED_TYPES:
            report.skipped[kind] += 1
            return None
        identifier = resource.get("id")
        if not _valid_id(identifier):
            report.add_bad(shown, number, MISSING_ID)
            return None
        key = (kind, identifier)
        if key in self._seen:
            report.add_bad(shown, number, DUPLICATE_ID)
            return None
        where = (shown, number)
        patient = self._columns_of(kind, identifier, resource, where)
        if patient is None:
            return None
        self._seen.add(key)
        report.resources[kind] += 1
        if kind != "Patient":
            self._subjects.append((patient, kind, *where))
        return kind, patient

    def _columns_of(  # noqa: PLR0911  (one early return per way a line can be rejected)
        self, kind: str, identifier: str, resource: dict[str, Any], where: tuple[str, int]
    ) -> str | None:
        """Copy the resource's fields into the columns; the patient id, or None when the line
        is bad (already reported)."""
        columns, report = self.columns, self.report
        if kind == "Patient":
            columns.patients.append(identifier)
            columns.patient_where.append(where)
            return identifier
        patient = _patient_of(resource.get("patient" if kind == "Consent" else "subject"))
        if patient is None:
            report.add_bad(*where, MISSING_SUBJECT)
            return None
        if kind == "Observation":
            return self._observation(patient, resource, where)
        if kind == "Encounter":
            return self._encounter(identifier, patient, resource, where)
        if kind == "Consent":
            return self._consent(patient, resource, where)
        # Condition: onset or recorded time, so a later feature can be point-in-time correct.
        raw_time = resource.get("onsetDateTime", resource.get("recordedDate"))
        if raw_time is None:
            report.add_bad(*where, MISSING_TIME)
            return None
        if parse_time(raw_time) is None:
            report.add_bad(*where, INVALID_TIME)
            return None
        columns.condition_patient.append(patient)
        columns.condition_where.append(where)
        return patient

    def _observation(
        self, patient: str, resource: dict[str, Any], where: tuple[str, int]
    ) -> str | None:
        report = self.report
        raw_time = resource.get("effectiveDateTime", resource.get("effectiveInstant"))
        if raw_time is None:
            period = resource.get("effectivePeriod")
            raw_time = period.get("start") if isinstance(period, dict) else None
        if raw_time is None:
            report.add_bad(*where, MISSING_TIME)
            return None
        moment = parse_time(raw_time)
        if moment is None:
            report.add_bad(*where, INVALID_TIME)
            return None
        if resource.get("status") in ("entered-in-error", "cancelled"):
            return patient  # a valid resource that states no measurement
        quantity = resource.get("valueQuantity")
        value = quantity.get("value") if isinstance(quantity, dict) else None
        codes = [c for c in _coding_codes(resource.get("code"), LOINC) if c in _VITAL_INDEX]
        if codes and isinstance(value, int | float) and not isinstance(value, bool):
            columns = self.columns
            columns.vital_patient.append(patient)
            columns.vital_time.append(moment)
            columns.vital_code.append(_VITAL_INDEX[codes[0]])
            columns.vital_value.append(float(value))
            columns.vital_where.append(where)
        return patient

    def _encounter(
        self, identifier: str, patient: str, resource: dict[str, Any], where: tuple[str, int]
    ) -> str | None:
        report = self.report
        period = resource.get("period")
        if not isinstance(period, dict) or period.get("start") is None:
            report.add_bad(*where, MISSING_TIME)
            return None
        start = parse_time(period.get("start"))
        end_raw = period.get("end")
        end = parse_time(end_raw) if end_raw is not None else None
        if start is None or (end_raw is not None and end is None):
            report.add_bad(*where, INVALID_TIME)
            return None
        encounter_class = resource.get("class")
        code = encounter_class.get("code") if isinstance(encounter_class, dict) else None
        hospitalization = resource.get("hospitalization")
        dispositions = (
            _coding_codes(hospitalization.get("dischargeDisposition"))
            if isinstance(hospitalization, dict)
            else []
        )
        columns = self.columns
        columns.encounter_id.append(identifier)
        columns.encounter_patient.append(patient)
        columns.encounter_inpatient.append(code == INPATIENT)
        columns.encounter_status.append(str(resource.get("status", "")))
        columns.encounter_start.append(start)
        columns.encounter_end.append(end)
        columns.encounter_disposition.append(dispositions[0] if dispositions else None)
        columns.encounter_where.append(where)
        return patient

    def _consent(
        self, patient: str, resource: dict[str, Any], where: tuple[str, int]
    ) -> str | None:
        report = self.report
        raw_time = resource.get("dateTime")
        if raw_time is None:
            report.add_bad(*where, MISSING_TIME)
            return None
        moment = parse_time(raw_time)
        if moment is None:
            report.add_bad(*where, INVALID_TIME)
            return None
        provision = resource.get("provision")
        provision = provision if isinstance(provision, dict) else {}
        decision = provision.get("type")
        nested = provision.get("provision")
        nested_denials = tuple(
            _purposes(p)
            for p in (nested if isinstance(nested, list) else [])
            if isinstance(p, dict) and p.get("type") == "deny"
        )
        columns = self.columns
        columns.consent_patient.append(patient)
        columns.consent_time.append(moment)
        columns.consent_active.append(resource.get("status") == "active")
        columns.consent_decision.append(decision if decision in ("permit", "deny") else "none")
        columns.consent_purposes.append(_purposes(provision))
        columns.consent_nested_denials.append(nested_denials)
        columns.consent_where.append(where)
        return patient

    def drop_unknown_subjects(self) -> None:
        """Resources whose patient is not in the input are bad lines (a truncated export, or
        a partition that lost its Patient): reported, uncounted as resources, and not used."""
        columns, report = self.columns, self.report
        known = set(columns.patients)
        orphans = [entry for entry in self._subjects if entry[0] not in known]
        if not orphans:
            return
        for _, kind, shown, number in orphans:
            report.add_bad(shown, number, UNKNOWN_SUBJECT)
            report.resources[kind] -= 1
        for patient_column, others in _PATIENT_KEYED_COLUMNS:
            patients: list[str] = getattr(columns, patient_column)
            keep = [index for index, patient in enumerate(patients) if patient in known]
            for name in (patient_column, *others):
                values = getattr(columns, name)
                setattr(columns, name, [values[index] for index in keep])


# Column lists that belong together, keyed by the patient column that selects their rows.
_PATIENT_KEYED_COLUMNS: Final = (
    ("vital_patient", ("vital_where", "vital_time", "vital_code", "vital_value")),
    (
        "encounter_patient",
        (
            "encounter_where",
            "encounter_id",
            "encounter_inpatient",
            "encounter_status",
            "encounter_start",
            "encounter_end",
            "encounter_disposition",
        ),
    ),
    (
        "consent_patient",
        (
            "consent_where",
            "consent_time",
            "consent_active",
            "consent_decision",
            "consent_purposes",
            "consent_nested_denials",
        ),
    ),
    ("condition_patient", ("condition_where",)),
)
