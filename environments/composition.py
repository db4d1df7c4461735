"""Environment composition: the only place with providers, backends, accounts and regions.

Each workload environment becomes the stacks `<env>-data` (keys, buckets) and `<env>-network`
(VPC, endpoints, flow logs, ingest); the organization environment adds `bootstrap`, which
creates the state bucket every other stack's S3 backend uses.
"""

from __future__ import annotations

from cdktf import App, LocalBackend, S3Backend, TerraformOutput, TerraformStack
from constructs import Construct

from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from environments.target import Target
from modules import aws
from modules.ingest import Ingest, IngestConfig, VpnPeerConfig
from modules.keys import (
    CustomerManagedKey,
    CustomerManagedKeyConfig,
    KeyPurpose,
    Keys,
    KeysConfig,
    ServiceUse,
)
from modules.network import Network, NetworkConfig
from modules.storage import HardenedBucket, HardenedBucketConfig, Storage, StorageConfig

STATE_KEY_ALIAS = "alias/phi-ml/terraform-state"
BOOTSTRAP_STACK = "bootstrap"


def default_tags(environment: WorkloadEnvironment | OrganizationEnvironment) -> dict[str, str]:
    if isinstance(environment, WorkloadEnvironment):
        classification = environment.data_classification.value
        scope = "+".join(s.value for s in environment.compliance_scope)
    else:
        classification = "internal"
        scope = "governance"
    return {
        "environment": environment.name,
        "owner": environment.owner,
        "data-classification": classification,
        "compliance-scope": scope,
        "managed-by": "terraform/phi-ml-platform",
    }


def _provider(
    stack: TerraformStack,
    environment: WorkloadEnvironment | OrganizationEnvironment,
    target: Target,
) -> None:
    aws.AwsProvider(
        stack,
        "aws",
        region=environment.region,
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


class PlatformStack(TerraformStack):
    """A stack with the environment's provider and the shared, encrypted, locked S3 backend."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        environment: WorkloadEnvironment,
        organization: OrganizationEnvironment,
        target: Target,
    ) -> None:
        super().__init__(scope, name)
        _provider(self, environment, target)
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


class DataStack(PlatformStack):
    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        environment: WorkloadEnvironment,
        organization: OrganizationEnvironment,
        target: Target,
    ) -> None:
        super().__init__(
            scope, name, environment=environment, organization=organization, target=target
        )
        self.keys = Keys(
            self,
            "keys",
            config=KeysConfig(
                environment=environment.name,
                account_id=environment.account_id,
                region=environment.region,
                administrators=(*environment.keys.administrators, environment.deployment_role_arn),
                users=environment.keys.users,
            ),
        )
        self.storage = Storage(
            self,
            "storage",
            config=StorageConfig(
                bucket_prefix=environment.storage.bucket_prefix,
                account_id=environment.account_id,
                noncurrent_version_days=environment.storage.noncurrent_version_days,
                audit_retention_days=environment.logs.audit_retention_days,
                production=environment.production,
            ),
            keys=self.keys,
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


class NetworkStack(PlatformStack):
    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        data: DataStack,
        environment: WorkloadEnvironment,
        organization: OrganizationEnvironment,
        target: Target,
    ) -> None:
        super().__init__(
            scope, name, environment=environment, organization=organization, target=target
        )
        logs_key = data.keys.logs
        self.network = Network(
            self,
            "network",
            config=NetworkConfig(
                environment=environment.name,
                account_id=environment.account_id,
                region=environment.region,
                vpc_cidr=environment.network.vpc_cidr,
                az_count=environment.network.az_count,
                extra_interface_endpoints=environment.network.extra_interface_endpoints,
                flow_log_retention_days=environment.logs.audit_retention_days,
            ),
            logs_key=logs_key,
        )
        vpn = environment.ingest.vpn
        direct_connect = environment.ingest.direct_connect
        self.ingest = Ingest(
            self,
            "ingest",
            config=IngestConfig(
                environment=environment.name,
                region=environment.region,
                account_id=environment.account_id,
                amazon_side_asn=vpn.amazon_side_asn if vpn else 64512,
                vpn=VpnPeerConfig(
                    peer_ip=vpn.peer_ip, bgp_asn=vpn.bgp_asn, onprem_cidrs=vpn.onprem_cidrs
                )
                if vpn
                else None,
                direct_connect_asn=direct_connect.amazon_side_asn if direct_connect else None,
                vpc_cidr=environment.network.vpc_cidr,
                tunnel_log_retention_days=environment.logs.audit_retention_days,
            ),
            vpc_id=self.network.vpc_id,
            route_table_id=self.network.route_table.id,
            logs_key=logs_key,
        )
        TerraformOutput(self, "vpc-id", value=self.network.vpc_id)
        TerraformOutput(self, "workload-subnet-ids", value=self.network.workload_subnet_ids)


class BootstrapStack(TerraformStack):
    """The state bucket and its key. Local backend: nothing exists to hold its state yet."""

    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        organization: OrganizationEnvironment,
        target: Target,
    ) -> None:
        super().__init__(scope, name)
        _provider(self, organization, target)
        LocalBackend(self, path="terraform.bootstrap.tfstate")
        state = organization.state_backend
        key = CustomerManagedKey(
            self,
            "state-key",
            config=CustomerManagedKeyConfig(
                purpose=KeyPurpose.TERRAFORM_STATE,
                alias=STATE_KEY_ALIAS,
                account_id=organization.account_id,
                region=organization.region,
                administrators=(*state.keys.administrators, organization.deployment_role_arn),
                users=state.keys.users,
                service_uses=(),
            ),
        )
        logs_key = CustomerManagedKey(
            self,
            "state-access-logs-key",
            config=CustomerManagedKeyConfig(
                purpose=KeyPurpose.LOGS,
                alias=f"{STATE_KEY_ALIAS}-access-logs",
                account_id=organization.account_id,
                region=organization.region,
                administrators=(*state.keys.administrators, organization.deployment_role_arn),
                users=state.keys.users,
                service_uses=(ServiceUse.S3_SERVER_ACCESS_LOGS,),
            ),
        )
        access_logs = HardenedBucket(
            self,
            "state-access-logs",
            config=HardenedBucketConfig(
                name=f"{state.bucket}-access-logs"[:63],
                account_id=organization.account_id,
                noncurrent_version_days=state.noncurrent_version_days,
                prevent_destroy=True,
            ),
            kms_key=logs_key,
            access_logs=None,
        )
        self.state_bucket = HardenedBucket(
            self,
            "state",
            config=HardenedBucketConfig(
                name=state.bucket,
                account_id=organization.account_id,
                noncurrent_version_days=state.noncurrent_version_days,
                prevent_destroy=True,
            ),
            kms_key=key,
            access_logs=access_logs,
        )
        TerraformOutput(self, "state-bucket", value=self.state_bucket.bucket_name)
        TerraformOutput(self, "state-key-arn", value=key.key_arn)


def build_app(
    environments: list[WorkloadEnvironment | OrganizationEnvironment],
    *,
    organization: OrganizationEnvironment,
    outdir: str,
    target: Target,
) -> App:
    """Compose the stacks of the given environments (the organization's is always known:
    its state bucket is every backend's)."""
    app = App(outdir=outdir, stack_traces=False)
    for environment in environments:
        if isinstance(environment, OrganizationEnvironment):
            BootstrapStack(app, BOOTSTRAP_STACK, organization=environment, target=target)
            continue
        data = DataStack(
            app,
            f"{environment.name}-data",
            environment=environment,
            organization=organization,
            target=target,
        )
        NetworkStack(
            app,
            f"{environment.name}-network",
            data=data,
            environment=environment,
            organization=organization,
            target=target,
        )
    return app
