"""The synthetic population: FHIR R4 as HealthLake exports it, deterministic, with opted-out
patients and a learnable 30-day readmission signal."""

from __future__ import annotations

import hashlib
import importlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhirclient.models.fhirabstractbase import FHIRValidationError

from ml import synthetic_fhir
from ml.fhir_codes import EXPORTED_TYPES

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
FOLDER = re.compile(r"^[0-9a-f]{32}-FHIR_EXPORT-[0-9a-f]{32}$")


def validate_r4(resource: dict[str, Any]) -> None:
    """Raises FHIRValidationError unless the resource is valid FHIR R4 (4.0.1) as fhirclient's
    generated models read it (unknown fields, wrong types, missing required elements)."""
    kind = resource["resourceType"]
    module = importlib.import_module(f"fhirclient.models.{kind.lower()}")
    getattr(module, kind)(resource, strict=True)


@pytest.fixture(scope="module")
def population() -> synthetic_fhir.Population:
    return synthetic_fhir.generate(200, 11, as_of=AS_OF)


def test_every_resource_is_valid_fhir_r4(population: synthetic_fhir.Population) -> None:
    count = 0
    for kind in EXPORTED_TYPES:
        for resource in population.resources(kind):
            validate_r4(resource)
            count += 1
    assert count > 1000


@pytest.mark.parametrize(
    "break_it",
    [
        lambda r: r.update(genderx="female"),  # misspelt
        lambda r: r.update(birthDate=19500101),  # wrong type
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_the_twin_an_invalid_resource_is_rejected(
    population: synthetic_fhir.Population, break_it: Any
) -> None:
    patient = dict(population.patients[0])
    break_it(patient)
    with pytest.raises(FHIRValidationError):
        validate_r4(patient)


def test_the_export_has_healthlakes_layout(tmp_path: Path) -> None:
    population = synthetic_fhir.generate(60, 3, as_of=AS_OF)
    folder = synthetic_fhir.write_export(population, tmp_path, resources_per_file=500)
    assert FOLDER.match(folder.name)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert {f.split("/")[0] for f in files} == set(EXPORTED_TYPES)
    assert len([f for f in files if f.startswith("Observation/")]) > 1
    for name in files:
        kind, file = name.split("/")
        assert re.fullmatch(rf"{kind}-\d+\.ndjson", file)
        lines = (folder / name).read_bytes().splitlines()
        assert 0 < len(lines) <= 500
        assert {orjson.loads(line)["resourceType"] for line in lines} == {kind}


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.ndjson"))
    }


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        synthetic_fhir.write_export(synthetic_fhir.generate(40, seed, as_of=AS_OF), tmp_path / name)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert digests(tmp_path / "a") != digests(tmp_path / "c")


def test_references_resolve_and_some_patients_opt_out(
    population: synthetic_fhir.Population,
) -> None:
    patients = {f"Patient/{p['id']}" for p in population.patients}
    encounters = {e["id"]: e for e in population.encounters}
    for observation in population.observations:
        assert observation["subject"]["reference"] in patients
        encounter = encounters[observation["encounter"]["reference"].split("/")[1]]
        when = datetime.fromisoformat(observation["effectiveDateTime"])
        period = encounter["period"]
        start, end = datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
        assert start <= when <= end
    consenting = {c["patient"]["reference"] for c in population.consents}
    assert consenting == patients
    assert 0 < len(population.opted_out) < 0.15 * len(population.patients)


def test_readmission_is_learnable(tmp_path: Path) -> None:
    population = synthetic_fhir.generate(2000, 1, as_of=AS_OF)
    stays = [s for s in population.stays if s.label_complete]
    rate = sum(s.readmitted for s in stays) / len(stays)
    assert 0.08 <= rate <= 0.3
    ranked = sorted(stays, key=lambda s: s.probability)
    fifth = len(ranked) // 5
    low = sum(s.readmitted for s in ranked[:fifth]) / fifth
    high = sum(s.readmitted for s in ranked[-fifth:]) / fifth
    assert high >= 3 * low
    # The twin: a score that ignores the signal (the order of the stays) separates nothing.
    shuffled = sorted(stays, key=lambda s: s.encounter_id)
    low_random = sum(s.readmitted for s in shuffled[:fifth]) / fifth
    high_random = sum(s.readmitted for s in shuffled[-fifth:]) / fifth
    assert high_random < 3 * max(low_random, 0.01)


def test_bad_arguments_exit_2_with_one_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert synthetic_fhir.main(["--patients", "0", "--seed", "1", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not list(tmp_path.iterdir())
