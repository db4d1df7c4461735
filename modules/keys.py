"""KMS customer-managed keys, one per purpose, with duties separated in each key policy."""

from __future__ import annotations

import re
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


# arn:<partition>:s3:::<bucket>/<key>, no wildcard: one object each.
_S3_OBJECT_ARN = re.compile(r"^arn:aws(-[a-z]+)*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^*?]+$")


class KeyPurpose(StrEnum):
    PHI_DATA = "phi-data"
    LOGS = "logs"
    ML_ARTIFACTS = "ml-artifacts"
    FEATURE_STORE = "feature-store"
    TERRAFORM_STATE = "terraform-state"
    AUDIT = "audit"
    ALERTS = "alerts"
    # Re-identification of patient tokens: decrypts only inside the measured Nitro Enclave.
    PATIENT_TOKENS = "patient-tokens"


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
    # S3 objects the deployment itself writes (a job's input declared in Terraform, such as the
    # feature spec), encrypted with this key, and the roles that deploy them: those may have
    # S3 generate a data key for exactly these objects, and can never decrypt. The objects
    # are written without an S3 Bucket Key, so S3's encryption context is each object's ARN.
    deployed_objects: tuple[str, ...] = ()
    object_deployers: tuple[str, ...] = ()
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
        for arn in self.deployed_objects:
            if not _S3_OBJECT_ARN.match(arn):
                raise ValueError(f"deployed object {arn} must be an exact S3 object ARN")
        if bool(self.deployed_objects) != bool(self.object_deployers):
            raise ValueError("deployed_objects and object_deployers go together")
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
    if config.deployed_objects:
        statements.append(
            statement(
                "DeployersEncryptTheirDeclaredObjectsThroughS3Only",
                effect="Allow",
                principal={"AWS": sorted(set(config.object_deployers))},
                actions="kms:GenerateDataKey",
                resources="*",
                condition={
                    "StringEquals": {
                        "kms:ViaService": f"s3.{config.region}.amazonaws.com",
                        "kms:EncryptionContext:aws:s3:arn": sorted(set(config.deployed_objects)),
                    }
                },
            )
        )
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


# --- a key only an attested Nitro Enclave can use ----------------------------------------
#
# AWS KMS compares the enclave's signed attestation document (the `Recipient` parameter) with
# kms:RecipientAttestation:ImageSha384, the image measurement PCR0, and answers with the
# plaintext encrypted to the enclave's own public key. A request without an attestation
# document has no such key, so the condition fails and nothing is allowed.
ENCLAVE_RECIPIENT_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"]
# Everything that yields plaintext, or turns a chosen plaintext into a ciphertext the enclave
# would accept (a key substitution), for anyone not presenting the measured image.
ENCLAVE_ONLY_ACTIONS = [
    "kms:Decrypt",
    "kms:DeriveSharedSecret",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:GenerateRandom",
    "kms:ReEncrypt*",
]
IMAGE_SHA384_KEY = "kms:RecipientAttestation:ImageSha384"
_SHA384_HEX = re.compile(r"^[0-9a-f]{96}$")


class EnclaveKeyConfig(LayerConfig):
    """A key with administrators and one attested enclave as its only user."""

    purpose: KeyPurpose
    alias: str = Field(pattern=r"^alias/[A-Za-z0-9/_-]+$")
    account_id: str
    region: str
    administrators: tuple[str, ...] = Field(min_length=1)
    # The parent instance's role: its credentials sign the enclave's requests, and only the
    # attestation document inside them makes the request succeed.
    enclave_role: str = Field(pattern=r"^arn:aws:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$")
    image_sha384: str
    prevent_destroy: bool = False

    @model_validator(mode="after")
    def _measured_and_separated(self) -> EnclaveKeyConfig:
        if not _SHA384_HEX.match(self.image_sha384):
            raise ValueError("image_sha384 must be 96 lower-case hex characters (PCR0)")
        if self.enclave_role in self.administrators:
            raise ValueError(f"{self.enclave_role} cannot both administer and use a key")
        return self


def enclave_key_policy(config: EnclaveKeyConfig) -> str:
    """Administrators manage and never use; the enclave role decrypts and generates only with
    the measured image's attestation; everyone else, whatever a later statement or grant
    says, is denied every operation that yields or plants plaintext."""
    measured = {IMAGE_SHA384_KEY: config.image_sha384}
    return policy_document(
        statement(
            "KeyAdministratorsManageButCannotUse",
            effect="Allow",
            principal={"AWS": sorted(set(config.administrators))},
            actions=KEY_ADMINISTRATION_ACTIONS,
            resources="*",
        ),
        statement(
            "OnlyTheMeasuredEnclaveDecryptsAndGenerates",
            effect="Allow",
            principal={"AWS": config.enclave_role},
            actions=ENCLAVE_RECIPIENT_ACTIONS,
            resources="*",
            # IgnoreCase, as AWS documents for this key: nitro-cli prints lower case, but a
            # hand-copied upper-case value must not silently lock the enclave out.
            condition={"StringEqualsIgnoreCase": measured},
        ),
        statement(
            "NobodyElseGetsPlaintext",
            effect="Deny",
            principal={"AWS": "*"},
            actions=ENCLAVE_ONLY_ACTIONS,
            resources="*",
            condition={"StringNotEqualsIgnoreCase": measured},
        ),
    )


class CustomerManagedKey(Construct):
    """A symmetric KMS key with yearly rotation, a 30-day deletion window and an alias."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: CustomerManagedKeyConfig | EnclaveKeyConfig,
    ) -> None:
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
            policy=(
                enclave_key_policy(config)
                if isinstance(config, EnclaveKeyConfig)
                else key_policy(config)
            ),
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
    # The role that deploys (creates Lambda functions with CMK-encrypted environments, writes
    # the declared job inputs below).
    deployment_role: str | None = None
    # Per purpose, the exact ARNs of S3 objects the deployment writes encrypted with that key.
    deployed_objects: dict[KeyPurpose, tuple[str, ...]] = Field(default_factory=dict)
    # Production environment: every key refuses `terraform destroy`.
    production: bool = False

    def key_config(
        self, purpose: KeyPurpose, *uses: ServiceUse, deploys_functions: bool = False
    ) -> CustomerManagedKeyConfig:
        """The environment's key of one purpose in `region`. KMS keys and aliases are regional,
        so a key of the same purpose in another region (for a datastore there) has the same
        alias, administrators, users and protection, and its own service roles."""
        deployers = (self.deployment_role,) if deploys_functions and self.deployment_role else ()
        objects = self.deployed_objects.get(purpose, ())
        if objects and not self.deployment_role:
            raise ValueError(f"the {purpose.value} key has deployed objects but no deployer")
        return CustomerManagedKeyConfig(
            purpose=purpose,
            alias=f"alias/phi-ml/{self.environment}/{purpose.value}",
            account_id=self.account_id,
            region=self.region,
            administrators=self.administrators,
            users=self.users,
            service_uses=uses,
            service_roles=self.service_roles.get(purpose, ()),
            function_deployers=deployers,
            deployed_objects=objects,
            object_deployers=(self.deployment_role,) if objects and self.deployment_role else (),
            prevent_destroy=self.production,
        )


class Keys(Construct):
    """One customer-managed key per purpose, so that revoking or auditing one kind of data
    (PHI, logs, model artifacts, features, security alerts) never touches another."""

    def __init__(self, scope: Construct, id_: str, *, config: KeysConfig) -> None:
        super().__init__(scope, id_)

        def key(
            purpose: KeyPurpose, *uses: ServiceUse, deploys_functions: bool = False
        ) -> CustomerManagedKey:
            return CustomerManagedKey(
                self,
                purpose.value,
                config=config.key_config(purpose, *uses, deploys_functions=deploys_functions),
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
