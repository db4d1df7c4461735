"""Governance layer: the organization's configuration rules, where each SCP is attached, the
accounts' destroy protection, the Control Tower manifest and controls, delegated
administration, and a real `terraform validate`."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modules.governance import (
    EU_RESIDENCY_REGIONS,
    MAX_SCPS_PER_TARGET,
    OU_NAMES,
    ROOT,
    Governance,
    GovernanceConfig,
    check_scp_quota,
    policy_targets,
)
from modules.scp import MAX_SCP_CHARACTERS, compact, region_allow_list
from tests.synth import only, resources, synth_stack
from tests.terraform_check import terraform_validate

HOME = "us-east-1"
GOVERNED = ("us-east-1", "us-west-2", "eu-central-1", "eu-west-1")
BREAK_GLASS = "phi-ml-break-glass"
KMS_KEY = "arn:aws:kms:us-east-1:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CONTROL = "arn:aws:controltower:us-east-1::control/AWS-GR_RESTRICT_ROOT_USER_ACCESS_KEYS"
CONTROL_ON_EU = (
    "arn:aws:controltower:us-east-1::control/AWS-GR_RESTRICT_S3_CROSS_REGION_REPLICATION"
)
ACCOUNTS = (
    ("log-archive", "Security", "log-archive"),
    ("security-tooling", "Security", "security-tooling"),
    ("shared-network", "Infrastructure", "shared-network"),
    ("dev", "NonProd", "workload"),
    ("staging", "NonProd", "workload"),
    ("prod", "Prod", "workload"),
    ("eu-research", "Research-EU", "workload"),
)
REGIONS = {
    "Security": GOVERNED,
    "Infrastructure": ("us-east-1", "us-west-2"),
    "Workloads": ("us-east-1", "us-west-2"),
    "Research-EU": ("eu-central-1", "eu-west-1"),
}


def raw_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "home_region": HOME,
        "governed_regions": GOVERNED,
        "accounts": [
            {"name": name, "email": f"aws-{name}@acme-health.example", "ou": ou, "role": role}
            for name, ou, role in ACCOUNTS
        ],
        "ou_allowed_regions": dict(REGIONS),
        "break_glass_role_name": BREAK_GLASS,
        "control_tower": {
            "version": "3.3",
            "logging_retention_days": 2192,
            "access_logging_retention_days": 3653,
            "kms_key_arn": KMS_KEY,
        },
        "controls": [
            {"control": CONTROL, "ou": "Prod"},
            {"control": CONTROL_ON_EU, "ou": "Research-EU"},
        ],
    }
    config.update(overrides)
    return config


def governance_config(**overrides: Any) -> GovernanceConfig:
    return GovernanceConfig.model_validate(raw_config(**overrides))


def rejected(config: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as error:
        GovernanceConfig.model_validate(config)
    return str(error.value)


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    config = governance_config()
    return synth_stack(lambda stack: Governance(stack, "governance", config=config))


# --- configuration rules -------------------------------------------------------------------


def test_research_eu_ou_cannot_be_given_a_non_eu_region() -> None:
    regions = {**REGIONS, "Research-EU": ("eu-central-1", "us-east-1")}
    message = rejected(raw_config(ou_allowed_regions=regions))
    assert "ou_allowed_regions.Research-EU: 'us-east-1' is not an EU region" in message


def test_research_eu_ou_accepts_eu_regions() -> None:
    """Twin: every EU residency region passes (given it is governed)."""
    eu = tuple(sorted(EU_RESIDENCY_REGIONS))
    config = governance_config(
        governed_regions=(HOME, *eu),
        ou_allowed_regions={
            **REGIONS,
            "Research-EU": eu,
            "Security": (HOME,),
            "Infrastructure": (HOME,),
            "Workloads": (HOME,),
        },
    )
    assert config.ou_allowed_regions["Research-EU"] == eu


def test_london_is_not_an_eu_region() -> None:
    regions = {**REGIONS, "Research-EU": ("eu-west-2",)}
    message = rejected(
        raw_config(governed_regions=(*GOVERNED, "eu-west-2"), ou_allowed_regions=regions)
    )
    assert "'eu-west-2' is not an EU region" in message


def test_research_eu_must_have_an_allow_list() -> None:
    regions = {ou: r for ou, r in REGIONS.items() if ou != "Research-EU"}
    assert "must list the Research-EU OU" in rejected(raw_config(ou_allowed_regions=regions))


def test_an_allowed_region_must_be_governed() -> None:
    regions = {**REGIONS, "Workloads": ("us-east-1", "us-east-2")}
    assert "'us-east-2' is not in governed_regions" in rejected(
        raw_config(ou_allowed_regions=regions)
    )


def test_home_region_must_be_governed_and_regions_real() -> None:
    assert "home_region us-east-1 must be one of governed_regions" in rejected(
        raw_config(governed_regions=("us-west-2", "eu-central-1", "eu-west-1"))
    )
    assert "'us-east-9x' is not an AWS region" in rejected(
        raw_config(governed_regions=(*GOVERNED, "us-east-9x"))
    )
    unknown_ou = rejected(raw_config(ou_allowed_regions={**REGIONS, "Sandbox": ("us-east-1",)}))
    assert "ou_allowed_regions.Sandbox" in unknown_ou
    assert "Input should be 'Security'" in unknown_ou


def test_the_sample_configuration_is_valid() -> None:
    """Twin of every rejection below: the unmodified configuration passes."""
    config = governance_config()
    assert config.account_with_role("log-archive").name == "log-archive"
    assert config.account_with_role("security-tooling").name == "security-tooling"


def _accounts_with(change: Callable[[list[dict[str, Any]]], None]) -> dict[str, Any]:
    config = raw_config()
    change(config["accounts"])
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a[4].update(name="Dev"), "names must be unique: dev"),
        (lambda a: a[4].update(email="AWS-dev@acme-health.example"), "emails must be unique"),
        (lambda a: a[1].update(role="log-archive"), "exactly one log-archive account"),
        (lambda a: a.pop(1), "exactly one security-tooling account is required, found 0"),
        (lambda a: a[3].update(ou="Security"), "a workload account belongs in"),
        (lambda a: a[0].update(ou="Infrastructure"), "a log-archive account belongs in Security"),
        (lambda a: a[3].update(email="dev-at-acme-health.example"), "is not an email address"),
        (lambda a: a[3].update(ou="Workloads"), "Input should be"),
        (lambda a: a[3].update(name="---"), "needs at least one letter or digit"),
    ],
)
def test_account_rules(change: Callable[[list[dict[str, Any]]], None], message: str) -> None:
    assert message in rejected(_accounts_with(change))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"logging_retention_days": 365}, "greater than or equal to 2192"),
        ({"access_logging_retention_days": 5476}, "less than or equal to 5475"),
        ({"version": "4.0"}, "should match pattern"),
        ({"kms_key_arn": "alias/control-tower"}, "is not a KMS key ARN"),
        (
            {"kms_key_arn": KMS_KEY.replace("us-east-1", "eu-west-1")},
            "Control Tower needs a key in its home region",
        ),
    ],
)
def test_control_tower_rules(settings: dict[str, Any], message: str) -> None:
    config = raw_config()
    config["control_tower"] = {**config["control_tower"], **settings}
    assert message in rejected(config)


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ("AWS-GR_RESTRICT_ROOT_USER", "is not a control identifier"),
        (CONTROL.replace("us-east-1", "eu-west-1"), "enabled through the home region us-east-1"),
        (
            "arn:aws:controltower:us-east-1::control/AWS-GR_REGION_DENY",
            "cannot be enabled through the Control Tower API",
        ),
    ],
)
def test_control_rules(control: str, message: str) -> None:
    assert message in rejected(raw_config(controls=[{"control": control, "ou": "Prod"}]))


def test_a_control_listed_twice_on_one_ou_is_rejected() -> None:
    twice = [{"control": CONTROL, "ou": "Prod"}] * 2
    assert "listed more than once" in rejected(raw_config(controls=twice))
    # Twin: the same control on two OUs is fine; so is a Control Catalog identifier.
    governance_config(
        controls=[
            {"control": CONTROL, "ou": "Prod"},
            {"control": CONTROL, "ou": "NonProd"},
            {"control": "arn:aws:controlcatalog:::control/5kvme4m5d2b4d7if2fs5yg2ui", "ou": "Prod"},
        ]
    )


def test_scp_quota_counts_full_aws_access_and_control_tower() -> None:
    targets = policy_targets(governance_config())
    check_scp_quota(targets)  # the platform's plan fits
    per_ou_limit = MAX_SCPS_PER_TARGET - 2
    crowded = {**targets, **{f"extra-{n}": ("Workloads",) for n in range(per_ou_limit)}}
    with pytest.raises(ValueError, match="Workloads would carry"):
        check_scp_quota(crowded)
    root_extra = {**targets, "extra": (ROOT,), "extra-2": (ROOT,)}
    with pytest.raises(ValueError, match="Root would carry 5 platform SCPs"):
        check_scp_quota(root_extra)


# --- synthesized: organization and OUs ---------------------------------------------------


def ou_names_by_reference(synthesized: dict[str, Any]) -> dict[str, str]:
    """`${aws_organizations_organizational_unit.X.id}` (and `.arn`) -> OU name; the root -> ROOT."""
    names = {
        "${" + f"aws_organizations_organization.{logical}.roots[0].id" + "}": ROOT
        for logical in resources(synthesized, "aws_organizations_organization")
    }
    for logical, unit in resources(synthesized, "aws_organizations_organizational_unit").items():
        for attribute in ("id", "arn"):
            names["${" + f"aws_organizations_organizational_unit.{logical}.{attribute}" + "}"] = (
                unit["name"]
            )
    return names


def test_organization_has_all_features_scps_and_is_never_destroyed(
    synthesized: dict[str, Any],
) -> None:
    organization = only(synthesized, "aws_organizations_organization")
    assert organization["feature_set"] == "ALL"
    assert organization["enabled_policy_types"] == ["SERVICE_CONTROL_POLICY"]
    assert organization["lifecycle"]["prevent_destroy"] is True
    for principal in (
        "cloudtrail.amazonaws.com",
        "config.amazonaws.com",
        "controltower.amazonaws.com",
        "guardduty.amazonaws.com",
        "securityhub.amazonaws.com",
        "sso.amazonaws.com",
        "member.org.stacksets.cloudformation.amazonaws.com",
    ):
        assert principal in organization["aws_service_access_principals"], principal


def test_ou_tree_is_the_platform_structure(synthesized: dict[str, Any]) -> None:
    names = ou_names_by_reference(synthesized)
    parents = {
        unit["name"]: names[unit["parent_id"]]
        for unit in resources(synthesized, "aws_organizations_organizational_unit").values()
    }
    assert parents == {
        "Security": ROOT,
        "Infrastructure": ROOT,
        "Workloads": ROOT,
        "NonProd": "Workloads",
        "Prod": "Workloads",
        "Research-EU": ROOT,
    }
    assert set(parents) == set(OU_NAMES)


# --- synthesized: accounts ---------------------------------------------------------------


def assert_account_protected(account: dict[str, Any]) -> None:
    assert account.get("close_on_deletion") is False, account
    assert account["role_name"] == "OrganizationAccountAccessRole", account
    assert account["lifecycle"]["prevent_destroy"] is True, account
    assert "role_name" in account["lifecycle"].get("ignore_changes", []), account


def test_accounts_are_never_closed_or_destroyed_by_terraform(synthesized: dict[str, Any]) -> None:
    accounts = resources(synthesized, "aws_organizations_account")
    assert len(accounts) == len(ACCOUNTS)
    for account in accounts.values():
        assert_account_protected(account)


def test_account_protection_check_fails_on_a_closable_account(synthesized: dict[str, Any]) -> None:
    account = copy.deepcopy(
        next(iter(resources(synthesized, "aws_organizations_account").values()))
    )
    closable = {**account, "close_on_deletion": True}
    defaulted = {k: v for k, v in account.items() if k != "close_on_deletion"}
    destroyable = {**account, "lifecycle": {**account["lifecycle"], "prevent_destroy": False}}
    drifting = {**account, "lifecycle": {"prevent_destroy": True}}
    for broken in (closable, defaulted, destroyable, drifting):
        with pytest.raises(AssertionError):
            assert_account_protected(broken)


def test_each_account_sits_in_its_ou(synthesized: dict[str, Any]) -> None:
    names = ou_names_by_reference(synthesized)
    placed = {
        account["name"]: names[account["parent_id"]]
        for account in resources(synthesized, "aws_organizations_account").values()
    }
    assert placed == {name: ou for name, ou, _ in ACCOUNTS}


# --- synthesized: SCPs ---------------------------------------------------------------------


def attachments_by_policy(synthesized: dict[str, Any]) -> dict[str, set[str]]:
    """Policy name -> the names of the targets it is attached to."""
    policies = {
        "${" + f"aws_organizations_policy.{logical}.id" + "}": policy["name"]
        for logical, policy in resources(synthesized, "aws_organizations_policy").items()
    }
    targets = ou_names_by_reference(synthesized)
    found: dict[str, set[str]] = {name: set() for name in policies.values()}
    for attachment in resources(synthesized, "aws_organizations_policy_attachment").values():
        found[policies[attachment["policy_id"]]].add(targets[attachment["target_id"]])
    return found


EXPECTED_ATTACHMENTS = {
    "phi-ml-deny-leaving-organization": {ROOT},
    "phi-ml-protect-security-services": {ROOT},
    "phi-ml-deny-root-user": {ROOT},
    "phi-ml-deny-unencrypted-s3-uploads": {"Workloads", "Research-EU"},
    "phi-ml-hipaa-eligible-services-only": {"Workloads", "Research-EU"},
    "phi-ml-region-allow-list-security": {"Security"},
    "phi-ml-region-allow-list-infrastructure": {"Infrastructure"},
    "phi-ml-region-allow-list-workloads": {"Workloads"},
    "phi-ml-region-allow-list-research-eu": {"Research-EU"},
}


def test_each_policy_is_attached_to_the_right_targets(synthesized: dict[str, Any]) -> None:
    assert attachments_by_policy(synthesized) == EXPECTED_ATTACHMENTS


def test_attachment_check_notices_a_policy_on_the_wrong_target(
    synthesized: dict[str, Any],
) -> None:
    broken = copy.deepcopy(synthesized)
    units = resources(synthesized, "aws_organizations_organizational_unit")
    (prod,) = [logical for logical, unit in units.items() if unit["name"] == "Prod"]
    for attachment in broken["resource"]["aws_organizations_policy_attachment"].values():
        if (
            "research-eu" in attachment["policy_id"]
            and "region-allow-list" in attachment["policy_id"]
        ):
            attachment["target_id"] = (
                "${" + f"aws_organizations_organizational_unit.{prod}.id" + "}"
            )
    assert attachments_by_policy(broken) != EXPECTED_ATTACHMENTS


def policy_content(synthesized: dict[str, Any], name: str) -> dict[str, Any]:
    (policy,) = [
        p for p in resources(synthesized, "aws_organizations_policy").values() if p["name"] == name
    ]
    assert policy["type"] == "SERVICE_CONTROL_POLICY"
    content: dict[str, Any] = json.loads(policy["content"])
    assert policy["content"] == compact(content)
    return content


def test_policies_are_deployed_compact_and_within_the_quota(synthesized: dict[str, Any]) -> None:
    for policy in resources(synthesized, "aws_organizations_policy").values():
        assert len(policy["content"]) <= MAX_SCP_CHARACTERS, policy["name"]
        assert policy["content"] == compact(json.loads(policy["content"])), policy["name"]


def test_research_eu_allow_list_names_only_its_eu_regions(synthesized: dict[str, Any]) -> None:
    content = policy_content(synthesized, "phi-ml-region-allow-list-research-eu")
    assert content == region_allow_list(REGIONS["Research-EU"], BREAK_GLASS)
    (statement,) = content["Statement"]
    regions = set(statement["Condition"]["StringNotEquals"]["aws:RequestedRegion"])
    assert regions == set(REGIONS["Research-EU"])
    assert regions <= EU_RESIDENCY_REGIONS


def test_protection_policy_exempts_the_configured_break_glass_role(
    synthesized: dict[str, Any],
) -> None:
    content = policy_content(synthesized, "phi-ml-protect-security-services")
    for statement in content["Statement"]:
        assert (
            f"arn:aws:iam::*:role/{BREAK_GLASS}"
            in (statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"])
        )


# --- synthesized: Control Tower ---------------------------------------------------------


def account_reference(synthesized: dict[str, Any], name: str) -> str:
    (logical,) = [
        logical
        for logical, account in resources(synthesized, "aws_organizations_account").items()
        if account["name"] == name
    ]
    return "${" + f"aws_organizations_account.{logical}.id" + "}"


def assert_manifest(manifest: dict[str, Any], synthesized: dict[str, Any]) -> None:
    assert manifest["governedRegions"] == list(GOVERNED)
    assert manifest["organizationStructure"] == {"security": {"name": "Security"}}
    logging = manifest["centralizedLogging"]
    assert logging["enabled"] is True
    assert logging["accountId"] == account_reference(synthesized, "log-archive")
    assert logging["configurations"] == {
        "loggingBucket": {"retentionDays": 2192},
        "accessLoggingBucket": {"retentionDays": 3653},
        "kmsKeyArn": KMS_KEY,
    }
    assert manifest["securityRoles"] == {
        "accountId": account_reference(synthesized, "security-tooling")
    }
    assert manifest["accessManagement"] == {"enabled": True}


def test_landing_zone_manifest(synthesized: dict[str, Any]) -> None:
    landing_zone = only(synthesized, "aws_controltower_landing_zone")
    assert landing_zone["version"] == "3.3"
    assert_manifest(json.loads(landing_zone["manifest_json"]), synthesized)


def test_manifest_check_notices_swapped_accounts_and_short_retention(
    synthesized: dict[str, Any],
) -> None:
    manifest = json.loads(only(synthesized, "aws_controltower_landing_zone")["manifest_json"])
    swapped = copy.deepcopy(manifest)
    swapped["securityRoles"]["accountId"] = manifest["centralizedLogging"]["accountId"]
    short = copy.deepcopy(manifest)
    short["centralizedLogging"]["configurations"]["loggingBucket"]["retentionDays"] = 365
    for broken in (swapped, short):
        with pytest.raises(AssertionError):
            assert_manifest(broken, synthesized)


def test_controls_target_their_ou_after_the_landing_zone(synthesized: dict[str, Any]) -> None:
    names = ou_names_by_reference(synthesized)
    (landing_zone,) = resources(synthesized, "aws_controltower_landing_zone")
    enabled = {
        (control["control_identifier"], names[control["target_identifier"]])
        for control in resources(synthesized, "aws_controltower_control").values()
    }
    assert enabled == {(CONTROL, "Prod"), (CONTROL_ON_EU, "Research-EU")}
    for control in resources(synthesized, "aws_controltower_control").values():
        assert re.search(r"\.arn\}$", control["target_identifier"])  # Control Tower wants ARNs
        assert f"aws_controltower_landing_zone.{landing_zone}" in control["depends_on"]


def test_detective_services_are_administered_by_security_tooling(
    synthesized: dict[str, Any],
) -> None:
    security = account_reference(synthesized, "security-tooling")
    assert (
        only(synthesized, "aws_guardduty_organization_admin_account")["admin_account_id"]
        == security
    )
    assert (
        only(synthesized, "aws_securityhub_organization_admin_account")["admin_account_id"]
        == security
    )
    delegated = resources(synthesized, "aws_organizations_delegated_administrator").values()
    assert {(d["account_id"], d["service_principal"]) for d in delegated} == {
        (security, "config.amazonaws.com"),
        (security, "config-multiaccountsetup.amazonaws.com"),
    }


def test_without_a_kms_key_the_manifest_omits_it() -> None:
    config = raw_config()
    config["control_tower"] = {**config["control_tower"], "kms_key_arn": None}
    governance = GovernanceConfig.model_validate(config)
    synthesized = synth_stack(lambda stack: Governance(stack, "governance", config=governance))
    manifest = json.loads(only(synthesized, "aws_controltower_landing_zone")["manifest_json"])
    assert "kmsKeyArn" not in manifest["centralizedLogging"]["configurations"]


# --- terraform validate -------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_governance_layer(tmp_path: Path) -> None:
    result = terraform_validate(
        tmp_path,
        lambda stack: Governance(stack, "governance", config=governance_config()),
        region=HOME,
    )
    assert result.returncode == 0, result.stderr
    assert "The configuration is valid" in result.stdout
