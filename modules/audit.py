"""Audit layer: the organization trail into an Object-Locked log archive, and AWS Config
recording every resource and judging it against the regulatory control catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from constructs import Construct
from pydantic import Field, field_validator

from modules import aws
from modules.config import LayerConfig
from modules.config_rules import conformance_pack_template
from modules.keys import CustomerManagedKey
from modules.policy import Statement, assume_role_policy, policy_document, statement
from modules.retention import SIX_YEAR_RETENTION_DAYS
from modules.storage import HardenedBucket, HardenedBucketConfig, ObjectLock
from policies.catalog import Catalog

# HIPAA 164.316(b)(2)(i): six years, leap days included.
SIX_YEARS_DAYS = 2192
# The CloudWatch Logs retention periods (it accepts no others) of six years or more.
CLOUDWATCH_RETENTION_DAYS = SIX_YEAR_RETENTION_DAYS
# AWS Config keeps configuration items for 30 to 2557 days; the S3 history outlives that.
CONFIG_RETENTION_MAX_DAYS = 2557
CONFIG_RECORDER_POLICY = "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
CONFIG_ORGANIZATIONS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSConfigRoleForOrganizations"
# AWS services that write to a bucket they do not own send this ACL. With ACLs disabled
# (BucketOwnerEnforced) S3 still accepts it, so the condition AWS documents stays: it keeps
# the delivery statements identical to the ones AWS's own consoles write.
BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"

SnapshotFrequency = Literal[
    "One_Hour", "Three_Hours", "Six_Hours", "Twelve_Hours", "TwentyFour_Hours"
]


class AuditConfig(LayerConfig):
    """Names and retention of the audit layer. There is deliberately no switch for the trail's
    scope: it is always organization-wide, multi-region, with global events and validation."""

    environment: str = Field(pattern=r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")
    organization_id: str = Field(pattern=r"^o-[a-z0-9]{10,32}$")
    # The account holding the trail: the organization's management account (or CloudTrail's
    # delegated administrator).
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
    # At most 48 characters: the access-log and Config history buckets add a suffix to it.
    log_archive_bucket_name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,46}[a-z0-9]$")
    # Trail events in CloudWatch Logs, and AWS Config's own configuration history.
    retention_days: int
    # WORM retention of every log file in the archive.
    object_lock_days: int = Field(ge=SIX_YEARS_DAYS, le=36500)
    config_snapshot_frequency: SnapshotFrequency = "TwentyFour_Hours"

    @field_validator("retention_days")
    @classmethod
    def _a_cloudwatch_period_of_six_years_or_more(cls, days: int) -> int:
        if days not in CLOUDWATCH_RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in CLOUDWATCH_RETENTION_DAYS)
            raise ValueError(
                f"{days} days: audit logs are kept at least six years ({SIX_YEARS_DAYS} days), "
                f"in a period CloudWatch Logs accepts: one of {allowed}"
            )
        return days

    @property
    def _prefix(self) -> str:
        return f"phi-ml-{self.environment}"

    @property
    def trail_name(self) -> str:
        return f"{self._prefix}-organization-trail"

    @property
    def trail_arn(self) -> str:
        """Known before the trail exists, so the bucket, role and key policies can name it."""
        return f"arn:aws:cloudtrail:{self.region}:{self.account_id}:trail/{self.trail_name}"

    @property
    def log_group_name(self) -> str:
        return f"/phi-ml/{self.environment}/cloudtrail"

    @property
    def access_log_bucket_name(self) -> str:
        return f"{self.log_archive_bucket_name}-access-logs"

    @property
    def config_history_bucket_name(self) -> str:
        return f"{self.log_archive_bucket_name}-config-history"

    @property
    def recorder_name(self) -> str:
        return self._prefix

    @property
    def config_role_name(self) -> str:
        return f"{self._prefix}-config-recorder"

    @property
    def config_role_arn(self) -> str:
        """The key policy of the trail key admits this role (Config encrypts with that key)."""
        return f"arn:aws:iam::{self.account_id}:role/{self.config_role_name}"

    @property
    def conformance_pack_name(self) -> str:
        return f"{self._prefix}-controls"


def cloudtrail_delivery_statements(
    bucket_name: str, *, account_id: str, organization_id: str, trail_arn: str
) -> list[Statement]:
    """CloudTrail may check the bucket and write log and digest files, for this trail only:
    the management account's own under AWSLogs/<account>/, every member's under
    AWSLogs/<organization>/."""
    from_this_trail = {"aws:SourceArn": trail_arn}
    service = {"Service": "cloudtrail.amazonaws.com"}
    write_condition = {
        "StringEquals": {"s3:x-amz-acl": BUCKET_OWNER_FULL_CONTROL, **from_this_trail}
    }
    bucket_arn = f"arn:aws:s3:::{bucket_name}"
    return [
        statement(
            "CloudTrailChecksTheBucketAcl",
            effect="Allow",
            principal=service,
            actions="s3:GetBucketAcl",
            resources=bucket_arn,
            condition={"StringEquals": from_this_trail},
        ),
        statement(
            "CloudTrailWritesTheManagementAccountsLogs",
            effect="Allow",
            principal=service,
            actions="s3:PutObject",
            resources=f"{bucket_arn}/AWSLogs/{account_id}/*",
            condition=write_condition,
        ),
        statement(
            "CloudTrailWritesTheOrganizationsLogs",
            effect="Allow",
            principal=service,
            actions="s3:PutObject",
            resources=f"{bucket_arn}/AWSLogs/{organization_id}/*",
            condition=write_condition,
        ),
    ]


def config_delivery_statements(bucket_name: str, *, account_id: str) -> list[Statement]:
    """AWS Config delivers with its recorder role; when that fails it retries as the service
    itself, which these statements admit for this account's history only."""
    from_this_account = {"aws:SourceAccount": account_id}
    service = {"Service": "config.amazonaws.com"}
    bucket_arn = f"arn:aws:s3:::{bucket_name}"
    return [
        statement(
            "ConfigChecksTheBucketAcl",
            effect="Allow",
            principal=service,
            actions="s3:GetBucketAcl",
            resources=bucket_arn,
            condition={"StringEquals": from_this_account},
        ),
        statement(
            "ConfigChecksTheBucketExists",
            effect="Allow",
            principal=service,
            actions="s3:ListBucket",
            resources=bucket_arn,
            condition={"StringEquals": from_this_account},
        ),
        statement(
            "ConfigWritesThisAccountsHistory",
            effect="Allow",
            principal=service,
            actions="s3:PutObject",
            resources=f"{bucket_arn}/AWSLogs/{account_id}/Config/*",
            condition={
                "StringEquals": {"s3:x-amz-acl": BUCKET_OWNER_FULL_CONTROL, **from_this_account}
            },
        ),
    ]


def trail_event_selectors(
    phi_bucket_arns: Sequence[str], *, audit_bucket_arns: Sequence[str] = ()
) -> list[Any]:
    """Every management event (KMS decryptions included: they show who read PHI), every
    object-level read and write in the PHI buckets, every read of the audit buckets, and
    every Lambda invocation.

    Advanced selectors replace the basic ones entirely, so management events need a selector
    of their own or the trail would stop recording them. The audit buckets' writes are left
    out on purpose: log delivery into them would record itself, without end.
    """
    field = aws.CloudtrailAdvancedEventSelectorFieldSelector
    selectors = [
        aws.CloudtrailAdvancedEventSelector(
            name="All management events",
            field_selector=[field(field="eventCategory", equal_to=["Management"])],
        ),
        aws.CloudtrailAdvancedEventSelector(
            name="Object reads and writes in the PHI buckets",
            field_selector=[
                field(field="eventCategory", equal_to=["Data"]),
                field(field="resources.type", equal_to=["AWS::S3::Object"]),
                field(field="resources.ARN", starts_with=[f"{arn}/" for arn in phi_bucket_arns]),
            ],
        ),
        aws.CloudtrailAdvancedEventSelector(
            name="Lambda invocations",
            field_selector=[
                field(field="eventCategory", equal_to=["Data"]),
                field(field="resources.type", equal_to=["AWS::Lambda::Function"]),
                field(field="eventName", equal_to=["Invoke"]),
            ],
        ),
    ]
    if audit_bucket_arns:
        selectors.append(
            aws.CloudtrailAdvancedEventSelector(
                name="Object reads in the audit buckets",
                field_selector=[
                    field(field="eventCategory", equal_to=["Data"]),
                    field(field="resources.type", equal_to=["AWS::S3::Object"]),
                    field(field="readOnly", equal_to=["true"]),
                    field(
                        field="resources.ARN",
                        starts_with=[f"{arn}/" for arn in audit_bucket_arns],
                    ),
                ],
            )
        )
    return selectors


def cloudtrail_logs_trust_policy(account_id: str, trail_arn: str) -> str:
    """Only CloudTrail, acting for this trail, may assume the log delivery role."""
    return policy_document(
        {
            "Sid": "ThisTrailAssumesTheRole",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id, "aws:SourceArn": trail_arn}
            },
        }
    )


def config_role_delivery_policy(bucket_name: str, *, account_id: str, key_arn: str) -> str:
    """The recorder role writes this account's history to its bucket, encrypted with the key."""
    bucket_arn = f"arn:aws:s3:::{bucket_name}"
    return policy_document(
        statement(
            "CheckTheHistoryBucketAcl",
            effect="Allow",
            actions="s3:GetBucketAcl",
            resources=bucket_arn,
        ),
        statement(
            "WriteThisAccountsHistoryOnly",
            effect="Allow",
            # AWS's documented recorder policy also lets Config set the (owner-only) ACL.
            actions=["s3:PutObject", "s3:PutObjectAcl"],
            resources=f"{bucket_arn}/AWSLogs/{account_id}/Config/*",
            condition={"StringEquals": {"s3:x-amz-acl": BUCKET_OWNER_FULL_CONTROL}},
        ),
        statement(
            "EncryptTheHistoryWithTheAuditKey",
            effect="Allow",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=key_arn,
        ),
    )


class Audit(Construct):
    """Every API call in every account and region of the organization, and every read or write
    of a PHI object, is recorded, encrypted with the trail key, integrity-validated and kept
    unalterable (S3 Object Lock, COMPLIANCE mode) for the retention period; every resource's
    configuration is recorded continuously and judged against the control catalog.

    Deploy in the organization's management account (an organization trail lives there).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AuditConfig,
        trail_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        phi_bucket_arns: Sequence[str],
        catalog: Catalog,
    ) -> None:
        super().__init__(scope, id_)
        if not phi_bucket_arns:
            raise ValueError(
                "the audit trail needs the ARNs of the PHI buckets whose object reads and "
                "writes it must record"
            )
        self.config = config
        self._buckets(config, trail_key, logs_key)
        self._trail(config, trail_key, logs_key, phi_bucket_arns)
        self._config_recording(config, trail_key, catalog)

    def _buckets(
        self, config: AuditConfig, trail_key: CustomerManagedKey, logs_key: CustomerManagedKey
    ) -> None:
        # S3 refuses an Object-Locked bucket as a server access log target, so the archive
        # logs to a sink of its own.
        self.access_logs = HardenedBucket(
            self,
            "access-logs",
            config=HardenedBucketConfig(
                name=config.access_log_bucket_name,
                account_id=config.account_id,
                noncurrent_version_days=config.object_lock_days,
                prevent_destroy=True,
            ),
            kms_key=logs_key,
            access_logs=None,
        )
        self.archive = HardenedBucket(
            self,
            "archive",
            config=HardenedBucketConfig(
                name=config.log_archive_bucket_name,
                account_id=config.account_id,
                noncurrent_version_days=config.object_lock_days,
                object_lock=ObjectLock(retention_days=config.object_lock_days),
                prevent_destroy=True,
            ),
            kms_key=trail_key,
            access_logs=self.access_logs,
            service_deliveries=cloudtrail_delivery_statements(
                config.log_archive_bucket_name,
                account_id=config.account_id,
                organization_id=config.organization_id,
                trail_arn=config.trail_arn,
            ),
        )
        # AWS Config does not deliver to a bucket with Object Lock default retention, so its
        # history has a versioned bucket of its own, kept as long as the archive.
        self.config_history = HardenedBucket(
            self,
            "config-history",
            config=HardenedBucketConfig(
                name=config.config_history_bucket_name,
                account_id=config.account_id,
                noncurrent_version_days=config.object_lock_days,
                prevent_destroy=True,
            ),
            kms_key=trail_key,
            access_logs=self.access_logs,
            service_deliveries=config_delivery_statements(
                config.config_history_bucket_name, account_id=config.account_id
            ),
        )
        self.archive_bucket_name: str = self.archive.bucket_name
        self.config_history_bucket_name: str = self.config_history.bucket_name

    def _trail(
        self,
        config: AuditConfig,
        trail_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        phi_bucket_arns: Sequence[str],
    ) -> None:
        log_group = aws.CloudwatchLogGroup(
            self,
            "trail-log-group",
            name=config.log_group_name,
            retention_in_days=config.retention_days,
            kms_key_id=logs_key.key_arn,
        )
        role = aws.IamRole(
            self,
            "trail-logs-role",
            name=f"phi-ml-{config.environment}-cloudtrail-logs",
            assume_role_policy=cloudtrail_logs_trust_policy(config.account_id, config.trail_arn),
        )
        delivery = aws.IamRolePolicy(
            self,
            "trail-logs-delivery",
            name="deliver-to-the-trail-log-group-only",
            role=role.id,
            policy=policy_document(
                statement(
                    "CreateStreamsAndPutEventsInTheTrailLogGroupOnly",
                    effect="Allow",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=f"{log_group.arn}:log-stream:*",
                )
            ),
        )
        self.trail = aws.Cloudtrail(
            self,
            "trail",
            name=config.trail_name,
            s3_bucket_name=self.archive.bucket_name,
            is_organization_trail=True,
            is_multi_region_trail=True,
            include_global_service_events=True,
            enable_log_file_validation=True,
            enable_logging=True,
            kms_key_id=trail_key.key_arn,
            # CloudTrail wants the log group ARN with its log-stream wildcard.
            cloud_watch_logs_group_arn=f"{log_group.arn}:*",
            cloud_watch_logs_role_arn=role.arn,
            # Who read the audit record is itself audit evidence (and HardenedBucket promises
            # that reads of an access-log sink are recorded by data events).
            advanced_event_selector=trail_event_selectors(
                phi_bucket_arns,
                audit_bucket_arns=[
                    f"arn:aws:s3:::{name}"
                    for name in (
                        config.log_archive_bucket_name,
                        config.config_history_bucket_name,
                        config.access_log_bucket_name,
                    )
                ],
            ),
            depends_on=[self.archive.policy, delivery],
        )
        self.trail_arn: str = self.trail.arn
        self.log_group_name: str = log_group.name

    def _config_recording(
        self, config: AuditConfig, trail_key: CustomerManagedKey, catalog: Catalog
    ) -> None:
        role = aws.IamRole(
            self,
            "config-role",
            name=config.config_role_name,
            assume_role_policy=assume_role_policy("config.amazonaws.com", config.account_id),
        )
        managed = aws.IamRolePolicyAttachment(
            self, "config-role-recording", role=role.name, policy_arn=CONFIG_RECORDER_POLICY
        )
        delivery_policy = aws.IamRolePolicy(
            self,
            "config-role-delivery",
            name="deliver-to-the-config-history-bucket-only",
            role=role.id,
            policy=config_role_delivery_policy(
                config.config_history_bucket_name,
                account_id=config.account_id,
                key_arn=trail_key.key_arn,
            ),
        )
        self.recorder = aws.ConfigConfigurationRecorder(
            self,
            "recorder",
            name=config.recorder_name,
            role_arn=role.arn,
            recording_group=aws.ConfigConfigurationRecorderRecordingGroup(
                all_supported=True, include_global_resource_types=True
            ),
            recording_mode=aws.ConfigConfigurationRecorderRecordingMode(
                recording_frequency="CONTINUOUS"
            ),
            depends_on=[managed],
        )
        delivery_channel = aws.ConfigDeliveryChannel(
            self,
            "delivery-channel",
            name=config.recorder_name,
            s3_bucket_name=self.config_history.bucket_name,
            s3_kms_key_arn=trail_key.key_arn,
            snapshot_delivery_properties=aws.ConfigDeliveryChannelSnapshotDeliveryProperties(
                delivery_frequency=config.config_snapshot_frequency
            ),
            depends_on=[self.recorder, delivery_policy, self.config_history.policy],
        )
        self.recorder_status = aws.ConfigConfigurationRecorderStatus(
            self,
            "recorder-status",
            name=self.recorder.name,
            is_enabled=True,
            depends_on=[delivery_channel],
        )
        aws.ConfigRetentionConfiguration(
            self,
            "config-retention",
            retention_period_in_days=min(config.retention_days, CONFIG_RETENTION_MAX_DAYS),
        )
        self.conformance_pack = aws.ConfigConformancePack(
            self,
            "conformance-pack",
            name=config.conformance_pack_name,
            template_body=conformance_pack_template(catalog),
            # Rules evaluate only what a running recorder records.
            depends_on=[self.recorder, self.recorder_status],
        )
        self.config_role_arn: str = role.arn
        self.recorder_name: str = self.recorder.name
        self.conformance_pack_name: str = self.conformance_pack.name


class ConfigAggregatorConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")
    # The security account: AWS Config's delegated administrator for the organization.
    account_id: str = Field(pattern=r"^[0-9]{12}$")


class ConfigAggregator(Construct):
    """One read-only view of every account's and every region's configuration and rule
    compliance. Belongs in the security account, registered as AWS Config's delegated
    administrator, not beside the trail."""

    def __init__(self, scope: Construct, id_: str, *, config: ConfigAggregatorConfig) -> None:
        super().__init__(scope, id_)
        role = aws.IamRole(
            self,
            "role",
            name=f"phi-ml-{config.environment}-config-aggregator",
            assume_role_policy=assume_role_policy("config.amazonaws.com", config.account_id),
        )
        organizations_read = aws.IamRolePolicyAttachment(
            self, "organizations-read", role=role.name, policy_arn=CONFIG_ORGANIZATIONS_POLICY
        )
        self.aggregator = aws.ConfigConfigurationAggregator(
            self,
            "aggregator",
            name=f"phi-ml-{config.environment}-organization",
            organization_aggregation_source=(
                aws.ConfigConfigurationAggregatorOrganizationAggregationSource(
                    all_regions=True, role_arn=role.arn
                )
            ),
            depends_on=[organizations_read],
        )
        self.aggregator_arn: str = self.aggregator.arn
