"""KMS customer-managed keys, one per purpose, with duties separated in each key policy."""

from __future__ import annotations

from enum import StrEnum

from cdktf import TerraformResourceLifecycle
from constructs import Construct
from pydantic import Field, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.policy import Statement, policy_document, statement

# AWS's minimum is 7 days; 30 leaves time to notice and cancel an unintended deletion of a key
# whose loss would make every object it encrypts unreadable.
DELETION_WINDOW_DAYS = 30

KEY_ADMINISTRATION_ACTIONS = [
    "kms:CancelKeyDeletion",
    # Not kms:Create*: that includes kms:CreateGrant, with which an administrator could grant
    # itself decryption.
    "kms:CreateAlias",
    "kms:Delete*",
    "kms:Describe*",
    "kms:Disable*",
    "kms:Enable*",
    "kms:Get*",
    "kms:List*",
    "kms:Put*",
    "kms:Revoke*",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:Update*",
]
KEY_USAGE_ACTIONS = [
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
]


class KeyPurpose(StrEnum):
    PHI_DATA = "phi-data"
    LOGS = "logs"
    ML_ARTIFACTS = "ml-artifacts"
    FEATURE_STORE = "feature-store"
    TERRAFORM_STATE = "terraform-state"
    AUDIT = "audit"
    ALERTS = "alerts"


class ServiceUse(StrEnum):
    """AWS services that encrypt with a key on their own behalf, not a caller's."""

    CLOUDWATCH_LOGS = "cloudwatch-logs"
    S3_SERVER_ACCESS_LOGS = "s3-server-access-logs"
    # EventBridge writing to a CMK-encrypted SQS dead-letter queue or SNS topic.
    EVENTBRIDGE = "eventbridge"
    # CloudTrail encrypting the organization trail's log files.
    CLOUDTRAIL = "cloudtrail"
    # CloudWatch alarms publishing to a CMK-encrypted SNS topic.
    CLOUDWATCH_ALARMS = "cloudwatch-alarms"


class CustomerManagedKeyConfig(LayerConfig):
    purpose: KeyPurpose
    alias: str = Field(pattern=r"^alias/[A-Za-z0-9/_-]+$")
    account_id: str
    region: str
    administrators: tuple[str, ...] = Field(min_length=1)
    users: tuple[str, ...] = Field(min_length=1)
    service_uses: tuple[ServiceUse, ...] = ()
    # Roles the platform itself creates (pipeline, endpoint, import, functions), often in a
    # later stack. A key policy may not name a principal that does not exist yet, so these are
    # matched by aws:PrincipalArn instead: exact ARNs, no wildcards.
    service_roles: tuple[str, ...] = ()
    # Roles that create Lambda functions whose environment this key encrypts: Lambda needs
    # the creator's kms:Encrypt and kms:CreateGrant, through Lambda only, never Decrypt.
    function_deployers: tuple[str, ...] = ()
    # Production keys: `terraform destroy` (which would schedule the key's deletion and, 30
    # days later, make everything it encrypted unreadable) is refused.
    prevent_destroy: bool = False

    @model_validator(mode="after")
    def _nobody_both_administers_and_uses(self) -> CustomerManagedKeyConfig:
        for role in self.service_roles:
            if "*" in role or "?" in role:
                raise ValueError(f"service role {role} must be an exact ARN, not a pattern")
        both = sorted(set(self.administrators) & (set(self.users) | set(self.service_roles)))
        if both:
            raise ValueError(f"{', '.join(both)} cannot both administer and use a key")
        return self


def key_policy(config: CustomerManagedKeyConfig) -> str:
    """Administrators manage, users encrypt/decrypt, nobody does both.

    There is deliberately no statement for the account root: with it, any IAM policy in the
    account could grant decryption, and the key policy would stop being the single record of
    who can read PHI.
    """
    administrators = sorted(set(config.administrators))
    users = sorted(set(config.users))
    statements: list[Statement] = [
        statement(
            "KeyAdministratorsManageButCannotUse",
            effect="Allow",
            principal={"AWS": administrators},
            actions=KEY_ADMINISTRATION_ACTIONS,
            resources="*",
        ),
        statement(
            "KeyUsersEncryptAndDecrypt",
            effect="Allow",
            principal={"AWS": users},
            actions=KEY_USAGE_ACTIONS,
            resources="*",
        ),
        statement(
            "KeyUsersGrantOnlyToAwsServices",
            effect="Allow",
            principal={"AWS": users},
            actions=["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            resources="*",
            condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
    ]
    if config.service_roles:
        statements.extend(_service_role_statements(config))
    if config.function_deployers:
        deployers = {"AWS": sorted(set(config.function_deployers))}
        through_lambda = {"kms:ViaService": f"lambda.{config.region}.amazonaws.com"}
        statements += [
            statement(
                "DeployersEncryptFunctionEnvironmentsThroughLambdaOnly",
                effect="Allow",
                principal=deployers,
                actions="kms:Encrypt",
                resources="*",
                condition={"StringEquals": through_lambda},
            ),
            statement(
                "DeployersLetLambdaHoldAGrant",
                effect="Allow",
                principal=deployers,
                actions="kms:CreateGrant",
                resources="*",
                condition={
                    "StringEquals": through_lambda,
                    "Bool": {"kms:GrantIsForAWSResource": "true"},
                },
            ),
        ]
    for use in config.service_uses:
        statements.append(_service_statement(use, config.account_id, config.region))
    return policy_document(*statements)


def _service_role_statements(config: CustomerManagedKeyConfig) -> list[Statement]:
    # The account principal with an exact aws:PrincipalArn list admits those roles and no one
    # else, whether or not they exist when the key policy is written.
    only_these_roles = {"ArnEquals": {"aws:PrincipalArn": sorted(set(config.service_roles))}}
    account = {"AWS": f"arn:aws:iam::{config.account_id}:root"}
    return [
        statement(
            "PlatformServiceRolesEncryptAndDecrypt",
            effect="Allow",
            principal=account,
            actions=KEY_USAGE_ACTIONS,
            resources="*",
            condition=only_these_roles,
        ),
        statement(
            "PlatformServiceRolesGrantOnlyToAwsServices",
            effect="Allow",
            principal=account,
            actions=["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            resources="*",
            condition={**only_these_roles, "Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
    ]


def _service_statement(use: ServiceUse, account_id: str, region: str) -> Statement:
    if use is ServiceUse.CLOUDWATCH_LOGS:
        return statement(
            "CloudWatchLogsEncryptsThisAccountsLogGroups",
            effect="Allow",
            principal={"Service": f"logs.{region}.amazonaws.com"},
            actions=[
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:Encrypt",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
            ],
            resources="*",
            condition={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:aws:logs:{region}:{account_id}:log-group:*"
                    )
                }
            },
        )
    if use is ServiceUse.EVENTBRIDGE:
        return statement(
            "EventBridgeDeliversToEncryptedQueuesAndTopics",
            effect="Allow",
            principal={"Service": "events.amazonaws.com"},
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources="*",
            condition={
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": f"arn:aws:events:{region}:{account_id}:rule/*"},
            },
        )
    if use is ServiceUse.CLOUDTRAIL:
        return statement(
            "CloudTrailEncryptsThisAccountsTrails",
            effect="Allow",
            principal={"Service": "cloudtrail.amazonaws.com"},
            # Decrypt too: with an S3 Bucket Key on the archive, CloudTrail needs it.
            actions=["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*"],
            resources="*",
            condition={
                "StringEquals": {"aws:SourceAccount": account_id},
                "StringLike": {
                    "kms:EncryptionContext:aws:cloudtrail:arn": (
                        f"arn:aws:cloudtrail:*:{account_id}:trail/*"
                    )
                },
            },
        )
    if use is ServiceUse.CLOUDWATCH_ALARMS:
        return statement(
            "CloudWatchAlarmsPublishToEncryptedTopics",
            effect="Allow",
            principal={"Service": "cloudwatch.amazonaws.com"},
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources="*",
            condition={"StringEquals": {"aws:SourceAccount": account_id}},
        )
    return statement(
        "S3ServerAccessLogDeliveryEncrypts",
        effect="Allow",
        principal={"Service": "logging.s3.amazonaws.com"},
        actions=["kms:GenerateDataKey*"],
        resources="*",
        condition={"StringEquals": {"aws:SourceAccount": account_id}},
    )


class CustomerManagedKey(Construct):
    """A symmetric KMS key with yearly rotation, a 30-day deletion window and an alias."""

    def __init__(self, scope: Construct, id_: str, *, config: CustomerManagedKeyConfig) -> None:
        super().__init__(scope, id_)
        self.config = config
        self.key = aws.KmsKey(
            self,
            "key",
            description=f"PHI ML platform: {config.purpose.value}",
            enable_key_rotation=True,
            rotation_period_in_days=365,
            deletion_window_in_days=DELETION_WINDOW_DAYS,
            key_usage="ENCRYPT_DECRYPT",
            customer_master_key_spec="SYMMETRIC_DEFAULT",
            is_enabled=True,
            multi_region=False,
            policy=key_policy(config),
            tags={"key-purpose": config.purpose.value},
            lifecycle=(
                TerraformResourceLifecycle(prevent_destroy=True) if config.prevent_destroy else None
            ),
        )
        aws.KmsAlias(self, "alias", name=config.alias, target_key_id=self.key.key_id)
        self.key_arn: str = self.key.arn
        self.key_id: str = self.key.key_id
        self.alias_arn = f"arn:aws:kms:{config.region}:{config.account_id}:{config.alias}"


class KeysConfig(LayerConfig):
    environment: str
    account_id: str
    region: str
    administrators: tuple[str, ...] = Field(min_length=1)
    users: tuple[str, ...] = Field(min_length=1)
    # Per purpose, the exact ARNs of roles the platform creates that use that key.
    service_roles: dict[KeyPurpose, tuple[str, ...]] = Field(default_factory=dict)
    # The role that deploys (creates Lambda functions with CMK-encrypted environments).
    deployment_role: str | None = None
    # Production environment: every key refuses `terraform destroy`.
    production: bool = False


class Keys(Construct):
    """One customer-managed key per purpose, so that revoking or auditing one kind of data
    (PHI, logs, model artifacts, features, security alerts) never touches another."""

    def __init__(self, scope: Construct, id_: str, *, config: KeysConfig) -> None:
        super().__init__(scope, id_)

        def key(
            purpose: KeyPurpose, *uses: ServiceUse, deploys_functions: bool = False
        ) -> CustomerManagedKey:
            deployers = (
                (config.deployment_role,) if deploys_functions and config.deployment_role else ()
            )
            return CustomerManagedKey(
                self,
                purpose.value,
                config=CustomerManagedKeyConfig(
                    purpose=purpose,
                    alias=f"alias/phi-ml/{config.environment}/{purpose.value}",
                    account_id=config.account_id,
                    region=config.region,
                    administrators=config.administrators,
                    users=config.users,
                    service_uses=uses,
                    service_roles=config.service_roles.get(purpose, ()),
                    function_deployers=deployers,
                    prevent_destroy=config.production,
                ),
            )

        self.phi_data = key(KeyPurpose.PHI_DATA)
        self.logs = key(
            KeyPurpose.LOGS, ServiceUse.CLOUDWATCH_LOGS, ServiceUse.S3_SERVER_ACCESS_LOGS
        )
        # Also encrypts the ML layer's dead-letter queues and notification topic.
        self.ml_artifacts = key(
            KeyPurpose.ML_ARTIFACTS, ServiceUse.EVENTBRIDGE, deploys_functions=True
        )
        self.feature_store = key(KeyPurpose.FEATURE_STORE)
        # Security findings and alarms for the on-call, and the quarantine function.
        self.alerts = key(
            KeyPurpose.ALERTS,
            ServiceUse.EVENTBRIDGE,
            ServiceUse.CLOUDWATCH_ALARMS,
            deploys_functions=True,
        )
