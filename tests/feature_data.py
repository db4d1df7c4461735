"""A tiny FHIR -> features result written straight into S3 (moto, in-process or server): offline
records as Parquet under each feature group's resolved offline URI, in Feature Store's layout,
and a HealthLake export's Consent NDJSON in the raw bucket. Written here by hand, not by the
feature builder, so the runtime checks are tested against data whose truth the test states."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
EXPORT_FOLDER = "a1b2c3d4-FHIR_EXPORT-e5f6a7b8"
WRITE_TIME = "2026-06-30T12:00:00Z"


def consent(
    patient: str,
    decision: str = "deny",
    purposes: Sequence[str] = ("HRESCH",),
    *,
    when: str | None = "2026-01-01T00:00:00Z",
    status: str = "active",
    nested: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A FHIR R4 Consent of `patient` about research use (purposes: v3-ActReason codes)."""
    provision: dict[str, Any] = {"type": decision}
    if purposes:
        provision["purpose"] = [{"system": ACT_REASON, "code": code} for code in purposes]
    if nested:
        provision["provision"] = list(nested)
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": f"consent-{patient}-{decision}",
        "status": status,
        "scope": {"coding": [{"code": "research"}]},
        "patient": {"reference": f"Patient/{patient}"},
        "provision": provision,
    }
    if when is not None:
        resource["dateTime"] = when
    return resource


def nested_deny(*purposes: str) -> dict[str, Any]:
    provision: dict[str, Any] = {"type": "deny"}
    if purposes:
        provision["purpose"] = [{"system": ACT_REASON, "code": code} for code in purposes]
    return provision


def sse_kms(key_arn: str | None) -> dict[str, str]:
    """The headers the hardened buckets' policy demands of every put (none: a bare bucket)."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn} if key_arn else {}


def write_export(
    s3: Any,
    bucket: str,
    prefix: str,
    consents: Iterable[dict[str, Any]],
    *,
    index: int = 1,
    key_arn: str | None = None,
) -> str:
    """One Consent file of a HealthLake export under `prefix`; its key."""
    key = f"{prefix}{EXPORT_FOLDER}/Consent/Consent-{index}.ndjson"
    body = "".join(json.dumps(resource) + "\n" for resource in consents)
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), **sse_kms(key_arn))
    return key


def resolved_uri(sagemaker: Any, group: str) -> str:
    described = sagemaker.describe_feature_group(FeatureGroupName=group)
    return str(described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"])


def parquet_of(rows: Sequence[dict[str, Any]]) -> bytes:
    """Records with Feature Store's system columns (write_time, api_invocation_time,
    is_deleted), as the offline store holds them."""
    columns: dict[str, list[Any]] = {}
    for row in rows:
        full = {"write_time": WRITE_TIME, "api_invocation_time": WRITE_TIME, **row}
        full.setdefault("is_deleted", False)
        for name, value in full.items():
            columns.setdefault(name, []).append(value)
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def write_records(
    s3: Any,
    sagemaker: Any,
    group: str,
    rows: Sequence[dict[str, Any]],
    *,
    hour: int = 12,
    name: str = "20260630T120000Z_0123456789abcdef",
    key_arn: str | None = None,
) -> str:
    """One Parquet object of `rows` in the group's offline store (the hour's partition of the
    URI DescribeFeatureGroup resolves); its key."""
    bucket, _, prefix = resolved_uri(sagemaker, group).removeprefix("s3://").partition("/")
    key = f"{prefix}/year=2026/month=06/day=30/hour={hour:02d}/{name}.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=parquet_of(rows), **sse_kms(key_arn))
    return key


def vitals(patient: str, basis: str, **extra: Any) -> dict[str, Any]:
    return {
        "patient_id": patient,
        "event_time": "2026-06-30T11:00:00Z",
        "heart_rate": 72.0,
        "processing_basis": basis,
        **extra,
    }


def stay(encounter: str, patient: str, basis: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "encounter_id": encounter,
        "patient_id": patient,
        "discharged_at": 1782817200.0,
        "length_of_stay_days": 3,
        "processing_basis": basis,
        **extra,
    }
