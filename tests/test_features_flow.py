"""`make features ENV=dev` as a new user runs it: the dev data stack applied on the emulator,
a synthetic export through the feature builder, records in the feature groups' stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ml.feature_spec import PROCESSING_BASIS_FEATURE
from tools import features

requires_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not on PATH"
)


@requires_terraform
@pytest.mark.terraform
@pytest.mark.emulator
def test_make_features_writes_the_three_outputs_with_declared_types_and_no_opted_out_patient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    code = features.main(
        ["dev", "--out", str(tmp_path / "out"), "--reports", str(reports), "--patients", "60"]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    folder = reports / "dev"
    assert {"export", "offline", "summary.json"} <= {p.name for p in folder.iterdir()}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["input"]["bad_lines"] == 0
    assert set(summary["input"]["resources"]) == {
        "Condition",
        "Consent",
        "Encounter",
        "Observation",
        "Patient",
    }
    assert summary["patients_excluded_by_consent"] > 0
    spec = json.loads((folder / "feature-spec.json").read_text())
    for group in spec["groups"]:
        name = group["name"]
        found = summary["read_back"][name]
        # Every record reached the offline store in the emulator and one online record reads back.
        assert found["offline_rows"] == summary["records_per_group"][name] > 0
        assert found["offline_objects"] == summary["offline_files_per_group"][name]
        assert found["online_features_of_first_record"] >= 3
        assert found["opted_out_identifiers_found"] == 0
        parquet = sorted((folder / "offline").rglob(f"*{name}-*/data/**/*.parquet"))
        assert parquet
        schema = pq.read_schema(parquet[0])
        arrow = {"Integral": "int64", "Fractional": "double", "String": "string"}
        assert [(f["name"], str(schema.field(f["name"]).type)) for f in group["features"]] == [
            (f["name"], arrow[f["type"]]) for f in group["features"]
        ]
        assert PROCESSING_BASIS_FEATURE in schema.names
    assert "opted-out identifiers found: 0" in printed.out


def test_the_organization_has_no_feature_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert features.main(["org", "--reports", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: org is the organization: it has no feature groups"
    )
    assert not list(tmp_path.iterdir())


def test_an_unknown_environment_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert features.main(["nowhere", "--reports", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "nowhere" in error and "\n" not in error
