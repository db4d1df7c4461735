"""Environment files: every shipped one loads, and each kind of bad value gives one error that
names the file, the field and the rule.

Bad files are a shipped file with one change, written to `<tmp>/<name>/environment.yaml`. The
twin of every bad case is the same file unchanged, which loads (the round-trip test)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from environments.loader import (
    ENVIRONMENT_FILE,
    ENVIRONMENTS_DIR,
    EnvironmentFileError,
    available_environments,
    load_environment,
    load_environments,
)
from environments.schema import (
    EU_RESIDENCY_REGIONS,
    ComplianceScope,
    Jurisdiction,
    OrganizationEnvironment,
    WorkloadEnvironment,
)
from modules.fhir import HEALTHLAKE_REGIONS

SHIPPED = available_environments()
SOURCES = ("dev", "prod", "eu-research", "org")


def source_text(name: str) -> str:
    return (ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE).read_text(encoding="utf-8")


def source_data(name: str) -> dict[str, Any]:
    data = yaml.safe_load(source_text(name))
    assert isinstance(data, dict)
    return data


def write_environment(root: Path, folder: str, text: str) -> Path:
    path = root / folder / ENVIRONMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped files --------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_environment_loads(name: str) -> None:
    environment = load_environment(ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE)
    assert environment.name == name
    assert environment.region in environment.allowed_regions
    assert environment.deployment_role_arn.startswith(f"arn:aws:iam::{environment.account_id}:")


def test_every_environment_is_shipped() -> None:
    assert SHIPPED == ["dev", "eu-research", "org", "prod", "staging"]
    assert [e.name for e in load_environments()] == SHIPPED


def test_the_eu_environment_uses_only_eu_regions() -> None:
    eu = load_environment(ENVIRONMENTS_DIR / "eu-research" / ENVIRONMENT_FILE)
    assert isinstance(eu, WorkloadEnvironment)
    assert eu.jurisdiction is Jurisdiction.EU
    assert ComplianceScope.GDPR in eu.compliance_scope
    assert set(eu.allowed_regions) <= EU_RESIDENCY_REGIONS
    assert eu.region in EU_RESIDENCY_REGIONS


def test_the_eu_datastore_is_in_an_eu_region_that_offers_healthlake() -> None:
    """The passing twin of the fhir-region cases below: eu-research's datastore is in
    eu-west-1, an allowed EU region with HealthLake, apart from the environment's region."""
    eu = load_environment(ENVIRONMENTS_DIR / "eu-research" / ENVIRONMENT_FILE)
    assert isinstance(eu, WorkloadEnvironment) and eu.ml.fhir is not None
    assert eu.ml.fhir.region == "eu-west-1" != eu.region
    assert eu.ml.fhir.region in set(eu.allowed_regions) & EU_RESIDENCY_REGIONS & HEALTHLAKE_REGIONS
    # US environments keep theirs at home (no region of its own).
    dev = load_environment(ENVIRONMENTS_DIR / "dev" / ENVIRONMENT_FILE)
    assert isinstance(dev, WorkloadEnvironment) and dev.ml.fhir is not None
    assert dev.ml.fhir.region is None


def test_a_us_datastore_region_that_is_allowed_and_offers_healthlake_loads(tmp_path: Path) -> None:
    """Passing twin of fhir-region-not-allowed-us: us-west-2 is in dev's allow-list."""
    text = setting("ml", "fhir", "region", value="us-west-2")(source_text("dev"))
    dev = load_environment(write_environment(tmp_path, "dev", text))
    assert isinstance(dev, WorkloadEnvironment) and dev.ml.fhir is not None
    assert dev.ml.fhir.region == "us-west-2"


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_us_environments_are_hipaa_scoped(name: str) -> None:
    environment = load_environment(ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE)
    assert isinstance(environment, WorkloadEnvironment)
    assert environment.jurisdiction is Jurisdiction.US
    assert ComplianceScope.HIPAA in environment.compliance_scope
    assert environment.logs.audit_retention_days >= 2192


def test_only_prod_is_production() -> None:
    workloads = [e for e in load_environments() if isinstance(e, WorkloadEnvironment)]
    assert {e.name: e.production for e in workloads} == {
        "dev": False,
        "eu-research": False,
        "prod": True,
        "staging": False,
    }


@pytest.mark.parametrize("name", SOURCES)
def test_an_unchanged_file_written_like_the_bad_cases_loads(tmp_path: Path, name: str) -> None:
    """The twin of every bad case below: the same writing path, no change, no error."""
    path = write_environment(tmp_path, name, yaml.safe_dump(source_data(name)))
    assert load_environment(path) == load_environment(ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE)


# --- one bad value at a time --------------------------------------------------------------


def edit(change: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    """A text transformation that parses, changes one thing and writes YAML back."""

    def transform(text: str) -> str:
        data = yaml.safe_load(text)
        change(data)
        return yaml.safe_dump(data)

    return transform


def setting(*path: str, value: Any) -> Callable[[str], str]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return edit(change)


def removing(*path: str) -> Callable[[str], str]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return edit(change)


def add_key_user(role: Callable[[dict[str, Any]], str]) -> Callable[[str], str]:
    return edit(lambda data: data["keys"]["users"].append(role(data)))


@dataclass(frozen=True)
class BadCase:
    id: str
    source: str
    change: Callable[[str], str]
    field: str  # the field the message must name
    rule: str  # a fragment of the rule the message must state
    folder: str | None = None  # defaults to the environment's name


BAD_CASES = [
    BadCase(
        "malformed-yaml",
        "dev",
        lambda text: text.replace("az_count: 3", "az_count: 3: 4"),
        "",
        "malformed YAML at line 25, column 14: mapping values are not allowed here",
    ),
    BadCase(
        "unknown-top-level-field",
        "dev",
        edit(lambda data: data.update(networkk=copy.deepcopy(data["network"]))),
        "networkk",
        "unknown field",
    ),
    BadCase(
        "unknown-nested-field",
        "dev",
        setting("network", "enable_internet", value=True),
        "network.enable_internet",
        "unknown field",
    ),
    BadCase(
        "account-id-11-digits",
        "dev",
        setting("account_id", value="11111111111"),
        "account_id",
        "'11111111111' is not a 12-digit AWS account id",
    ),
    BadCase(
        "account-id-unquoted",
        "dev",
        lambda text: text.replace('account_id: "111111111111"', "account_id: 111111111111"),
        "account_id",
        "must be a quoted 12-digit string",
    ),
    BadCase(
        "vpc-cidr-prefix-33",
        "dev",
        setting("network", "vpc_cidr", value="10.0.0.0/33"),
        "network.vpc_cidr",
        "'10.0.0.0/33' is not a valid IPv4 CIDR",
    ),
    BadCase(
        "vpc-cidr-host-bits",
        "dev",
        setting("network", "vpc_cidr", value="10.0.0.1/16"),
        "network.vpc_cidr",
        "has host bits set",
    ),
    BadCase(
        "vpc-cidr-public",
        "dev",
        setting("network", "vpc_cidr", value="8.8.0.0/16"),
        "network.vpc_cidr",
        "'8.8.0.0/16' is not inside a private (RFC 1918) range",
    ),
    BadCase(
        "vpc-cidr-shared-address-space",
        "dev",
        setting("network", "vpc_cidr", value="100.64.0.0/16"),
        "network.vpc_cidr",
        "is not inside a private (RFC 1918) range",
    ),
    BadCase(
        "vpc-prefix-28",
        "dev",
        setting("network", "vpc_cidr", value="10.0.0.0/28"),
        "network.vpc_cidr",
        "the VPC prefix must be between /16 and /24",
    ),
    BadCase(
        "vpc-prefix-15",
        "dev",
        setting("network", "vpc_cidr", value="10.0.0.0/15"),
        "network.vpc_cidr",
        "the VPC prefix must be between /16 and /24",
    ),
    BadCase(
        "az-count-1",
        "dev",
        setting("network", "az_count", value=1),
        "network.az_count",
        "greater than or equal to 2",
    ),
    BadCase(
        "onprem-overlaps-vpc",
        "dev",
        setting("ingest", "vpn", "onprem_cidrs", value=["10.10.5.0/24"]),
        "ingest.vpn.onprem_cidrs",
        "10.10.5.0/24 overlaps network.vpc_cidr 10.10.0.0/16",
    ),
    BadCase(
        "onprem-ranges-overlap",
        "dev",
        setting("ingest", "vpn", "onprem_cidrs", value=["192.168.0.0/20", "192.168.8.0/24"]),
        "ingest.vpn.onprem_cidrs",
        "192.168.8.0/24 overlaps 192.168.0.0/20",
    ),
    BadCase(
        "onprem-public",
        "dev",
        setting("ingest", "vpn", "onprem_cidrs", value=["192.168.0.0/20", "52.0.0.0/16"]),
        "ingest.vpn.onprem_cidrs[1]",
        "is not inside a private (RFC 1918) range",
    ),
    BadCase(
        "region-outside-allowed",
        "dev",
        setting("region", value="eu-west-1"),
        "region",
        "region 'eu-west-1' is outside allowed_regions [us-east-1, us-west-2]",
    ),
    BadCase(
        "region-not-a-region",
        "dev",
        setting("region", value="us-east"),
        "region",
        "'us-east' is not an AWS region name",
    ),
    BadCase(
        "eu-allows-us-region",
        "eu-research",
        setting("allowed_regions", value=["eu-central-1", "us-east-1"]),
        "allowed_regions",
        "['us-east-1'] are outside the EU",
    ),
    BadCase(
        "eu-allows-london",
        "eu-research",
        setting("allowed_regions", value=["eu-central-1", "eu-west-2"]),
        "allowed_regions",
        "['eu-west-2'] are outside the EU",
    ),
    BadCase(
        "eu-without-gdpr",
        "eu-research",
        setting("compliance_scope", value=["EHDS"]),
        "compliance_scope",
        "an EU environment must include GDPR",
    ),
    BadCase(
        "us-without-hipaa",
        "dev",
        setting("compliance_scope", value=["GDPR"]),
        "compliance_scope",
        "a US environment must include HIPAA",
    ),
    BadCase(
        "audit-retention-below-six-years",
        "dev",
        setting("logs", "audit_retention_days", value=365),
        "logs.audit_retention_days",
        "365 days is below the HIPAA six-year minimum (2192 days)",
    ),
    BadCase(
        "audit-retention-not-cloudwatch-value",
        "dev",
        setting("logs", "audit_retention_days", value=2200),
        "logs.audit_retention_days",
        "2200 is not a CloudWatch Logs retention value",
    ),
    BadCase(
        "key-administrator-is-key-user",
        "dev",
        add_key_user(lambda data: data["keys"]["administrators"][0]),
        "keys",
        "phi-ml-key-admin is both key administrator and key user (separation of duties)",
    ),
    BadCase(
        "key-user-not-a-role-arn",
        "dev",
        add_key_user(lambda data: "arn:aws:iam::111111111111:user/alice"),
        "keys.users[2]",
        "is not an IAM role ARN",
    ),
    BadCase(
        "vpn-peer-private-ip",
        "dev",
        setting("ingest", "vpn", "peer_ip", value="10.1.2.3"),
        "ingest.vpn.peer_ip",
        "10.1.2.3 is in 10.0.0.0/8 (Private-Use, RFC 1918)",
    ),
    BadCase(
        "vpn-peer-carrier-grade-nat",
        "dev",
        setting("ingest", "vpn", "peer_ip", value="100.64.1.1"),
        "ingest.vpn.peer_ip",
        "not a reachable internet address",
    ),
    BadCase(
        "vpn-peer-asn-equals-amazon-asn",
        "dev",
        setting("ingest", "vpn", "bgp_asn", value=64512),
        "ingest.vpn",
        "bgp_asn 64512 equals amazon_side_asn",
    ),
    BadCase(
        "deployment-role-in-another-account",
        "dev",
        setting("deployment_role_arn", value="arn:aws:iam::222222222222:role/phi-ml-terraform"),
        "deployment_role_arn",
        "is in account 222222222222, not the environment's account 111111111111",
    ),
    BadCase(
        "no-vpn-and-no-direct-connect",
        "prod",
        edit(lambda data: data["ingest"].clear()),
        "ingest",
        "configure vpn, direct_connect or both",
    ),
    BadCase(
        "folder-name-differs-from-name",
        "dev",
        lambda text: text,
        "name",
        "'dev' must equal its folder name 'dev-copy'",
        folder="dev-copy",
    ),
    BadCase(
        "unknown-kind",
        "dev",
        setting("kind", value="sandbox"),
        "kind",
        "must be 'workload' or 'organization'",
    ),
    BadCase(
        "organization-without-state-backend",
        "org",
        removing("state_backend"),
        "state_backend",
        "required field is missing",
    ),
    # The ML layers' rules, reported against the environment file's fields.
    BadCase(
        "enclave-type-not-graviton",
        "dev",
        setting("ml", "inference", "enclave", "instance_type", value="m5.xlarge"),
        "ml.inference.enclave.instance_type",
        "Graviton",
    ),
    BadCase(
        "enclave-type-older-graviton",
        "prod",
        setting("ml", "inference", "enclave", "instance_type", value="c6g.xlarge"),
        "ml.inference.enclave.instance_type",
        "c6g",
    ),
    BadCase(
        "feature-group-without-features",
        "dev",
        edit(lambda data: data["ml"]["features"]["groups"][0].update(features=[])),
        "ml.features.groups[0].features",
        "at least 1 item",
    ),
    BadCase(
        "metric-threshold-above-one",
        "staging",
        setting("ml", "pipeline", "metric_threshold", value=1.5),
        "ml.pipeline.metric_threshold",
        "less than or equal to 1",
    ),
    BadCase(
        "metric-threshold-zero",
        "dev",
        setting("ml", "pipeline", "metric_threshold", value=0),
        "ml.pipeline.metric_threshold",
        "greater than 0",
    ),
    BadCase(
        "capture-sampling-out-of-range",
        "dev",
        setting("ml", "inference", "data_capture_sampling_percent", value=0),
        "ml.inference.data_capture_sampling_percent",
        "greater than or equal to 1",
    ),
    BadCase(
        "pipeline-registers-into-unknown-group",
        "dev",
        setting("ml", "pipeline", "model_package_group", value="sepsis"),
        "ml",
        "is not one of registry.model_package_groups",
    ),
    BadCase(
        "fhir-in-region-without-healthlake",
        "eu-research",
        setting("ml", "fhir", value={"datastore_name": "acme-eu-fhir"}),
        "region",
        "HealthLake is not offered in eu-central-1",
    ),
    # The datastore's own region (eu-research ships with ml.fhir.region: eu-west-1, which loads).
    BadCase(
        "fhir-region-in-the-us-for-the-eu",
        "eu-research",
        setting("ml", "fhir", "region", value="us-east-1"),
        "ml.fhir.region",
        "'us-east-1' is outside the EU: an EU environment's FHIR datastore must be in an EU region",
    ),
    BadCase(
        "fhir-region-eu-but-not-allowed",
        "eu-research",
        setting("ml", "fhir", "region", value="eu-west-3"),
        "ml.fhir.region",
        "'eu-west-3' is outside allowed_regions [eu-central-1, eu-west-1]",
    ),
    BadCase(
        "fhir-region-without-healthlake",
        "eu-research",
        setting("ml", "fhir", "region", value="eu-central-1"),
        "ml.fhir.region",
        "HealthLake is not offered in eu-central-1",
    ),
    BadCase(
        "fhir-region-not-allowed-us",
        "dev",
        setting("ml", "fhir", "region", value="us-east-2"),
        "ml.fhir.region",
        "'us-east-2' is outside allowed_regions [us-east-1, us-west-2]",
    ),
    BadCase(
        "fhir-region-not-a-region",
        "eu-research",
        setting("ml", "fhir", "region", value="ireland"),
        "ml.fhir.region",
        "'ireland' is not an AWS region name",
    ),
    BadCase(
        "monitoring-schedule-not-accepted",
        "dev",
        setting("ml", "monitoring", "schedule_expression", value="rate(1 hour)"),
        "ml.monitoring.schedule_expression",
        "is not a SageMaker monitoring schedule",
    ),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.id for case in BAD_CASES])
def test_bad_value_gives_one_error_naming_file_field_and_rule(
    tmp_path: Path, case: BadCase
) -> None:
    text = case.change(source_text(case.source))
    assert text != source_text(case.source) or case.folder, "the case changes nothing"
    folder = case.folder or str(yaml.safe_load(source_text(case.source))["name"])
    path = write_environment(tmp_path, folder, text)

    with pytest.raises(EnvironmentFileError) as raised:
        load_environment(path)

    error = raised.value
    message = str(error)
    assert Path(error.path).resolve() == path.resolve()
    assert message.startswith(f"{error.path}: ")
    assert case.field in message
    if error.field:  # field-level rules: the loader names the field itself
        assert error.field == case.field
        assert message.startswith(f"{error.path}: {case.field}: ")
    assert case.rule in message
    # One problem: the single change made exactly one thing wrong, and the message says so.
    assert "more problem" not in message


def test_malformed_yaml_case_points_at_the_changed_line() -> None:
    """Keeps the hard-coded line of the malformed-yaml case honest."""
    lines = source_text("dev").splitlines()
    assert lines[24].strip() == "az_count: 3"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            BadCase(
                "vpc-cidr-loopback",
                "dev",
                setting("network", "vpc_cidr", value="127.0.0.0/16"),
                "network.vpc_cidr",
                "is not inside a private (RFC 1918) range",
            ),
            id="vpc-cidr-loopback",
        ),
        pytest.param(
            BadCase(
                "vpc-cidr-link-local",
                "dev",
                setting("network", "vpc_cidr", value="169.254.0.0/16"),
                "network.vpc_cidr",
                "is not inside a private (RFC 1918) range",
            ),
            id="vpc-cidr-link-local",
        ),
        pytest.param(
            BadCase(
                "onprem-loopback",
                "dev",
                setting("ingest", "vpn", "onprem_cidrs", value=["127.0.0.0/8"]),
                "ingest.vpn.onprem_cidrs[0]",
                "is not inside a private (RFC 1918) range",
            ),
            id="onprem-loopback",
        ),
    ],
)
def test_non_rfc1918_ranges_are_rejected(tmp_path: Path, case: BadCase) -> None:
    test_bad_value_gives_one_error_naming_file_field_and_rule(tmp_path, case)


def test_deployment_role_cannot_be_a_key_user(tmp_path: Path) -> None:
    case = BadCase(
        "deployment-role-is-key-user",
        "dev",
        add_key_user(lambda data: str(data["deployment_role_arn"])),
        "keys",
        "separation of duties",
    )
    test_bad_value_gives_one_error_naming_file_field_and_rule(tmp_path, case)


# --- load_environments --------------------------------------------------------------------


@pytest.fixture
def one_environment_root(tmp_path: Path) -> Path:
    write_environment(tmp_path, "dev", source_text("dev"))
    return tmp_path


def test_unknown_environment_name_is_one_error_listing_the_known(
    one_environment_root: Path,
) -> None:
    with pytest.raises(EnvironmentFileError) as raised:
        load_environments(["dve"], root=one_environment_root)
    assert raised.value.path.resolve() == (one_environment_root / "dve" / ENVIRONMENT_FILE)
    assert str(raised.value).endswith("no such environment (known: dev)")


def test_known_environment_name_loads(one_environment_root: Path) -> None:
    """Twin of the unknown-name case."""
    (environment,) = load_environments(["dev"], root=one_environment_root)
    assert environment.name == "dev"


def test_one_bad_file_fails_the_whole_load(one_environment_root: Path) -> None:
    bad = setting("logs", "audit_retention_days", value=30)(source_text("staging"))
    write_environment(one_environment_root, "staging", bad)
    with pytest.raises(EnvironmentFileError, match=r"staging/environment\.yaml"):
        load_environments(root=one_environment_root)


def test_organization_file_is_an_organization_environment() -> None:
    org = load_environment(ENVIRONMENTS_DIR / "org" / ENVIRONMENT_FILE)
    assert isinstance(org, OrganizationEnvironment)
    assert not set(org.state_backend.keys.administrators) & set(org.state_backend.keys.users)


def test_loaded_environments_are_independent_copies() -> None:
    first, second = (
        load_environment(ENVIRONMENTS_DIR / "dev" / ENVIRONMENT_FILE) for _ in range(2)
    )
    assert first == second and first is not second
    assert copy.deepcopy(first) == first
