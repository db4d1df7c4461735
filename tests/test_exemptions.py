"""Exemptions: the shipped file loads and refuses exemptions for the checks that guard PHI; every
rule of an entry has a failing twin whose message names the file, the entry and the field; and
entries match by check, stack and address (globs) and lapse after their expiry date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.exemptions import (
    DEFAULT_EXEMPTIONS,
    MAX_HORIZON_DAYS,
    ExemptionEntry,
    ExemptionsError,
    load_exemptions,
)

TODAY = dt.date(2026, 3, 1)
RAW_BUCKET = "aws_s3_bucket.storage_raw_bucket_0EBA1063"
# Written out, not read from the file: dropping one of these from never_exemptable must fail.
MUST_NEVER_BE_EXEMPTED = {
    "CKV_PHI_1",  # HealthLake with our CMK
    "CKV_PHI_2",  # feature groups encrypted
    "CKV_PHI_6",  # endpoint data capture, encrypted
    "CKV_PHI_9",  # no internet or NAT gateway in a PHI VPC
    "CKV_PHI_10",  # TLS-only bucket policies
    "CKV_PHI_11",  # EU residency
    "CKV_AWS_19",  # S3 encrypted at rest
    "CKV_AWS_145",  # S3 encrypted with KMS
}
NEVER = [{"check": "CKV_PHI_1", "why": "HealthLake holds the FHIR records themselves."}]


def entry(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "check": "CKV_AWS_144",
        "stack": "dev-data",
        "resource": RAW_BUCKET,
        "reason": "Cross-region replication is not needed in dev: it holds synthetic data only.",
        "owner": "data-platform@example.org",
        "expires": "2026-06-30",
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def write(directory: Path, entries: list[dict[str, Any]], **top: Any) -> Path:
    document = {"exemptions_version": 1, "never_exemptable": NEVER, "exemptions": entries}
    document.update(top)
    path = directory / "exemptions.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def load(path: Path, today: dt.date = TODAY) -> list[ExemptionEntry]:
    return list(load_exemptions(path, today=today).entries)


# --- the shipped file -------------------------------------------------------------------------


def test_the_shipped_file_loads_and_never_exempts_what_guards_phi() -> None:
    shipped = load_exemptions(DEFAULT_EXEMPTIONS)
    assert set(shipped.never_exemptable) >= MUST_NEVER_BE_EXEMPTED
    assert all(len(why) >= 20 for why in shipped.never_exemptable.values())
    refused = set(shipped.never_exemptable) & {entry.check for entry in shipped.entries}
    assert not refused


# --- one entry: each rule and its failing twin ------------------------------------------------


def test_a_complete_entry_loads_with_its_fields(tmp_path: Path) -> None:
    (loaded,) = load(write(tmp_path, [entry(expires=dt.date(2026, 6, 30))]))
    assert (loaded.check, loaded.stack, loaded.resource) == ("CKV_AWS_144", "dev-data", RAW_BUCKET)
    assert loaded.expires == dt.date(2026, 6, 30)
    assert loaded.owner == "data-platform@example.org"
    assert loaded.why_several is None


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"check": "S3_ENCRYPTION"}, "check", "is not a checkov check id"),
        ({"check": "CKV_AWS_*"}, "check", "is not a checkov check id"),
        ({"stack": "Dev_Data"}, "stack", "is not a stack name or glob"),
        ({"resource": "storage_raw_bucket_0EBA1063"}, "resource", "is not a Terraform address"),
        ({"resource": "aws_s3_*.storage_raw"}, "resource", "globs only in NAME"),
        ({"reason": "Not needed in dev."}, "reason", "say why in at least 40"),
        ({"reason": "TODO: explain why replication is not needed here."}, "reason", "'TODO'"),
        ({"reason": "TBD once the data team has looked at replication."}, "reason", "'TBD'"),
        ({"owner": "bob"}, "owner", "email address (name@example.org) or a GitHub team"),
        ({"owner": "@data-platform"}, "owner", "or a GitHub team (@org/team)"),
        ({"owner": None}, "owner", "Field required"),
        ({"expires": "30/06/2026"}, "expires", "is not an ISO date YYYY-MM-DD"),
        ({"expires": 1782777600}, "expires", "is not an ISO date YYYY-MM-DD"),
        ({"expires": "2026-02-30"}, "expires", "is not an ISO date YYYY-MM-DD"),
        ({"expires": "2027-03-02"}, "expires", f"more than {MAX_HORIZON_DAYS} days ahead"),
        ({"approved_by": "me"}, "approved_by", "Extra inputs are not permitted"),
    ],
)
def test_a_broken_field_is_named_with_file_entry_and_rule(
    tmp_path: Path, overrides: dict[str, Any], field: str, rule: str
) -> None:
    path = write(tmp_path, [entry(), entry(**{"stack": "staging-data", **overrides})])
    with pytest.raises(ExemptionsError) as raised:
        load(path)
    (message,) = str(raised.value).splitlines()
    assert message.startswith(f"{path}: exemptions[1] (")
    assert f": {field}: " in message
    assert rule in message


def test_the_horizon_counts_from_the_day_the_gate_runs(tmp_path: Path) -> None:
    path = write(tmp_path, [entry(expires="2026-06-30")])
    assert load(path, today=dt.date(2025, 6, 30))  # exactly 365 days ahead
    with pytest.raises(ExemptionsError, match="more than 365 days ahead"):
        load(path, today=dt.date(2025, 6, 29))


def test_an_expiry_in_the_past_loads_so_the_gate_can_name_it(tmp_path: Path) -> None:
    (loaded,) = load(write(tmp_path, [entry(expires="2025-12-31")]))
    assert not loaded.in_force(TODAY)


def test_a_glob_needs_a_reason_for_covering_several(tmp_path: Path) -> None:
    why = "Every environment's raw bucket is built by the same construct."
    (loaded,) = load(write(tmp_path, [entry(stack="*-data", why_several=why)]))
    assert loaded.is_glob and loaded.why_several == why
    with pytest.raises(ExemptionsError, match=r"exemptions\[0\] .*why_several: required"):
        load(write(tmp_path, [entry(stack="*-data")]))
    with pytest.raises(ExemptionsError, match=r"why_several: required"):
        load(write(tmp_path, [entry(resource="aws_s3_bucket.storage_*")]))


def test_why_several_is_refused_on_an_entry_naming_one_resource(tmp_path: Path) -> None:
    with pytest.raises(ExemptionsError, match=r"why_several: only for an entry whose stack"):
        load(write(tmp_path, [entry(why_several="Covers every bucket of this stack.")]))


def test_why_several_is_a_written_reason_too(tmp_path: Path) -> None:
    with pytest.raises(ExemptionsError, match=r"why_several: 'XXX' is a placeholder"):
        load(write(tmp_path, [entry(stack="*-data", why_several="XXX fill this one later")]))


# --- rules across entries ---------------------------------------------------------------------


def test_a_never_exemptable_check_refuses_every_exemption(tmp_path: Path) -> None:
    assert load(write(tmp_path, [entry(check="CKV_PHI_12")]))
    path = write(tmp_path, [entry(check="CKV_PHI_1")])
    with pytest.raises(ExemptionsError) as raised:
        load(path)
    assert str(raised.value) == (
        f"{path}: exemptions[0] (CKV_PHI_1 dev-data {RAW_BUCKET}): check: CKV_PHI_1 can never "
        "be exempted (HealthLake holds the FHIR records themselves.); fix the resource instead"
    )


def test_the_same_exemption_twice_is_refused(tmp_path: Path) -> None:
    assert load(write(tmp_path, [entry(), entry(stack="staging-data")]))
    with pytest.raises(ExemptionsError, match=r"exemptions\[1\] .*repeats exemptions\[0\]"):
        load(write(tmp_path, [entry(), entry()]))


def test_a_never_exemptable_check_listed_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExemptionsError, match=r"never_exemptable\[1\]: check: .* listed twice"):
        load(write(tmp_path, [], never_exemptable=NEVER + NEVER))


@pytest.mark.parametrize(
    ("top", "rule"),
    [
        ({"exemptions": None}, "exemptions: Input should be a valid tuple"),
        ({"never_exemptable": []}, "never_exemptable: Tuple should have at least 1 item"),
        ({"exemptions_version": 2}, "exemptions_version: 2: Input should be 1"),
    ],
)
def test_the_file_shape_is_checked(tmp_path: Path, top: dict[str, Any], rule: str) -> None:
    assert load(write(tmp_path, [])) == []
    with pytest.raises(ExemptionsError, match=rule):
        load(write(tmp_path, [], **top))


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(tmp_path, [entry()])
    text = path.read_text().replace("  owner:", "  owner: someone@example.org\n  owner:", 1)
    path.write_text(text)
    with pytest.raises(ExemptionsError, match="duplicate key 'owner'"):
        load(path)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ExemptionsError, match=r"missing.yaml: cannot be read"):
        load_exemptions(tmp_path / "missing.yaml")


# --- matching and expiry ----------------------------------------------------------------------


def test_an_entry_covers_its_check_stack_and_address_only(tmp_path: Path) -> None:
    (named,) = load(write(tmp_path, [entry()]))
    assert named.covers("CKV_AWS_144", "dev-data", RAW_BUCKET)
    assert not named.covers("CKV2_AWS_62", "dev-data", RAW_BUCKET)
    assert not named.covers("CKV_AWS_144", "prod-data", RAW_BUCKET)
    assert not named.covers("CKV_AWS_144", "dev-data", "aws_s3_bucket.storage_curated_bucket_1")


def test_globs_cover_stacks_and_names_but_never_another_resource_type(tmp_path: Path) -> None:
    why = "Every environment's data buckets are built by one construct."
    (globbed,) = load(
        write(
            tmp_path, [entry(stack="*-data", resource="aws_s3_bucket.storage_*", why_several=why)]
        )
    )
    assert globbed.covers("CKV_AWS_144", "eu-research-data", RAW_BUCKET)
    assert globbed.covers("CKV_AWS_144", "prod-data", "aws_s3_bucket.storage_curated_bucket_1")
    assert not globbed.covers("CKV_AWS_144", "prod-ml", RAW_BUCKET)
    assert not globbed.covers("CKV_AWS_144", "prod-data", "aws_s3_bucket_policy.storage_raw_1")
    assert not globbed.covers("CKV_AWS_144", "PROD-DATA", RAW_BUCKET)  # case matters


def test_an_exemption_holds_through_its_expiry_day_and_lapses_the_next(tmp_path: Path) -> None:
    (loaded,) = load(write(tmp_path, [entry(expires="2026-06-30")]))
    assert loaded.in_force(dt.date(2026, 6, 30))
    assert not loaded.in_force(dt.date(2026, 7, 1))


def test_first_in_force_skips_lapsed_entries(tmp_path: Path) -> None:
    why = "All raw buckets share one construct and one decision."
    path = write(
        tmp_path,
        [entry(expires="2026-01-31"), entry(stack="*-data", why_several=why, expires="2026-06-30")],
    )
    exemptions = load_exemptions(path, today=TODAY)
    assert exemptions.covering("CKV_AWS_144", "dev-data", RAW_BUCKET) == [0, 1]
    assert exemptions.first_in_force("CKV_AWS_144", "dev-data", RAW_BUCKET, TODAY) == 1
    assert (
        exemptions.first_in_force("CKV_AWS_144", "dev-data", RAW_BUCKET, dt.date(2026, 7, 1))
        is None
    )
