"""What the feature builder is asked to build, and what it knows how to build.

The environment file declares feature groups (names, record identifier, event time, typed
features); the builder derives each declared feature from FHIR by the recipe in FEATURE_CATALOG.
A feature the catalog does not know, or declares with another type, is refused when the
environment is loaded (environments/layer_configs.py reports it at the YAML field), so a group
that the builder could not fill never reaches Terraform.

The spec travels to the processing job as JSON (`feature-spec.json`, an input of the job that
Terraform writes), so this module has no dependency beyond the standard library.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

# Every record carries the permit or legal basis it was processed under (GDPR Art. 5(2)
# accountability, EHDS Art. 68 permits): a String feature every group must declare.
PROCESSING_BASIS_FEATURE: Final = "processing_basis"


class Entity(StrEnum):
    """What one record of a group describes, told by its record identifier."""

    # One record per vital-signs measurement time of a patient: the latest value of every
    # vital as of that time (a value counts only from its effective time).
    PATIENT_VITALS = "patient_id"
    # One record per finished inpatient stay, true from its discharge (its event time).
    INPATIENT_STAY = "encounter_id"


@dataclass(frozen=True)
class CatalogFeature:
    type: str  # Feature Store type: Integral, Fractional or String
    description: str
    event_time: bool = False  # may be the group's event time


FEATURE_CATALOG: Final[dict[Entity, dict[str, CatalogFeature]]] = {
    Entity.PATIENT_VITALS: {
        "patient_id": CatalogFeature("String", "FHIR Patient.id"),
        "event_time": CatalogFeature(
            "String", "effective time of the measurement (ISO-8601, UTC)", event_time=True
        ),
        "heart_rate": CatalogFeature("Fractional", "latest LOINC 8867-4, /min"),
        "systolic_bp": CatalogFeature("Integral", "latest LOINC 8480-6, mm[Hg]"),
        "diastolic_bp": CatalogFeature("Integral", "latest LOINC 8462-4, mm[Hg]"),
        "spo2": CatalogFeature("Fractional", "latest LOINC 59408-5, %"),
        PROCESSING_BASIS_FEATURE: CatalogFeature("String", "permit or legal basis"),
    },
    Entity.INPATIENT_STAY: {
        "encounter_id": CatalogFeature("String", "FHIR Encounter.id (class IMP)"),
        "patient_id": CatalogFeature("String", "FHIR Patient.id of the subject"),
        "admitted_at": CatalogFeature("Fractional", "Encounter.period.start, epoch seconds"),
        "discharged_at": CatalogFeature(
            "Fractional", "Encounter.period.end, epoch seconds", event_time=True
        ),
        "length_of_stay_days": CatalogFeature("Integral", "whole days from start to end"),
        "prior_admissions": CatalogFeature(
            "Integral", "the patient's inpatient admissions in the 365 days before this one"
        ),
        "discharge_disposition": CatalogFeature(
            "String", "Encounter.hospitalization.dischargeDisposition code"
        ),
        PROCESSING_BASIS_FEATURE: CatalogFeature("String", "permit or legal basis"),
    },
}


class BasisKind(StrEnum):
    """Permits and legal bases the builder can process under, per jurisdiction."""

    HIPAA_DE_IDENTIFIED = "hipaa-de-identified"  # 45 CFR 164.514(b)
    HIPAA_LIMITED_DATA_SET = "hipaa-limited-data-set"  # 45 CFR 164.514(e), needs a DUA
    HIPAA_RESEARCH_WAIVER = "hipaa-research-waiver"  # 45 CFR 164.512(i), IRB/privacy board
    HIPAA_AUTHORIZATION = "hipaa-authorization"  # 45 CFR 164.508, per patient
    EHDS_DATA_PERMIT = "ehds-data-permit"  # EHDS Art. 68, issued by a health data access body
    GDPR_RESEARCH = "gdpr-art-9-2-j"  # GDPR Art. 9(2)(j) with Art. 89(1) safeguards
    GDPR_EXPLICIT_CONSENT = "gdpr-art-9-2-a"  # GDPR Art. 9(2)(a), per patient


BASES_BY_JURISDICTION: Final = {
    "US": frozenset(
        {
            BasisKind.HIPAA_DE_IDENTIFIED,
            BasisKind.HIPAA_LIMITED_DATA_SET,
            BasisKind.HIPAA_RESEARCH_WAIVER,
            BasisKind.HIPAA_AUTHORIZATION,
        }
    ),
    "EU": frozenset(
        {BasisKind.EHDS_DATA_PERMIT, BasisKind.GDPR_RESEARCH, BasisKind.GDPR_EXPLICIT_CONSENT}
    ),
}
# Bases that exist only through a document someone can show: its identifier is required.
BASES_NEEDING_REFERENCE: Final = frozenset(
    {
        BasisKind.HIPAA_LIMITED_DATA_SET,
        BasisKind.HIPAA_RESEARCH_WAIVER,
        BasisKind.EHDS_DATA_PERMIT,
        BasisKind.GDPR_RESEARCH,
    }
)
# Bases that hold only for patients whose own Consent permits the use.
BASES_NEEDING_PATIENT_PERMIT: Final = frozenset(
    {BasisKind.HIPAA_AUTHORIZATION, BasisKind.GDPR_EXPLICIT_CONSENT}
)
BASIS_REFERENCE_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


@dataclass(frozen=True)
class ProcessingBasis:
    kind: BasisKind
    reference: str | None = None

    @property
    def label(self) -> str:
        """The value of every record's processing_basis column."""
        return f"{self.kind.value}:{self.reference}" if self.reference else self.kind.value

    @property
    def needs_patient_permit(self) -> bool:
        return self.kind in BASES_NEEDING_PATIENT_PERMIT


def basis_problem(jurisdiction: str, kind: str, reference: str | None) -> str | None:
    """Why this basis cannot be used in this jurisdiction, or None when it can."""
    allowed = BASES_BY_JURISDICTION.get(jurisdiction)
    if allowed is None:
        return f"no processing basis is known for jurisdiction {jurisdiction!r}"
    if kind not in {k.value for k in allowed}:
        return (
            f"{kind!r} is not a processing basis in the {jurisdiction} jurisdiction "
            f"(one of: {', '.join(sorted(k.value for k in allowed))})"
        )
    if BasisKind(kind) in BASES_NEEDING_REFERENCE and not reference:
        return f"{kind!r} needs a reference (the permit, waiver or agreement identifier)"
    if reference is not None and not BASIS_REFERENCE_PATTERN.match(reference):
        return (
            f"reference {reference!r} must be 1-63 letters, digits or . _ / - "
            "(it is written into every record)"
        )
    return None


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    type: str


@dataclass(frozen=True)
class GroupSpec:
    name: str
    record_identifier: str
    event_time: str
    features: tuple[FeatureColumn, ...]
    # Where Feature Store keeps this group's offline files (DescribeFeatureGroup's
    # OfflineStoreConfig.S3StorageConfig.ResolvedOutputS3Uri, ending in /data).
    resolved_output_s3_uri: str

    @property
    def entity(self) -> Entity:
        return Entity(self.record_identifier)


def group_problem(
    name: str, record_identifier: str, event_time: str, features: list[tuple[str, str]]
) -> tuple[int | None, str] | None:
    """Why the builder could not fill this declared group: (index of the feature at fault or
    None for the group itself, the rule), or None when it can."""
    entities = {e.value: e for e in Entity}
    if record_identifier not in entities:
        return None, (
            f"feature group '{name}': record_identifier '{record_identifier}' names no entity "
            f"the feature builder knows ({', '.join(sorted(entities))})"
        )
    catalog = FEATURE_CATALOG[entities[record_identifier]]
    for index, (feature, declared) in enumerate(features):
        known = catalog.get(feature)
        if known is None:
            return index, (
                f"feature group '{name}': the feature builder cannot derive '{feature}' for "
                f"a {record_identifier} record (it knows {', '.join(catalog)})"
            )
        if known.type != declared:
            return index, (
                f"feature group '{name}': '{feature}' is {known.type} when derived from FHIR, "
                f"not {declared}"
            )
    known_time = catalog.get(event_time)
    if known_time is None or not known_time.event_time:
        times = [n for n, f in catalog.items() if f.event_time]
        return None, (
            f"feature group '{name}': event_time '{event_time}' is not when a "
            f"{record_identifier} record becomes true (use {', '.join(times)})"
        )
    if PROCESSING_BASIS_FEATURE not in {feature for feature, _ in features}:
        return None, (
            f"feature group '{name}' must declare the String feature "
            f"'{PROCESSING_BASIS_FEATURE}': every record carries the basis it was processed "
            "under"
        )
    return None


@dataclass(frozen=True)
class FeatureSpec:
    environment: str
    jurisdiction: str
    basis: ProcessingBasis
    groups: tuple[GroupSpec, ...]
    # Above this share of bad input lines the builder writes nothing and exits 2.
    max_bad_line_share: float = 0.01

    def to_json(self) -> str:
        return json.dumps(
            {
                "environment": self.environment,
                "jurisdiction": self.jurisdiction,
                "basis": {"kind": self.basis.kind.value, "reference": self.basis.reference},
                "max_bad_line_share": self.max_bad_line_share,
                "groups": [
                    {
                        "name": g.name,
                        "record_identifier": g.record_identifier,
                        "event_time": g.event_time,
                        "resolved_output_s3_uri": g.resolved_output_s3_uri,
                        "features": [{"name": f.name, "type": f.type} for f in g.features],
                    }
                    for g in self.groups
                ],
            },
            indent=2,
            sort_keys=True,
        )


class SpecError(ValueError):
    """A feature spec the builder cannot run on (the message names the field)."""


def _field(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise SpecError(f"{where}.{key}: required field is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise SpecError(f"{where}.{key}: must be {kind.__name__}, not {type(value).__name__}")
    return value


def spec_from_dict(data: Any) -> FeatureSpec:
    """Validate a decoded feature-spec.json (every rule the environment loader applies)."""
    if not isinstance(data, dict):
        raise SpecError("spec: must be a JSON object")
    jurisdiction = _field(data, "jurisdiction", str, "spec")
    basis_data = _field(data, "basis", dict, "spec")
    kind = _field(basis_data, "kind", str, "spec.basis")
    reference = basis_data.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise SpecError("spec.basis.reference: must be str or null")
    problem = basis_problem(jurisdiction, kind, reference)
    if problem:
        raise SpecError(f"spec.basis: {problem}")
    share = data.get("max_bad_line_share", 0.01)
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 <= share < 1:
        raise SpecError("spec.max_bad_line_share: must be a number in [0, 1)")
    groups = []
    for index, group in enumerate(_field(data, "groups", list, "spec")):
        where = f"spec.groups[{index}]"
        if not isinstance(group, dict):
            raise SpecError(f"{where}: must be a JSON object")
        features = []
        for position, feature in enumerate(_field(group, "features", list, where)):
            if not isinstance(feature, dict):
                raise SpecError(f"{where}.features[{position}]: must be a JSON object")
            features.append(
                FeatureColumn(
                    _field(feature, "name", str, f"{where}.features[{position}]"),
                    _field(feature, "type", str, f"{where}.features[{position}]"),
                )
            )
        spec = GroupSpec(
            name=_field(group, "name", str, where),
            record_identifier=_field(group, "record_identifier", str, where),
            event_time=_field(group, "event_time", str, where),
            features=tuple(features),
            resolved_output_s3_uri=_field(group, "resolved_output_s3_uri", str, where),
        )
        found = group_problem(
            spec.name,
            spec.record_identifier,
            spec.event_time,
            [(f.name, f.type) for f in spec.features],
        )
        if found:
            at, rule = found
            raise SpecError(f"{where}{'' if at is None else f'.features[{at}]'}: {rule}")
        if not spec.resolved_output_s3_uri.startswith("s3://"):
            raise SpecError(f"{where}.resolved_output_s3_uri: must be an s3:// URI")
        groups.append(spec)
    if not groups:
        raise SpecError("spec.groups: at least one feature group is required")
    return FeatureSpec(
        environment=_field(data, "environment", str, "spec"),
        jurisdiction=jurisdiction,
        basis=ProcessingBasis(BasisKind(kind), reference),
        groups=tuple(groups),
        max_bad_line_share=float(share),
    )


def read_spec(path: Path) -> FeatureSpec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"{path}: cannot be read ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpecError(f"{path}: not a JSON document ({error})") from None
    try:
        return spec_from_dict(data)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None
