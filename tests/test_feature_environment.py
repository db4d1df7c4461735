"""The environment file's feature section: every declared feature is one the FHIR feature
builder derives (with its type), the processing basis exists in the environment's
jurisdiction, and a problem names the file and the YAML field. Each bad case is a shipped
file with one change; its twin is the shipped file, which loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from environments.layer_configs import layer_configs
from environments.loader import (
    ENVIRONMENT_FILE,
    ENVIRONMENTS_DIR,
    EnvironmentFileError,
    load_environment,
)
from environments.schema import WorkloadEnvironment
from ml.feature_spec import spec_from_dict


def shipped(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def load_changed(tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Any:
    data = shipped(name)
    change(data)
    path = tmp_path / name / ENVIRONMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_environment(path)


def features(data: dict[str, Any]) -> dict[str, Any]:
    section = data["ml"]["features"]
    assert isinstance(section, dict)
    return section


def unknown_feature(data: dict[str, Any]) -> None:
    features(data)["groups"][0]["features"][2] = {"name": "lactate", "type": "Fractional"}


def wrong_type(data: dict[str, Any]) -> None:
    features(data)["groups"][0]["features"][3]["type"] = "Fractional"  # systolic_bp


def no_basis_column(data: dict[str, Any]) -> None:
    group = features(data)["groups"][1]
    group["features"] = [f for f in group["features"] if f["name"] != "processing_basis"]


def admission_as_event_time(data: dict[str, Any]) -> None:
    features(data)["groups"][1]["event_time"] = "admitted_at"


def eu_basis_in_the_us(data: dict[str, Any]) -> None:
    features(data)["processing_basis"] = {"kind": "ehds-data-permit", "reference": "HDAB-1"}


def waiver_without_reference(data: dict[str, Any]) -> None:
    features(data)["processing_basis"] = {"kind": "hipaa-research-waiver"}


CASES = [
    (unknown_feature, "ml.features.groups[0].features[2]", "cannot derive 'lactate'"),
    (wrong_type, "ml.features.groups[0].features[3]", "'systolic_bp' is Integral"),
    (no_basis_column, "ml.features.groups[1]", "must declare the String feature"),
    (admission_as_event_time, "ml.features.groups[1]", "event_time 'admitted_at' is not when"),
    (eu_basis_in_the_us, "ml.features.processing_basis", "not a processing basis in the US"),
    (waiver_without_reference, "ml.features.processing_basis", "needs a reference"),
]


@pytest.mark.parametrize(("change", "field", "rule"), CASES, ids=[c[0].__name__ for c in CASES])
def test_a_feature_the_builder_cannot_fill_is_refused_at_its_field(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], field: str, rule: str
) -> None:
    with pytest.raises(EnvironmentFileError) as raised:
        load_changed(tmp_path, "dev", change)
    assert raised.value.field == field
    assert rule in raised.value.rule
    assert raised.value.path.parent.name == "dev"


def test_the_twin_the_shipped_file_loads(tmp_path: Path) -> None:
    environment = load_changed(tmp_path, "dev", lambda data: None)
    assert isinstance(environment, WorkloadEnvironment)


def test_an_eu_permit_is_accepted_in_the_eu(tmp_path: Path) -> None:
    environment = load_changed(tmp_path, "eu-research", lambda data: None)
    assert environment.ml.features.processing_basis.kind == "ehds-data-permit"
    with pytest.raises(EnvironmentFileError, match="not a processing basis in the EU"):
        load_changed(
            tmp_path / "us",
            "eu-research",
            lambda data: features(data).update(processing_basis={"kind": "hipaa-de-identified"}),
        )


@pytest.mark.parametrize("name", ["dev", "staging", "prod", "eu-research"])
def test_the_spec_an_environment_hands_its_job_is_one_the_job_accepts(name: str) -> None:
    environment = load_environment(ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE)
    assert isinstance(environment, WorkloadEnvironment)
    resolved = {
        group.name: f"s3://{name}-offline/feature-store/{group.name}/{environment.account_id}/"
        f"sagemaker/{environment.region}/offline-store/{group.name}-1780000000/data"
        for group in environment.ml.features.groups
    }
    spec = layer_configs(environment).feature_build.feature_spec(resolved)
    again = spec_from_dict(json.loads(spec.to_json()))
    assert again == spec
    assert again.basis.label.startswith(environment.ml.features.processing_basis.kind)
