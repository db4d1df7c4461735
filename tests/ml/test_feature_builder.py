"""The feature builder: point-in-time records, consent, bad lines, the offline layout, and
online records, each property with the input that would break it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber

from ml import feature_builder
from ml.feature_builder import build
from ml.feature_spec import BasisKind, ProcessingBasis
from ml.fhir_codes import HEART_RATE, SPO2
from ml.fhir_export import export_files
from ml.offline_store import read_group, relative_data_path
from ml.online_store import latest_records, put_records
from tests.ml import exports
from tests.ml.exports import STAYS, VITALS, consent, four_vitals, patient, stay, vital

WRITE_TIME = datetime(2026, 7, 1, tzinfo=UTC)
OFFLINE_FILE = re.compile(
    r"^(?P<group>[a-z-]+)/111111111111/sagemaker/us-east-1/offline-store/(?P=group)-1780000000/"
    r"data/year=(?P<y>\d{4})/month=(?P<m>\d{2})/day=(?P<d>\d{2})/hour=(?P<h>\d{2})/"
    r"(?P<latest>\d{8}T\d{6}Z)_[0-9a-z]{16}\.parquet$"
)


def run(root: Path, resources: list[dict[str, Any]], **options: Any) -> tuple[Any, Path]:
    export = exports.write(root / "export", resources, options.pop("extra_lines", None))
    out = root / "out"
    result = build(
        export_files(export),
        options.pop("spec", exports.spec()),
        offline_output=out / "offline",
        online_output=out / "online",
        shard="algo-1",
        write_time=WRITE_TIME,
        display_root=export.parent,
    )
    return result, out


def group_rows(out: Path, group: str) -> list[dict[str, Any]]:
    data = (
        out
        / "offline"
        / relative_data_path(
            next(g for g in exports.spec().groups if g.name == group), exports.OFFLINE_STORE
        )
    )
    return read_group(data).to_pylist()


# --- point in time ----------------------------------------------------------------------------


def test_a_vital_counts_only_from_its_effective_time(tmp_path: Path) -> None:
    resources = [
        patient("p1"),
        *four_vitals("a", "p1", "2026-03-01T08:00:00Z", (90.0, 130, 85, 93.0)),
        # Later heart rate only; its value must not reach the 08:00 record.
        vital("b", "p1", HEART_RATE, "2026-03-01T10:00:00+01:00", 72.5),
    ]
    _, out = run(tmp_path, resources)
    rows = group_rows(out, VITALS)
    assert [(r["event_time"], r["heart_rate"], r["spo2"]) for r in rows] == [
        ("2026-03-01T08:00:00Z", 90.0, 93.0),
        # 10:00+01:00 is 09:00 UTC; SpO2 carries forward from 08:00, the newer heart rate wins.
        ("2026-03-01T09:00:00Z", 72.5, 93.0),
    ]
    assert {r["systolic_bp"] for r in rows} == {130}


def test_the_twin_an_earlier_vital_reaches_the_earlier_record(tmp_path: Path) -> None:
    resources = [
        patient("p1"),
        *four_vitals("a", "p1", "2026-03-01T08:00:00Z", (90.0, 130, 85, 93.0)),
        vital("b", "p1", HEART_RATE, "2026-03-01T07:00:00Z", 72.5),
    ]
    _, out = run(tmp_path, resources)
    rows = group_rows(out, VITALS)
    assert [(r["event_time"], r["heart_rate"]) for r in rows] == [
        ("2026-03-01T07:00:00Z", 72.5),
        ("2026-03-01T08:00:00Z", 90.0),
    ]
    assert rows[0]["spo2"] is None  # nothing measured yet: missing, not zero


def test_a_vital_of_another_patient_never_fills_a_gap(tmp_path: Path) -> None:
    resources = [
        patient("p1"),
        patient("p2"),
        vital("a", "p1", SPO2, "2026-03-01T08:00:00Z", 91.0),
        vital("b", "p2", HEART_RATE, "2026-03-01T09:00:00Z", 70.0),
    ]
    _, out = run(tmp_path, resources)
    p2 = [r for r in group_rows(out, VITALS) if r["patient_id"] == "p2"]
    assert p2 == [
        {**p2[0], "heart_rate": 70.0, "spo2": None},
    ]


def test_stays_are_true_from_discharge_and_count_only_earlier_inpatient_admissions(
    tmp_path: Path,
) -> None:
    resources = [
        patient("p1"),
        stay("e0", "p1", "2025-01-10T00:00:00Z", "2025-01-12T00:00:00Z"),  # > 365 days before e3
        stay("e1", "p1", "2025-09-01T00:00:00Z", "2025-09-04T12:00:00Z", disposition="snf"),
        stay("amb", "p1", "2025-10-01T00:00:00Z", "2025-10-01T02:00:00Z", inpatient=False),
        stay("void", "p1", "2025-11-01T00:00:00Z", None, status="cancelled"),
        stay("e3", "p1", "2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z"),
        stay("open", "p1", "2026-06-01T00:00:00Z", None, status="in-progress"),
    ]
    _, out = run(tmp_path, resources)
    rows = {r["encounter_id"]: r for r in group_rows(out, STAYS)}
    assert sorted(rows) == ["e0", "e1", "e3"]  # no record before discharge, none for AMB
    assert rows["e1"]["length_of_stay_days"] == 3
    assert rows["e1"]["discharge_disposition"] == "snf"
    assert [rows[e]["prior_admissions"] for e in ("e0", "e1", "e3")] == [0, 1, 1]
    assert rows["e3"]["discharged_at"] == datetime(2026, 2, 2, tzinfo=UTC).timestamp()


# --- consent and basis ------------------------------------------------------------------------


def everything_written(out: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file())


def test_an_opted_out_patient_appears_nowhere_in_the_output(tmp_path: Path) -> None:
    resources = [
        patient("keep-me"),
        patient("opted-out-patient"),
        consent("c1", "opted-out-patient", "2025-01-01T00:00:00Z", "deny"),
        *four_vitals("a", "keep-me", "2026-03-01T08:00:00Z", (80.0, 120, 80, 97.0)),
        *four_vitals("b", "opted-out-patient", "2026-03-01T08:00:00Z", (80.0, 120, 80, 97.0)),
        stay(
            "enc-of-opted-out", "opted-out-patient", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"
        ),
    ]
    result, out = run(tmp_path, resources)
    written = everything_written(out)
    assert b"keep-me" in written
    assert b"opted-out-patient" not in written
    assert b"enc-of-opted-out" not in written
    assert result.report["patients_excluded_by_consent"] == 1
    assert "opted-out-patient" not in str(result.report)


def test_the_twin_a_permit_keeps_the_patient(tmp_path: Path) -> None:
    resources = [
        patient("p"),
        consent("c1", "p", "2025-01-01T00:00:00Z", "permit"),
        stay("e", "p", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"),
    ]
    result, out = run(tmp_path, resources)
    assert b"Patient" not in everything_written(out)  # records carry ids, not references
    assert [r["patient_id"] for r in group_rows(out, STAYS)] == ["p"]
    assert result.report["patients_excluded_by_consent"] == 0


@pytest.mark.parametrize(
    ("decisions", "excluded"),
    [
        ((("2025-01-01T00:00:00Z", "permit"), ("2026-01-01T00:00:00Z", "deny")), True),
        ((("2025-01-01T00:00:00Z", "deny"), ("2026-01-01T00:00:00Z", "permit")), False),
        ((("2025-01-01T00:00:00Z", "deny"),), True),
    ],
    ids=["withdrawn", "opted-back-in", "opted-out"],
)
def test_the_latest_active_consent_decides(
    tmp_path: Path, decisions: tuple[tuple[str, str], ...], excluded: bool
) -> None:
    resources = [
        patient("p"),
        *(consent(f"c{i}", "p", when, d) for i, (when, d) in enumerate(decisions)),
        stay("e", "p", "2026-02-01T00:00:00Z", "2026-02-03T00:00:00Z"),
    ]
    _, out = run(tmp_path, resources)
    assert (group_rows(out, STAYS) == []) is excluded


def test_a_denial_for_an_unrelated_purpose_does_not_exclude(tmp_path: Path) -> None:
    resources = [
        patient("p"),
        consent("c", "p", "2025-01-01T00:00:00Z", "deny", purpose="HMARKT"),  # marketing
        stay("e", "p", "2026-02-01T00:00:00Z", "2026-02-03T00:00:00Z"),
    ]
    _, out = run(tmp_path, resources)
    assert len(group_rows(out, STAYS)) == 1


def test_a_consent_based_basis_needs_each_patients_permit(tmp_path: Path) -> None:
    authorization = exports.spec(ProcessingBasis(BasisKind.HIPAA_AUTHORIZATION))
    resources = [
        patient("with-permit"),
        patient("no-consent"),
        consent("c", "with-permit", "2025-01-01T00:00:00Z", "permit"),
        stay("e1", "with-permit", "2026-02-01T00:00:00Z", "2026-02-03T00:00:00Z"),
        stay("e2", "no-consent", "2026-02-01T00:00:00Z", "2026-02-03T00:00:00Z"),
    ]
    _, out = run(tmp_path, resources, spec=authorization)
    assert [r["patient_id"] for r in group_rows(out, STAYS)] == ["with-permit"]
    # The twin: under a research waiver the patient without a Consent is processed.
    _, waived = run(tmp_path / "waiver", resources)
    assert sorted(r["patient_id"] for r in group_rows(waived, STAYS)) == [
        "no-consent",
        "with-permit",
    ]


def test_every_record_carries_its_processing_basis(tmp_path: Path) -> None:
    permit = exports.spec(ProcessingBasis(BasisKind.HIPAA_RESEARCH_WAIVER, "IRB-2026-0142"))
    resources = [patient("p"), *four_vitals("a", "p", "2026-03-01T08:00:00Z", (1, 2, 3, 4))]
    resources.append(stay("e", "p", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"))
    _, out = run(tmp_path, resources, spec=permit)
    for group in (VITALS, STAYS):
        assert {r["processing_basis"] for r in group_rows(out, group)} == {
            "hipaa-research-waiver:IRB-2026-0142"
        }


# --- bad lines --------------------------------------------------------------------------------

BAD_LINES = {
    "Observation": [
        b"{not json\n",
        b'{"resourceType": "Observation", "id": "no-subject", "status": "final"}\n',
        b'{"resourceType": "Observation", "id": "no-time",'
        b' "subject": {"reference": "Patient/p"}}\n',
    ],
    "Patient": [
        b'{"resourceType": "Patient", "id": "p"}\n',  # a duplicate of the one written first
        b'{"resourceType": "Patient", "id": "caf\xe9"}\n',  # Latin-1, not UTF-8
        b'{"resourceType": "Patinet", "id": "typo"}\n',
    ],
}


def test_every_bad_line_is_counted_with_its_file_and_line(tmp_path: Path) -> None:
    good = [patient("p"), *four_vitals("a", "p", "2026-03-01T08:00:00Z", (1, 2, 3, 4))]
    lenient = exports.spec(max_bad_line_share=0.9)
    result, _ = run(tmp_path, good, extra_lines=BAD_LINES, spec=lenient)
    listed = {
        (b["file"], b["line"], b["reason"]) for b in result.report["input"]["first_bad_lines"]
    }
    observations = f"{exports.EXPORT_FOLDER}/Observation/Observation-0.ndjson"
    patients = f"{exports.EXPORT_FOLDER}/Patient/Patient-0.ndjson"
    assert listed == {
        (observations, 5, "malformed JSON"),
        (observations, 6, "missing subject (Patient reference)"),
        (observations, 7, "missing time"),
        (patients, 2, "duplicate id"),
        (patients, 3, "not UTF-8"),
        (patients, 4, "unknown resource type (not FHIR R4)"),
    }
    assert result.report["input"]["bad_lines"] == 6
    assert result.report["input"]["resources"] == {"Observation": 4, "Patient": 1}


def test_above_the_allowed_share_nothing_is_written_and_the_exit_is_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = exports.write(
        tmp_path / "export",
        [patient("p"), *four_vitals("a", "p", "2026-03-01T08:00:00Z", (1, 2, 3, 4))],
        BAD_LINES,
    )
    spec_file = tmp_path / "feature-spec.json"
    spec_file.write_text(exports.spec().to_json())
    out = tmp_path / "out"
    arguments = [
        "build",
        f"--input={export}",
        f"--spec={spec_file}",
        f"--offline-output={out / 'offline'}",
        f"--online-output={out / 'online'}",
        f"--report={out / 'report'}",
    ]
    assert feature_builder.main(arguments) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "6 of 11 lines are bad" in message
    assert not [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in tmp_path.rglob(".staging-*")]
    # The twin: the same input with a lenient spec writes everything.
    spec_file.write_text(exports.spec(max_bad_line_share=0.9).to_json())
    assert feature_builder.main(arguments) == 0
    assert (out / "report" / "local.json").is_file()
    assert list((out / "offline").rglob("*.parquet"))


def test_a_missing_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "feature-spec.json"
    spec_file.write_text(exports.spec().to_json())
    code = feature_builder.main(
        [
            "build",
            f"--input={tmp_path / 'nowhere'}",
            f"--spec={spec_file}",
            f"--offline-output={tmp_path / 'o'}",
            f"--report={tmp_path / 'r'}",
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("nowhere: not a folder")


def test_a_spec_declaring_what_the_builder_cannot_derive_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = exports.spec().to_json().replace('"spo2"', '"lactate"')
    spec_file = tmp_path / "feature-spec.json"
    spec_file.write_text(text)
    export = exports.write(tmp_path / "export", [patient("p")])
    code = feature_builder.main(
        ["build", f"--input={export}", f"--spec={spec_file}", "--offline-output=o", "--report=r"]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "spec.groups[0].features[5]" in error and "cannot derive 'lactate'" in error


# --- the offline layout and the online records ------------------------------------------------


def test_offline_files_follow_feature_stores_layout_and_types(tmp_path: Path) -> None:
    resources = [
        patient("p"),
        *four_vitals("a", "p", "2026-03-01T08:15:00Z", (80.5, 120, 80, 97.5)),
        *four_vitals("b", "p", "2026-03-01T08:45:00Z", (81.5, 121, 81, 96.5)),
        *four_vitals("c", "p", "2026-03-02T23:59:59Z", (82.5, 122, 82, 95.5)),
        stay("e", "p", "2026-02-27T00:00:00Z", "2026-03-03T00:00:00Z"),
    ]
    _, out = run(tmp_path, resources)
    files = sorted(
        p.relative_to(out / "offline").as_posix() for p in (out / "offline").rglob("*.parquet")
    )
    assert len(files) == 3  # two hours of vitals, one of the stay's discharge
    for name in files:
        match = OFFLINE_FILE.match(name)
        assert match, name
        table = pq.read_table(out / "offline" / name, partitioning=None)
        group = next(g for g in exports.spec().groups if g.name == match["group"])
        # Every row lies in the hour its folder names; the file is named for its latest.
        times = table.column(group.event_time).to_pylist()
        moments = [
            datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            if isinstance(t, str)
            else datetime.fromtimestamp(t, UTC)
            for t in times
        ]
        assert {f"{m:%Y%m%d%H}" for m in moments} == {
            f"{match['y']}{match['m']}{match['d']}{match['h']}"
        }
        assert match["latest"] == f"{max(moments):%Y%m%dT%H%M%SZ}"
        expected = {"Integral": pa.int64(), "Fractional": pa.float64(), "String": pa.string()}
        schema = table.schema
        assert [(f.name, schema.field(f.name).type) for f in group.features] == [
            (f.name, expected[f.type]) for f in group.features
        ]
        assert schema.names[-3:] == ["write_time", "api_invocation_time", "is_deleted"]
        assert schema.field("write_time").type == pa.timestamp("ms", tz="UTC")
        assert set(table.column("is_deleted").to_pylist()) == {False}
        assert set(table.column("write_time").to_pylist()) == {WRITE_TIME}


def test_online_records_are_the_latest_per_identifier_and_valid_put_record_calls(
    tmp_path: Path,
) -> None:
    resources = [
        patient("p"),
        vital("a", "p", HEART_RATE, "2026-03-01T08:00:00Z", 80.0),
        vital("b", "p", HEART_RATE, "2026-03-01T09:00:00Z", 70.0),
    ]
    _, out = run(tmp_path, resources)
    group = exports.spec().groups[0]
    data = out / "offline" / relative_data_path(group, exports.OFFLINE_STORE)
    table = read_group(data).sort_by([("patient_id", "ascending"), ("event_time", "ascending")])
    client = boto3.client(
        "sagemaker-featurestore-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:  # validates every call against the real API model
        stubber.add_response(
            "put_record",
            {},
            {
                "FeatureGroupName": VITALS,
                "Record": [
                    {"FeatureName": "patient_id", "ValueAsString": "p"},
                    {"FeatureName": "event_time", "ValueAsString": "2026-03-01T09:00:00Z"},
                    {"FeatureName": "heart_rate", "ValueAsString": "70.0"},
                    {
                        "FeatureName": "processing_basis",
                        "ValueAsString": "hipaa-de-identified:synthetic-population",
                    },
                ],
            },
        )
        assert (
            put_records(
                client,
                table.select(
                    [
                        c
                        for c in table.column_names
                        if c not in ("write_time", "api_invocation_time", "is_deleted")
                    ]
                ),
                group,
            )
            == 1
        )
    assert latest_records(table, group).num_rows == 1
