"""Small hand-written FHIR exports for the feature builder's tests: every resource is spelled
out, so a test can state exactly which record it expects."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ml import feature_builder, preprocess, synthetic_fhir
from ml.feature_spec import (
    BasisKind,
    FeatureColumn,
    FeatureSpec,
    GroupSpec,
    ProcessingBasis,
)
from ml.fhir_codes import (
    DIASTOLIC_BP,
    HEART_RATE,
    LOINC,
    SPO2,
    SYSTOLIC_BP,
    export_file,
    export_folder,
)
from ml.fhir_export import export_files

EXPORT_FOLDER = export_folder("0" * 32, "1" * 32)
OFFLINE_STORE = "s3://acme-phi-dev-feature-offline/feature-store/"
VITALS = "patient-vitals"
STAYS = "encounters"


def resolved_uri(group: str) -> str:
    return (
        f"{OFFLINE_STORE}{group}/111111111111/sagemaker/us-east-1/offline-store/"
        f"{group}-1780000000/data"
    )


def spec(basis: ProcessingBasis | None = None, *, max_bad_line_share: float = 0.01) -> FeatureSpec:
    def columns(*pairs: tuple[str, str]) -> tuple[FeatureColumn, ...]:
        return tuple(FeatureColumn(name, kind) for name, kind in pairs)

    return FeatureSpec(
        environment="dev",
        jurisdiction="US",
        basis=basis or ProcessingBasis(BasisKind.HIPAA_DE_IDENTIFIED, "synthetic-population"),
        max_bad_line_share=max_bad_line_share,
        groups=(
            GroupSpec(
                VITALS,
                "patient_id",
                "event_time",
                columns(
                    ("patient_id", "String"),
                    ("event_time", "String"),
                    ("heart_rate", "Fractional"),
                    ("systolic_bp", "Integral"),
                    ("diastolic_bp", "Integral"),
                    ("spo2", "Fractional"),
                    ("processing_basis", "String"),
                ),
                resolved_uri(VITALS),
            ),
            GroupSpec(
                STAYS,
                "encounter_id",
                "discharged_at",
                columns(
                    ("encounter_id", "String"),
                    ("patient_id", "String"),
                    ("admitted_at", "Fractional"),
                    ("discharged_at", "Fractional"),
                    ("length_of_stay_days", "Integral"),
                    ("prior_admissions", "Integral"),
                    ("discharge_disposition", "String"),
                    ("processing_basis", "String"),
                ),
                resolved_uri(STAYS),
            ),
        ),
    )


def patient(identifier: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": identifier, "gender": "female"}


def vital(identifier: str, patient_id: str, code: str, when: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": identifier,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value},
    }


def stay(
    identifier: str,
    patient_id: str,
    start: str,
    end: str | None,
    *,
    inpatient: bool = True,
    disposition: str = "home",
    status: str = "finished",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": identifier,
        "status": status,
        "class": {"code": "IMP" if inpatient else "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": start, **({"end": end} if end else {})},
    }
    if inpatient:
        resource["hospitalization"] = {"dischargeDisposition": {"coding": [{"code": disposition}]}}
    return resource


def consent(
    identifier: str, patient_id: str, when: str, decision: str, purpose: str = "HRESCH"
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": identifier,
        "status": "active",
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": when,
        "provision": {"type": decision, "purpose": [{"code": purpose}]},
    }


def write(
    root: Path,
    resources: Iterable[dict[str, Any]],
    extra_lines: dict[str, list[bytes]] | None = None,
) -> Path:
    """Write resources as an export under root (one file per type), plus raw extra lines
    appended to the named type's file; returns the export folder."""
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(
            json.dumps(resource).encode() + b"\n"
        )
    for kind, lines in (extra_lines or {}).items():
        by_type.setdefault(kind, []).extend(lines)
    folder = root / EXPORT_FOLDER
    for kind, lines in by_type.items():
        path = folder / export_file(kind, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(lines))
    return folder


def four_vitals(
    prefix: str, patient_id: str, when: str, values: tuple[float, float, float, float]
) -> list[dict[str, Any]]:
    return [
        vital(f"{prefix}-{index}", patient_id, code, when, value)
        for index, (code, value) in enumerate(
            zip((HEART_RATE, SYSTOLIC_BP, DIASTOLIC_BP, SPO2), values, strict=True)
        )
    ]


def synthetic_dataset(root: Path, patients: int, seed: int, as_of: datetime) -> Path:
    """A synthetic population through the feature builder and the Preprocess step, as the
    pipeline chains them: root/offline (the offline store), root/spec.json and root/dataset
    (cut off a day after the population's as-of time)."""
    export = synthetic_fhir.write_export(
        synthetic_fhir.generate(patients, seed, as_of=as_of), root / "export"
    )
    feature_builder.build(
        export_files(export),
        spec(),
        offline_output=root / "offline",
        online_output=None,
        shard="local",
        write_time=as_of,
    )
    (root / "spec.json").write_text(spec().to_json(), encoding="utf-8")
    preprocess.preprocess(
        root / "offline", root / "spec.json", root / "dataset", as_of=as_of + timedelta(days=1)
    )
    return root / "dataset"
