"""The control catalog: the shipped catalog covers the regulations' core controls with well-formed
evidence, and a broken catalog stops with a message naming the file, the control and the rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from policies.catalog import (
    CHECKOV_CHECK_ID,
    CONFIG_RULE_IDENTIFIER,
    DEFAULT_CATALOG,
    Catalog,
    CatalogError,
    Framework,
    load_catalog,
)

# Written out, not derived from the file: dropping one of these controls must fail a test.
REQUIRED_CONTROLS = {
    "HIPAA-164.308(a)(1)(ii)(D)": "HIPAA",
    "HIPAA-164.312(a)(1)": "HIPAA",
    "HIPAA-164.312(a)(2)(iv)": "HIPAA",
    "HIPAA-164.312(b)": "HIPAA",
    "HIPAA-164.312(c)(1)": "HIPAA",
    "HIPAA-164.312(d)": "HIPAA",
    "HIPAA-164.312(e)(1)": "HIPAA",
    "HIPAA-164.312(e)(2)(ii)": "HIPAA",
    "HIPAA-164.316(b)(2)": "HIPAA",
    "GDPR-32": "GDPR",
    "GDPR-5(1)(f)": "GDPR",
    "GDPR-44": "GDPR",
    "EU-AI-Act-12": "EU-AI-Act",
}
# The trail and archive this platform builds are evidence for these, through these rules.
AUDIT_RULES = {
    "HIPAA-164.312(b)": {
        "CLOUD_TRAIL_ENABLED",
        "MULTI_REGION_CLOUD_TRAIL_ENABLED",
        "CLOUD_TRAIL_ENCRYPTION_ENABLED",
        "CLOUD_TRAIL_LOG_FILE_VALIDATION_ENABLED",
        "CLOUDTRAIL_S3_DATAEVENTS_ENABLED",
    },
    "HIPAA-164.312(a)(2)(iv)": {
        "S3_BUCKET_SERVER_SIDE_ENCRYPTION_ENABLED",
        "CMK_BACKING_KEY_ROTATION_ENABLED",
        "SAGEMAKER_ENDPOINT_CONFIGURATION_KMS_KEY_CONFIGURED",
        "CLOUDWATCH_LOG_GROUP_ENCRYPTED",
    },
    "HIPAA-164.312(e)(2)(ii)": {"S3_BUCKET_SSL_REQUESTS_ONLY"},
}


def control(control_id: str = "GDPR-32", **overrides: Any) -> dict[str, Any]:
    framework = max(
        (f.value for f in Framework if control_id.startswith(f"{f.value}-")), key=len, default=""
    )
    values: dict[str, Any] = {
        "id": control_id,
        "framework": framework,
        "title": "Security of processing",
        "citation": "Article 32",
        "responsibility": "shared",
        "static_checks": ["CKV_AWS_19"],
        "runtime_evidence": {"config_rules": ["S3_BUCKET_SSL_REQUESTS_ONLY"]},
    }
    values.update(overrides)
    return values


def write_catalog(directory: Path, controls: list[dict[str, Any]], **top: Any) -> Path:
    path = directory / "controls.yaml"
    path.write_text(yaml.safe_dump({"catalog_version": 1, **top, "controls": controls}))
    return path


def controls_without_evidence(catalog: Catalog) -> list[str]:
    return [
        c.id
        for c in catalog.controls
        if not (c.static_checks or c.runtime_evidence.config_rules or c.runtime_evidence.manual)
    ]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# --- the shipped catalog ------------------------------------------------------------------


def test_the_default_catalog_is_the_policies_file() -> None:
    expected = Path(__file__).parents[1] / "policies" / "controls.yaml"
    assert expected == DEFAULT_CATALOG


def test_the_catalog_covers_the_required_controls(catalog: Catalog) -> None:
    found = {c.id: c.framework.value for c in catalog.controls}
    missing = {cid: fw for cid, fw in REQUIRED_CONTROLS.items() if found.get(cid) != fw}
    assert missing == {}


def test_audit_controls_name_the_rules_that_evidence_the_trail(catalog: Catalog) -> None:
    for control_id, rules in AUDIT_RULES.items():
        listed = set(catalog.control(control_id).runtime_evidence.config_rules)
        assert rules <= listed, f"{control_id} lacks {sorted(rules - listed)}"


def test_every_control_carries_some_evidence(catalog: Catalog) -> None:
    assert controls_without_evidence(catalog) == []


def test_a_control_without_evidence_is_detected(tmp_path: Path) -> None:
    bare = control(static_checks=[], runtime_evidence={})
    assert controls_without_evidence(load_catalog(write_catalog(tmp_path, [bare]))) == ["GDPR-32"]


def test_every_config_rule_identifier_is_well_formed(catalog: Catalog) -> None:
    malformed = [
        rule for rule in catalog.config_rules() if not re.fullmatch(CONFIG_RULE_IDENTIFIER, rule)
    ]
    assert malformed == []
    assert catalog.config_rules(), "the catalog names no AWS Config rule"


def test_every_static_check_is_a_checkov_id(catalog: Catalog) -> None:
    checks = {check for c in catalog.controls for check in c.static_checks}
    assert checks
    assert [check for check in checks if not re.fullmatch(CHECKOV_CHECK_ID, check)] == []


def test_six_year_retention_is_what_the_retention_rule_checks(catalog: Catalog) -> None:
    assert catalog.parameters("CW_LOGGROUP_RETENTION_PERIOD_CHECK") == {"MinRetentionTime": "2192"}
    assert catalog.parameters("S3_BUCKET_SSL_REQUESTS_ONLY") == {}


def test_the_catalog_is_frozen(catalog: Catalog) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        catalog.controls[0].title = "changed"  # type: ignore[misc]


# --- config_rules() -----------------------------------------------------------------------


def test_config_rules_are_sorted_unique_and_name_their_controls(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path,
        [
            control("HIPAA-164.312(b)", runtime_evidence={"config_rules": ["Z_RULE", "A_RULE"]}),
            control("GDPR-32", runtime_evidence={"config_rules": ["A_RULE"]}),
            control("GDPR-44", runtime_evidence={"config_rules": []}),
        ],
    )
    assert load_catalog(path).config_rules() == {
        "A_RULE": ("HIPAA-164.312(b)", "GDPR-32"),
        "Z_RULE": ("HIPAA-164.312(b)",),
    }


# --- loader errors ------------------------------------------------------------------------


def load_error(path: Path) -> str:
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    return str(raised.value)


def test_a_duplicate_control_id_is_rejected(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [control("GDPR-32"), control("GDPR-44"), control("GDPR-32")])
    message = load_error(path)
    assert message.startswith(f"{path}: ")
    assert "control id listed twice: GDPR-32" in message


def test_an_unknown_framework_is_rejected(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [control("GDPR-32"), control("SOX-404", framework="SOX")])
    message = load_error(path)
    assert f"{path}: controls[1] (SOX-404): framework: 'SOX':" in message
    assert all(framework.value in message for framework in Framework)


def test_a_missing_title_is_rejected(tmp_path: Path) -> None:
    without_title = control("GDPR-44")
    del without_title["title"]
    path = write_catalog(tmp_path, [control("GDPR-32"), without_title])
    assert load_error(path) == f"{path}: controls[1] (GDPR-44): title: Field required"


def test_a_blank_title_is_rejected(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [control("GDPR-32", title="   ")])
    assert "controls[0] (GDPR-32): title:" in load_error(path)


def test_a_control_without_an_id_is_named_by_position(tmp_path: Path) -> None:
    anonymous = control()
    del anonymous["id"]
    path = write_catalog(tmp_path, [control("GDPR-44"), anonymous])
    assert load_error(path) == f"{path}: controls[1]: id: Field required"


def test_an_id_must_start_with_its_framework(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [control("GDPR-32", framework="HIPAA")])
    message = load_error(path)
    assert "controls[0] (GDPR-32): control id 'GDPR-32' must be 'HIPAA-'" in message


@pytest.mark.parametrize("bad_id", ["GDPR-", "GDPR-Article 32", "GDPR-32/1"])
def test_an_id_names_an_article_without_spaces(tmp_path: Path, bad_id: str) -> None:
    path = write_catalog(tmp_path, [control(bad_id, framework="GDPR")])
    assert f"control id {bad_id!r} must be 'GDPR-'" in load_error(path)


def test_a_malformed_config_rule_identifier_is_rejected(tmp_path: Path) -> None:
    evidence = {"config_rules": ["S3_BUCKET_SSL_REQUESTS_ONLY", "s3-bucket-ssl-requests-only"]}
    path = write_catalog(tmp_path, [control(runtime_evidence=evidence)])
    message = load_error(path)
    assert "controls[0] (GDPR-32): runtime_evidence.config_rules[1]:" in message
    assert "'s3-bucket-ssl-requests-only'" in message


def test_a_malformed_static_check_is_rejected(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [control(static_checks=["CKV_AWS_19", "s3-encryption"])])
    assert "controls[0] (GDPR-32): static_checks[1]: 's3-encryption'" in load_error(path)


def test_a_rule_listed_twice_in_one_control_is_rejected(tmp_path: Path) -> None:
    evidence = {"config_rules": ["VPC_FLOW_LOGS_ENABLED", "VPC_FLOW_LOGS_ENABLED"]}
    path = write_catalog(tmp_path, [control(runtime_evidence=evidence)])
    assert "config rule listed twice: VPC_FLOW_LOGS_ENABLED" in load_error(path)


def test_a_misspelt_field_is_rejected(tmp_path: Path) -> None:
    misspelt = control()
    misspelt["titel"] = misspelt.pop("title")
    message = load_error(write_catalog(tmp_path, [misspelt]))
    assert "controls[0] (GDPR-32): titel: Extra inputs are not permitted" in message


def test_static_checks_must_be_listed_even_when_empty(tmp_path: Path) -> None:
    silent = control()
    del silent["static_checks"]
    message = load_error(write_catalog(tmp_path, [silent]))
    assert "controls[0] (GDPR-32): static_checks: Field required" in message


def test_an_unknown_responsibility_is_rejected(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [control(responsibility="vendor")])
    assert "controls[0] (GDPR-32): responsibility: 'vendor':" in load_error(path)


def test_parameters_for_a_rule_no_control_lists_are_rejected(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path, [control()], config_rule_parameters={"IAM_PASSWORD_POLICY": {"x": "1"}}
    )
    assert "config_rule_parameters for IAM_PASSWORD_POLICY, which no control lists" in (
        load_error(path)
    )


def test_an_unknown_catalog_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(yaml.safe_dump({"catalog_version": 2, "controls": [control()]}))
    assert load_error(path).startswith(f"{path}: catalog_version: 2:")


def test_an_empty_catalog_is_rejected(tmp_path: Path) -> None:
    assert "controls:" in load_error(write_catalog(tmp_path, []))


def test_a_duplicate_yaml_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(
        "catalog_version: 1\ncontrols:\n  - id: GDPR-32\n    title: One\n    title: Two\n"
    )
    message = load_error(path)
    assert message.startswith(f"{path}: not valid YAML:")
    assert "duplicate key 'title'" in message


def test_malformed_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text("controls: [unclosed\n")
    assert load_error(path).startswith(f"{path}: not valid YAML:")


def test_a_list_at_the_top_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(yaml.safe_dump([control()]))
    assert load_error(path) == (f"{path}: expected a mapping with catalog_version and controls")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert load_error(path) == f"{path}: cannot be read (No such file or directory)"


def test_a_valid_file_loads(tmp_path: Path) -> None:
    """The twin of every rejection above: the same helper's defaults make a valid catalog."""
    loaded = load_catalog(write_catalog(tmp_path, [control(), control("EU-AI-Act-12")]))
    assert [c.id for c in loaded.controls] == ["GDPR-32", "EU-AI-Act-12"]
    assert loaded.control("EU-AI-Act-12").framework is Framework.EU_AI_ACT
