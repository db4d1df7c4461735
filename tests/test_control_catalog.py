"""The control catalog: the shipped catalog covers every control the issue names with evidence
that exists (checkov ids of the pinned checkov, our CKV_PHI checks), applies each law only where
it binds, and a broken catalog stops with a message naming the file, the control, the field and
the rule."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from checkov.common.checks_infra.registry import get_graph_checks_registry
from checkov.terraform.checks.data.registry import data_registry
from checkov.terraform.checks.module.registry import module_registry
from checkov.terraform.checks.provider.registry import provider_registry
from checkov.terraform.checks.resource.registry import resource_registry
from pydantic import ValidationError

from environments.composition import default_tags
from environments.loader import load_environment
from policies.catalog import (
    CHECKOV_CHECK_ID,
    CONFIG_RULE_IDENTIFIER,
    DEFAULT_CATALOG,
    Catalog,
    CatalogError,
    Evidence,
    Framework,
    Jurisdiction,
    Responsibility,
    load_catalog,
)

ROOT = Path(__file__).parents[1]
CUSTOM_CHECKS_DIR = ROOT / "policies" / "checks"

# Written out, not derived from the file: dropping one of these controls must fail a test.
HIPAA_CONTROLS = {
    # 164.308(a)(1)-(a)(8): every implementation specification
    "HIPAA-164.308(a)(1)(ii)(A)",
    "HIPAA-164.308(a)(1)(ii)(B)",
    "HIPAA-164.308(a)(1)(ii)(C)",
    "HIPAA-164.308(a)(1)(ii)(D)",
    "HIPAA-164.308(a)(2)",
    "HIPAA-164.308(a)(3)(ii)(A)",
    "HIPAA-164.308(a)(3)(ii)(B)",
    "HIPAA-164.308(a)(3)(ii)(C)",
    "HIPAA-164.308(a)(4)(ii)(A)",
    "HIPAA-164.308(a)(4)(ii)(B)",
    "HIPAA-164.308(a)(4)(ii)(C)",
    "HIPAA-164.308(a)(5)(ii)(A)",
    "HIPAA-164.308(a)(5)(ii)(B)",
    "HIPAA-164.308(a)(5)(ii)(C)",
    "HIPAA-164.308(a)(5)(ii)(D)",
    "HIPAA-164.308(a)(6)(ii)",
    "HIPAA-164.308(a)(7)(ii)(A)",
    "HIPAA-164.308(a)(7)(ii)(B)",
    "HIPAA-164.308(a)(7)(ii)(C)",
    "HIPAA-164.308(a)(7)(ii)(D)",
    "HIPAA-164.308(a)(7)(ii)(E)",
    "HIPAA-164.308(a)(8)",
    "HIPAA-164.308(b)(1)",
    # 164.310: each standard and its specifications
    "HIPAA-164.310(a)(1)",
    "HIPAA-164.310(a)(2)(i)",
    "HIPAA-164.310(a)(2)(ii)",
    "HIPAA-164.310(a)(2)(iii)",
    "HIPAA-164.310(a)(2)(iv)",
    "HIPAA-164.310(b)",
    "HIPAA-164.310(c)",
    "HIPAA-164.310(d)(1)",
    "HIPAA-164.310(d)(2)(i)",
    "HIPAA-164.310(d)(2)(ii)",
    "HIPAA-164.310(d)(2)(iii)",
    "HIPAA-164.310(d)(2)(iv)",
    # 164.312(a)-(e)
    "HIPAA-164.312(a)(1)",
    "HIPAA-164.312(a)(2)(i)",
    "HIPAA-164.312(a)(2)(ii)",
    "HIPAA-164.312(a)(2)(iii)",
    "HIPAA-164.312(a)(2)(iv)",
    "HIPAA-164.312(b)",
    "HIPAA-164.312(c)(1)",
    "HIPAA-164.312(c)(2)",
    "HIPAA-164.312(d)",
    "HIPAA-164.312(e)(1)",
    "HIPAA-164.312(e)(2)(i)",
    "HIPAA-164.312(e)(2)(ii)",
    "HIPAA-164.316(b)(2)",
}
GDPR_CONTROLS = {
    "GDPR-5(1)(f)",
    "GDPR-25",
    "GDPR-30",
    "GDPR-32",
    "GDPR-32(1)(a)",
    "GDPR-32(1)(b)",
    "GDPR-32(1)(c)",
    "GDPR-32(1)(d)",
    "GDPR-33",
    "GDPR-44",
    "GDPR-45",
    "GDPR-46",
    "GDPR-47",
    "GDPR-48",
    "GDPR-49",
}
EHDS_CONTROLS = {"EHDS-73(1)", "EHDS-73(1)(e)", "EHDS-66", "EHDS-87"}
FDA_PCCP_CONTROLS = {
    "FDA-PCCP-versioning",
    "FDA-PCCP-traceability",
    "FDA-PCCP-performance-monitoring",
    "FDA-PCCP-human-approval",
}
EU_AI_ACT_CONTROLS = {"EU-AI-Act-10", "EU-AI-Act-12", "EU-AI-Act-14", "EU-AI-Act-15"}
REQUIRED_CONTROLS = {
    Framework.HIPAA: HIPAA_CONTROLS,
    Framework.GDPR: GDPR_CONTROLS,
    Framework.EHDS: EHDS_CONTROLS,
    Framework.FDA_PCCP: FDA_PCCP_CONTROLS,
    Framework.EU_AI_ACT: EU_AI_ACT_CONTROLS,
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
# Our custom checks (policies/checks/), one per file; fixed here so a typo in the catalog
# (CKV_PHI_61) cannot pass for a real check.
CUSTOM_CHECK_IDS = frozenset(f"CKV_PHI_{number}" for number in range(1, 57))
# How a checkov check declares its id: `super().__init__(..., id="CKV_PHI_3", ...)`.
_DECLARED_CHECK_ID = re.compile(r"""\bid\s*=\s*["'](CKV_PHI_[0-9]+)["']""")


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
        "inherited_from_aws": "AWS secures the infrastructure (SOC 2 Type II)",
    }
    values.update(overrides)
    return values


def customer_control(control_id: str = "GDPR-30", **overrides: Any) -> dict[str, Any]:
    values = control(control_id, responsibility="customer")
    del values["inherited_from_aws"]
    values.update(overrides)
    return values


def write_catalog(directory: Path, controls: list[dict[str, Any]], **top: Any) -> Path:
    path = directory / "controls.yaml"
    path.write_text(yaml.safe_dump({"catalog_version": 1, **top, "controls": controls}))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    return str(raised.value)


def missing_controls(catalog: Catalog) -> dict[str, str]:
    found = {c.id: c.framework for c in catalog.controls}
    return {
        control_id: framework.value
        for framework, ids in REQUIRED_CONTROLS.items()
        for control_id in sorted(ids)
        if found.get(control_id) is not framework
    }


def unknown_checkov_ids(check_ids: tuple[str, ...], registry: frozenset[str]) -> list[str]:
    """Built-in ids the registry lacks, and custom ids outside CKV_PHI_1..56."""
    return [
        check
        for check in check_ids
        if (
            check not in CUSTOM_CHECK_IDS if check.startswith("CKV_PHI_") else check not in registry
        )
    ]


def declared_custom_checks(directory: Path) -> set[str]:
    """The CKV_PHI ids the check modules of `directory` declare (`id="CKV_PHI_3"`)."""
    return {
        match
        for module in directory.glob("*.py")
        for match in _DECLARED_CHECK_ID.findall(module.read_text(encoding="utf-8"))
    }


def check_modules(directory: Path) -> list[Path]:
    """Modules holding checks: not the package file, not shared helpers (`_conf.py`)."""
    return [module for module in directory.glob("*.py") if not module.name.startswith("_")]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def checkov_registry() -> frozenset[str]:
    """Every check id the installed checkov runs on Terraform: resource, data, provider and
    module checks, and the graph (CKV2) checks, which load from YAML on demand."""
    ids = {
        check.id
        for registry in (resource_registry, data_registry, provider_registry, module_registry)
        for checks in registry.checks.values()
        for check in checks
    }
    graph = get_graph_checks_registry("terraform")
    graph.load_checks()
    ids.update(check.id for check in graph.checks)
    return frozenset(ids)


# --- the shipped catalog: coverage of the issue ---------------------------------------------


def test_the_default_catalog_is_the_policies_file() -> None:
    assert ROOT / "policies" / "controls.yaml" == DEFAULT_CATALOG


def test_the_catalog_covers_every_control_the_issue_names(catalog: Catalog) -> None:
    assert missing_controls(catalog) == {}
    assert set(catalog.frameworks()) == set(Framework)


def test_a_missing_control_is_detected(catalog: Catalog) -> None:
    without = tuple(c for c in catalog.controls if c.id != "HIPAA-164.310(d)(2)(iii)")
    assert missing_controls(catalog.model_copy(update={"controls": without})) == {
        "HIPAA-164.310(d)(2)(iii)": "HIPAA"
    }


def test_audit_controls_name_the_rules_that_evidence_the_trail(catalog: Catalog) -> None:
    for control_id, rules in AUDIT_RULES.items():
        listed = set(catalog.control(control_id).runtime_evidence.config_rules)
        assert rules <= listed, f"{control_id} lacks {sorted(rules - listed)}"


def test_physical_safeguards_are_inherited_from_aws(catalog: Catalog) -> None:
    physical = [c for c in catalog.controls if c.id.startswith("HIPAA-164.310")]
    assert len(physical) == 12
    assert [c.id for c in physical if c.responsibility is Responsibility.CUSTOMER] == []
    assert all(c.inherited_from_aws for c in physical)
    # Facilities and AWS's media are AWS's; workstations and the devices the customer holds
    # keep a customer part.
    assert catalog.control("HIPAA-164.310(a)(1)").responsibility is Responsibility.AWS
    assert catalog.control("HIPAA-164.310(d)(2)(i)").responsibility is Responsibility.AWS
    for shared in ("HIPAA-164.310(b)", "HIPAA-164.310(c)", "HIPAA-164.310(d)(1)"):
        assert catalog.control(shared).responsibility is Responsibility.SHARED


def test_eu_law_applies_to_eu_environments_and_hipaa_to_us(catalog: Catalog) -> None:
    eu = {c.framework for c in catalog.applicable_to("EU")}
    us = {c.framework for c in catalog.applicable_to("US")}
    assert eu == {Framework.GDPR, Framework.EHDS, Framework.FDA_PCCP, Framework.EU_AI_ACT}
    assert us == {Framework.HIPAA, Framework.FDA_PCCP, Framework.EU_AI_ACT}
    assert catalog.control("EHDS-73(1)").applies_to is Jurisdiction.EU
    assert catalog.control("HIPAA-164.312(b)").applies_to is Jurisdiction.US


def test_residency_is_enforced_by_the_region_check(catalog: Catalog) -> None:
    for control_id in ("GDPR-44", "EHDS-87"):
        assert "CKV_PHI_11" in catalog.control(control_id).static_checks


# --- the shipped catalog: evidence that exists ----------------------------------------------


def test_the_checkov_in_use_is_the_pinned_one() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("checkov==")]
    assert pins == [f"checkov=={version('checkov')}"]


def test_every_static_check_exists(catalog: Catalog, checkov_registry: frozenset[str]) -> None:
    assert catalog.static_check_ids()
    assert unknown_checkov_ids(catalog.static_check_ids(), checkov_registry) == []


def test_an_unknown_static_check_is_detected(checkov_registry: frozenset[str]) -> None:
    made_up = ("CKV_AWS_19", "CKV_AWS_99999", "CKV2_AWS_10", "CKV2_AWS_999", "CKV_PHI_57")
    assert unknown_checkov_ids(made_up, checkov_registry) == [
        "CKV_AWS_99999",
        "CKV2_AWS_999",
        "CKV_PHI_57",
    ]


def test_every_custom_check_evidences_a_control(catalog: Catalog) -> None:
    mapped = {check for check in catalog.static_check_ids() if check.startswith("CKV_PHI_")}
    assert sorted(CUSTOM_CHECK_IDS - mapped) == []


def test_mapped_custom_checks_are_declared_in_policies_checks(catalog: Catalog) -> None:
    if not check_modules(CUSTOM_CHECKS_DIR):
        pytest.skip("policies/checks/ holds no check modules yet")
    mapped = {check for check in catalog.static_check_ids() if check.startswith("CKV_PHI_")}
    assert sorted(mapped - declared_custom_checks(CUSTOM_CHECKS_DIR)) == []


def test_declared_custom_checks_are_read_from_the_check_modules(tmp_path: Path) -> None:
    (tmp_path / "healthlake_cmk.py").write_text(
        '"""CKV_PHI_1 "HealthLake uses a CMK"; see also "CKV_PHI_10"."""\n'
        "class HealthLakeCmk:\n    def __init__(self) -> None:\n"
        '        super().__init__(name="HealthLake CMK", id="CKV_PHI_1")\n'
        '        self.related = "CKV_PHI_9"\n'
    )
    (tmp_path / "_conf.py").write_text("ANYONE = '*'\n")
    assert declared_custom_checks(tmp_path) == {"CKV_PHI_1"}
    assert [m.name for m in check_modules(tmp_path)] == ["healthlake_cmk.py"]


def test_every_config_rule_identifier_is_well_formed(catalog: Catalog) -> None:
    malformed = [
        rule for rule in catalog.config_rules() if not re.fullmatch(CONFIG_RULE_IDENTIFIER, rule)
    ]
    assert malformed == []
    assert catalog.config_rules(), "the catalog names no AWS Config rule"


def test_every_static_check_is_a_checkov_id(catalog: Catalog) -> None:
    checks = catalog.static_check_ids()
    assert [check for check in checks if not re.fullmatch(CHECKOV_CHECK_ID, check)] == []


def test_six_year_retention_is_what_the_retention_rule_checks(catalog: Catalog) -> None:
    assert catalog.parameters("CW_LOGGROUP_RETENTION_PERIOD_CHECK") == {"MinRetentionTime": "2192"}
    assert catalog.parameters("S3_BUCKET_SSL_REQUESTS_ONLY") == {}


def test_the_required_tags_rule_checks_the_tags_every_stack_applies(catalog: Catalog) -> None:
    applied = default_tags(load_environment(ROOT / "environments" / "prod" / "environment.yaml"))
    required = set(catalog.parameters("REQUIRED_TAGS").values())
    assert required == {"environment", "owner", "data-classification", "compliance-scope"}
    assert required <= set(applied)


def test_the_catalog_is_frozen(catalog: Catalog) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        catalog.controls[0].title = "changed"  # type: ignore[misc]


# --- helpers the gate and the report use ----------------------------------------------------


def helper_catalog(tmp_path: Path) -> Catalog:
    return load_catalog(
        write_catalog(
            tmp_path,
            [
                customer_control(
                    "HIPAA-164.312(b)",
                    static_checks=["CKV_AWS_67", "CKV_PHI_12"],
                    runtime_evidence={"config_rules": ["CLOUD_TRAIL_ENABLED"]},
                ),
                customer_control(
                    "HIPAA-164.308(a)(1)(ii)(C)",
                    static_checks=[],
                    runtime_evidence={"manual": ["The sanction policy"]},
                ),
                control(
                    "HIPAA-164.310(a)(1)",
                    responsibility="aws",
                    static_checks=[],
                    runtime_evidence={},
                ),
                customer_control(
                    "GDPR-30",
                    static_checks=[],
                    runtime_evidence={"runtime_checks": ["RT_PHI_REQUIRED_TAGS"]},
                ),
                customer_control("GDPR-47", static_checks=[], runtime_evidence={}, unmapped="n/a"),
                customer_control("EU-AI-Act-12", static_checks=["CKV_PHI_12"], runtime_evidence={}),
            ],
        )
    )


def test_coverage_partitions_controls_by_how_they_are_evidenced(tmp_path: Path) -> None:
    coverage = helper_catalog(tmp_path).coverage()
    assert coverage.automated == ("HIPAA-164.312(b)", "GDPR-30", "EU-AI-Act-12")
    assert coverage.manual_only == ("HIPAA-164.308(a)(1)(ii)(C)",)
    assert coverage.inherited == ("HIPAA-164.310(a)(1)",)
    assert coverage.unmapped == ("GDPR-47",)
    assert coverage.with_static_checks == ("HIPAA-164.312(b)", "EU-AI-Act-12")
    assert coverage.with_runtime_evidence == ("HIPAA-164.312(b)", "GDPR-30")
    assert coverage.counts() == {
        Evidence.AUTOMATED: 3,
        Evidence.MANUAL_ONLY: 1,
        Evidence.INHERITED: 1,
        Evidence.UNMAPPED: 1,
    }
    assert coverage.total == 6


def test_coverage_of_one_framework_or_jurisdiction(tmp_path: Path) -> None:
    catalog = helper_catalog(tmp_path)
    hipaa = catalog.coverage(framework="HIPAA")
    assert (len(hipaa.automated), len(hipaa.manual_only), len(hipaa.inherited)) == (1, 1, 1)
    eu = catalog.coverage(jurisdiction=Jurisdiction.EU)
    assert eu.automated == ("GDPR-30", "EU-AI-Act-12")
    assert eu.unmapped == ("GDPR-47",)
    assert eu.inherited == ()


def test_controls_for_a_check_of_any_kind(tmp_path: Path) -> None:
    catalog = helper_catalog(tmp_path)

    def ids(check_id: str) -> list[str]:
        return [c.id for c in catalog.controls_for_check(check_id)]

    assert ids("CKV_PHI_12") == ["HIPAA-164.312(b)", "EU-AI-Act-12"]
    assert ids("RT_PHI_REQUIRED_TAGS") == ["GDPR-30"]
    assert ids("CLOUD_TRAIL_ENABLED") == ["HIPAA-164.312(b)"]
    assert ids("CKV_AWS_19") == []


def test_frameworks_in_catalog_order_and_controls_of_one(tmp_path: Path) -> None:
    catalog = helper_catalog(tmp_path)
    assert catalog.frameworks() == (Framework.HIPAA, Framework.GDPR, Framework.EU_AI_ACT)
    assert [c.id for c in catalog.controls_of("GDPR")] == ["GDPR-30", "GDPR-47"]
    assert catalog.static_check_ids() == ("CKV_AWS_67", "CKV_PHI_12")
    assert catalog.runtime_check_ids() == ("RT_PHI_REQUIRED_TAGS",)
    assert all(framework.full_name for framework in Framework)


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


# --- applies_to -----------------------------------------------------------------------------


def test_applies_to_defaults_to_the_frameworks_jurisdiction(tmp_path: Path) -> None:
    catalog = load_catalog(
        write_catalog(
            tmp_path,
            [
                control("HIPAA-164.312(b)"),
                control("EHDS-87"),
                customer_control("FDA-PCCP-versioning"),
                customer_control("EU-AI-Act-14", applies_to="EU"),
            ],
        )
    )
    assert [c.applies_to for c in catalog.controls] == [
        Jurisdiction.US,
        Jurisdiction.EU,
        Jurisdiction.ALL,
        Jurisdiction.EU,
    ]
    assert [c.id for c in catalog.applicable_to("US")] == [
        "HIPAA-164.312(b)",
        "FDA-PCCP-versioning",
    ]


@pytest.mark.parametrize(
    ("control_id", "applies_to", "law"),
    [
        ("GDPR-44", "US", "GDPR controls apply to EU environments only"),
        ("EHDS-87", "all", "EHDS controls apply to EU environments only"),
        ("HIPAA-164.312(b)", "EU", "HIPAA controls apply to US environments only"),
    ],
)
def test_a_law_cannot_reach_beyond_its_jurisdiction(
    tmp_path: Path, control_id: str, applies_to: str, law: str
) -> None:
    path = write_catalog(tmp_path, [control(control_id, applies_to=applies_to)])
    assert f"controls[0] ({control_id}): applies_to: {law}, not {applies_to!r}" in load_error(path)


def test_an_unknown_jurisdiction_is_rejected(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [customer_control("EU-AI-Act-15", applies_to="UK")])
    message = load_error(path)
    assert "controls[0] (EU-AI-Act-15): applies_to: 'UK':" in message
    assert all(f"'{j.value}'" in message for j in Jurisdiction)


# --- inherited_from_aws and unmapped ---------------------------------------------------------


@pytest.mark.parametrize("responsibility", ["aws", "shared"])
def test_aws_or_shared_controls_say_what_they_inherit(tmp_path: Path, responsibility: str) -> None:
    silent = control("HIPAA-164.310(a)(1)", responsibility=responsibility)
    del silent["inherited_from_aws"]
    message = load_error(write_catalog(tmp_path, [silent]))
    assert (
        f"controls[0] (HIPAA-164.310(a)(1)): inherited_from_aws: required when the "
        f"responsibility is {responsibility!r}"
    ) in message


def test_a_customer_control_inherits_nothing(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [control("GDPR-30", responsibility="customer")])
    assert "controls[0] (GDPR-30): inherited_from_aws: a customer control inherits nothing" in (
        load_error(path)
    )


def test_an_aws_control_needs_no_evidence_of_ours(tmp_path: Path) -> None:
    """The twin of the two rejections above."""
    aws = control("HIPAA-164.310(d)(2)(ii)", responsibility="aws", static_checks=[])
    aws["runtime_evidence"] = {}
    loaded = load_catalog(write_catalog(tmp_path, [aws, customer_control()]))
    assert loaded.control("HIPAA-164.310(d)(2)(ii)").evidence is Evidence.INHERITED
    assert loaded.control("GDPR-30").inherited_from_aws is None


def test_a_control_without_evidence_is_rejected(tmp_path: Path) -> None:
    bare = customer_control(static_checks=[], runtime_evidence={"config_rules": [], "manual": []})
    message = load_error(write_catalog(tmp_path, [bare]))
    assert "controls[0] (GDPR-30): no evidence: list static_checks, runtime_evidence" in message
    assert "`unmapped:`" in message


def test_a_control_without_evidence_loads_when_it_says_why(tmp_path: Path) -> None:
    explained = customer_control(
        static_checks=[], runtime_evidence={}, unmapped="Awaiting the data protection officer"
    )
    loaded = load_catalog(write_catalog(tmp_path, [explained])).control("GDPR-30")
    assert loaded.evidence is Evidence.UNMAPPED
    assert loaded.unmapped == "Awaiting the data protection officer"


def test_unmapped_contradicted_by_evidence_is_rejected(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [customer_control(unmapped="nothing yet")])
    assert (
        "controls[0] (GDPR-30): unmapped: says nothing evidences this control, yet it lists "
        "static_checks, runtime_evidence.config_rules"
    ) in load_error(path)


def test_a_blank_unmapped_reason_is_rejected(tmp_path: Path) -> None:
    blank = customer_control(static_checks=[], runtime_evidence={}, unmapped="  ")
    assert "controls[0] (GDPR-30): unmapped:" in load_error(write_catalog(tmp_path, [blank]))


# --- runtime_checks --------------------------------------------------------------------------


def test_runtime_checks_load(tmp_path: Path) -> None:
    evidence = {"runtime_checks": ["RT_PHI_S3_TLS_ONLY", "RT_PHI_KMS_KEY_ROTATION"]}
    loaded = load_catalog(write_catalog(tmp_path, [control(runtime_evidence=evidence)]))
    assert loaded.control("GDPR-32").runtime_evidence.runtime_checks == (
        "RT_PHI_S3_TLS_ONLY",
        "RT_PHI_KMS_KEY_ROTATION",
    )


@pytest.mark.parametrize("bad", ["rt_phi_s3", "CKV_AWS_19", "RT_", "RT_PHI S3"])
def test_a_malformed_runtime_check_is_rejected(tmp_path: Path, bad: str) -> None:
    evidence = {"runtime_checks": ["RT_PHI_S3_TLS_ONLY", bad]}
    message = load_error(write_catalog(tmp_path, [control(runtime_evidence=evidence)]))
    assert f"controls[0] (GDPR-32): runtime_evidence.runtime_checks[1]: {bad!r}:" in message


def test_a_runtime_check_listed_twice_is_rejected(tmp_path: Path) -> None:
    evidence = {"runtime_checks": ["RT_PHI_S3_TLS_ONLY", "RT_PHI_S3_TLS_ONLY"]}
    path = write_catalog(tmp_path, [control(runtime_evidence=evidence)])
    assert "runtime check listed twice: RT_PHI_S3_TLS_ONLY" in load_error(path)


# --- loader errors ----------------------------------------------------------------------------


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
    # One mistake, one message: no knock-on complaint about the defaulted jurisdiction.
    assert "applies_to" not in message


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
    path = write_catalog(tmp_path, [control("GDPR-32", framework="HIPAA", applies_to="US")])
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
    """The twin of every rejection above: the same helpers' defaults make a valid catalog."""
    loaded = load_catalog(write_catalog(tmp_path, [control(), customer_control("EU-AI-Act-12")]))
    assert [c.id for c in loaded.controls] == ["GDPR-32", "EU-AI-Act-12"]
    assert loaded.control("EU-AI-Act-12").framework is Framework.EU_AI_ACT
