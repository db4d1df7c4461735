"""The organization: OUs, member accounts, service control policies, Control Tower landing zone
and controls, and delegated administration of the detective services.

Built in the management account. The OU structure is the platform's, fixed here; the
environment file supplies values only (accounts, regions, retention, controls).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cdktf import TerraformResourceLifecycle
from constructs import Construct
from pydantic import Field, field_validator, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.regions import EU_RESIDENCY_REGIONS
from modules.scp import (
    PolicyDocument,
    checked_content,
    deny_leaving_organization,
    deny_root_user,
    deny_unencrypted_s3_uploads,
    hipaa_eligible_services_only,
    load_hipaa_eligible_services,
    protect_security_services,
    region_allow_list,
)

OuName = Literal["Security", "Infrastructure", "Workloads", "NonProd", "Prod", "Research-EU"]
AccountOu = Literal["Security", "Infrastructure", "NonProd", "Prod", "Research-EU"]
AccountRole = Literal["log-archive", "security-tooling", "shared-network", "workload"]


@dataclass(frozen=True)
class OrganizationalUnitSpec:
    name: str
    parent: str | None  # None: directly under the organization root


# Parents before children: each OU's parent already exists when it is created.
ORGANIZATIONAL_UNITS = (
    OrganizationalUnitSpec("Security", None),
    OrganizationalUnitSpec("Infrastructure", None),
    OrganizationalUnitSpec("Workloads", None),
    OrganizationalUnitSpec("NonProd", "Workloads"),
    OrganizationalUnitSpec("Prod", "Workloads"),
    OrganizationalUnitSpec("Research-EU", None),
)
OU_NAMES = tuple(ou.name for ou in ORGANIZATIONAL_UNITS)
ROOT = "Root"
SECURITY_OU = "Security"
RESEARCH_EU_OU = "Research-EU"
# OUs whose accounts hold PHI: the HIPAA allow-list and the upload-encryption SCP sit here,
# so every account below them (NonProd, Prod under Workloads) inherits both.
PHI_OUS = ("Workloads", "Research-EU")

# Where each kind of account may live. Control Tower expects the log archive and the audit
# (security tooling) accounts in its Security OU; an account holding PHI must sit under a PHI OU.
ROLE_OUS: Mapping[str, frozenset[str]] = {
    "log-archive": frozenset({"Security"}),
    "security-tooling": frozenset({"Security"}),
    "shared-network": frozenset({"Infrastructure"}),
    "workload": frozenset({"NonProd", "Prod", "Research-EU"}),
}

# Services trusted to act across the organization (trusted access). Control Tower needs
# controltower, sso, config and cloudtrail; StackSets deploy its baselines; GuardDuty and
# Security Hub are administered from the security tooling account.
SERVICE_ACCESS_PRINCIPALS = (
    "cloudtrail.amazonaws.com",
    "config-multiaccountsetup.amazonaws.com",
    "config.amazonaws.com",
    "controltower.amazonaws.com",
    "guardduty.amazonaws.com",
    "malware-protection.guardduty.amazonaws.com",
    "member.org.stacksets.cloudformation.amazonaws.com",
    "securityhub.amazonaws.com",
    "sso.amazonaws.com",
)
DELEGATED_CONFIG_PRINCIPALS = ("config.amazonaws.com", "config-multiaccountsetup.amazonaws.com")

# The role Organizations creates in each new account for the management account's admins.
ACCOUNT_ACCESS_ROLE = "OrganizationAccountAccessRole"

# HIPAA 45 CFR 164.316(b)(2)(i): six years; Control Tower accepts at most 15 years (5475 days).
HIPAA_MIN_LOG_RETENTION_DAYS = 2192
CONTROL_TOWER_MAX_RETENTION_DAYS = 5475

# Organizations quota: at most 5 SCPs attached to one target. AWS's FullAWSAccess takes one
# slot everywhere (this is a deny-list organization), and Control Tower attaches its own
# guard-rail SCP to every OU it governs, so the platform may use 4 at the root and 3 per OU.
MAX_SCPS_PER_TARGET = 5
RESERVED_SCP_SLOTS = {ROOT: 1}
RESERVED_SCP_SLOTS_PER_OU = 2

POLICY_NAME_PREFIX = "phi-ml-"
POLICY_DESCRIPTIONS = {
    "deny-leaving-organization": "Member accounts cannot leave the organization",
    "protect-security-services": (
        "CloudTrail, Config, GuardDuty, Security Hub, flow logs and KMS keys cannot be "
        "stopped, deleted or disabled except by the break-glass role and Control Tower"
    ),
    "deny-root-user": "The root user of a member account can do nothing",
    "deny-unencrypted-s3-uploads": "S3 uploads use SSE-KMS (or bucket default); no SSE-S3/SSE-C",
    "hipaa-eligible-services-only": "Only HIPAA-eligible services and the control plane",
}

_REGION = re.compile(
    r"^(us|eu|ap|ca|sa|me|af|il|mx)-(north|south|east|west|central|northeast|"
    r"southeast|northwest|southwest)-[1-9]$"
)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
_KMS_KEY_ARN = re.compile(
    r"^arn:aws:kms:(?P<region>[a-z]{2}-[a-z]+-\d):\d{12}:key/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)
_CONTROL_TOWER_CONTROL = re.compile(
    r"^arn:aws:controltower:(?P<region>[a-z]{2}-[a-z]+-\d)::control/(?P<name>[A-Za-z0-9_-]+)$"
)
_CATALOG_CONTROL = re.compile(r"^arn:aws:controlcatalog:::control/[a-z0-9]+$")
# Control Tower refuses to enable these through its API (console only).
_CONSOLE_ONLY_CONTROLS = frozenset({"AWS-GR_REGION_DENY"})


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _check_region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"'{value}' is not an AWS region name (e.g. us-east-1)")
    return value


class MemberAccount(LayerConfig):
    """A member account the organization creates (or adopts by import)."""

    name: str = Field(
        min_length=1,
        max_length=50,
        pattern=r"^[ -~]+$",
        description="the account's name: printable ASCII with at least one letter or digit; "
        "unique among the accounts, compared as Organizations does (case, spaces and "
        "punctuation ignored: 'Log Archive' and 'log-archive' collide)",
    )
    email: str = Field(
        min_length=6,
        max_length=64,
        description="the account's root email address; unique among the accounts ignoring case",
    )
    ou: AccountOu = Field(
        description="the OU the account sits in, as its role requires: log-archive and "
        "security-tooling in Security, shared-network in Infrastructure, workload in NonProd, "
        "Prod or Research-EU"
    )
    role: AccountRole = Field(
        description="what the account is for: exactly one log-archive and one security-tooling "
        "account (Control Tower's log archive and audit accounts)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _slug(value):
            raise ValueError(f"'{value}' needs at least one letter or digit")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"'{value}' is not an email address")
        return value

    @model_validator(mode="after")
    def _role_lives_in_its_ou(self) -> MemberAccount:
        allowed = ROLE_OUS[self.role]
        if self.ou not in allowed:
            raise ValueError(
                f"account '{self.name}': a {self.role} account belongs in "
                f"{' or '.join(sorted(allowed))}, not {self.ou}"
            )
        return self

    @property
    def logical_id(self) -> str:
        return _slug(self.name)


class ControlTowerSettings(LayerConfig):
    """Landing zone values. Centralized logging, IAM Identity Center and the Security OU are
    fixed in code; the log archive and audit accounts are the accounts with those roles."""

    # The manifest built here follows the 3.x schema (4.0 drops organizationStructure).
    version: str = Field(
        pattern=r"^3\.[0-9]+$",
        description="the landing zone version, 3.x, quoted (a YAML 3.3 is a number); the "
        "manifest follows the 3.x schema",
    )
    logging_retention_days: int = Field(
        ge=HIPAA_MIN_LOG_RETENTION_DAYS,
        le=CONTROL_TOWER_MAX_RETENTION_DAYS,
        description="days the log archive bucket keeps logs: HIPAA's six years at least, "
        "Control Tower's fifteen at most",
    )
    access_logging_retention_days: int = Field(
        ge=HIPAA_MIN_LOG_RETENTION_DAYS,
        le=CONTROL_TOWER_MAX_RETENTION_DAYS,
        description="days the log archive's access-log bucket keeps its logs",
    )
    # CMK for the log archive buckets; without it Control Tower uses SSE-S3.
    kms_key_arn: str | None = Field(
        default=None,
        description="the CMK of the log archive buckets (without it Control Tower uses "
        "SSE-S3): arn:aws:kms:<region>:<account>:key/<id>, in home_region",
    )

    @field_validator("kms_key_arn")
    @classmethod
    def _kms_key_arn(cls, value: str | None) -> str | None:
        if value is not None and not _KMS_KEY_ARN.match(value):
            raise ValueError(
                f"'{value}' is not a KMS key ARN (arn:aws:kms:<region>:<acct>:key/<id>)"
            )
        return value


class ControlAssignment(LayerConfig):
    """A Control Tower control enabled on one OU."""

    control: str = Field(
        description="arn:aws:controltower:<home_region>::control/<NAME> or "
        "arn:aws:controlcatalog:::control/<id>; not one Control Tower enables only in its "
        f"console ({', '.join(sorted(_CONSOLE_ONLY_CONTROLS))}: the ou_allowed_regions SCPs "
        "provide region residency instead)"
    )
    ou: OuName = Field(description="the OU the control is enabled on")

    @field_validator("control")
    @classmethod
    def _identifier(cls, value: str) -> str:
        regional = _CONTROL_TOWER_CONTROL.match(value)
        if regional is None and not _CATALOG_CONTROL.match(value):
            raise ValueError(
                f"'{value}' is not a control identifier (arn:aws:controltower:<region>::control/"
                "<NAME> or arn:aws:controlcatalog:::control/<id>)"
            )
        if regional is not None and regional["name"] in _CONSOLE_ONLY_CONTROLS:
            raise ValueError(
                f"{regional['name']} cannot be enabled through the Control Tower API; "
                "the ou_allowed_regions SCPs provide region residency instead"
            )
        return value

    @property
    def region(self) -> str | None:
        regional = _CONTROL_TOWER_CONTROL.match(self.control)
        return regional["region"] if regional else None

    @property
    def logical_id(self) -> str:
        return f"control-{_slug(self.control.rsplit('/', 1)[-1])}-{_slug(self.ou)}"


class GovernanceConfig(LayerConfig):
    """The organization: member accounts, a region allow-list per OU, the Control Tower landing
    zone and its controls. The OUs and the SCPs are fixed in code; at most 5 SCPs fit one
    target, of which FullAWSAccess takes one at the root and Control Tower one more per OU."""

    home_region: str = Field(
        description="Control Tower's home region: an AWS region name, one of governed_regions"
    )
    governed_regions: tuple[str, ...] = Field(
        min_length=1,
        description="the regions Control Tower governs: AWS region names, none listed twice",
    )
    accounts: tuple[MemberAccount, ...] = Field(
        description="the member accounts: names and emails unique, exactly one log-archive and "
        "one security-tooling account"
    )
    ou_allowed_regions: dict[OuName, tuple[str, ...]] = Field(
        description="each OU's region allow-list (an SCP): it must list Research-EU; every "
        "region listed is in governed_regions and each OU lists at least one; Research-EU "
        f"only EU regions ({', '.join(sorted(EU_RESIDENCY_REGIONS))}: not eu-west-2 London, "
        "not Zurich)"
    )
    break_glass_role_name: str = Field(
        pattern=_ROLE_NAME.pattern,
        description="the IAM role name exempt from the security-service protection and region "
        "allow-list SCPs (with Control Tower's own roles)",
    )
    control_tower: ControlTowerSettings
    controls: tuple[ControlAssignment, ...] = Field(
        default=(),
        description="the Control Tower controls to enable, none listed twice on the same OU",
    )

    @field_validator("home_region")
    @classmethod
    def _home_region(cls, value: str) -> str:
        return _check_region(value)

    @field_validator("governed_regions")
    @classmethod
    def _governed_regions(cls, regions: tuple[str, ...]) -> tuple[str, ...]:
        for region in regions:
            _check_region(region)
        repeated = sorted(r for r, n in Counter(regions).items() if n > 1)
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return regions

    @model_validator(mode="after")
    def _regions(self) -> GovernanceConfig:
        if self.home_region not in self.governed_regions:
            raise ValueError(
                f"home_region {self.home_region} must be one of governed_regions "
                "(Control Tower governs its home region)"
            )
        if RESEARCH_EU_OU not in self.ou_allowed_regions:
            raise ValueError(
                "ou_allowed_regions must list the Research-EU OU: its EU-only region allow-list "
                "is what keeps EU patient data in the EU"
            )
        for ou, regions in self.ou_allowed_regions.items():
            if not regions:
                raise ValueError(f"ou_allowed_regions.{ou}: at least one region")
            for region in regions:
                _check_region(region)
                if ou == RESEARCH_EU_OU and region not in EU_RESIDENCY_REGIONS:
                    raise ValueError(
                        f"ou_allowed_regions.{ou}: '{region}' is not an EU region; the {ou} OU "
                        f"may only allow {', '.join(sorted(EU_RESIDENCY_REGIONS))} "
                        "(eu-west-2 London is outside the EU)"
                    )
                if region not in self.governed_regions:
                    raise ValueError(
                        f"ou_allowed_regions.{ou}: '{region}' is not in governed_regions; "
                        "Control Tower would not monitor resources there"
                    )
        return self

    @model_validator(mode="after")
    def _accounts(self) -> GovernanceConfig:
        # Compared as Organizations and mail servers do: names by their logical id (so that
        # "Log Archive" and "log-archive" collide), emails ignoring case.
        for field, values in (
            ("names", [a.logical_id for a in self.accounts]),
            ("emails", [a.email.lower() for a in self.accounts]),
        ):
            repeated = sorted(v for v, n in Counter(values).items() if n > 1)
            if repeated:
                raise ValueError(f"accounts: {field} must be unique: {', '.join(repeated)}")
        for role in ("log-archive", "security-tooling"):
            count = sum(1 for a in self.accounts if a.role == role)
            if count != 1:
                raise ValueError(f"accounts: exactly one {role} account is required, found {count}")
        return self

    @model_validator(mode="after")
    def _controls_and_key(self) -> GovernanceConfig:
        pairs = Counter((c.control, c.ou) for c in self.controls)
        repeated = sorted(f"{control} on {ou}" for (control, ou), n in pairs.items() if n > 1)
        if repeated:
            raise ValueError(f"controls: listed more than once: {', '.join(repeated)}")
        for control in self.controls:
            if control.region is not None and control.region != self.home_region:
                raise ValueError(
                    f"controls: {control.control} names region {control.region}; Control Tower "
                    f"controls are enabled through the home region {self.home_region}"
                )
        key = self.control_tower.kms_key_arn
        if key is not None:
            match = _KMS_KEY_ARN.match(key)
            if match is not None and match["region"] != self.home_region:
                raise ValueError(
                    f"control_tower.kms_key_arn is in {match['region']}; Control Tower needs a "
                    f"key in its home region {self.home_region}"
                )
        return self

    @model_validator(mode="after")
    def _scp_quota(self) -> GovernanceConfig:
        check_scp_quota(policy_targets(self))
        return self

    def account_with_role(self, role: AccountRole) -> MemberAccount:
        (account,) = (a for a in self.accounts if a.role == role)
        return account


def policy_targets(config: GovernanceConfig) -> dict[str, tuple[str, ...]]:
    """Which SCP goes where: policy key -> targets (ROOT or OU names).

    Guard rails that protect the organization itself sit at the root (every member account);
    PHI rules on the PHI OUs; a region allow-list on each OU that names its regions.
    """
    targets: dict[str, tuple[str, ...]] = {
        "deny-leaving-organization": (ROOT,),
        "protect-security-services": (ROOT,),
        "deny-root-user": (ROOT,),
        "deny-unencrypted-s3-uploads": PHI_OUS,
        "hipaa-eligible-services-only": PHI_OUS,
    }
    for ou in OU_NAMES:
        if ou in config.ou_allowed_regions:
            targets[region_policy_key(ou)] = (ou,)
    return targets


def region_policy_key(ou: str) -> str:
    return f"region-allow-list-{_slug(ou)}"


def check_scp_quota(targets: Mapping[str, Sequence[str]]) -> None:
    """Raise if a target would carry more SCPs than Organizations allows, counting the slots
    FullAWSAccess and Control Tower take."""
    per_target = Counter(target for policy_targets in targets.values() for target in policy_targets)
    for target, count in sorted(per_target.items()):
        reserved = RESERVED_SCP_SLOTS.get(target, RESERVED_SCP_SLOTS_PER_OU)
        if count + reserved > MAX_SCPS_PER_TARGET:
            raise ValueError(
                f"{target} would carry {count} platform SCPs plus {reserved} reserved "
                f"(FullAWSAccess, Control Tower); Organizations allows {MAX_SCPS_PER_TARGET}"
            )


def scp_documents(
    config: GovernanceConfig, hipaa_services: Sequence[str]
) -> dict[str, PolicyDocument]:
    """Every SCP document, by the same keys as `policy_targets`."""
    documents: dict[str, PolicyDocument] = {
        "deny-leaving-organization": deny_leaving_organization(),
        "protect-security-services": protect_security_services(config.break_glass_role_name),
        "deny-root-user": deny_root_user(),
        "deny-unencrypted-s3-uploads": deny_unencrypted_s3_uploads(),
        "hipaa-eligible-services-only": hipaa_eligible_services_only(hipaa_services),
    }
    for ou, regions in config.ou_allowed_regions.items():
        documents[region_policy_key(ou)] = region_allow_list(regions, config.break_glass_role_name)
    return documents


def landing_zone_manifest(
    config: GovernanceConfig, *, log_archive_account_id: str, security_account_id: str
) -> dict[str, Any]:
    """The landing zone manifest (schema 3.3): governed regions, the Security OU, centralized
    CloudTrail/Config logging to the log archive account, the audit account, Identity Center."""
    settings = config.control_tower
    configurations: dict[str, Any] = {
        "loggingBucket": {"retentionDays": settings.logging_retention_days},
        "accessLoggingBucket": {"retentionDays": settings.access_logging_retention_days},
    }
    if settings.kms_key_arn is not None:
        configurations["kmsKeyArn"] = settings.kms_key_arn
    return {
        "governedRegions": list(config.governed_regions),
        "organizationStructure": {"security": {"name": SECURITY_OU}},
        "centralizedLogging": {
            "accountId": log_archive_account_id,
            "configurations": configurations,
            "enabled": True,
        },
        "securityRoles": {"accountId": security_account_id},
        "accessManagement": {"enabled": True},
    }


class Governance(Construct):
    """The organization with all features, the platform's OUs and accounts, and its guard rails.

    Guarantees: no member account can leave, act as root, or switch off CloudTrail, Config,
    GuardDuty, Security Hub, flow logs or KMS keys (break-glass and Control Tower excepted);
    accounts under Workloads and Research-EU can use only HIPAA-eligible services and only
    SSE-KMS (or bucket-default) uploads; every OU with an allow-list is confined to its regions,
    Research-EU to EU regions; every SCP fits the 5,120-character quota. Accounts and the
    organization survive `terraform destroy` (prevent_destroy; accounts are never closed by
    Terraform). GuardDuty, Security Hub and Config are administered from the security tooling
    account; Control Tower governs the governed regions with logs kept at least six years.
    """

    def __init__(self, scope: Construct, id_: str, *, config: GovernanceConfig) -> None:
        super().__init__(scope, id_)
        self.config = config
        # Sized before anything is declared: an oversized SCP stops synthesis, not apply.
        documents = scp_documents(config, load_hipaa_eligible_services().services)
        contents = {key: checked_content(key, document) for key, document in documents.items()}

        self.organization = aws.OrganizationsOrganization(
            self,
            "organization",
            feature_set="ALL",
            aws_service_access_principals=sorted(SERVICE_ACCESS_PRINCIPALS),
            enabled_policy_types=["SERVICE_CONTROL_POLICY"],
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True),
        )
        self.organization_id: str = self.organization.id
        self.root_id: str = self.organization.roots.get(0).id

        units: dict[str, Any] = {}
        for spec in ORGANIZATIONAL_UNITS:
            units[spec.name] = aws.OrganizationsOrganizationalUnit(
                self,
                f"ou-{_slug(spec.name)}",
                name=spec.name,
                parent_id=self.root_id if spec.parent is None else units[spec.parent].id,
                # Removing an OU detaches its SCPs from every account below it.
                lifecycle=TerraformResourceLifecycle(prevent_destroy=True),
            )
        self.ou_ids: dict[str, str] = {name: unit.id for name, unit in units.items()}
        self.ou_arns: dict[str, str] = {name: unit.arn for name, unit in units.items()}

        self.accounts: dict[str, Any] = {}
        for account in config.accounts:
            self.accounts[account.name] = aws.OrganizationsAccount(
                self,
                f"account-{account.logical_id}",
                name=account.name,
                email=account.email,
                parent_id=units[account.ou].id,
                role_name=ACCOUNT_ACCESS_ROLE,
                # Removing an account from code must never close it (and its PHI and logs).
                close_on_deletion=False,
                tags={"account-role": account.role},
                lifecycle=TerraformResourceLifecycle(
                    prevent_destroy=True,
                    # Organizations does not return role_name: without this, every plan after
                    # an import would replace the account.
                    ignore_changes=["role_name"],
                ),
            )
        self.account_ids: dict[str, str] = {name: a.id for name, a in self.accounts.items()}

        target_ids = {ROOT: self.root_id, **self.ou_ids}
        self.policies: dict[str, Any] = {}
        for key, targets in policy_targets(config).items():
            policy = aws.OrganizationsPolicy(
                self,
                f"scp-{key}",
                name=f"{POLICY_NAME_PREFIX}{key}",
                description=POLICY_DESCRIPTIONS.get(
                    key, f"Regional requests from the {targets[0]} OU stay in its allowed regions"
                ),
                type="SERVICE_CONTROL_POLICY",
                content=contents[key],
                depends_on=[self.organization],
            )
            self.policies[key] = policy
            for target in targets:
                aws.OrganizationsPolicyAttachment(
                    self,
                    f"scp-{key}-on-{_slug(target)}",
                    policy_id=policy.id,
                    target_id=target_ids[target],
                )

        security_tooling = self.accounts[config.account_with_role("security-tooling").name]
        log_archive = self.accounts[config.account_with_role("log-archive").name]
        # Regional: these designate the admin in the provider's region (the home region).
        aws.GuarddutyOrganizationAdminAccount(
            self,
            "guardduty-admin",
            admin_account_id=security_tooling.id,
            depends_on=[self.organization],
        )
        aws.SecurityhubOrganizationAdminAccount(
            self,
            "securityhub-admin",
            admin_account_id=security_tooling.id,
            depends_on=[self.organization],
        )
        for principal in DELEGATED_CONFIG_PRINCIPALS:
            aws.OrganizationsDelegatedAdministrator(
                self,
                f"delegated-admin-{_slug(principal.split('.amazonaws.com')[0])}",
                account_id=security_tooling.id,
                service_principal=principal,
                depends_on=[self.organization],
            )

        manifest = landing_zone_manifest(
            config,
            log_archive_account_id=log_archive.id,
            security_account_id=security_tooling.id,
        )
        self.landing_zone = aws.ControltowerLandingZone(
            self,
            "landing-zone",
            version=config.control_tower.version,
            manifest_json=json.dumps(manifest, separators=(",", ":"), sort_keys=True),
            depends_on=[units[SECURITY_OU], log_archive, security_tooling],
        )
        for assignment in config.controls:
            aws.ControltowerControl(
                self,
                assignment.logical_id,
                control_identifier=assignment.control,
                target_identifier=units[assignment.ou].arn,
                depends_on=[self.landing_zone],
            )
