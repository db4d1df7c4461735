"""From the validated organization environment to the configs of its stacks, in one place.

Like `layer_configs` for a workload, the loader calls this right after the schema: a value a
layer refuses (a bucket name the access-log sibling no longer fits, a retention CloudWatch Logs
does not offer) fails at load time naming the file's field, never as a raw model error while
a stack is built. Composition builds the organization's stacks from these same configs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from environments.layer_configs import LayerConfigError, build_layer_config
from environments.schema import OrganizationEnvironment
from modules.audit import AuditConfig, ConfigAggregatorConfig
from modules.keys import CustomerManagedKeyConfig, KeyPurpose, ServiceUse
from modules.security_alarms import SecurityAlarmsConfig
from modules.storage import HardenedBucketConfig
from requirements.aws_values import bucket_name_problem

STATE_KEY_ALIAS: Final = "alias/phi-ml/terraform-state"
ACCESS_LOGS_SUFFIX: Final = "-access-logs"


@dataclass(frozen=True)
class OrganizationConfigs:
    audit: AuditConfig
    audit_key: CustomerManagedKeyConfig
    audit_logs_key: CustomerManagedKeyConfig
    alerts_key: CustomerManagedKeyConfig
    alarms: SecurityAlarmsConfig
    aggregator: ConfigAggregatorConfig
    state_key: CustomerManagedKeyConfig
    state_access_logs_key: CustomerManagedKeyConfig
    state_bucket: HardenedBucketConfig
    state_access_logs_bucket: HardenedBucketConfig


def _check_bucket_names(field: str, *names: str) -> None:
    """S3's naming rules on a bucket and the siblings named after it, at the field that
    names them all (a valid name can still leave its sibling too long)."""
    for name in names:
        problem = bucket_name_problem(name)
        if problem:
            raise LayerConfigError(field, f"S3 bucket {problem}")


def organization_configs(organization: OrganizationEnvironment) -> OrganizationConfigs:
    """Every config the organization's stacks are built from; LayerConfigError naming the
    environment file's field when a layer refuses a value."""
    audit_values: dict[str, Any] = {
        "environment": organization.name,
        "organization_id": organization.organization_id,
        "account_id": organization.account_id,
        "region": organization.region,
        "log_archive_bucket_name": organization.audit.log_archive_bucket,
        "retention_days": organization.audit.retention_days,
        "object_lock_days": organization.audit.object_lock_days,
    }
    # The archive's siblings as the audit layer names them, judged before its config refuses
    # a long name with a bare pattern.
    unchecked = AuditConfig.model_construct(**audit_values)
    _check_bucket_names(
        "audit.log_archive_bucket",
        unchecked.log_archive_bucket_name,
        unchecked.access_log_bucket_name,
        unchecked.config_history_bucket_name,
    )
    _check_bucket_names(
        "state_backend.bucket",
        organization.state_backend.bucket,
        f"{organization.state_backend.bucket}{ACCESS_LOGS_SUFFIX}",
    )
    audit = build_layer_config(
        AuditConfig,
        "audit",
        {
            "environment": "name",
            "organization_id": "organization_id",
            "account_id": "account_id",
            "region": "region",
            "log_archive_bucket_name": "audit.log_archive_bucket",
            "retention_days": "audit.retention_days",
            "object_lock_days": "audit.object_lock_days",
        },
        **audit_values,
    )

    def audit_key(
        purpose: KeyPurpose,
        *uses: ServiceUse,
        roles: tuple[str, ...] = (),
        protects_archives: bool = False,
    ) -> CustomerManagedKeyConfig:
        return build_layer_config(
            CustomerManagedKeyConfig,
            "keys",
            {"administrators": "keys.administrators", "users": "keys.users"},
            purpose=purpose,
            alias=f"alias/phi-ml/{organization.name}/{purpose.value}",
            account_id=organization.account_id,
            region=organization.region,
            administrators=(*organization.keys.administrators, organization.deployment_role_arn),
            users=organization.keys.users,
            service_uses=uses,
            service_roles=roles,
            # The archive buckets refuse destruction; a deleted key would make their contents
            # unreadable anyway, 30 days later.
            prevent_destroy=protects_archives,
        )

    state = organization.state_backend
    state_fields = {
        "administrators": "state_backend.keys.administrators",
        "users": "state_backend.keys.users",
    }

    def state_key(purpose: KeyPurpose, alias: str, *uses: ServiceUse) -> CustomerManagedKeyConfig:
        return build_layer_config(
            CustomerManagedKeyConfig,
            "state_backend.keys",
            state_fields,
            purpose=purpose,
            alias=alias,
            account_id=organization.account_id,
            region=organization.region,
            administrators=(*state.keys.administrators, organization.deployment_role_arn),
            users=state.keys.users,
            service_uses=uses,
            # Without these keys no stack's state (or its access record) can be read: kept
            # like the bucket.
            prevent_destroy=True,
        )

    def state_bucket(name: str) -> HardenedBucketConfig:
        return build_layer_config(
            HardenedBucketConfig,
            "state_backend.bucket",
            {
                "name": "state_backend.bucket",
                "noncurrent_version_days": "state_backend.noncurrent_version_days",
            },
            name=name,
            account_id=organization.account_id,
            noncurrent_version_days=state.noncurrent_version_days,
            prevent_destroy=True,
        )

    return OrganizationConfigs(
        audit=audit,
        audit_key=audit_key(
            KeyPurpose.AUDIT,
            ServiceUse.CLOUDTRAIL,
            roles=(audit.config_role_arn,),
            protects_archives=True,
        ),
        audit_logs_key=audit_key(
            KeyPurpose.LOGS,
            ServiceUse.CLOUDWATCH_LOGS,
            ServiceUse.S3_SERVER_ACCESS_LOGS,
            protects_archives=True,
        ),
        alerts_key=audit_key(KeyPurpose.ALERTS, ServiceUse.CLOUDWATCH_ALARMS),
        alarms=build_layer_config(SecurityAlarmsConfig, "name", {}, environment=organization.name),
        aggregator=build_layer_config(
            ConfigAggregatorConfig,
            "name",
            {"environment": "name", "account_id": "account_id"},
            environment=organization.name,
            account_id=organization.account_id,
        ),
        state_key=state_key(KeyPurpose.TERRAFORM_STATE, STATE_KEY_ALIAS),
        state_access_logs_key=state_key(
            KeyPurpose.LOGS,
            f"{STATE_KEY_ALIAS}{ACCESS_LOGS_SUFFIX}",
            ServiceUse.S3_SERVER_ACCESS_LOGS,
        ),
        state_bucket=state_bucket(state.bucket),
        # Whole, never cut to fit: a truncated name may end in a hyphen (which S3 refuses) or
        # collide with another bucket. A state bucket too long for its sibling is refused.
        state_access_logs_bucket=state_bucket(f"{state.bucket}{ACCESS_LOGS_SUFFIX}"),
    )
