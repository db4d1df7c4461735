"""Typed models of `environments/<name>/environment.yaml`.

Every rule a reviewer would otherwise have to remember lives here: account ids are twelve
digits, regions stay inside the residency allow-list, CIDRs are valid and do not overlap, audit
logs are kept at least six years (HIPAA 45 CFR 164.316(b)(2)), key administrators are never key
users. A violation names the file, the field and the rule (see `environments.loader`).
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from modules.features import FeatureGroupSpec
from modules.fhir import SmartOnFhir
from modules.governance import GovernanceConfig
from modules.regions import EU_RESIDENCY_REGIONS
from modules.retention import CLOUDWATCH_RETENTION_DAYS, HIPAA_MIN_AUDIT_RETENTION_DAYS

_REGION = re.compile(
    r"^(us|eu|ap|ca|sa|me|af|il|mx)-(north|south|east|west|central|northeast|"
    r"southeast|northwest|southwest)-[1-9]$"
)
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
_ROLE_ARN = re.compile(r"^arn:aws:iam::([0-9]{12}):role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
_BUCKET_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$")


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"'{value}' is not an AWS region name (e.g. us-east-1)")
    return value


def _account_id(value: object) -> str:
    # YAML reads an unquoted 012345678901 as an integer and drops the leading zero, so only a
    # quoted string is trusted.
    if not isinstance(value, str):
        raise ValueError(f'{value!r} must be a quoted 12-digit string, e.g. "{value}"')
    if not _ACCOUNT_ID.match(value):
        raise ValueError(f"'{value}' is not a 12-digit AWS account id (quote it in YAML)")
    return value


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise ValueError(f"'{value}' is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return value


def _private_network(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"'{value}' is not a valid IPv4 CIDR ({error})") from None
    if not any(network.subnet_of(block) for block in _RFC1918):
        raise ValueError(
            f"'{value}' is not inside a private (RFC 1918) range: 10.0.0.0/8, 172.16.0.0/12 "
            "or 192.168.0.0/16"
        )
    return str(network)


_RFC1918 = tuple(
    ipaddress.IPv4Network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)

# Ranges an IPsec peer on the internet can never have. The documentation ranges (RFC 5737) stay
# allowed so that example files need not name somebody's real address.
_NOT_INTERNET_ROUTABLE = tuple(
    ipaddress.IPv4Network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)

Region = Annotated[str, AfterValidator(_region)]
AccountId = Annotated[str, BeforeValidator(_account_id)]
RoleArn = Annotated[str, AfterValidator(_role_arn)]
PrivateCidr = Annotated[str, AfterValidator(_private_network)]


class Jurisdiction(StrEnum):
    US = "US"
    EU = "EU"


class DataClassification(StrEnum):
    PHI = "phi"
    PSEUDONYMISED = "pseudonymised"


class ComplianceScope(StrEnum):
    HIPAA = "HIPAA"
    GDPR = "GDPR"
    EHDS = "EHDS"


class _Model(BaseModel):
    # Unknown fields are typos until proven otherwise: a misspelt key must not silently fall
    # back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyAccess(_Model):
    """Who administers and who uses the environment's customer-managed keys.

    Separation of duties (HIPAA 164.308(a)(4), 164.312(a)(1)): an administrator can manage a
    key's life cycle but not decrypt with it; a user can decrypt but not change the key.
    """

    administrators: tuple[RoleArn, ...] = Field(min_length=1)
    users: tuple[RoleArn, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _administrators_are_not_users(self) -> KeyAccess:
        both = sorted(set(self.administrators) & set(self.users))
        if both:
            raise ValueError(
                f"{', '.join(both)} is both key administrator and key user (separation of duties)"
            )
        return self


class NetworkSettings(_Model):
    vpc_cidr: PrivateCidr
    az_count: int = Field(ge=2, le=4, description="availability zones; two or more for HA")
    extra_interface_endpoints: tuple[str, ...] = Field(
        default=(),
        description="PrivateLink services beyond the required set, e.g. 'healthlake'",
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _room_for_subnets(cls, value: str) -> str:
        prefix = ipaddress.IPv4Network(value).prefixlen
        # Two subnet tiers per AZ at prefix+3 need at least a /24 to leave /27 subnets.
        if not 16 <= prefix <= 24:
            raise ValueError(f"'{value}': the VPC prefix must be between /16 and /24")
        return value

    @field_validator("extra_interface_endpoints")
    @classmethod
    def _service_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for service in value:
            if not re.match(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$", service):
                raise ValueError(f"'{service}' is not a VPC endpoint service short name")
        return value


class VpnPeer(_Model):
    """The clinical site's side of the IPsec tunnel."""

    peer_ip: str = Field(description="public IPv4 address of the on-premises VPN device")
    bgp_asn: int = Field(ge=1, le=2147483647)
    amazon_side_asn: int = Field(default=64512, ge=64512, le=65534)
    onprem_cidrs: tuple[PrivateCidr, ...] = Field(min_length=1)

    @field_validator("peer_ip")
    @classmethod
    def _public_ipv4(cls, value: str) -> str:
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"'{value}' is not an IPv4 address") from None
        if any(address in network for network in _NOT_INTERNET_ROUTABLE):
            raise ValueError(f"'{value}' is not a public address (the VPN peer must be)")
        return value

    @model_validator(mode="after")
    def _distinct_asns(self) -> VpnPeer:
        if self.bgp_asn == self.amazon_side_asn:
            raise ValueError(f"bgp_asn {self.bgp_asn} equals amazon_side_asn; BGP needs two")
        return self


class DirectConnect(_Model):
    """A Direct Connect gateway associated with the VPC's virtual private gateway."""

    amazon_side_asn: int = Field(ge=64512, le=65534)


class IngestSettings(_Model):
    vpn: VpnPeer | None = None
    direct_connect: DirectConnect | None = None

    @model_validator(mode="after")
    def _at_least_one_path(self) -> IngestSettings:
        if self.vpn is None and self.direct_connect is None:
            raise ValueError("configure vpn, direct_connect or both: clinical data needs a path")
        return self


class LogSettings(_Model):
    audit_retention_days: int = Field(
        description="CloudWatch retention of audit logs (flow logs, VPN tunnel logs)"
    )

    @field_validator("audit_retention_days")
    @classmethod
    def _six_years(cls, value: int) -> int:
        if value < HIPAA_MIN_AUDIT_RETENTION_DAYS:
            raise ValueError(
                f"{value} days is below the HIPAA six-year minimum "
                f"({HIPAA_MIN_AUDIT_RETENTION_DAYS} days)"
            )
        if value not in CLOUDWATCH_RETENTION_DAYS:
            allowed = ", ".join(
                str(days)
                for days in sorted(CLOUDWATCH_RETENTION_DAYS)
                if days >= HIPAA_MIN_AUDIT_RETENTION_DAYS
            )
            raise ValueError(f"{value} is not a CloudWatch Logs retention value ({allowed})")
        return value


class StorageSettings(_Model):
    bucket_prefix: str = Field(description="globally unique prefix for bucket names")
    noncurrent_version_days: int = Field(
        ge=30, le=3650, description="days a superseded object version is kept"
    )

    @field_validator("bucket_prefix")
    @classmethod
    def _bucket_prefix(cls, value: str) -> str:
        if not _BUCKET_PREFIX.match(value):
            raise ValueError(
                f"'{value}' must be 3-32 lowercase letters, digits or hyphens "
                "(it starts every S3 bucket name)"
            )
        return value


class FhirSettings(_Model):
    """HealthLake FHIR R4 datastore (only in regions that offer HealthLake)."""

    datastore_name: str
    region: Region | None = Field(
        default=None,
        description="the datastore's region when the environment's region has no HealthLake "
        "(default: region); it must be in allowed_regions",
    )
    smart_on_fhir: SmartOnFhir | None = None


class ProcessingBasisSettings(_Model):
    """The permit or legal basis every feature record is processed under (its
    `processing_basis` column); which kinds exist depends on the jurisdiction."""

    kind: str
    reference: str | None = Field(
        default=None, description="the permit, waiver or agreement identifier"
    )


class FeatureBuilderSettings(_Model):
    """The SageMaker Processing job that turns a FHIR export into feature records."""

    image: str = Field(description="the feature-builder image, by digest (repository@sha256:...)")
    instance_type: str
    instance_count: int = Field(description="instances the export's partitions are sharded over")
    partitions: int = Field(description="patient partitions the export is split into first")
    max_bad_line_share: float = Field(
        default=0.01, description="above this share of bad input lines nothing is written"
    )
    max_runtime_seconds: int = 3600


class FeatureSettings(_Model):
    groups: tuple[FeatureGroupSpec, ...] = Field(min_length=1)
    processing_basis: ProcessingBasisSettings
    # Where HealthLake exports (StartFHIRExportJob) land in the raw bucket; the builder reads
    # nothing else.
    export_prefix: str = "fhir-export/"
    builder: FeatureBuilderSettings


class PipelineSettings(_Model):
    name: str
    model_package_group: str
    processing_image: str
    training_image: str
    inference_image: str | None = None
    processing_instance_type: str
    training_instance_type: str
    metric_name: str
    metric_threshold: float
    max_runtime_seconds: int
    # Strict: a YAML `true` is not 1, and "200" is not a number here.
    hyperparameters: dict[str, StrictInt | StrictFloat | StrictStr]


class RegistrySettings(_Model):
    model_package_groups: tuple[str, ...] = Field(min_length=1)
    production_account_id: AccountId


class EnclaveSettings(_Model):
    instance_type: str
    min_size: int
    max_size: int
    desired_capacity: int
    target_cpu_percent: int
    # PCR0 of the patient-token enclave image, as `nitro-cli build-enclave` prints it (CI's
    # image build records it); the patient-token key decrypts only for that image.
    image_sha384: str
    memory_mib: int
    cpu_count: int


class InferenceSettings(_Model):
    """What serves an approved version; the version itself (model archive, image) comes from
    the registry, deployed by the deployer, never from this file."""

    model_name: str
    endpoint_instance_type: str
    endpoint_instance_count: int
    data_capture_sampling_percent: int
    # Approved versions kept deployable for rollback (the deployer deletes older ones).
    retained_versions: int = 3
    enclave: EnclaveSettings


class MonitoringSettings(_Model):
    monitor_image: str
    instance_type: str
    schedule_expression: str
    max_runtime_seconds: int


class ReplicationDestinationSettings(_Model):
    account_id: AccountId
    region: Region


class ImagesSettings(_Model):
    """Where CI's one build of each image goes. The account that builds lists the accounts
    ECR replicates to; each of those names the one account it receives from."""

    replicate_to: tuple[ReplicationDestinationSettings, ...] = ()
    replicated_from: AccountId | None = None


class MlSettings(_Model):
    """The data-to-model path. Values only; each layer's config enforces its own rules (see
    environments/layer_configs.py, which reports them against these fields)."""

    fhir: FhirSettings | None = None
    features: FeatureSettings
    pipeline: PipelineSettings
    registry: RegistrySettings
    inference: InferenceSettings
    monitoring: MonitoringSettings
    images: ImagesSettings = ImagesSettings()

    @model_validator(mode="after")
    def _pipeline_registers_into_a_known_group(self) -> MlSettings:
        if self.pipeline.model_package_group not in self.registry.model_package_groups:
            raise ValueError(
                f"pipeline.model_package_group '{self.pipeline.model_package_group}' is not one "
                f"of registry.model_package_groups {list(self.registry.model_package_groups)}"
            )
        return self


class SecuritySettings(_Model):
    finding_severity_threshold: float = Field(
        default=7.0, description="GuardDuty severity from which instances are quarantined"
    )


class _EnvironmentBase(_Model):
    name: str
    owner: str = Field(min_length=1, description="team accountable for the environment")
    account_id: AccountId
    region: Region
    allowed_regions: tuple[Region, ...] = Field(min_length=1)
    deployment_role_arn: RoleArn = Field(description="role Terraform assumes in the account")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"'{value}' must be 3-22 lowercase letters, digits or hyphens")
        return value

    @model_validator(mode="after")
    def _region_allowed(self) -> _EnvironmentBase:
        if self.region not in self.allowed_regions:
            raise ValueError(
                f"region '{self.region}' is outside allowed_regions "
                f"[{', '.join(self.allowed_regions)}]"
            )
        role_account = _ROLE_ARN.match(self.deployment_role_arn)
        if role_account and role_account.group(1) != self.account_id:
            raise ValueError(
                f"deployment_role_arn is in account {role_account.group(1)}, "
                f"not the environment's account {self.account_id}"
            )
        return self


class WorkloadEnvironment(_EnvironmentBase):
    """An account that holds (or may hold) patient data and runs ML on it."""

    kind: Literal["workload"]
    jurisdiction: Jurisdiction
    compliance_scope: tuple[ComplianceScope, ...] = Field(min_length=1)
    data_classification: DataClassification
    production: bool = Field(description="production data stores get prevent_destroy")
    keys: KeyAccess
    network: NetworkSettings
    ingest: IngestSettings
    logs: LogSettings
    storage: StorageSettings
    ml: MlSettings
    security: SecuritySettings = SecuritySettings()

    @model_validator(mode="after")
    def _jurisdiction_rules(self) -> WorkloadEnvironment:
        if self.jurisdiction is Jurisdiction.EU:
            outside = [r for r in self.allowed_regions if r not in EU_RESIDENCY_REGIONS]
            if outside:
                raise ValueError(
                    f"allowed_regions {outside} are outside the EU: an EU environment may only "
                    "use EU regions (GDPR Chapter V, EHDS residency)"
                )
            if ComplianceScope.GDPR not in self.compliance_scope:
                raise ValueError("an EU environment must include GDPR in compliance_scope")
        if self.jurisdiction is Jurisdiction.US and ComplianceScope.HIPAA not in (
            self.compliance_scope
        ):
            raise ValueError("a US environment must include HIPAA in compliance_scope")
        self._cidrs_do_not_overlap()
        if self.deployment_role_arn in self.keys.users:
            raise ValueError(
                "keys.users: the deployment_role_arn administers every key, so it cannot also "
                "be a key user (separation of duties)"
            )
        return self

    def _cidrs_do_not_overlap(self) -> None:
        if self.ingest.vpn is None:
            return
        vpc = ipaddress.IPv4Network(self.network.vpc_cidr)
        seen: list[ipaddress.IPv4Network] = []
        for cidr in self.ingest.vpn.onprem_cidrs:
            network = ipaddress.IPv4Network(cidr)
            if network.overlaps(vpc):
                raise ValueError(f"ingest.vpn.onprem_cidrs {cidr} overlaps network.vpc_cidr {vpc}")
            for other in seen:
                if network.overlaps(other):
                    raise ValueError(f"ingest.vpn.onprem_cidrs {cidr} overlaps {other}")
            seen.append(network)


class StateBackendSettings(_Model):
    """Where every stack keeps its Terraform state (created by the `bootstrap` stack)."""

    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]+[a-z0-9]$")
    keys: KeyAccess
    noncurrent_version_days: int = Field(ge=30, le=3650)


class AuditSettings(_Model):
    log_archive_bucket: str
    retention_days: int = Field(description="trail events in CloudWatch Logs (>= 2192)")
    object_lock_days: int = Field(description="WORM retention of every log file (>= 2192)")


class OrganizationEnvironment(_EnvironmentBase):
    """The management account: Terraform state now, Organizations and SCPs later."""

    kind: Literal["organization"]
    organization_id: str = Field(
        pattern=r"^o-[a-z0-9]{10,32}$", description="the existing organization (o-...)"
    )
    keys: KeyAccess = Field(description="administrators and users of the audit keys")
    audit: AuditSettings
    state_backend: StateBackendSettings
    governance: GovernanceConfig

    @model_validator(mode="after")
    def _governance_in_this_region(self) -> OrganizationEnvironment:
        if self.governance.home_region != self.region:
            raise ValueError(
                f"governance.home_region {self.governance.home_region} must equal region "
                f"{self.region} (Control Tower's home region is the management region)"
            )
        outside = [r for r in self.governance.governed_regions if r not in self.allowed_regions]
        if outside:
            raise ValueError(f"governance.governed_regions {outside} are outside allowed_regions")
        return self

    @model_validator(mode="after")
    def _deployer_is_not_a_state_key_user(self) -> OrganizationEnvironment:
        if self.deployment_role_arn in self.state_backend.keys.users:
            raise ValueError(
                "state_backend.keys.users: the deployment_role_arn administers the state key, "
                "so it cannot also be a key user (separation of duties)"
            )
        return self


Environment = Annotated[WorkloadEnvironment | OrganizationEnvironment, Field(discriminator="kind")]
