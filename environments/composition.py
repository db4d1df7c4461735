"""Environment composition: the only place with providers, backends, accounts and regions.

Each workload environment becomes the stacks `<env>-data` (keys, buckets, features),
`<env>-fhir` (HealthLake, in the environment's region or in `ml.fhir.region`), `<env>-network`
(VPC, endpoints, flow logs, ingest) and `<env>-ml` (pipeline, registry, inference,
monitoring); the organization environment adds `bootstrap`, which creates the state bucket
every S3 backend uses, its own included (see BootstrapStack for its first apply).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import App, S3Backend, TerraformOutput, TerraformStack
from constructs import Construct

from environments.layer_configs import LayerConfigs, layer_configs
from environments.organization_configs import STATE_KEY_ALIAS, organization_configs
from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from environments.target import Target
from modules import aws
from modules.audit import Audit, ConfigAggregator
from modules.deployment import Deployment
from modules.detection import AlertsTopic, Detection
from modules.feature_build import FeatureBuild
from modules.features import Features
from modules.fhir import DatastoreRegionStorage, Fhir, FhirConfig
from modules.governance import Governance
from modules.images import ImageRepositories
from modules.inference import Inference
from modules.ingest import Ingest
from modules.keys import (
    CustomerManagedKey,
    CustomerManagedKeyConfig,
    KeyPurpose,
    Keys,
)
from modules.monitoring import Monitoring
from modules.network import Network
from modules.pipelines import Pipelines, SourceRevision
from modules.registry import Registry
from modules.security_alarms import SecurityAlarms, alarm_name_prefix
from modules.storage import HardenedBucket, Storage
from policies.catalog import load_catalog

BOOTSTRAP_STACK = "bootstrap"


def default_tags(environment: WorkloadEnvironment | OrganizationEnvironment) -> dict[str, str]:
    if not isinstance(environment, WorkloadEnvironment):
        return {
            "environment": environment.name,
            "owner": environment.owner,
            "data-classification": "internal",
            "compliance-scope": "governance",
            "managed-by": "terraform/phi-ml-platform",
        }
    return {
        "environment": environment.name,
        "owner": environment.owner,
        "data-classification": environment.data_classification.value,
        "compliance-scope": "+".join(s.value for s in environment.compliance_scope),
        # Policy checks (CKV_PHI_13) and cost reports tell production resources by this tag.
        "production": "true" if environment.production else "false",
        "managed-by": "terraform/phi-ml-platform",
    }


def _provider(
    stack: TerraformStack,
    environment: WorkloadEnvironment | OrganizationEnvironment,
    target: Target,
    region: str | None = None,
) -> None:
    aws.AwsProvider(
        stack,
        "aws",
        # Another of the environment's allowed regions only for a stack that must live there
        # (a FHIR datastore where the environment's region has no HealthLake).
        region=region or environment.region,
        # Refuses to run if the credentials resolve to any other account.
        allowed_account_ids=[environment.account_id],
        assume_role=[
            aws.AwsProviderAssumeRole(
                role_arn=environment.deployment_role_arn,
                session_name=f"phi-ml-{stack.node.id}",
            )
        ],
        default_tags=[aws.AwsProviderDefaultTags(tags=default_tags(environment))],
        s3_use_path_style=True if target is Target.LOCAL else None,
    )


@dataclass(frozen=True)
class StackContext:
    """What every stack of a workload environment is built from."""

    environment: WorkloadEnvironment
    organization: OrganizationEnvironment
    target: Target
    configs: LayerConfigs
    source: SourceRevision


class BackendStack(TerraformStack):
    """A stack with its environment's provider and the shared, encrypted, locked S3 backend."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        environment: WorkloadEnvironment | OrganizationEnvironment,
        organization: OrganizationEnvironment,
        target: Target,
        region: str | None = None,
    ) -> None:
        super().__init__(scope, name)
        if region is not None and region not in environment.allowed_regions:
            raise ValueError(f"{name}: region {region} is outside allowed_regions")
        _provider(self, environment, target, region)
        state = organization.state_backend
        S3Backend(
            self,
            bucket=state.bucket,
            key=f"{environment.name}/{name}.tfstate",
            region=organization.region,
            encrypt=True,
            kms_key_id=(
                f"arn:aws:kms:{organization.region}:{organization.account_id}:{STATE_KEY_ALIAS}"
            ),
            use_path_style=True if target is Target.LOCAL else None,
        )
        # cdktf 0.21 predates the backend's native S3 locking (Terraform >= 1.10), which
        # replaces the DynamoDB lock table.
        self.add_override("terraform.backend.s3.use_lockfile", True)


class PlatformStack(BackendStack):
    """A stack of a workload environment (in its region, unless `region` names another of its
    allowed regions)."""

    def __init__(
        self, scope: Construct, name: str, *, context: StackContext, region: str | None = None
    ) -> None:
        super().__init__(
            scope,
            name,
            environment=context.environment,
            organization=context.organization,
            target=context.target,
            region=region,
        )


class GovernanceStack(BackendStack):
    """The organization: OUs, member accounts, SCPs, Control Tower, delegated administrators."""

    def __init__(
        self, scope: Construct, name: str, *, organization: OrganizationEnvironment, target: Target
    ) -> None:
        super().__init__(
            scope, name, environment=organization, organization=organization, target=target
        )
        self.governance = Governance(self, "governance", config=organization.governance)
        TerraformOutput(self, "organization-id", value=self.governance.organization_id)


class DataStack(PlatformStack):
    """Keys, buckets and the Feature Store: the data stores every other stack builds on."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        context: StackContext,
    ) -> None:
        super().__init__(scope, name, context=context)
        configs = context.configs
        self.keys = Keys(self, "keys", config=configs.keys)
        self.storage = Storage(self, "storage", config=configs.storage, keys=self.keys)
        self.features = Features(
            self,
            "features",
            config=configs.features,
            feature_key=self.keys.feature_store,
            offline_bucket=self.storage.feature_offline,
        )
        for key in (
            self.keys.phi_data,
            self.keys.logs,
            self.keys.ml_artifacts,
            self.keys.feature_store,
        ):
            TerraformOutput(self, f"{key.config.purpose.value}-key-arn", value=key.key_arn)
        for bucket in (
            self.storage.raw,
            self.storage.curated,
            self.storage.ml_artifacts,
            self.storage.feature_offline,
            self.storage.access_logs,
        ):
            TerraformOutput(self, f"{bucket.node.id}-bucket", value=bucket.bucket_name)


class FhirStack(PlatformStack):
    """The HealthLake FHIR datastore, apart from the data stack because AWS HealthLake exists
    only in some regions and not in the local emulator: everything else still applies.

    In the environment's region it reads the data stack's raw bucket with its PHI key. In
    another region (`ml.fhir.region`; same account, deployment role, tags and allow-list) the
    stack also holds that region's PHI key and FHIR bucket, which is all it uses: HealthLake's
    buckets and keys must be in its own region."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        data: DataStack,
        context: StackContext,
        config: FhirConfig,
    ) -> None:
        super().__init__(scope, name, context=context, region=config.region)
        region_keys = context.configs.fhir_region_keys
        if region_keys is None:
            phi_key, import_bucket = data.keys.phi_data, data.storage.raw
        else:
            storage = DatastoreRegionStorage(
                self, "region-storage", keys=region_keys, storage=context.configs.storage
            )
            phi_key, import_bucket = storage.phi_key, storage.bucket
        self.fhir = Fhir(self, "fhir", config=config, phi_key=phi_key, import_bucket=import_bucket)
        TerraformOutput(self, "fhir-datastore-endpoint", value=self.fhir.datastore_endpoint)
        TerraformOutput(self, "fhir-import-role-arn", value=self.fhir.import_role_arn)
        if region_keys is not None:
            TerraformOutput(self, "fhir-bucket", value=import_bucket.bucket_name)
            TerraformOutput(self, "phi-data-key-arn", value=phi_key.key_arn)


class NetworkStack(PlatformStack):
    """The private VPC, its endpoints and flow logs, and the ingest paths from the sites."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        data: DataStack,
        context: StackContext,
    ) -> None:
        super().__init__(scope, name, context=context)
        configs = context.configs
        logs_key = data.keys.logs
        self.network = Network(self, "network", config=configs.network, logs_key=logs_key)
        self.ingest = Ingest(
            self,
            "ingest",
            config=configs.ingest,
            vpc_id=self.network.vpc_id,
            route_table_id=self.network.route_table.id,
            logs_key=logs_key,
        )
        TerraformOutput(self, "vpc-id", value=self.network.vpc_id)
        TerraformOutput(self, "workload-subnet-ids", value=self.network.workload_subnet_ids)


class MlStack(PlatformStack):
    """From data to a governed model in production: feature build, pipeline, registry, the
    deployer that serves approved versions, monitor."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        data: DataStack,
        network: NetworkStack,
        context: StackContext,
    ) -> None:
        super().__init__(scope, name, context=context)
        configs = context.configs
        keys, storage = data.keys, data.storage
        vpc_id = network.network.vpc_id
        subnet_ids = network.network.workload_subnet_ids
        self.registry = Registry(
            self, "registry", config=configs.registry, notification_key=keys.ml_artifacts
        )
        self.images = ImageRepositories(self, "images", config=configs.images)
        self.feature_build = FeatureBuild(
            self,
            "feature-build",
            config=configs.feature_build,
            ml_key=keys.ml_artifacts,
            feature_key=keys.feature_store,
            raw_bucket=storage.raw,
            artifacts_bucket=storage.ml_artifacts,
            offline_bucket=storage.feature_offline,
            resolved_output_s3_uris=data.features.resolved_output_s3_uris,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
        )
        self.pipelines = Pipelines(
            self,
            "pipelines",
            config=configs.pipeline,
            ml_key=keys.ml_artifacts,
            feature_key=keys.feature_store,
            artifacts_bucket=storage.ml_artifacts,
            features_pipeline_arn=self.feature_build.pipeline_arn,
            offline_bucket_arn=storage.feature_offline.bucket_arn,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
            source=context.source,
        )
        self.inference = Inference(
            self,
            "inference",
            config=configs.inference,
            ml_key=keys.ml_artifacts,
            capture_bucket=storage.ml_artifacts,
            model_bucket_arn=storage.ml_artifacts.bucket_arn,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
        )
        self.monitoring = Monitoring(
            self,
            "monitoring",
            config=configs.monitoring,
            endpoint_name=self.inference.endpoint_name,
            endpoint_arn=self.inference.endpoint_arn,
            ml_key=keys.ml_artifacts,
            logs_key=keys.logs,
            artifacts_bucket=storage.ml_artifacts,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
            log_retention_days=context.environment.logs.audit_retention_days,
        )
        self.deployment = Deployment(
            self,
            "deployment",
            config=configs.deployment,
            inference=self.inference,
            monitoring=self.monitoring,
            approval_rule_name=self.registry.approval_rule_name,
            approval_rule_arn=self.registry.approval_rule_arn,
            ml_key=keys.ml_artifacts,
            logs_key=keys.logs,
            artifacts_bucket_name=storage.ml_artifacts.bucket_name,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
        )
        TerraformOutput(self, "pipeline-arn", value=self.pipelines.pipeline_arn)
        TerraformOutput(self, "features-pipeline-arn", value=self.feature_build.pipeline_arn)
        TerraformOutput(self, "endpoint-name", value=self.inference.endpoint_name)


class SecurityStack(PlatformStack):
    """The account's detection loop: GuardDuty and Security Hub as organization members,
    high-severity findings routed to the quarantine function and the on-call topic. (Its AWS
    Config recorder is Control Tower's: an enrolled account can hold only one.)"""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        data: DataStack,
        network: NetworkStack,
        context: StackContext,
    ) -> None:
        super().__init__(scope, name, context=context)
        self.detection = Detection(
            self,
            "detection",
            config=context.configs.detection,
            alerts_key=data.keys.alerts,
            logs_key=data.keys.logs,
            vpc_id=network.network.vpc_id,
            subnet_ids=network.network.workload_subnet_ids,
        )
        TerraformOutput(self, "alerts-topic-arn", value=self.detection.alerts_topic_arn)


class OrgAuditStack(BackendStack):
    """In the management account: the organization trail into the Object-Locked archive,
    CIS alarms on its log group, AWS Config with the catalog's conformance pack, and the
    organization-wide Config aggregator."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        organization: OrganizationEnvironment,
        workloads: list[WorkloadEnvironment],
        target: Target,
    ) -> None:
        super().__init__(
            scope, name, environment=organization, organization=organization, target=target
        )
        configs = organization_configs(organization)

        def key(id_: str, config: CustomerManagedKeyConfig) -> CustomerManagedKey:
            return CustomerManagedKey(self, id_, config=config)

        trail_key = key(f"{KeyPurpose.AUDIT.value}-key", configs.audit_key)
        logs_key = key(f"{KeyPurpose.LOGS.value}-key", configs.audit_logs_key)
        alerts_key = key(f"{KeyPurpose.ALERTS.value}-key", configs.alerts_key)
        self.audit = Audit(
            self,
            "audit",
            config=configs.audit,
            trail_key=trail_key,
            logs_key=logs_key,
            phi_bucket_arns=phi_bucket_arns(workloads),
            catalog=load_catalog(),
        )
        topic = AlertsTopic(
            self,
            "alerts",
            name=f"phi-ml-{organization.name}-security-alerts",
            display_name="PHI ML organization security alarms",
            alerts_key=alerts_key,
            account_id=organization.account_id,
            region=organization.region,
            alarm_prefix=alarm_name_prefix(organization.name),
            rule_arns=[],
        )
        SecurityAlarms(
            self,
            "alarms",
            config=configs.alarms,
            trail_log_group_name=self.audit.log_group_name,
            alerts_topic_arn=topic.topic_arn,
        )
        ConfigAggregator(
            self,
            "config-aggregator",
            config=configs.aggregator,
        )
        TerraformOutput(self, "trail-arn", value=self.audit.trail_arn)
        TerraformOutput(self, "archive-bucket", value=self.audit.archive_bucket_name)


def phi_bucket_arns(workloads: list[WorkloadEnvironment]) -> list[str]:
    """Every workload environment's buckets that hold patient data or what is derived from it:
    the organization trail records each object read and write in them."""
    arns: list[str] = []
    for workload in workloads:
        configs = layer_configs(workload)
        arns += [
            f"arn:aws:s3:::{configs.storage.bucket_name(purpose)}"
            for purpose in ("raw", "curated", "feature-offline", "ml-artifacts")
        ]
        # A datastore outside the home region imports from and exports to its own region's
        # bucket: FHIR records, like the raw bucket's. (The trail is multi-region.)
        if configs.fhir_bucket_name is not None:
            arns.append(f"arn:aws:s3:::{configs.fhir_bucket_name}")
    return arns


class BootstrapStack(BackendStack):
    """The state bucket and its key. Its own state lives in that bucket too, like every
    stack's: the first apply, before the bucket exists, runs with a local backend and pushes
    the state into the bucket afterwards (tools.terraform.deploy_bootstrap, `make
    bootstrap`), so no state file is left on a workstation."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        organization: OrganizationEnvironment,
        target: Target,
    ) -> None:
        super().__init__(
            scope, name, environment=organization, organization=organization, target=target
        )
        configs = organization_configs(organization)
        key = CustomerManagedKey(self, "state-key", config=configs.state_key)
        logs_key = CustomerManagedKey(
            self, "state-access-logs-key", config=configs.state_access_logs_key
        )
        access_logs = HardenedBucket(
            self,
            "state-access-logs",
            config=configs.state_access_logs_bucket,
            kms_key=logs_key,
            access_logs=None,
        )
        self.state_bucket = HardenedBucket(
            self,
            "state",
            config=configs.state_bucket,
            kms_key=key,
            access_logs=access_logs,
        )
        TerraformOutput(self, "state-bucket", value=self.state_bucket.bucket_name)
        TerraformOutput(self, "state-key-arn", value=key.key_arn)


def build_app(
    environments: list[WorkloadEnvironment | OrganizationEnvironment],
    *,
    selected: set[str] | None,
    outdir: str,
    target: Target,
    source: SourceRevision,
) -> App:
    """Compose the organization's stacks and those of the selected workload environments (all
    when None). Every environment is given, selected or not: the organization trail records
    the data buckets of all of them, whichever subset is being synthesized."""
    organization = next(e for e in environments if isinstance(e, OrganizationEnvironment))
    workloads = [e for e in environments if isinstance(e, WorkloadEnvironment)]
    app = App(outdir=outdir, stack_traces=False)
    bootstrap = BootstrapStack(app, BOOTSTRAP_STACK, organization=organization, target=target)
    governance = GovernanceStack(
        app, f"{organization.name}-governance", organization=organization, target=target
    )
    audit = OrgAuditStack(
        app,
        f"{organization.name}-audit",
        organization=organization,
        workloads=workloads,
        target=target,
    )
    # Deployment order for `cdktf deploy '*'` beyond the state reads cdktf already records:
    # every S3 backend lives in bootstrap's bucket; the accounts exist once governance applied.
    governance.add_dependency(bootstrap)
    audit.add_dependency(governance)
    for environment in workloads:
        if selected is not None and environment.name not in selected:
            continue
        context = StackContext(
            environment, organization, target, layer_configs(environment), source
        )
        data = DataStack(app, f"{environment.name}-data", context=context)
        data.add_dependency(governance)
        if context.configs.fhir is not None:
            fhir = FhirStack(
                app,
                f"{environment.name}-fhir",
                data=data,
                context=context,
                config=context.configs.fhir,
            )
            if context.configs.fhir_region_keys is not None:
                # It reads nothing from the data stack, so nothing orders it after governance.
                fhir.add_dependency(governance)
        network = NetworkStack(app, f"{environment.name}-network", data=data, context=context)
        MlStack(app, f"{environment.name}-ml", data=data, network=network, context=context)
        SecurityStack(
            app, f"{environment.name}-security", data=data, network=network, context=context
        )
    return app
