"""Feature records: every record carries the environment's processing basis, and no patient who
opted out of secondary use has a record in any feature group.

These are the two checks that read data rather than configuration, because only the records
show it: offline records (Parquet under each group's `ResolvedOutputS3Uri`, as
DescribeFeatureGroup reports it), the Consent resources of the HealthLake exports in the raw
bucket, and GetRecord on the groups keyed by patient. They declare those reads
(RuntimeCheck.content_reads); every other check's clients keep refusing them. Of what they read
they report counts only: a finding never carries a patient identifier.

The opt-out rule is restated here from the FHIR R4 Consent resource and HL7's purpose-of-use
codes, not taken from the feature builder (ml/), which is the code these checks judge. Where the
rule is open to reading, the check reads it the stricter way (more patients opted out), so a
disagreement with the builder shows as a failure, never as a pass.

No records at all is a failure, not a pass: the checks cannot show what was never written, and
an account where the FHIR -> features flow has not run has no evidence to offer.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from policies.runtime.clients import error_code, is_access_denied, is_not_implemented, pages
from policies.runtime.expected import PATIENT_COLUMN, ExpectedFeatureData
from policies.runtime.model import (
    CheckContext,
    Missing,
    Outcome,
    RuntimeCheck,
    error,
    failed,
    not_emulated,
    passed,
)

PROCESSING_BASIS_COLUMN: Final = "processing_basis"
# Feature Store's offline marker of a DeleteRecord: a row with no features, not a record.
DELETED_COLUMN: Final = "is_deleted"
PARQUET_SUFFIX: Final = ".parquet"
NDJSON_SUFFIX: Final = ".ndjson"
# HealthLake writes `<prefix><datastore>-FHIR_EXPORT-<job>/Consent/Consent-<n>.ndjson`.
CONSENT_FOLDER: Final = "Consent"

# HL7 v3-ActReason purposes of use (terminology.hl7.org/CodeSystem/v3-ActReason) that are
# secondary use of health data: HRESCH healthcare research, CLINTRCH clinical trial research,
# HOPERAT healthcare operations, PUBHLTH public health. A deny for any of them, or a deny
# naming no purpose (which FHIR reads as every purpose), is an opt-out (EHDS Art. 71).
SECONDARY_USE_PURPOSES: Final = frozenset({"HRESCH", "CLINTRCH", "HOPERAT", "PUBHLTH"})
ACTIVE: Final = "active"
DENY: Final = "deny"
# Patient.id in a reference: `Patient/<id>`, relative or absolute, with or without a version.
_PATIENT_REFERENCE: Final = re.compile(
    r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)

# Bounds on one run, so a check against a large account ends: an auditor wants every record,
# and gets every one up to these; a finding says when a bound was reached, and what was left.
MAX_LISTED_OBJECTS: Final = 200_000
MAX_OBJECTS_PER_GROUP: Final = 20_000
MAX_BYTES_PER_GROUP: Final = 2 * 1024**3
MAX_CONSENT_BYTES: Final = 1024**3
# Opted-out patients looked up online per patient-keyed group (one GetRecord each).
MAX_ONLINE_LOOKUPS: Final = 50
NOT_RUN: Final = "the FHIR -> features flow has not run in this account"
SHOWN_VALUES: Final = 3
SHOWN_VALUE_LENGTH: Final = 64


# --- the opt-out rule ------------------------------------------------------------------------


def _moment(value: Any) -> float | None:
    """A FHIR dateTime as epoch seconds; a date alone is midnight UTC. A year or a month, or a
    time without a zone (which FHIR forbids), names no moment: None."""
    if not isinstance(value, str) or len(value) < len("YYYY-MM-DD"):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        if len(value) > len("YYYY-MM-DD"):
            return None
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _patient(consent: dict[str, Any]) -> str | None:
    reference = consent.get("patient")
    value = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(value, str):
        return None
    found = _PATIENT_REFERENCE.search(value)
    return found.group(1) if found else None


def _covers_secondary_use(provision: dict[str, Any]) -> bool:
    purposes = provision.get("purpose")
    codes = [
        coding.get("code")
        for coding in (purposes if isinstance(purposes, list) else [])
        if isinstance(coding, dict)
    ]
    # Any system's code counts: reading a foreign HRESCH as research is the stricter reading.
    codes = [code for code in codes if isinstance(code, str)]
    return not codes or any(code in SECONDARY_USE_PURPOSES for code in codes)


def denies_secondary_use(provision: Any) -> bool:
    """Whether a Consent provision, or any provision nested in it at any depth, is a deny
    covering secondary use."""
    if not isinstance(provision, dict):
        return False
    if provision.get("type") == DENY and _covers_secondary_use(provision):
        return True
    nested = provision.get("provision")
    inner = nested if isinstance(nested, list) else []
    return any(denies_secondary_use(provision) for provision in inner)


@dataclass
class ConsentTally:
    """What the Consent resources say, in counts, and who opted out (never reported)."""

    resources: int = 0
    active: int = 0
    # Active Consents without a usable dateTime or patient: no "latest" can include them.
    unusable: int = 0
    bad_lines: int = 0
    # Patient -> (time, denies) of the latest active Consent; at one time, a deny wins.
    latest: dict[str, tuple[float, bool]] = field(default_factory=dict)

    def add(self, consent: dict[str, Any]) -> None:
        self.resources += 1
        if consent.get("status") != ACTIVE:
            return
        self.active += 1
        patient, moment = _patient(consent), _moment(consent.get("dateTime"))
        if patient is None or moment is None:
            self.unusable += 1
            return
        decision = (moment, denies_secondary_use(consent.get("provision")))
        known = self.latest.get(patient)
        if known is None or decision > known:
            self.latest[patient] = decision

    def add_lines(self, body: bytes) -> None:
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                resource = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if not isinstance(resource, dict):
                self.bad_lines += 1
            elif resource.get("resourceType") == "Consent":
                self.add(resource)

    @property
    def opted_out(self) -> frozenset[str]:
        return frozenset(patient for patient, (_, denies) in self.latest.items() if denies)


def opted_out_patients(consents: Iterable[dict[str, Any]]) -> frozenset[str]:
    """The patients whose latest active Consent denies secondary use."""
    tally = ConsentTally()
    for consent in consents:
        tally.add(consent)
    return tally.opted_out


# --- reading S3 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """Objects of one kind under a prefix, the ones to read first (key order) within the caps."""

    bucket: str
    prefix: str
    selected: tuple[str, ...]
    listed: int
    capped: bool

    def cap_note(self, what: str) -> str:
        if not self.capped:
            return ""
        return (
            f"; capped: read the first {len(self.selected)} of {self.listed}"
            f"{'+' if self.listed >= MAX_LISTED_OBJECTS else ''} {what} in key order, the "
            "rest was not judged"
        )


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def _list(
    s3: Any,
    uri: str,
    keep: Callable[[str], bool],
    *,
    max_objects: int,
    max_bytes: int,
) -> Listing:
    bucket, prefix = _split_uri(uri)
    found: list[tuple[str, int]] = []
    try:
        for item in pages(s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix):
            if keep(str(item["Key"])):
                found.append((str(item["Key"]), int(item.get("Size", 0))))
            if len(found) >= MAX_LISTED_OBJECTS:
                break
    except ClientError as problem:
        if error_code(problem) == "NoSuchBucket":
            raise Missing(f"the bucket {bucket} does not exist") from problem
        raise
    found.sort()
    selected: list[str] = []
    size = 0
    for key, length in found:
        if len(selected) >= max_objects or (selected and size + length > max_bytes):
            break
        selected.append(key)
        size += length
    return Listing(bucket, prefix, tuple(selected), len(found), len(selected) < len(found))


def _body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _content_denied(resource: str, problem: ClientError, what: str) -> Outcome:
    return error(
        resource,
        f"access denied to {problem.operation_name}: this check reads {what}, so the caller "
        "needs s3:GetObject (and kms:Decrypt with the bucket's key) there, or "
        "sagemaker:GetRecord; configuration-only read access does not give it",
    )


# --- the offline store -----------------------------------------------------------------------


def _resolved_output(sagemaker: Any, group: str) -> str:
    try:
        described = sagemaker.describe_feature_group(FeatureGroupName=group)
    except ClientError as problem:
        if error_code(problem) == "ResourceNotFound":
            raise Missing(f"no feature group {group}") from problem
        raise
    storage = described.get("OfflineStoreConfig", {}).get("S3StorageConfig", {})
    uri = storage.get("ResolvedOutputS3Uri") or storage.get("S3Uri")
    if not uri:
        raise Missing(f"the feature group {group} has no offline store")
    return str(uri).rstrip("/")


def _online_enabled(sagemaker: Any, group: str) -> bool:
    online = sagemaker.describe_feature_group(FeatureGroupName=group).get("OnlineStoreConfig")
    # moto leaves OnlineStoreConfig out: absent is "maybe", so it is looked up.
    return online is None or bool(online.get("EnableOnlineStore", True))


@dataclass
class OfflineScan:
    """One group's offline records, read column by column, in counts."""

    uri: str
    objects: int = 0
    records: int = 0  # rows that are records, not deletion markers
    deletion_markers: int = 0
    unreadable: int = 0  # objects that are not Parquet
    without_column: int = 0  # Parquet objects lacking a wanted column
    cap_note: str = ""


def _scan(
    context: CheckContext,
    uri: str,
    column: str,
    consume: Callable[[pa.Array], None],
) -> OfflineScan:
    """Read `column` of every record (not deletion marker) below the group's offline data
    folder, within the caps, passing each object's values to `consume`."""
    listing = _list(
        context.client("s3"),
        f"{uri}/",
        lambda key: key.endswith(PARQUET_SUFFIX),
        max_objects=MAX_OBJECTS_PER_GROUP,
        max_bytes=MAX_BYTES_PER_GROUP,
    )
    scan = OfflineScan(uri, cap_note=listing.cap_note("objects"))
    s3 = context.content_client("s3")
    for key in listing.selected:
        scan.objects += 1
        body = _body(s3, listing.bucket, key)
        try:
            parquet = pq.ParquetFile(io.BytesIO(body))
            names = parquet.schema_arrow.names
            if column not in names:
                scan.without_column += 1
                continue
            wanted = [column, *([DELETED_COLUMN] if DELETED_COLUMN in names else [])]
            table = parquet.read(columns=wanted)
        except (pa.ArrowException, OSError):
            scan.unreadable += 1
            continue
        values = table.column(column).combine_chunks()
        if DELETED_COLUMN in table.column_names:
            deleted = table.column(DELETED_COLUMN).combine_chunks().fill_null(False)
            scan.deletion_markers += int(pc.sum(deleted).as_py() or 0)
            values = values.filter(pc.invert(deleted))
        scan.records += len(values)
        consume(values)
    return scan


def _problems_reading(scan: OfflineScan, column: str) -> list[str]:
    problems = []
    if scan.unreadable:
        problems.append(f"{scan.unreadable} of {scan.objects} objects are not readable Parquet")
    if scan.without_column:
        problems.append(f"{scan.without_column} of {scan.objects} objects have no {column} column")
    return problems


def _no_records(scan: OfflineScan) -> str | None:
    if scan.objects == 0:
        return f"no feature records under {scan.uri}/: {NOT_RUN}"
    if scan.records == 0 and not (scan.unreadable or scan.without_column):
        return (
            f"no feature records under {scan.uri}/ ({scan.objects} objects hold "
            f"{scan.deletion_markers} deletion markers only): {NOT_RUN}"
        )
    return None


def _markers(scan: OfflineScan) -> str:
    if not scan.deletion_markers:
        return ""
    return f", {scan.deletion_markers} deletion markers not counted"


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return repr(text if len(text) <= SHOWN_VALUE_LENGTH else text[:SHOWN_VALUE_LENGTH] + "...")


# --- RT_PHI_FEATURES_PROCESSING_BASIS --------------------------------------------------------


def processing_basis(context: CheckContext) -> Iterator[Outcome]:
    data = context.expected.feature_data
    if data is None:
        return
    sagemaker = context.client("sagemaker")

    def evaluate(group: str, arn: str) -> Outcome:
        other: Counter[str | None] = Counter()

        def consume(values: pa.Array) -> None:
            for value in values.to_pylist():
                if value != data.processing_basis:
                    other[value] += 1

        try:
            scan = _scan(
                context, _resolved_output(sagemaker, group), PROCESSING_BASIS_COLUMN, consume
            )
        except ClientError as problem:
            if is_access_denied(problem) and problem.operation_name == "GetObject":
                return _content_denied(arn, problem, "the group's offline records")
            raise
        empty = _no_records(scan)
        if empty:
            raise Missing(empty)
        problems = _problems_reading(scan, PROCESSING_BASIS_COLUMN)
        if other:
            shown = ", ".join(
                f"{_shown(value)} ({count})" for value, count in other.most_common(SHOWN_VALUES)
            )
            more = f" and {len(other) - SHOWN_VALUES} more" if len(other) > SHOWN_VALUES else ""
            problems.insert(
                0,
                f"{sum(other.values())} of {scan.records} records carry another "
                f"processing_basis than {data.processing_basis!r}: {shown}{more}",
            )
        if problems:
            return failed(arn, "; ".join(problems) + scan.cap_note)
        return passed(
            arn,
            f"all {scan.records} records in {scan.objects} objects under {scan.uri}/ carry "
            f"processing_basis {data.processing_basis!r}{_markers(scan)}{scan.cap_note}",
        )

    for group in context.expected.feature_groups:
        arn = context.arn("sagemaker", f"feature-group/{group}")
        yield context.judge(arn, partial(evaluate, group, arn))


# --- RT_PHI_FEATURES_CONSENT_OPT_OUT ---------------------------------------------------------


def _is_consent_file(key: str) -> bool:
    parts = key.split("/")
    return key.endswith(NDJSON_SUFFIX) and len(parts) >= 2 and parts[-2] == CONSENT_FOLDER


def _read_consents(context: CheckContext, data: ExpectedFeatureData) -> tuple[ConsentTally, str]:
    listing = _list(
        context.client("s3"),
        data.export_uri,
        _is_consent_file,
        max_objects=MAX_LISTED_OBJECTS,
        max_bytes=MAX_CONSENT_BYTES,
    )
    tally = ConsentTally()
    s3 = context.content_client("s3")
    for key in listing.selected:
        tally.add_lines(_body(s3, listing.bucket, key))
    notes = [
        f"{len(listing.selected)} Consent files read",
        f"{tally.resources} Consent resources ({tally.active} active)",
    ]
    if tally.unusable:
        notes.append(f"{tally.unusable} active ones without a usable dateTime or patient unused")
    if tally.bad_lines:
        notes.append(f"{tally.bad_lines} lines that are not JSON objects skipped")
    return tally, ", ".join(notes) + listing.cap_note("Consent files")


def _lookup_order(patient: str) -> str:
    # A spread over the opted-out patients, the same on every run.
    return hashlib.sha256(patient.encode()).hexdigest()


def _online_found(context: CheckContext, group: str, patients: frozenset[str]) -> tuple[int, int]:
    """(opted-out patients looked up, how many of them have an online record)."""
    runtime = context.content_client("sagemaker-featurestore-runtime")
    sample = sorted(patients, key=_lookup_order)[:MAX_ONLINE_LOOKUPS]
    found = 0
    for patient in sample:
        answer = runtime.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=patient)
        found += bool(answer.get("Record"))
    return len(sample), found


@dataclass(frozen=True)
class OnlineVerdict:
    detail: str = ""  # empty: the group was not looked up online
    problem: str = ""
    not_emulated: bool = False


def _online(context: CheckContext, group: str, opted_out: frozenset[str]) -> OnlineVerdict:
    """GetRecord for (a spread of) the opted-out patients in a patient-keyed group."""
    try:
        looked_up, found = _online_found(context, group, opted_out)
    except ClientError as problem:
        if not (is_not_implemented(problem) and context.emulated):
            raise
        return OnlineVerdict(
            "online: the emulator does not implement GetRecord, so the online store was not judged",
            not_emulated=True,
        )
    if found:
        return OnlineVerdict(
            problem=f"online: {found} of {looked_up} opted-out patients looked up have a record"
        )
    return OnlineVerdict(f"online: none of {looked_up} opted-out patients looked up has a record")


def _group_without_opted_out(
    context: CheckContext,
    data: ExpectedFeatureData,
    opted_out: frozenset[str],
    group: str,
    arn: str,
) -> Outcome:
    sagemaker = context.client("sagemaker")
    leaked: Counter[str] = Counter()

    def consume(values: pa.Array) -> None:
        for value in values.to_pylist():
            if value in opted_out:
                leaked[value] += 1

    try:
        scan = _scan(context, _resolved_output(sagemaker, group), PATIENT_COLUMN, consume)
        online = OnlineVerdict()
        if group in data.patient_keyed_groups and opted_out and _online_enabled(sagemaker, group):
            online = _online(context, group, opted_out)
    except ClientError as problem:
        if is_access_denied(problem) and problem.operation_name in ("GetObject", "GetRecord"):
            return _content_denied(arn, problem, "the group's offline and online records")
        raise
    empty = _no_records(scan)
    if empty:
        raise Missing(empty)
    problems = _problems_reading(scan, PATIENT_COLUMN)
    if leaked:
        problems.insert(
            0,
            f"{sum(leaked.values())} of {scan.records} offline records belong to "
            f"{len(leaked)} of the {len(opted_out)} opted-out patients",
        )
    if online.problem:
        problems.append(online.problem)
    if problems:
        return failed(arn, "; ".join(problems) + scan.cap_note)
    if opted_out:
        offline = (
            f"offline: none of the {scan.records} records in {scan.objects} objects belongs to "
            f"any of the {len(opted_out)} opted-out patients{_markers(scan)}{scan.cap_note}"
        )
    else:
        offline = (
            f"offline: {scan.records} records in {scan.objects} objects; no patient opted out "
            f"in the export, so there was no one to look for{scan.cap_note}"
        )
    detail = "; ".join(part for part in (offline, online.detail) if part)
    return (not_emulated if online.not_emulated else passed)(arn, detail)


def consent_opt_out(context: CheckContext) -> Iterator[Outcome]:
    data = context.expected.feature_data
    if data is None:
        return
    tallied: list[ConsentTally] = []

    def export(data: ExpectedFeatureData) -> Outcome:
        try:
            tally, summary = _read_consents(context, data)
        except ClientError as problem:
            if is_access_denied(problem) and problem.operation_name == "GetObject":
                return _content_denied(data.export_uri, problem, "the FHIR export's Consents")
            raise
        if tally.resources == 0:
            raise Missing(
                f"no Consent resources under {data.export_uri} ({summary}): no FHIR export has "
                f"landed, so opt-outs cannot be judged; {NOT_RUN}"
            )
        tallied.append(tally)
        return passed(
            data.export_uri,
            f"{summary}; {len(tally.opted_out)} patients opted out of secondary use",
        )

    yield context.judge(data.export_uri, partial(export, data))
    if not tallied:
        return  # nothing to look for: the export's finding says why
    opted_out = tallied[0].opted_out
    for group in context.expected.feature_groups:
        arn = context.arn("sagemaker", f"feature-group/{group}")
        yield context.judge(
            arn, partial(_group_without_opted_out, context, data, opted_out, group, arn)
        )


CHECKS = (
    RuntimeCheck(
        "RT_PHI_FEATURES_PROCESSING_BASIS",
        "Every feature record carries the environment's processing basis (permit or legal basis)",
        processing_basis,
        workload_only=True,
        content_reads=frozenset({"GetObject"}),
    ),
    RuntimeCheck(
        "RT_PHI_FEATURES_CONSENT_OPT_OUT",
        "No patient who opted out of secondary use has a feature record, offline or online",
        consent_opt_out,
        workload_only=True,
        content_reads=frozenset({"GetObject", "GetRecord"}),
    ),
)
