"""Typed models of `environments/<name>/environment.yaml`.

Every rule a reviewer would otherwise have to remember lives here: account ids are twelve
digits, regions stay inside the residency allow-list, CIDRs are valid and do not overlap, audit
logs are kept at least six years (HIPAA 45 CFR 164.316(b)(2)), key administrators are never key
users. A violation names the file, the field and the rule (see `environments.loader`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from modules.features import FeatureGroupSpec
from modules.fhir import SmartOnFhir
from modules.governance import GovernanceConfig
from modules.regions import EU_RESIDENCY_REGIONS
from modules.retention import CLOUDWATCH_RETENTION_DAYS, HIPAA_MIN_AUDIT_RETENTION_DAYS
from requirements.aws_values import (
    SageMakerJob,
    ec2_instance_type_problem,
    public_peer_problem,
    sagemaker_instance_type_problem,
    tag_value_problem,
)

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


def role_account(role_arn: str) -> str:
    """The account of a role ARN the schema accepted."""
    match = _ROLE_ARN.match(role_arn)
    if match is None:
        raise ValueError(f"'{role_arn}' is not an IAM role ARN")
    return match.group(1)


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


def _problem_free(check: Callable[[str], str | None]) -> Callable[[str], str]:
    """A validator from a `requirements.aws_values` rule: its problem, if any, is the error."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return validate


def _sagemaker_type(job: SageMakerJob) -> Callable[[str], str | None]:
    return lambda value: sagemaker_instance_type_problem(value, job=job)


def _hyperparameter(value: object) -> int | float | str:
    # One rule, one message: a union of strict types would report each member's refusal.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        kind = (
            f"the boolean {str(value).lower()}" if isinstance(value, bool) else "a list or mapping"
        )
        raise ValueError(f"must be a number or text, not {kind}")
    return value


Hyperparameter = Annotated[int | float | str, BeforeValidator(_hyperparameter)]
Region = Annotated[str, AfterValidator(_region)]
AccountId = Annotated[str, BeforeValidator(_account_id)]
RoleArn = Annotated[str, AfterValidator(_role_arn)]
PrivateCidr = Annotated[str, AfterValidator(_private_network)]
# What AWS itself refuses, read from botocore's service models and AWS's published rules.
TagValue = Annotated[str, AfterValidator(_problem_free(tag_value_problem))]
Ec2InstanceType = Annotated[str, AfterValidator(_problem_free(ec2_instance_type_problem))]
ProcessingInstanceType = Annotated[
    str, AfterValidator(_problem_free(_sagemaker_type(SageMakerJob.PROCESSING)))
]
TrainingInstanceType = Annotated[
    str, AfterValidator(_problem_free(_sagemaker_type(SageMakerJob.TRAINING)))
]
EndpointInstanceType = Annotated[
    str, AfterValidator(_problem_free(_sagemaker_type(SageMakerJob.ENDPOINT)))
]
MonitoringInstanceType = Annotated[
    str, AfterValidator(_problem_free(_sagemaker_type(SageMakerJob.MONITORING)))
]


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
    # Infinity and NaN are floats to YAML and JSON, never a threshold anyone means.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class KeyAccess(_Model):
    """Who administers and who uses the environment's customer-managed keys.

    Separation of duties (HIPAA 164.308(a)(4), 164.312(a)(1)): an administrator can manage a
    key's life cycle but not decrypt with it; a user can decrypt but not change the key.
    """

    administrators: tuple[RoleArn, ...] = Field(
        min_length=1,
        description="IAM role ARNs that manage the keys but cannot decrypt with them; the "
        "deployment_role_arn is added to them",
    )
    users: tuple[RoleArn, ...] = Field(
        min_length=1,
        description="IAM role ARNs that encrypt and decrypt; never also an administrator, and "
        "never the deployment_role_arn",
    )

    @model_validator(mode="after")
    def _administrators_are_not_users(self) -> KeyAccess:
        both = sorted(set(self.administrators) & set(self.users))
        if both:
            raise ValueError(
                f"{', '.join(both)} is both key administrator and key user (separation of duties)"
            )
        return self


class NetworkSettings(_Model):
    """The private-only VPC that holds PHI: no internet or NAT gateway, AWS services reached
    through gateway and PrivateLink endpoints."""

    vpc_cidr: PrivateCidr = Field(
        description="a private (RFC 1918) IPv4 CIDR, /16 to /24, host bits zero; no "
        "ingest.vpn.onprem_cidrs overlaps it"
    )
    az_count: int = Field(ge=2, le=4, description="availability zones; two or more for HA")
    extra_interface_endpoints: tuple[str, ...] = Field(
        default=(),
        description="PrivateLink services beyond the required set, e.g. 'healthlake': VPC "
        "endpoint service short names (lower-case letters, digits, '.' and '-')",
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

    peer_ip: str = Field(
        description="public IPv4 address of the on-premises VPN device: one the IANA IPv4 "
        "Special-Purpose Address Registry marks globally reachable (not private, shared, "
        "loopback, link-local, benchmarking, reserved or multicast space); the RFC 5737 "
        "documentation ranges are allowed as placeholders"
    )
    bgp_asn: int = Field(
        ge=1,
        le=2147483647,
        description="the site's BGP ASN: not one the IANA registry reserves, nor one AWS "
        "reserves for customer gateways in the environment's region (requirements/"
        "aws_values.py; a private ASN is fine); different from amazon_side_asn",
    )
    amazon_side_asn: int = Field(
        default=64512,
        ge=64512,
        le=65534,
        description="the virtual private gateway's BGP ASN (a private ASN); differs from bgp_asn",
    )
    onprem_cidrs: tuple[PrivateCidr, ...] = Field(
        min_length=1,
        description="the site's private (RFC 1918) IPv4 CIDRs, host bits zero; none overlaps "
        "network.vpc_cidr or another",
    )

    @field_validator("peer_ip")
    @classmethod
    def _public_ipv4(cls, value: str) -> str:
        # The documentation ranges (RFC 5737) stay allowed so that example files need not name
        # somebody's real address; every other special-purpose range is refused.
        problem = public_peer_problem(value, allow_documentation=True)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _distinct_asns(self) -> VpnPeer:
        if self.bgp_asn == self.amazon_side_asn:
            raise ValueError(f"bgp_asn {self.bgp_asn} equals amazon_side_asn; BGP needs two")
        return self


class DirectConnect(_Model):
    """A Direct Connect gateway associated with the VPC's virtual private gateway."""

    amazon_side_asn: int = Field(
        ge=64512, le=65534, description="the Direct Connect gateway's BGP ASN (a private ASN)"
    )


class IngestSettings(_Model):
    """How clinical sites reach the VPC: a site-to-site VPN, Direct Connect, or both (at least
    one: clinical data needs a path)."""

    vpn: VpnPeer | None = None
    direct_connect: DirectConnect | None = None

    @model_validator(mode="after")
    def _at_least_one_path(self) -> IngestSettings:
        if self.vpn is None and self.direct_connect is None:
            raise ValueError("configure vpn, direct_connect or both: clinical data needs a path")
        return self


class LogSettings(_Model):
    """Retention of the environment's audit logs (HIPAA 45 CFR 164.316(b)(2): six years)."""

    audit_retention_days: int = Field(
        description="CloudWatch retention of audit logs (flow logs, VPN tunnel logs, function "
        f"logs): at least {HIPAA_MIN_AUDIT_RETENTION_DAYS} (HIPAA six years) and a CloudWatch "
        "Logs retention value ("
        + ", ".join(
            str(days)
            for days in sorted(CLOUDWATCH_RETENTION_DAYS)
            if days >= HIPAA_MIN_AUDIT_RETENTION_DAYS
        )
        + ")"
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
    """The environment's hardened S3 buckets (SSE-KMS with a CMK, versioning, TLS only)."""

    bucket_prefix: str = Field(
        description="globally unique prefix for bucket names: 3-32 lowercase letters, digits "
        "or hyphens, starting and ending with a letter or digit (it starts every bucket name)"
    )
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

    datastore_name: str = Field(
        description="the HealthLake datastore's name: 1-256 letters, digits, spaces and "
        "_ . : / = + % @ -"
    )
    region: Region | None = Field(
        default=None,
        description="the datastore's region when the environment's region has no HealthLake "
        "(default: region); it must be in allowed_regions (for jurisdiction: EU, an EU region) "
        "and offer HealthLake (modules/fhir.py HEALTHLAKE_REGIONS; not eu-central-1). When it "
        "is not region, the <env>-fhir stack runs there (same account, role, tags) with that "
        "region's own PHI key, logs key and buckets <bucket_prefix>-fhir-<region> (imports, "
        "job results, exports) and <bucket_prefix>-access-logs-<region>: HealthLake uses S3 "
        "buckets and KMS keys of its own region only",
    )
    smart_on_fhir: SmartOnFhir | None = Field(
        default=None,
        description="the SMART-on-FHIR identity provider; its IdP Lambda is in the datastore's "
        "region",
    )


class ProcessingBasisSettings(_Model):
    """The permit or legal basis every feature record is processed under (its
    `processing_basis` column); which kinds exist depends on the jurisdiction."""

    kind: str = Field(
        description="one of the jurisdiction's bases (ml/feature_spec.py): for US "
        "hipaa-de-identified, hipaa-limited-data-set, hipaa-research-waiver or "
        "hipaa-authorization; for EU ehds-data-permit, gdpr-art-9-2-j or gdpr-art-9-2-a"
    )
    reference: str | None = Field(
        default=None,
        description="the permit, waiver or agreement identifier: 1-63 letters, digits or "
        ". _ / - starting with a letter or digit (it is written into every record); required "
        "for hipaa-limited-data-set, hipaa-research-waiver, ehds-data-permit and gdpr-art-9-2-j",
    )


class FeatureBuilderSettings(_Model):
    """The SageMaker Processing job that turns a FHIR export into feature records."""

    image: str = Field(
        description="the feature-builder image, a private ECR image pinned by digest "
        "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:<64 hex>; a tag can be "
        "moved to other code after review), in this environment's own account and region "
        "(ECR replicates it there, see ml.images)"
    )
    instance_type: ProcessingInstanceType = Field(
        description="an instance type SageMaker offers for Processing jobs (botocore's model "
        "of CreateProcessingJob)"
    )
    instance_count: int = Field(
        description="instances the export's partitions are sharded over: 1 to 100"
    )
    partitions: int = Field(
        description="patient partitions the export is split into first: 1 to 10000, and at "
        "least instance_count (each instance gets whole partitions)"
    )
    max_bad_line_share: float = Field(
        default=0.01,
        description="above this share of bad input lines nothing is written: 0 to 0.5",
    )
    max_runtime_seconds: int = Field(
        default=3600,
        description="each job's time limit: 60 to 432000 (5 days, CreateProcessingJob's most)",
    )


class FeatureSettings(_Model):
    """SageMaker Feature Store groups and the job that fills them from HealthLake's FHIR
    exports."""

    groups: tuple[FeatureGroupSpec, ...] = Field(
        min_length=1,
        description="the feature groups, each one the feature builder can fill: its "
        "record_identifier names an entity the builder knows (patient_id or encounter_id), each "
        "feature is one the builder derives for that entity, with that type, its event_time is "
        "when such a record becomes true (event_time for patient_id, discharged_at for "
        "encounter_id), and it declares the String feature processing_basis",
    )
    processing_basis: ProcessingBasisSettings
    # Where HealthLake exports (StartFHIRExportJob) land in the raw bucket; the builder reads
    # nothing else.
    export_prefix: str = Field(
        default="fhir-export/",
        description="where HealthLake's exports land in the raw bucket, the only place the "
        "builder reads: S3 key segments of letters, digits and ! _ . ' ( ) -, each ending in /",
    )
    builder: FeatureBuilderSettings


class PipelineSettings(_Model):
    """The SageMaker Pipeline: preprocess, train, evaluate, condition on the gate, register."""

    name: str = Field(
        description="the pipeline's name: lower-case letters, digits and single hyphens, at "
        "most 45 characters (its features pipeline <name>-features and that one's "
        "-execution role must fit IAM's 64)"
    )
    model_package_group: str = Field(
        description="the registry group it registers into: lower-case letters, digits and "
        "single hyphens, at most 63 characters; one of ml.registry.model_package_groups"
    )
    processing_image: str = Field(
        description="the Preprocess, Evaluate and Baseline image: an ECR image URI pinned by "
        "@sha256: digest, in this environment's own account and region"
    )
    training_image: str = Field(
        description="an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repository>"
        ":<tag> or @sha256:<digest>), e.g. SageMaker's built-in XGBoost"
    )
    inference_image: str | None = Field(
        default=None,
        description="the image registered for serving (default: training_image), in this "
        "environment's own account and region; whichever serves is pinned by @sha256: digest",
    )
    processing_instance_type: ProcessingInstanceType = Field(
        description="the processing steps' instance type: one SageMaker offers for Processing "
        "jobs (botocore's model of CreateProcessingJob)"
    )
    training_instance_type: TrainingInstanceType = Field(
        description="the training step's instance type: one SageMaker offers for training "
        "jobs (botocore's model of CreateTrainingJob)"
    )
    metric_name: str = Field(
        description="the evaluation metric the gate judges: auc, accuracy, f1, precision or "
        "recall (what the Evaluate step reports)"
    )
    metric_threshold: float = Field(
        description="the gate: a model scoring below it is never registered, so never reaches "
        "a human reviewer; 0 < threshold <= 1"
    )
    max_runtime_seconds: int = Field(description="each job's time limit: 60 to 432000 (5 days)")
    # Strict: a YAML `true` is not 1, and "200" is not a number here.
    hyperparameters: dict[str, Hyperparameter] = Field(
        description="the built-in XGBoost algorithm's hyperparameters, validated as its "
        "container does (its ranges, no unknown key; ml/hyperparameters.py); num_round, "
        "objective (binary:logistic) and eval_metric (the metric_name: early stopping optimises "
        "what the gate judges) are required; each value a number or text, never a boolean (a "
        "YAML true is not 1)"
    )


class RegistrySettings(_Model):
    """The Model Registry: a version is approved by a human (PendingManualApproval)."""

    model_package_groups: tuple[str, ...] = Field(
        min_length=1,
        description="the model package groups: each 1-63 lower-case letters, digits and single "
        "hyphens, starting and ending with a letter or digit; none listed twice",
    )
    production_account_id: AccountId = Field(
        description="quoted 12-digit account id: the only account that may read approved model "
        "packages (this account itself in prod)"
    )


class EnclaveSettings(_Model):
    """The Graviton Auto Scaling group whose hosts run the patient-token Nitro Enclave."""

    instance_type: Ec2InstanceType = Field(
        description="an EC2 instance type (botocore's model of CreateLaunchTemplate), Graviton "
        "only: c7g, m7g, r7g or a later generation (c8g, m8g, r8g, ...), the base family (no "
        "variant such as c7gn, no metal), xlarge or larger"
    )
    min_size: int = Field(description="at least 0; min_size <= desired_capacity <= max_size")
    max_size: int = Field(description="at least 1; min_size <= desired_capacity <= max_size")
    desired_capacity: int = Field(
        description="at least 0; min_size <= desired_capacity <= max_size"
    )
    target_cpu_percent: int = Field(description="the scaling policy's CPU target: 10 to 90 %")
    # PCR0 of the patient-token enclave image, as `nitro-cli build-enclave` prints it (CI's
    # image build records it); the patient-token key decrypts only for that image.
    image_sha384: str = Field(
        description="PCR0 of the patient-token enclave image as nitro-cli build-enclave prints "
        "it: 96 lower-case hex characters (SHA-384); the patient-token key decrypts for that "
        "image only"
    )
    memory_mib: int = Field(
        description="MiB given to the enclave: at least 512, leaving the parent at least 2048 "
        "MiB of the instance type's memory"
    )
    cpu_count: int = Field(
        description="vCPUs given to the enclave: at least 1, leaving the parent at least 2 of "
        "the instance type's vCPUs"
    )


class InferenceSettings(_Model):
    """What serves an approved version; the version itself (model archive, image) comes from
    the registry, deployed by the deployer, never from this file."""

    model_name: str = Field(
        description="the endpoint that serves approved versions (the deployer creates it on "
        "approval): lower-case letters, digits and single hyphens; name and model_name "
        "together at most 44 characters (SageMaker names are at most 63). The image served is "
        "ml.pipeline.inference_image, pinned by @sha256: digest"
    )
    endpoint_instance_type: EndpointInstanceType = Field(
        description="an instance type SageMaker offers for endpoints (botocore's model of "
        "CreateEndpointConfig)"
    )
    endpoint_instance_count: int = Field(description="endpoint instances: at least 1")
    data_capture_sampling_percent: int = Field(
        description="share of requests captured for Model Monitor: 1 to 100"
    )
    # Approved versions kept deployable for rollback (the deployer deletes older ones).
    retained_versions: int = Field(
        default=3,
        description="earlier approved versions kept deployable for rollback (the deployer "
        "deletes older ones): 2 to 10",
    )
    enclave: EnclaveSettings


class MonitoringSettings(_Model):
    """The Model Monitor data-quality schedule on the endpoint's captured requests."""

    monitor_image: str = Field(
        description="the Model Monitor analyzer image AWS publishes for the region: an ECR "
        "image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or "
        "@sha256:<digest>)"
    )
    instance_type: MonitoringInstanceType = Field(
        description="the monitoring job's instance type: one SageMaker offers for data-quality "
        "jobs (botocore's model of CreateDataQualityJobDefinition)"
    )
    schedule_expression: str = Field(
        description="cron(0 * ? * * *) hourly, cron(0 H ? * * *) daily at hour H (0-23) or "
        "cron(0 H/N ? * * *) every N hours (1-24)"
    )
    max_runtime_seconds: int = Field(
        description="each run's time limit: 60 to 86400, and within the schedule's interval "
        "(a run ends before the next starts)"
    )


class ReplicationDestinationSettings(_Model):
    """A registry (account and region) ECR copies every push to."""

    account_id: AccountId = Field(description="quoted 12-digit account id")
    region: Region = Field(description="an AWS region name")


class ImagesSettings(_Model):
    """Where CI's one build of each image goes. The account that builds lists the accounts
    ECR replicates to; each of those names the one account it receives from."""

    replicate_to: tuple[ReplicationDestinationSettings, ...] = Field(
        default=(),
        description="in the account that builds: the registries ECR replicates to; never this "
        "registry itself, none twice, and not together with replicated_from (ECR does not "
        "replicate a replicated image onwards)",
    )
    replicated_from: AccountId | None = Field(
        default=None,
        description="in a receiving account: the one account (quoted 12-digit id) whose "
        "registry replicates into this one; not this account",
    )


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
    """GuardDuty and Security Hub, and what happens to a compromised instance."""

    finding_severity_threshold: float = Field(
        default=7.0,
        description="GuardDuty severity from which instances are quarantined: 1.0 to 8.9 "
        "(at least the HIGH band, 7.0-8.9, is always routed)",
    )


class TransferMechanism(StrEnum):
    """GDPR Chapter V's grounds for a transfer out of the EU."""

    ADEQUACY_DECISION = "adequacy-decision"  # Art. 45 (e.g. the EU-US Data Privacy Framework)
    STANDARD_CONTRACTUAL_CLAUSES = "standard-contractual-clauses"  # Art. 46(2)(c)
    BINDING_CORPORATE_RULES = "binding-corporate-rules"  # Art. 47


class DataTransfer(_Model):
    """A documented transfer of an EU environment's data or models to a non-EU account."""

    account_id: AccountId = Field(
        description="the non-EU environment's account that may read the EU environment's "
        "approved models"
    )
    mechanism: TransferMechanism = Field(
        description="the GDPR Chapter V ground: adequacy-decision (Art. 45), "
        "standard-contractual-clauses (Art. 46(2)(c)) or binding-corporate-rules (Art. 47)"
    )
    reference: str = Field(
        min_length=1,
        description="where the transfer is documented (agreement id, DPIA or register entry)",
    )


class _EnvironmentBase(_Model):
    name: str = Field(
        description="equals the folder name; 3-22 lowercase letters, digits or hyphens, "
        "starting with a letter and ending with a letter or digit"
    )
    owner: TagValue = Field(
        min_length=1,
        description="team accountable for the environment; becomes the owner tag, so an AWS "
        "tag value: at most 256 letters, numbers, spaces and _ . : / = + - @, not starting "
        "with aws: (in any case)",
    )
    account_id: AccountId = Field(
        description="quoted 12-digit string (an unquoted number loses leading zeros)"
    )
    region: Region = Field(
        description="an AWS region name (e.g. us-east-1); must be in allowed_regions"
    )
    allowed_regions: tuple[Region, ...] = Field(
        min_length=1,
        description="the residency allow-list of AWS region names; for a workload with "
        "jurisdiction: EU, EU regions only (eu-west-2 London is not EU)",
    )
    deployment_role_arn: RoleArn = Field(
        description="IAM role ARN Terraform assumes in the account: in account_id; it "
        "administers every key, so it is never a key user"
    )

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

    kind: Literal["workload"] = Field(description="selects this table's fields")
    jurisdiction: Jurisdiction = Field(
        description="US (needs HIPAA in compliance_scope) or EU (needs GDPR; EU regions "
        "only); decides which processing bases exist"
    )
    compliance_scope: tuple[ComplianceScope, ...] = Field(
        min_length=1,
        description="becomes the compliance-scope tag; includes HIPAA in a US environment, "
        "GDPR in an EU one",
    )
    data_classification: DataClassification = Field(
        description="becomes the data-classification tag"
    )
    production: bool = Field(
        description="true puts prevent_destroy on every data store and key, and the image "
        "served must be pinned by @sha256: digest; becomes the production tag"
    )
    keys: KeyAccess = Field(
        description="the environment's customer-managed keys (PHI data, logs, ML artifacts, "
        "feature store, alerts): nobody both administers and uses one"
    )
    network: NetworkSettings
    ingest: IngestSettings
    logs: LogSettings
    storage: StorageSettings
    ml: MlSettings = Field(
        description="ml.pipeline.model_package_group must be one of "
        "ml.registry.model_package_groups"
    )
    security: SecuritySettings = SecuritySettings()
    data_transfers: tuple[DataTransfer, ...] = Field(
        default=(),
        description="EU environments only: each non-EU account allowed to read this "
        "environment's approved models, with its GDPR Chapter V mechanism",
    )

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
        if self.data_transfers and self.jurisdiction is not Jurisdiction.EU:
            raise ValueError(
                "data_transfers: only an EU environment transfers data out of the EU (GDPR "
                "Chapter V); remove it"
            )
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

    bucket: str = Field(
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9-]+[a-z0-9]$",
        description="the Terraform state bucket; it and its access-log bucket "
        "<bucket>-access-logs follow S3's general purpose bucket naming rules (no reserved "
        "prefix or suffix such as xn-- or -s3alias), so it has at most 51 characters",
    )
    keys: KeyAccess = Field(
        description="the state key's administrators and users (the CI roles that run "
        "Terraform); the deployment_role_arn administers it, so it is never a user"
    )
    noncurrent_version_days: int = Field(
        ge=30, le=3650, description="days a superseded state version is kept"
    )


class AuditSettings(_Model):
    """The organization trail and AWS Config, delivered to the Object-Locked log archive."""

    log_archive_bucket: str = Field(
        description="the archive bucket's name: 3-48 lowercase letters, digits or hyphens, "
        "starting and ending with a letter or digit; it and its access-log and Config history "
        "buckets (<name>-access-logs, <name>-config-history) follow S3's general purpose "
        "bucket naming rules (no reserved prefix or suffix such as xn-- or -s3alias)"
    )
    retention_days: int = Field(
        description="trail events in CloudWatch Logs and AWS Config's history: a CloudWatch "
        "Logs retention value of at least 2192 days (six years)"
    )
    object_lock_days: int = Field(
        description="WORM retention of every log file: 2192 (six years) to 36500"
    )


class OrganizationEnvironment(_EnvironmentBase):
    """The management account: every stack's Terraform state, the organization (OUs, member
    accounts, SCPs, Control Tower) and its audit trail."""

    kind: Literal["organization"] = Field(description="selects this table's fields")
    organization_id: str = Field(
        pattern=r"^o-[a-z0-9]{10,32}$", description="the existing organization (o-...)"
    )
    keys: KeyAccess = Field(
        description="administrators and users (auditors) of the audit keys: trail, logs, alerts"
    )
    audit: AuditSettings
    state_backend: StateBackendSettings
    governance: GovernanceConfig = Field(
        description="governance.home_region equals region (Control Tower's home region is the "
        "management region), and governance.governed_regions are within allowed_regions"
    )

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
