"""The hardened S3 bucket (the only way this code base makes a bucket) and the data buckets."""

from __future__ import annotations

from collections.abc import Sequence

from cdktf import TerraformResourceLifecycle
from constructs import Construct
from pydantic import Field, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.iam_statements import deny_insecure_transport
from modules.keys import CustomerManagedKey, Keys
from modules.policy import Statement, policy_document, statement

MINIMUM_TLS_VERSION = "1.2"
INCOMPLETE_UPLOAD_DAYS = 7


class ObjectLock(LayerConfig):
    """WORM retention in COMPLIANCE mode: nobody, root included, can shorten or delete."""

    retention_days: int = Field(ge=1, le=36500)


class HardenedBucketConfig(LayerConfig):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    account_id: str
    noncurrent_version_days: int = Field(ge=1, le=36500)
    object_lock: ObjectLock | None = None
    # Production data stores: `terraform destroy` or a replacing change is refused.
    prevent_destroy: bool = False

    @model_validator(mode="after")
    def _versions_outlive_lock(self) -> HardenedBucketConfig:
        if self.object_lock and self.noncurrent_version_days < self.object_lock.retention_days:
            raise ValueError(
                f"noncurrent_version_days {self.noncurrent_version_days} is shorter than the "
                f"object lock retention {self.object_lock.retention_days}"
            )
        return self


def bucket_policy_statements(
    bucket_arn: str, *, receives_access_logs_from: str | None = None
) -> list[Statement]:
    """Deny plain HTTP, TLS below 1.2 and any non-KMS encryption header.

    Puts without an encryption header are allowed: the bucket's default encryption applies
    its CMK to them. Requiring the header breaks AWS services that rely on default encryption.
    """
    resources = [bucket_arn, f"{bucket_arn}/*"]
    statements = [
        deny_insecure_transport(actions="s3:*", resources=resources),
        statement(
            "DenyTlsOlderThan12",
            effect="Deny",
            principal="*",
            actions="s3:*",
            resources=resources,
            condition={"NumericLessThan": {"s3:TlsVersion": MINIMUM_TLS_VERSION}},
        ),
        statement(
            "DenyEncryptionOtherThanKms",
            effect="Deny",
            principal="*",
            actions="s3:PutObject",
            resources=f"{bucket_arn}/*",
            condition={
                "Null": {"s3:x-amz-server-side-encryption": "false"},
                "StringNotEquals": {"s3:x-amz-server-side-encryption": ["aws:kms", "aws:kms:dsse"]},
            },
        ),
    ]
    if receives_access_logs_from is not None:
        statements.append(
            statement(
                "AllowS3ServerAccessLogDeliveryFromThisAccount",
                effect="Allow",
                principal={"Service": "logging.s3.amazonaws.com"},
                actions="s3:PutObject",
                resources=f"{bucket_arn}/*",
                condition={"StringEquals": {"aws:SourceAccount": receives_access_logs_from}},
            )
        )
    return statements


def _only_aws_service_grants(statements: Sequence[Statement]) -> None:
    """Extra statements may only let AWS services deliver (CloudTrail, Config, ...): never a
    person, an account or anyone, which the bucket's fixed policy exists to prevent."""
    for extra in statements:
        principal = extra.get("Principal")
        only_services = isinstance(principal, dict) and set(principal) == {"Service"}
        if extra.get("Effect") != "Allow" or not only_services:
            raise ValueError(
                f"bucket statement {extra.get('Sid')!r}: only Allow statements for AWS service "
                "principals may be added to a hardened bucket's policy"
            )


class HardenedBucket(Construct):
    """An S3 bucket that is encrypted with a CMK, versioned, private, TLS 1.2+ only, with
    ACLs disabled, server access logging and a lifecycle for old versions.

    `access_logs` is the bucket that receives this bucket's server access logs. Passing None
    makes this bucket the access-log sink itself: it accepts log delivery from this account
    and does not log to itself (that would loop); reads of it are recorded by CloudTrail
    data events instead. `service_deliveries` lets AWS services (CloudTrail, Config) write
    to an archive bucket; nothing else can be added to its policy.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: HardenedBucketConfig,
        kms_key: CustomerManagedKey,
        access_logs: HardenedBucket | None,
        service_deliveries: Sequence[Statement] = (),
    ) -> None:
        super().__init__(scope, id_)
        _only_aws_service_grants(service_deliveries)
        self.config = config
        self.kms_key = kms_key
        lifecycle = (
            TerraformResourceLifecycle(prevent_destroy=True) if config.prevent_destroy else None
        )
        self.bucket = aws.S3Bucket(
            self,
            "bucket",
            bucket=config.name,
            force_destroy=False,
            object_lock_enabled=config.object_lock is not None,
            lifecycle=lifecycle,
        )
        self.bucket_name: str = self.bucket.bucket
        self.bucket_arn: str = self.bucket.arn
        bucket_id = self.bucket.id

        aws.S3BucketOwnershipControls(
            self, "ownership", bucket=bucket_id, rule={"object_ownership": "BucketOwnerEnforced"}
        )
        self.public_access_block = aws.S3BucketPublicAccessBlock(
            self,
            "public-access-block",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        aws.S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=bucket_id,
            rule=[
                aws.S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=(
                        aws.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                            sse_algorithm="aws:kms", kms_master_key_id=kms_key.key_arn
                        )
                    ),
                    # One data key per bucket instead of a KMS call per object.
                    bucket_key_enabled=True,
                )
            ],
        )
        versioning = aws.S3BucketVersioningA(
            self,
            "versioning",
            bucket=bucket_id,
            versioning_configuration={"status": "Enabled"},
        )
        self.policy = aws.S3BucketPolicy(
            self,
            "policy",
            bucket=bucket_id,
            policy=policy_document(
                *bucket_policy_statements(
                    f"arn:aws:s3:::{config.name}",
                    receives_access_logs_from=config.account_id if access_logs is None else None,
                ),
                *service_deliveries,
            ),
            # A public access block applied first makes S3 reject a policy that would be public.
            depends_on=[self.public_access_block],
        )
        if access_logs is not None:
            aws.S3BucketLoggingA(
                self,
                "access-logging",
                bucket=bucket_id,
                target_bucket=access_logs.bucket.id,
                target_prefix=f"{config.name}/",
                # The sink's policy must admit log delivery before logging is switched on, or
                # S3 refuses the target (and logs would be lost until it does).
                depends_on=[access_logs.policy],
            )
        aws.S3BucketLifecycleConfiguration(
            self,
            "lifecycle",
            bucket=bucket_id,
            rule=[
                aws.S3BucketLifecycleConfigurationRule(
                    id="expire-noncurrent-versions-and-abandoned-uploads",
                    status="Enabled",
                    filter=[aws.S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    noncurrent_version_expiration=[
                        aws.S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                            noncurrent_days=config.noncurrent_version_days
                        )
                    ],
                    abort_incomplete_multipart_upload=[
                        aws.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                            days_after_initiation=INCOMPLETE_UPLOAD_DAYS
                        )
                    ],
                )
            ],
            # Lifecycle rules on an unversioned bucket would expire current data.
            depends_on=[versioning],
        )
        if config.object_lock is not None:
            aws.S3BucketObjectLockConfigurationA(
                self,
                "object-lock",
                bucket=bucket_id,
                rule={
                    "default_retention": {
                        "mode": "COMPLIANCE",
                        "days": config.object_lock.retention_days,
                    }
                },
                depends_on=[versioning],
            )


class StorageConfig(LayerConfig):
    bucket_prefix: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$")
    account_id: str
    noncurrent_version_days: int = Field(ge=1, le=36500)
    audit_retention_days: int = Field(ge=1)
    production: bool

    def bucket_name(self, purpose: str, *, region: str | None = None) -> str:
        """Bucket names are fixed by purpose, so other stacks can name them in policies. A
        bucket outside the environment's home region (S3 names are global) ends with its
        region: at most 32 + 1 + 11 + 1 + 14 characters, inside S3's 63."""
        return f"{self.bucket_prefix}-{purpose}" + (f"-{region}" if region else "")

    def bucket_config(
        self, purpose: str, retention_days: int, *, region: str | None = None
    ) -> HardenedBucketConfig:
        return HardenedBucketConfig(
            name=self.bucket_name(purpose, region=region),
            account_id=self.account_id,
            noncurrent_version_days=retention_days,
            prevent_destroy=self.production,
        )


class Storage(Construct):
    """The environment's buckets: raw clinical data, curated data, ML artifacts, the Feature
    Store offline store, and the access-log sink every one of them logs to."""

    def __init__(self, scope: Construct, id_: str, *, config: StorageConfig, keys: Keys) -> None:
        super().__init__(scope, id_)
        bucket_config = config.bucket_config

        self.access_logs = HardenedBucket(
            self,
            "access-logs",
            config=bucket_config("access-logs", config.audit_retention_days),
            kms_key=keys.logs,
            access_logs=None,
        )
        data_days = config.noncurrent_version_days
        self.raw = HardenedBucket(
            self,
            "raw",
            config=bucket_config("raw", data_days),
            kms_key=keys.phi_data,
            access_logs=self.access_logs,
        )
        # Every new raw object becomes an EventBridge event: what lands from the clinical sites
        # is visible to rules (alerting, a future import trigger) without polling. Training
        # starts on a finished feature build, not on these (modules/pipelines.py).
        aws.S3BucketNotification(
            self, "raw-object-events", bucket=self.raw.bucket.id, eventbridge=True
        )
        self.curated = HardenedBucket(
            self,
            "curated",
            config=bucket_config("curated", data_days),
            kms_key=keys.phi_data,
            access_logs=self.access_logs,
        )
        self.ml_artifacts = HardenedBucket(
            self,
            "ml-artifacts",
            config=bucket_config("ml-artifacts", data_days),
            kms_key=keys.ml_artifacts,
            access_logs=self.access_logs,
        )
        self.feature_offline = HardenedBucket(
            self,
            "feature-offline",
            config=bucket_config("feature-offline", data_days),
            kms_key=keys.feature_store,
            access_logs=self.access_logs,
        )
