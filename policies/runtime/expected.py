"""What an environment's deployment must contain, derived from its environment file exactly as
the composition derives it (environments/layer_configs.py, modules/*): bucket names and the key
each is encrypted with, key aliases, the VPC's required endpoints, names of feature groups,
model package groups, launch templates, functions, the trail and the recorder.

The checks discover resources by these names and by the `environment` tag the providers' default
tags put on everything; an expected resource that is not found fails its check, so an empty
account never passes. tests/test_runtime_checks.py compares these names with the synthesized
Terraform, so a change of naming in the modules cannot silently leave the checks behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from environments.layer_configs import layer_configs
from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from modules.audit import AuditConfig
from modules.detection import DETECTOR_FEATURES, standards_arns
from modules.endpoints import GATEWAY_ENDPOINTS
from modules.fhir import FHIR_BUCKET_PURPOSE
from modules.keys import KeyPurpose

# Which key encrypts which bucket (modules/storage.py `Storage`).
WORKLOAD_BUCKET_KEYS = {
    "access-logs": KeyPurpose.LOGS,
    "raw": KeyPurpose.PHI_DATA,
    "curated": KeyPurpose.PHI_DATA,
    "ml-artifacts": KeyPurpose.ML_ARTIFACTS,
    "feature-offline": KeyPurpose.FEATURE_STORE,
}
# A FHIR datastore outside the environment's region: that region's buckets and keys
# (modules/fhir.py `DatastoreRegionStorage`), which the datastore's imports and exports use.
DATASTORE_REGION_BUCKET_KEYS = {
    "access-logs": KeyPurpose.LOGS,
    FHIR_BUCKET_PURPOSE: KeyPurpose.PHI_DATA,
}
DATASTORE_REGION_KEYS = (KeyPurpose.PHI_DATA, KeyPurpose.LOGS)
# The keys of a workload environment (modules/keys.py `Keys`).
WORKLOAD_KEYS = (
    KeyPurpose.PHI_DATA,
    KeyPurpose.LOGS,
    KeyPurpose.ML_ARTIFACTS,
    KeyPurpose.FEATURE_STORE,
    KeyPurpose.ALERTS,
)
# The organization's keys (environments/composition.py `BootstrapStack`, `OrgAuditStack`).
STATE_KEY_ALIAS = "alias/phi-ml/terraform-state"
STATE_ACCESS_LOGS_KEY_ALIAS = f"{STATE_KEY_ALIAS}-access-logs"
ORGANIZATION_KEYS = (KeyPurpose.AUDIT, KeyPurpose.LOGS, KeyPurpose.ALERTS)
# What every function and launch template of the platform is tagged with (default_tags).
ENVIRONMENT_TAG = "environment"


def key_alias(environment: str, purpose: KeyPurpose) -> str:
    return f"alias/phi-ml/{environment}/{purpose.value}"


@dataclass(frozen=True)
class ExpectedBucket:
    name: str
    key_alias: str

    @property
    def arn(self) -> str:
        return f"arn:aws:s3:::{self.name}"


@dataclass(frozen=True)
class RegionalResources:
    """Buckets and key aliases expected in one region (an alias names a key of its region)."""

    region: str
    buckets: tuple[ExpectedBucket, ...]
    key_aliases: tuple[str, ...]


# The column of every feature record naming its patient (FHIR Patient.id), and the record
# identifier of the groups keyed by patient (one online record per patient).
PATIENT_COLUMN = "patient_id"


@dataclass(frozen=True)
class ExpectedFeatureData:
    """What the FHIR -> features flow leaves behind (ml.features of the environment file):
    the basis every record must carry and where HealthLake exports, Consent included, land."""

    # `<kind>:<reference>`, or `<kind>` without a reference: ml.features.processing_basis.
    processing_basis: str
    export_bucket: str
    export_prefix: str
    # Groups whose record identifier is the patient: GetRecord by patient id finds their record.
    patient_keyed_groups: tuple[str, ...]

    @property
    def export_uri(self) -> str:
        return f"s3://{self.export_bucket}/{self.export_prefix}"


@dataclass(frozen=True)
class ExpectedTrail:
    """The organization trail: in the management account, seen by members as a shadow trail."""

    arn: str
    account_id: str  # the account that owns it


@dataclass(frozen=True)
class ExpectedResources:
    environment: str
    account_id: str
    region: str
    # The role terraform assumes to deploy; on the emulator the checks assume it too.
    deployment_role_arn: str
    is_workload: bool
    buckets: tuple[ExpectedBucket, ...]
    key_aliases: tuple[str, ...]
    trail: ExpectedTrail
    # None: any recorder counts (a workload account's recorder is Control Tower's, named by it).
    config_recorder: str | None
    # Workload environments only (empty or None for the organization).
    vpc_endpoint_services: tuple[str, ...] = ()
    guardduty_features: tuple[str, ...] = ()
    security_hub_standards: tuple[str, ...] = ()
    endpoint_config_prefix: str | None = None
    feature_groups: tuple[str, ...] = ()
    model_package_groups: tuple[str, ...] = ()
    # The ECR repositories the environment's images are pulled from (modules/images.py).
    image_repositories: tuple[str, ...] = ()
    # Accounts a model package group policy may name: this one and the production account.
    model_package_readers: tuple[str, ...] = ()
    # Roles of the automation (pipelines, jobs): an approval by one of them is not a person's.
    automation_role_names: tuple[str, ...] = ()
    monitoring_schedules: tuple[str, ...] = ()
    launch_templates: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    fhir_datastore: str | None = None
    # Where the datastore is: the environment's region, or the one ml.fhir.region names.
    fhir_region: str | None = None
    # Buckets and keys in regions other than `region` (the datastore's region, if elsewhere).
    elsewhere: tuple[RegionalResources, ...] = ()
    phi_key_alias: str | None = None
    ml_key_alias: str | None = None
    feature_key_alias: str | None = None
    feature_data: ExpectedFeatureData | None = None

    @property
    def stack(self) -> str:
        """Where the findings come from, as policies.findings names a runtime target."""
        return f"{self.account_id}/{self.region}"


def organization_trail(organization: OrganizationEnvironment) -> ExpectedTrail:
    audit = audit_config(organization)
    return ExpectedTrail(arn=audit.trail_arn, account_id=organization.account_id)


def audit_config(organization: OrganizationEnvironment) -> AuditConfig:
    """The audit layer's names, as environments/composition.py `OrgAuditStack` builds them."""
    return AuditConfig(
        environment=organization.name,
        organization_id=organization.organization_id,
        account_id=organization.account_id,
        region=organization.region,
        log_archive_bucket_name=organization.audit.log_archive_bucket,
        retention_days=organization.audit.retention_days,
        object_lock_days=organization.audit.object_lock_days,
    )


def expected_resources(
    environment: WorkloadEnvironment | OrganizationEnvironment,
    organization: OrganizationEnvironment,
    *,
    region: str | None = None,
) -> ExpectedResources:
    if isinstance(environment, OrganizationEnvironment):
        return _organization(environment, region or environment.region)
    return _workload(environment, organization, region or environment.region)


def _workload(
    environment: WorkloadEnvironment, organization: OrganizationEnvironment, region: str
) -> ExpectedResources:
    configs = layer_configs(environment)
    name = environment.name
    inference = configs.inference
    fhir = configs.fhir
    elsewhere = (
        (
            RegionalResources(
                region=fhir.region,
                buckets=tuple(
                    ExpectedBucket(
                        configs.storage.bucket_name(purpose, region=fhir.region),
                        key_alias(name, key),
                    )
                    for purpose, key in DATASTORE_REGION_BUCKET_KEYS.items()
                ),
                key_aliases=tuple(key_alias(name, purpose) for purpose in DATASTORE_REGION_KEYS),
            ),
        )
        if fhir is not None and configs.fhir_region_keys is not None
        else ()
    )
    return ExpectedResources(
        environment=name,
        account_id=environment.account_id,
        region=region,
        deployment_role_arn=environment.deployment_role_arn,
        is_workload=True,
        buckets=tuple(
            ExpectedBucket(configs.storage.bucket_name(purpose), key_alias(name, key))
            for purpose, key in WORKLOAD_BUCKET_KEYS.items()
        ),
        key_aliases=tuple(key_alias(name, purpose) for purpose in WORKLOAD_KEYS),
        trail=organization_trail(organization),
        config_recorder=None,
        vpc_endpoint_services=tuple(
            f"com.amazonaws.{region}.{service}"
            for service in (*configs.network.interface_endpoints, *GATEWAY_ENDPOINTS)
        ),
        guardduty_features=DETECTOR_FEATURES,
        security_hub_standards=tuple(standards_arns(region).values()),
        endpoint_config_prefix=f"{inference.name}-",
        feature_groups=tuple(group.name for group in configs.features.groups),
        model_package_groups=configs.registry.model_package_groups,
        image_repositories=configs.images.repositories,
        model_package_readers=tuple(
            sorted({environment.account_id, configs.registry.production_account_id})
        ),
        automation_role_names=(
            configs.pipeline.execution_role_name,
            configs.feature_build.execution_role_name,
            configs.monitoring.monitor_role_name,
        ),
        monitoring_schedules=(configs.monitoring.schedule_name,),
        launch_templates=(f"{inference.name}-enclave",),
        functions=(
            configs.monitoring.rollback_name,
            configs.inference.deployer_name,
            configs.detection.quarantine_name,
        ),
        fhir_datastore=fhir.datastore_name if fhir else None,
        fhir_region=fhir.region if fhir else None,
        elsewhere=elsewhere,
        phi_key_alias=key_alias(name, KeyPurpose.PHI_DATA),
        ml_key_alias=key_alias(name, KeyPurpose.ML_ARTIFACTS),
        feature_key_alias=key_alias(name, KeyPurpose.FEATURE_STORE),
        feature_data=_feature_data(environment, configs.storage.bucket_name("raw")),
    )


def _feature_data(environment: WorkloadEnvironment, raw_bucket: str) -> ExpectedFeatureData:
    features = environment.ml.features
    basis = features.processing_basis
    return ExpectedFeatureData(
        processing_basis=f"{basis.kind}:{basis.reference}" if basis.reference else basis.kind,
        export_bucket=raw_bucket,
        export_prefix=features.export_prefix,
        patient_keyed_groups=tuple(
            group.name for group in features.groups if group.record_identifier == PATIENT_COLUMN
        ),
    )


def _organization(organization: OrganizationEnvironment, region: str) -> ExpectedResources:
    audit = audit_config(organization)
    name = organization.name
    state_bucket = organization.state_backend.bucket
    buckets = (
        ExpectedBucket(state_bucket, STATE_KEY_ALIAS),
        # The bootstrap stack truncates the name to S3's 63-character limit.
        ExpectedBucket(f"{state_bucket}-access-logs"[:63], STATE_ACCESS_LOGS_KEY_ALIAS),
        ExpectedBucket(audit.log_archive_bucket_name, key_alias(name, KeyPurpose.AUDIT)),
        ExpectedBucket(audit.access_log_bucket_name, key_alias(name, KeyPurpose.LOGS)),
        ExpectedBucket(audit.config_history_bucket_name, key_alias(name, KeyPurpose.AUDIT)),
    )
    return ExpectedResources(
        environment=name,
        account_id=organization.account_id,
        region=region,
        deployment_role_arn=organization.deployment_role_arn,
        is_workload=False,
        buckets=buckets,
        key_aliases=(
            STATE_KEY_ALIAS,
            STATE_ACCESS_LOGS_KEY_ALIAS,
            *(key_alias(name, purpose) for purpose in ORGANIZATION_KEYS),
        ),
        trail=organization_trail(organization),
        config_recorder=audit.recorder_name,
    )
