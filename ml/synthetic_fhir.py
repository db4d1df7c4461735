"""A synthetic clinical population, written as an AWS HealthLake FHIR R4 export.

    python -m ml.synthetic_fhir --patients N --seed S --out DIR [--datastore-id ID]
        [--job-id ID] [--resources-per-file K] [--opt-out-share 0.03] [--as-of ISO]

The output is laid out exactly as StartFHIRExportJob writes it:
`DIR/<datastore id>-FHIR_EXPORT-<job id>/<Type>/<Type>-<n>.ndjson`, at most K resources per
file, one compact JSON resource a line, and nothing else (HealthLake writes no manifest). A type
without any resource gets no file, as in a real export. The same N, seed and as-of give the same
bytes; the export appears only when complete (it is built in a hidden sibling folder and renamed
into place).

What the population holds:

- Patient: adults 18-95 at as-of, one MRN each.
- Encounter: inpatient stays (class IMP, 1-15 days, with a discharge disposition) and ambulatory
  visits (class AMB: follow-ups and routine visits, which are not admissions), all within about
  two years before as-of and ended by then. Times carry "Z", "-05:00" or "+01:00" offsets, so a
  reader has to normalise time zones before comparing them.
- Observation: the four vital signs (heart rate, systolic and diastolic pressure, SpO2) as
  separate resources at admission, every 6-12 hours and at discharge; abnormal values drift
  toward normal over a stay.
- Condition: 0-3 chronic conditions per patient, recorded before the patient's first encounter.
- Consent: one research-scope Consent per patient, "permit" (OPTIN) or, for the opt-out share,
  "deny" (OPTOUT). About 0.5% of permitting patients later withdraw: they have a second, later
  Consent that denies, and both stay "active". The latest active Consent is the patient's
  decision; `Population.opted_out` holds every patient whose decision at as-of is deny.

The learnable signal is 30-day readmission: an inpatient stay is readmitted when the patient's
next inpatient stay starts within 30 days after it ends. Stays are simulated in order; at each
discharge the outcome is drawn with the probability `READMISSION_MODEL` gives from facts visible
in the export at that moment (see `StayFeatures`); a readmission starts 1-29 days later, any other
next stay 31-400 days later (or never). `Population.stays` reports every stay's features, true
probability and label.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, NamedTuple, NoReturn

import orjson

from ml.bulk import cycle_collection_paused
from ml.fhir_codes import (
    ACT_CODE,
    ACT_REASON,
    AMBULATORY,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    CONDITIONS,
    CONSENT_CATEGORY_LOINC,
    CONSENT_SCOPE,
    CONSENT_SCOPE_RESEARCH,
    DIASTOLIC_BP,
    DISCHARGE_DISPOSITION,
    DISCHARGE_DISPOSITIONS,
    EXPORT_FOLDER_MARKER,
    EXPORTED_TYPES,
    HEART_RATE,
    ICD10,
    INPATIENT,
    LOINC,
    MRN_SYSTEM,
    OBSERVATION_CATEGORY,
    RESEARCH_PURPOSE,
    SPO2,
    SYSTOLIC_BP,
    UCUM,
    VITAL_NAMES,
    VITAL_UNITS,
    export_file,
    export_folder,
)

DEFAULT_AS_OF: Final = datetime(2026, 6, 30, tzinfo=UTC)
DEFAULT_RESOURCES_PER_FILE: Final = 5000
DEFAULT_OPT_OUT_SHARE: Final = 0.03
MAX_OPT_OUT_SHARE: Final = 0.5
# Share of permitting patients who later withdraw (a second, denying Consent).
WITHDRAWAL_SHARE: Final = 0.005
READMISSION_WINDOW_DAYS: Final = 30
HISTORY_DAYS: Final = 730
MIN_AGE: Final = 18
MAX_AGE: Final = 95
EXIT_BAD_ARGUMENTS: Final = 2

HEART_FAILURE: Final = "I50.9"
COPD: Final = "J44.9"

# Codes of R4 value sets that fhir_codes.py has no use for on the reading side.
VITAL_SIGNS_CATEGORY: Final = "vital-signs"
PROBLEM_LIST_ITEM: Final = "problem-list-item"
ACTIVE: Final = "active"
CONFIRMED: Final = "confirmed"
OPT_IN: Final = "OPTIN"
OPT_OUT: Final = "OPTOUT"

_DAY: Final = 86_400
_HOUR: Final = 3_600
_MINUTE: Final = 60
_YEAR: Final = 365.2425 * _DAY
_HEX_ID: Final = re.compile(r"^[0-9a-f]{32}$")
# The offsets clinical systems stamp times with; UTC appears most (devices, HealthLake itself).
_OFFSETS: Final = (0, 0, -300, 60)
_OFFSET_SUFFIX: Final = {0: "Z", -300: "-05:00", 60: "+01:00"}
_VITAL_ORDER: Final = (HEART_RATE, SYSTOLIC_BP, DIASTOLIC_BP, SPO2)

_FAMILY_NAMES: Final = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker",
)  # fmt: skip
_GIVEN_NAMES: Final = {
    "female": ("Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan",
               "Jessica", "Sarah", "Karen", "Nancy", "Lisa", "Betty", "Margaret", "Sandra"),
    "male": ("James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph",
             "Thomas", "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark"),
}  # fmt: skip
# Chronic condition prevalence at age 18 and at age 95 (linear between).
_PREVALENCE: Final = {
    HEART_FAILURE: (0.03, 0.30),
    COPD: (0.03, 0.22),
    "E11.9": (0.08, 0.30),
    "N18.3": (0.02, 0.25),
}
_MAX_CONDITIONS: Final = 3


# --- the ground truth -----------------------------------------------------------------------


@dataclass(frozen=True)
class StayFeatures:
    """What the export shows about an inpatient stay at its discharge."""

    prior_admissions: int  # inpatient admissions starting in the 365 days before this one
    last_spo2: float  # the stay's last SpO2 (%), as exported
    last_heart_rate: float  # the stay's last heart rate (/min), as exported
    length_of_stay_days: float
    discharge_disposition: str  # a DISCHARGE_DISPOSITIONS code
    heart_failure: bool  # a Condition I50.9 recorded before the stay
    copd: bool  # a Condition J44.9 recorded before the stay
    age_years: float  # at discharge, from birthDate


@dataclass(frozen=True)
class ReadmissionModel:
    """The ground truth of the population: the 30-day readmission probability of a stay is
    sigmoid(logit), the logit being the intercept plus the terms below. Every input is visible
    in the export at discharge, so a model trained on the export can recover it."""

    intercept: float
    per_prior_admission: float
    prior_admissions_cap: int  # beyond this many, more prior admissions add no risk
    per_spo2_point_below: float
    spo2_reference: float  # %, the SpO2 below which risk rises
    per_10_heart_rate_above: float
    heart_rate_reference: float  # /min, the heart rate above which risk rises
    per_day_of_stay: float
    disposition: Mapping[str, float]  # added per discharge disposition (home is 0)
    heart_failure: float
    copd: float
    per_10_years_above: float
    age_reference: float

    def logit(self, stay: StayFeatures) -> float:
        return (
            self.intercept
            + self.per_prior_admission * min(stay.prior_admissions, self.prior_admissions_cap)
            + self.per_spo2_point_below * max(0.0, self.spo2_reference - stay.last_spo2)
            + self.per_10_heart_rate_above
            * max(0.0, stay.last_heart_rate - self.heart_rate_reference)
            / 10
            + self.per_day_of_stay * stay.length_of_stay_days
            + self.disposition.get(stay.discharge_disposition, 0.0)
            + (self.heart_failure if stay.heart_failure else 0.0)
            + (self.copd if stay.copd else 0.0)
            + self.per_10_years_above * max(0.0, stay.age_years - self.age_reference) / 10
        )

    def probability(self, stay: StayFeatures) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit(stay)))


READMISSION_MODEL: Final = ReadmissionModel(
    intercept=-4.1,
    per_prior_admission=0.55,
    prior_admissions_cap=4,
    per_spo2_point_below=0.45,
    spo2_reference=96.0,
    per_10_heart_rate_above=0.45,
    heart_rate_reference=80.0,
    per_day_of_stay=0.06,
    disposition=MappingProxyType(
        {"home": 0.0, "rehab": 0.4, "oth-hosp": 0.5, "snf": 0.9, "aadvice": 1.3}
    ),
    heart_failure=0.8,
    copd=0.6,
    per_10_years_above=0.25,
    age_reference=60.0,
)


def readmission_probability(
    stay: StayFeatures, model: ReadmissionModel = READMISSION_MODEL
) -> float:
    """The true probability that a stay with these features is readmitted within 30 days."""
    return model.probability(stay)


@dataclass(frozen=True)
class StayTruth:
    """One inpatient stay as simulated: its features, true probability and outcome."""

    encounter_id: str
    patient_id: str
    admitted: datetime
    discharged: datetime
    features: StayFeatures
    probability: float
    outcome_drawn: bool  # the readmission the simulation drew at discharge
    readmitted: bool  # what the export shows: the next inpatient stay starts within 30 days
    label_complete: bool  # the 30 days after discharge end by as-of (else readmitted may lag)


# --- the population -------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """The resources of each exported type, in export order, and what the simulation knows."""

    seed: int
    as_of: datetime
    patients: list[dict[str, Any]]
    encounters: list[dict[str, Any]]
    observations: list[dict[str, Any]]
    conditions: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    opted_out: frozenset[str]
    stays: tuple[StayTruth, ...]

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return {
            "Patient": self.patients,
            "Encounter": self.encounters,
            "Observation": self.observations,
            "Condition": self.conditions,
            "Consent": self.consents,
        }[resource_type]


class _VitalRound(NamedTuple):
    """One round of the four vital signs (in _VITAL_ORDER), kept compact until it is either
    materialised as resources or encoded straight into export lines."""

    hexes: str  # 32 hex digits per Observation id
    stored: str
    reference: str
    encounter: str
    when: str
    values: tuple[float, float, float, float]

    def resources(self) -> Iterator[dict[str, Any]]:
        for slot, code in enumerate(_VITAL_ORDER):
            yield _vital(
                _uuid_text(self.hexes, slot),
                code,
                stored=self.stored,
                reference=self.reference,
                encounter=self.encounter,
                when=self.when,
                value=self.values[slot],
            )

    def lines(self) -> Iterator[bytes]:
        """Exactly orjson.dumps(resource) + newline for each resource (a test holds both
        ways to the same bytes), at a fraction of the cost: most of an export is vitals."""
        for slot, code in enumerate(_VITAL_ORDER):
            yield (
                f'{{"resourceType":"Observation","id":"{_uuid_text(self.hexes, slot)}",'
                f'"meta":{{"versionId":"1","lastUpdated":"{self.stored}"}},"status":"final",'
                f'{_VITAL_JSON[code]},"subject":{{"reference":"{self.reference}"}},'
                f'"encounter":{{"reference":"{self.encounter}"}},'
                f'"effectiveDateTime":"{self.when}",'
                f'"valueQuantity":{{"value":{_number_json(self.values[slot])},'
                f"{_UNIT_JSON[code]}}}}}\n"
            ).encode()


@dataclass
class _PatientRecord:
    """Everything one patient contributes, per exported type (vital signs as rounds)."""

    resources: dict[str, list[dict[str, Any]]]
    vital_rounds: list[_VitalRound]
    stays: list[StayTruth]
    opted_out: bool

    def as_resources(self) -> dict[str, list[dict[str, Any]]]:
        observations = [r for vital in self.vital_rounds for r in vital.resources()]
        return {**self.resources, "Observation": observations}

    def as_lines(self) -> dict[str, Sequence[dict[str, Any] | bytes]]:
        lines = [line for vital in self.vital_rounds for line in vital.lines()]
        return {**self.resources, "Observation": lines}


@dataclass
class _Stay:
    encounter_id: str
    start: int
    end: int
    disposition: str
    outcome_drawn: bool
    features: StayFeatures
    probability: float
    next_start: int | None = None


@dataclass
class _Simulator:
    """One patient at a time from one random stream, so a seed fixes every byte."""

    rng: random.Random
    as_of: int
    used_mrns: set[str] = field(default_factory=set)

    # --- small helpers -----------------------------------------------------------------

    def new_id(self) -> str:
        return _uuid_text(self.rng.randbytes(16).hex(), 0)

    def new_mrn(self) -> str:
        while True:
            mrn = f"MRN{self.rng.randrange(100_000_000):08d}"
            if mrn not in self.used_mrns:
                self.used_mrns.add(mrn)
                return mrn

    @property
    def latest_admission(self) -> int:
        """Admissions after this could not last a day and end (an hour) before as-of."""
        return self.as_of - _DAY - _HOUR

    def meta(self, written: int) -> dict[str, str]:
        """HealthLake stamps each resource when it is stored: a little after the event."""
        stored = min(written + self.rng.randrange(60, 3 * _HOUR), self.as_of)
        return {"versionId": "1", "lastUpdated": _instant(stored)}

    # --- one patient -------------------------------------------------------------------

    def patient(self, *, opts_out: bool) -> _PatientRecord:
        rng = self.rng
        patient_id = self.new_id()
        reference = f"Patient/{patient_id}"
        gender = rng.choice(("female", "male"))
        birth = self.birth_date(round(rng.triangular(MIN_AGE, MAX_AGE, 74)))
        birth_epoch = _epoch_of_date(birth)
        age_now = (self.as_of - birth_epoch) / _YEAR
        codes = self.condition_codes(age_now)
        site_offset = rng.choice(_OFFSETS)
        encounters, vital_rounds, stays = self.encounters(
            reference, codes, birth_epoch, site_offset
        )
        first_contact = min((start for start, _ in encounters), default=self.as_of)
        registered = first_contact - rng.randrange(_DAY, 400 * _DAY)
        patient = {
            "resourceType": "Patient",
            "id": patient_id,
            "meta": self.meta(registered),
            "identifier": [{"system": MRN_SYSTEM, "value": self.new_mrn()}],
            "active": True,
            "name": [
                {
                    "family": rng.choice(_FAMILY_NAMES),
                    "given": [rng.choice(_GIVEN_NAMES[gender])],
                }
            ],
            "gender": gender,
            "birthDate": birth.isoformat(),
            "address": [{"country": "US"}],
        }
        conditions = [self.condition(reference, code, first_contact, site_offset) for code in codes]
        consents = [self.consent(reference, registered, deny=opts_out)]
        withdraws = not opts_out and rng.random() < WITHDRAWAL_SHARE
        if withdraws:
            withdrawn = rng.randrange(registered + _HOUR, self.as_of)
            consents.append(self.consent(reference, withdrawn, deny=True))
        return _PatientRecord(
            resources={
                "Patient": [patient],
                "Encounter": [encounter for _, encounter in sorted(encounters, key=_first)],
                "Condition": conditions,
                "Consent": consents,
            },
            vital_rounds=vital_rounds,
            stays=[
                StayTruth(
                    encounter_id=stay.encounter_id,
                    patient_id=patient_id,
                    admitted=datetime.fromtimestamp(stay.start, UTC),
                    discharged=datetime.fromtimestamp(stay.end, UTC),
                    features=stay.features,
                    probability=stay.probability,
                    outcome_drawn=stay.outcome_drawn,
                    readmitted=stay.next_start is not None
                    and stay.next_start - stay.end <= READMISSION_WINDOW_DAYS * _DAY,
                    label_complete=stay.end + READMISSION_WINDOW_DAYS * _DAY <= self.as_of,
                )
                for stay in stays
            ],
            opted_out=opts_out or withdraws,
        )

    def birth_date(self, age: int) -> date:
        """A birth date giving exactly `age` whole years at as-of: the last birthday falls in
        the year before as-of."""
        last_birthday = datetime.fromtimestamp(self.as_of, UTC).date() - timedelta(
            days=self.rng.randrange(365)
        )
        day = last_birthday.day
        if last_birthday.month == 2 and day == 29:
            day = 28  # born on 28 February in a year without the 29th: the birthday has passed
        return last_birthday.replace(year=last_birthday.year - age, day=day)

    def condition_codes(self, age: float) -> list[str]:
        rng = self.rng
        position = (age - MIN_AGE) / (MAX_AGE - MIN_AGE)
        codes = [
            code
            for code, (young, old) in _PREVALENCE.items()
            if rng.random() < young + (old - young) * position
        ]
        while len(codes) > _MAX_CONDITIONS:
            codes.pop(rng.randrange(len(codes)))
        return codes

    def encounters(
        self, reference: str, codes: list[str], birth: int, offset: int
    ) -> tuple[list[tuple[int, dict[str, Any]]], list[_VitalRound], list[_Stay]]:
        """Inpatient stays in sequence (each discharge draws the readmission), follow-up and
        routine ambulatory visits (each with its start), and the stays' vital signs."""
        rng = self.rng
        window_start = self.as_of - HISTORY_DAYS * _DAY
        encounters: list[tuple[int, dict[str, Any]]] = []
        vital_rounds: list[_VitalRound] = []
        stays: list[_Stay] = []
        visits: list[tuple[int, int]] = []
        heart_failure, copd = HEART_FAILURE in codes, COPD in codes
        baseline = (rng.gauss(128, 14), rng.gauss(77, 8))
        start: int | None = None
        if rng.random() < 0.85:
            start = rng.randrange(window_start, self.latest_admission) // _MINUTE * _MINUTE
        while start is not None:
            stay = self.stay(
                reference,
                start,
                stays,
                birth=birth,
                heart_failure=heart_failure,
                copd=copd,
                baseline=baseline,
                offset=offset,
                encounters=encounters,
                vital_rounds=vital_rounds,
            )
            if stay is None:
                break
            if stay.outcome_drawn:
                gap = rng.randrange(_DAY, 29 * _DAY)
            elif rng.random() < 0.45:
                gap = None
            else:
                gap = rng.randrange(31 * _DAY, 400 * _DAY)
            next_start = None if gap is None else (stay.end + gap) // _MINUTE * _MINUTE
            if next_start is not None and next_start > self.latest_admission:
                next_start = None  # no room for a whole day before as-of: never exported
            if rng.random() < 0.35:
                visit = (stay.end + rng.randrange(2 * _DAY, 14 * _DAY)) // _MINUTE * _MINUTE
                if visit < min(next_start or self.as_of, self.as_of - _HOUR):
                    visits.append((visit, rng.randrange(20, 60) * _MINUTE))
            stay.next_start = next_start
            start = next_start
        for _ in range(rng.choices((0, 1, 2, 3), weights=(3, 3, 2, 1))[0]):
            visit = rng.randrange(window_start, self.as_of - _HOUR) // _MINUTE * _MINUTE
            if not any(s.start - _DAY <= visit <= s.end + _DAY for s in stays):
                visits.append((visit, rng.randrange(20, 60) * _MINUTE))
        for visit, duration in visits:
            encounters.append((visit, self.ambulatory(reference, visit, visit + duration, offset)))
        return encounters, vital_rounds, stays

    def stay(
        self,
        reference: str,
        start: int,
        earlier: list[_Stay],
        *,
        birth: int,
        heart_failure: bool,
        copd: bool,
        baseline: tuple[float, float],
        offset: int,
        encounters: list[tuple[int, dict[str, Any]]],
        vital_rounds: list[_VitalRound],
    ) -> _Stay | None:
        rng = self.rng
        severity = min(max(rng.gauss(0.45 + 0.15 * heart_failure + 0.15 * copd, 0.22), 0.05), 1)
        age = (start - birth) / _YEAR
        disposition = self.disposition(age, severity)
        length_days = 1 + rng.gammavariate(2.0, 0.8 + 2.0 * severity)
        recovery = rng.betavariate(5, 2)
        if disposition == "aadvice":
            length_days *= rng.uniform(0.3, 0.7)  # left before treatment was done
            recovery *= 0.6
        length = int(min(max(length_days, 1), 15) * _DAY) // _MINUTE * _MINUTE
        end = min(start + length, self.as_of - _HOUR) // _MINUTE * _MINUTE
        if end - start < _DAY:
            return None
        encounter_id = self.new_id()
        last = self.vitals(
            vital_rounds,
            reference,
            f"Encounter/{encounter_id}",
            start,
            end,
            severity=severity,
            recovery=recovery,
            copd=copd,
            heart_failure=heart_failure,
            baseline=baseline,
            offset=offset,
        )
        encounters.append(
            (
                start,
                self.inpatient(
                    encounter_id,
                    reference,
                    start=start,
                    end=end,
                    disposition=disposition,
                    offset=offset,
                ),
            )
        )
        features = StayFeatures(
            prior_admissions=sum(1 for s in earlier if s.start >= start - 365 * _DAY),
            last_spo2=last[SPO2],
            last_heart_rate=last[HEART_RATE],
            length_of_stay_days=(end - start) / _DAY,
            discharge_disposition=disposition,
            heart_failure=heart_failure,
            copd=copd,
            age_years=(end - birth) / _YEAR,
        )
        probability = READMISSION_MODEL.probability(features)
        stay = _Stay(
            encounter_id=encounter_id,
            start=start,
            end=end,
            disposition=disposition,
            outcome_drawn=rng.random() < probability,
            features=features,
            probability=probability,
        )
        earlier.append(stay)
        return stay

    def disposition(self, age: float, severity: float) -> str:
        snf = 0.04 + 0.18 * max(0.0, (age - 65) / 30) + 0.10 * severity
        left = 0.06 if age < 50 else 0.03
        weights = {"home": 0.0, "snf": snf, "rehab": 0.06, "oth-hosp": 0.03, "aadvice": left}
        weights["home"] = 1 - sum(weights.values())
        codes = [code for code in DISCHARGE_DISPOSITIONS if code in weights]
        return self.rng.choices(codes, weights=[weights[c] for c in codes])[0]

    def vitals(
        self,
        vital_rounds: list[_VitalRound],
        reference: str,
        encounter: str,
        start: int,
        end: int,
        *,
        severity: float,
        recovery: float,
        copd: bool,
        heart_failure: bool,
        baseline: tuple[float, float],
        offset: int,
    ) -> dict[str, float]:
        """Vital signs at admission, every 6-12 hours and at discharge; the deviation from the
        patient's normal shrinks by `recovery` over the stay. Returns the last values."""
        rng = self.rng
        uniform = rng.random  # the C draw: this loop makes most of the export
        gauss = rng.gauss
        times = [start]
        moment = start + (360 + int(uniform() * 360)) * _MINUTE
        while moment < end - _HOUR:
            times.append(moment)
            moment += (360 + int(uniform() * 360)) * _MINUTE
        times.append(end)
        normal_systolic, normal_diastolic = baseline
        values: dict[str, float] = {}
        for moment in times:
            deviation = severity * (1 - recovery * (moment - start) / (end - start))
            # Monitors report pressures in whole mmHg, rates and saturations to a tenth.
            values = {
                HEART_RATE: round(
                    _clamp(72 + 40 * deviation + 6 * heart_failure + gauss(0, 5), 38, 180), 1
                ),
                SYSTOLIC_BP: round(_clamp(normal_systolic - 20 * deviation + gauss(0, 7), 70, 230)),
                DIASTOLIC_BP: round(
                    _clamp(normal_diastolic - 10 * deviation + gauss(0, 5), 40, 130)
                ),
                SPO2: round(_clamp(97.5 - 9 * deviation - 2.5 * copd + gauss(0, 0.9), 70, 100), 1),
            }
            # A monitor reading may come from the device (UTC) or the ward system (site zone);
            # the four readings of one round are stored together.
            when = _datetime(moment, offset if uniform() < 0.5 else 0)
            stored = _instant(min(moment + (1 + int(uniform() * 180)) * _MINUTE, self.as_of))
            hexes = rng.randbytes(16 * len(_VITAL_ORDER)).hex()
            vital_rounds.append(
                _VitalRound(
                    hexes,
                    stored,
                    reference,
                    encounter,
                    when,
                    (values[HEART_RATE], values[SYSTOLIC_BP], values[DIASTOLIC_BP], values[SPO2]),
                )
            )
        return values

    # --- resources ---------------------------------------------------------------------

    def inpatient(
        self,
        encounter_id: str,
        reference: str,
        *,
        start: int,
        end: int,
        disposition: str,
        offset: int,
    ) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "id": encounter_id,
            "meta": self.meta(end),
            "status": "finished",
            "class": {"system": ACT_CODE, "code": INPATIENT, "display": "inpatient encounter"},
            "subject": {"reference": reference},
            "period": {"start": _datetime(start, offset), "end": _datetime(end, offset)},
            "hospitalization": {
                "dischargeDisposition": {
                    "coding": [
                        {
                            "system": DISCHARGE_DISPOSITION,
                            "code": disposition,
                            "display": DISCHARGE_DISPOSITIONS[disposition],
                        }
                    ]
                }
            },
        }

    def ambulatory(self, reference: str, start: int, end: int, offset: int) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "id": self.new_id(),
            "meta": self.meta(end),
            "status": "finished",
            "class": {"system": ACT_CODE, "code": AMBULATORY, "display": "ambulatory"},
            "subject": {"reference": reference},
            "period": {"start": _datetime(start, offset), "end": _datetime(end, offset)},
        }

    def condition(
        self, reference: str, code: str, first_contact: int, offset: int
    ) -> dict[str, Any]:
        rng = self.rng
        recorded = first_contact - rng.randrange(_DAY, 3 * 365 * _DAY)
        onset = recorded - rng.randrange(0, 5 * 365 * _DAY)
        return {
            "resourceType": "Condition",
            "id": self.new_id(),
            "meta": self.meta(recorded),
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": ACTIVE}]},
            "verificationStatus": {
                "coding": [{"system": CONDITION_VERIFICATION, "code": CONFIRMED}]
            },
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": PROBLEM_LIST_ITEM}]}],
            "code": {"coding": [{"system": ICD10, "code": code, "display": CONDITIONS[code]}]},
            "subject": {"reference": reference},
            "onsetDateTime": _datetime(onset // _DAY * _DAY, offset),
            "recordedDate": _datetime(recorded // _MINUTE * _MINUTE, offset),
        }

    def consent(self, reference: str, moment: int, *, deny: bool) -> dict[str, Any]:
        moment = moment // _MINUTE * _MINUTE
        when = _datetime(moment, 0)
        return {
            "resourceType": "Consent",
            "id": self.new_id(),
            "meta": self.meta(moment),
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": CONSENT_SCOPE_RESEARCH}]},
            "category": [{"coding": [{"system": LOINC, "code": CONSENT_CATEGORY_LOINC}]}],
            "patient": {"reference": reference},
            "dateTime": when,
            "policyRule": {"coding": [{"system": ACT_CODE, "code": OPT_OUT if deny else OPT_IN}]},
            "provision": {
                "type": "deny" if deny else "permit",
                "period": {"start": when},
                "purpose": [
                    {
                        "system": ACT_REASON,
                        "code": RESEARCH_PURPOSE,
                        "display": "healthcare research",
                    }
                ],
            },
        }


def _first(pair: tuple[int, dict[str, Any]]) -> int:
    return pair[0]


def _vital(
    identifier: str,
    code: str,
    *,
    stored: str,
    reference: str,
    encounter: str,
    when: str,
    value: float,
) -> dict[str, Any]:
    unit_code, unit = VITAL_UNITS[code]
    name = VITAL_NAMES[code]
    return {
        "resourceType": "Observation",
        "id": identifier,
        "meta": {"versionId": "1", "lastUpdated": stored},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": OBSERVATION_CATEGORY,
                        "code": VITAL_SIGNS_CATEGORY,
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": name}], "text": name},
        "subject": {"reference": reference},
        "encounter": {"reference": encounter},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": UCUM,
            "code": unit_code,
        },
    }


def _fragment(value: Any) -> str:
    """The JSON of a {...} object without its braces, as orjson writes it."""
    return orjson.dumps(value).decode()[1:-1]


# The constant middles of a vital-sign Observation line, per LOINC code.
_VITAL_JSON: Final = {
    code: _fragment(
        {
            key: value
            for key, value in _vital(
                "", code, stored="", reference="", encounter="", when="", value=0
            ).items()
            if key in ("category", "code")
        }
    )
    for code in _VITAL_ORDER
}
_UNIT_JSON: Final = {
    code: _fragment({"unit": unit, "system": UCUM, "code": unit_code})
    for code, (unit_code, unit) in VITAL_UNITS.items()
}


def _number_json(value: float) -> str:
    return orjson.dumps(value).decode()


def _uuid_text(hexes: str, slot: int) -> str:
    """The slot-th 32 hex digits of hexes, grouped as a UUID."""
    at = 32 * slot
    return (
        f"{hexes[at : at + 8]}-{hexes[at + 8 : at + 12]}-{hexes[at + 12 : at + 16]}-"
        f"{hexes[at + 16 : at + 20]}-{hexes[at + 20 : at + 32]}"
    )


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _epoch_of_date(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@functools.cache
def _date_text(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * _DAY))


@functools.cache
def _clock_text(second: int) -> str:
    hours, rest = divmod(second, _HOUR)
    return f"{hours:02d}:{rest // _MINUTE:02d}:{rest % _MINUTE:02d}"


def _local_text(epoch: int) -> str:
    # Cached by day and by second of the day: strftime per resource was a third of the run.
    day, second = divmod(epoch, _DAY)
    return f"{_date_text(day)}T{_clock_text(second)}"


def _datetime(epoch: int, offset_minutes: int) -> str:
    """A FHIR dateTime at second precision, written in the given zone offset."""
    return _local_text(epoch + offset_minutes * _MINUTE) + _OFFSET_SUFFIX[offset_minutes]


def _instant(epoch: int) -> str:
    """A FHIR instant as HealthLake writes meta.lastUpdated (milliseconds, UTC)."""
    return _local_text(epoch) + ".000Z"


def _as_of_epoch(as_of: datetime) -> int:
    if as_of.tzinfo is None:
        raise ValueError("as_of needs a time zone")
    return int(as_of.timestamp())


def _check_population_arguments(patients: int, opt_out_share: float) -> None:
    if patients < 1:
        raise ValueError(f"--patients must be at least 1, not {patients}")
    if not 0 <= opt_out_share <= MAX_OPT_OUT_SHARE:
        raise ValueError(
            f"--opt-out-share must lie in [0, {MAX_OPT_OUT_SHARE}], not {opt_out_share}"
        )


def _simulate(
    patients: int, seed: int, *, as_of: datetime, opt_out_share: float
) -> Iterator[_PatientRecord]:
    """Patient records in export order. The opt-out patients are an exact share, drawn first."""
    _check_population_arguments(patients, opt_out_share)
    rng = random.Random(seed)  # noqa: S311  (reproducible data, not secrets)
    simulator = _Simulator(rng=rng, as_of=_as_of_epoch(as_of))
    opting_out = frozenset(rng.sample(range(patients), round(patients * opt_out_share)))
    for index in range(patients):
        yield simulator.patient(opts_out=index in opting_out)


def generate(
    patients: int,
    seed: int,
    *,
    as_of: datetime = DEFAULT_AS_OF,
    opt_out_share: float = DEFAULT_OPT_OUT_SHARE,
) -> Population:
    """The whole population in memory (tests, notebooks; the command streams instead)."""
    collected: dict[str, list[dict[str, Any]]] = {kind: [] for kind in EXPORTED_TYPES}
    stays: list[StayTruth] = []
    opted_out: set[str] = set()
    with cycle_collection_paused():
        for record in _simulate(patients, seed, as_of=as_of, opt_out_share=opt_out_share):
            for kind, resources in record.as_resources().items():
                collected[kind].extend(resources)
            stays.extend(record.stays)
            if record.opted_out:
                opted_out.add(record.resources["Patient"][0]["id"])
    return Population(
        seed=seed,
        as_of=as_of,
        patients=collected["Patient"],
        encounters=collected["Encounter"],
        observations=collected["Observation"],
        conditions=collected["Condition"],
        consents=collected["Consent"],
        opted_out=frozenset(opted_out),
        stays=tuple(stays),
    )


# --- the export -----------------------------------------------------------------------------


def derived_id(purpose: str, seed: int) -> str:
    """A 32-hex-digit id (the shape of HealthLake datastore and job ids) fixed by the seed."""
    return hashlib.sha256(f"synthetic-fhir {purpose} {seed}".encode()).hexdigest()[:32]


class _NdjsonWriter:
    """Per-type NDJSON files of at most `per_file` lines, numbered from 0 as HealthLake does."""

    def __init__(self, folder: Path, per_file: int) -> None:
        self._folder = folder
        self._per_file = per_file
        self._open: dict[str, tuple[IO[bytes], int]] = {}
        self._files: dict[str, int] = {}
        self.counts: dict[str, int] = dict.fromkeys(EXPORTED_TYPES, 0)

    def write(self, resource_type: str, resources: Iterable[dict[str, Any] | bytes]) -> None:
        handle, lines = self._open.get(resource_type, (None, self._per_file))
        for resource in resources:
            if handle is None or lines == self._per_file:
                handle = self._next_file(resource_type, handle)
                lines = 0
            # Already serialised lines (bytes) are written as they are.
            handle.write(
                resource
                if isinstance(resource, bytes)
                else orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE)
            )
            lines += 1
            self.counts[resource_type] += 1
        if handle is not None:
            self._open[resource_type] = (handle, lines)

    def _next_file(self, resource_type: str, previous: IO[bytes] | None) -> IO[bytes]:
        if previous is not None:
            previous.close()
        index = self._files.get(resource_type, 0)
        self._files[resource_type] = index + 1
        path = self._folder / export_file(resource_type, index)
        path.parent.mkdir(exist_ok=True)
        return path.open("xb")

    def close(self) -> None:
        for handle, _ in self._open.values():
            handle.close()
        self._open.clear()


def _export(
    records: Iterable[Mapping[str, Sequence[dict[str, Any] | bytes]]],
    out: Path,
    *,
    datastore_id: str,
    job_id: str,
    resources_per_file: int,
) -> tuple[Path, dict[str, int]]:
    """Write the export into a hidden sibling folder, then rename it into place whole."""
    if resources_per_file < 1:
        raise ValueError(f"--resources-per-file must be at least 1, not {resources_per_file}")
    for name, value in (("datastore id", datastore_id), ("job id", job_id)):
        if not _HEX_ID.match(value):
            raise ValueError(f"the {name} must be 32 lowercase hex digits, not {value!r}")
    target = out / export_folder(datastore_id, job_id)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".synthetic-fhir-partial-", dir=out))
    writer = _NdjsonWriter(stage, resources_per_file)
    try:
        for record in records:
            for kind, resources in record.items():
                writer.write(kind, resources)
        writer.close()
        stage.chmod(0o755)  # mkdtemp makes it private; the export should read like any folder
        stage.rename(target)
    except BaseException:
        writer.close()
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return target, writer.counts


def write_export(
    population: Population,
    out: Path,
    *,
    datastore_id: str | None = None,
    job_id: str | None = None,
    resources_per_file: int = DEFAULT_RESOURCES_PER_FILE,
) -> Path:
    """Write the population as a HealthLake export below out; returns the export folder."""
    folder, _ = _export(
        [{kind: population.resources(kind) for kind in EXPORTED_TYPES}],
        out,
        datastore_id=datastore_id or derived_id("datastore", population.seed),
        job_id=job_id or derived_id("job", population.seed),
        resources_per_file=resources_per_file,
    )
    return folder


# --- command line ---------------------------------------------------------------------------


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: one line too, no usage
        raise _ArgumentError(message)


def _instant_argument(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone (append Z for UTC)")
    return moment.astimezone(UTC)


def _hex_id(value: str) -> str:
    if not _HEX_ID.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not 32 lowercase hex digits")
    return value


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m ml.synthetic_fhir", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the export in")
    parser.add_argument("--datastore-id", type=_hex_id, help="default: derived from the seed")
    parser.add_argument("--job-id", type=_hex_id, help="default: derived from the seed")
    parser.add_argument(
        "--resources-per-file", type=int, default=DEFAULT_RESOURCES_PER_FILE, metavar="K"
    )
    parser.add_argument("--opt-out-share", type=float, default=DEFAULT_OPT_OUT_SHARE)
    parser.add_argument("--as-of", type=_instant_argument, default=DEFAULT_AS_OF)
    arguments = parser.parse_args(argv)
    try:
        _check_population_arguments(arguments.patients, arguments.opt_out_share)
    except ValueError as error:
        raise _ArgumentError(str(error)) from None
    if arguments.resources_per_file < 1:
        raise _ArgumentError(
            f"--resources-per-file must be at least 1, not {arguments.resources_per_file}"
        )
    _check_out(arguments.out)
    return arguments


def _check_out(out: Path) -> None:
    """The out folder can be written and holds no export yet (an export is never merged)."""
    if out.exists():
        if not out.is_dir():
            raise _ArgumentError(f"--out {out} is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise _ArgumentError(f"--out {out} is not writable")
        exports = sorted(
            child.name
            for child in out.iterdir()
            if EXPORT_FOLDER_MARKER in child.name and not child.name.startswith(".")
        )
        if exports:
            raise _ArgumentError(f"--out {out} already holds an export ({exports[0]})")
        return
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise _ArgumentError(f"--out {out} cannot be created ({ancestor} is not writable)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        arguments = _parse_arguments(argv)
    except _ArgumentError as error:
        print(f"synthetic_fhir: error: {error}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    seed: int = arguments.seed
    records = (
        record.as_lines()
        for record in _simulate(
            arguments.patients,
            seed,
            as_of=arguments.as_of,
            opt_out_share=arguments.opt_out_share,
        )
    )
    started = time.monotonic()
    try:
        folder, counts = _export(
            records,
            arguments.out,
            datastore_id=arguments.datastore_id or derived_id("datastore", seed),
            job_id=arguments.job_id or derived_id("job", seed),
            resources_per_file=arguments.resources_per_file,
        )
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        print(f"synthetic_fhir: error: cannot write the export: {reason}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    summary = ", ".join(f"{kind} {counts[kind]}" for kind in EXPORTED_TYPES)
    print(f"synthetic_fhir: wrote {folder} ({summary}) in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
