"""AWS HealthLake FHIR R4 datastore encrypted with the PHI key, and the role its imports use.

The AWS provider (5.100.0) has no HealthLake resource, so the datastore is an
`AWS::HealthLake::FHIRDatastore` inside a CloudFormation stack that Terraform manages.

A datastore outside the environment's home region (eu-research: HealthLake is not offered in
eu-central-1) gets that region's own PHI key and FHIR bucket (`DatastoreRegionStorage`):
HealthLake reads imports from, and writes job results and exports to, S3 buckets in its own
region only, and KMS keys never leave theirs.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from cdktf import TerraformResourceLifecycle
from constructs import Construct
from pydantic import Field, field_validator, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.keys import CustomerManagedKey, KeyPurpose, KeysConfig, ServiceUse
from modules.policy import Statement, policy_document, statement
from modules.storage import HardenedBucket, StorageConfig

# Regions with a HealthLake endpoint, from "AWS HealthLake endpoints and quotas" in the AWS
# General Reference (https://docs.aws.amazon.com/general/latest/gr/Amazon-HealthLake.html),
# as read on 2026-11-28. Not offered in eu-central-1 (Frankfurt), among others.
HEALTHLAKE_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "ap-south-1",
        "ap-southeast-2",
        "ca-central-1",
        "eu-west-1",
        "eu-west-2",
    }
)

# SMART App Launch 2.x capability vocabulary (hl7.org/fhir/smart-app-launch, "Capabilities"):
# a typo here would silently advertise nothing to client applications.
SMART_CAPABILITIES = frozenset(
    {
        "launch-ehr",
        "launch-standalone",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-passthrough-banner",
        "context-passthrough-style",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-standalone-patient",
        "context-standalone-encounter",
        "permission-offline",
        "permission-online",
        "permission-patient",
        "permission-user",
        "permission-v1",
        "permission-v2",
        "smart-app-state",
    }
)
# PKCE with S256 is what HealthLake requires; "plain" would let an intercepted authorization
# code be redeemed, so it is never advertised.
CODE_CHALLENGE_METHODS = ("S256",)

FHIR_VERSION = "R4"
# The purpose part of the datastore region's bucket name (`<prefix>-fhir-<region>`).
FHIR_BUCKET_PURPOSE = "fhir"
CUSTOMER_MANAGED_KEY = "CUSTOMER_MANAGED_KMS_KEY"
DATASTORE_LOGICAL_ID = "FHIRDatastore"
# Creating a datastore takes tens of minutes; CloudFormation rolls back past this, and
# Terraform waits a little longer than CloudFormation so that the rollback is what it reports.
STACK_TIMEOUT_MINUTES = 90
TERRAFORM_WAIT = f"{STACK_TIMEOUT_MINUTES + 10}m"

# Same pattern as the HealthLake API's IdpLambdaArn, anchored.
_IDP_LAMBDA_ARN = re.compile(
    r"^arn:aws[-a-z]*:lambda:(?P<region>[a-z]{2}-[a-z]+-\d):\d{12}:function:"
    r"[a-zA-Z0-9\-_.]+(:(\$LATEST|[a-zA-Z0-9\-_]+))?$"
)
# One or more S3 "safe character" path segments, each ending in "/": no leading slash, no
# empty segment, and no `*`, `?` or `$` that would widen the IAM resources built from it.
S3_PREFIX_PATTERN = r"^([A-Za-z0-9!_.'()-]+/)+$"
HTTPS_URL_PATTERN = r"^https://[^\s/?#]+[^\s]*$"


class SmartOnFhir(LayerConfig):
    """SMART on FHIR: which tokens the datastore accepts and the discovery metadata it serves
    (HealthLake IdentityProviderConfiguration)."""

    # AWS_AUTH (SigV4 only) is what a datastore without this block uses.
    authorization_strategy: Literal["SMART_ON_FHIR_V1", "SMART_ON_FHIR"] = Field(
        description="which SMART tokens the datastore accepts (without this section it accepts "
        "SigV4-signed requests only, AWS_AUTH)"
    )
    # HealthLake calls this function to decode and validate every bearer token.
    idp_lambda_arn: str = Field(
        min_length=49,
        max_length=256,
        description="the Lambda function HealthLake calls to decode and validate every bearer "
        "token: arn:aws:lambda:<region>:<account>:function:<name>[:<version or alias>], in the "
        "datastore's region (tokens carry patient context)",
    )
    fine_grained_authorization: bool = Field(
        default=True, description="HealthLake enforces each token's SMART scopes per resource"
    )
    issuer: str = Field(
        pattern=HTTPS_URL_PATTERN, description="https URL of the token issuer (discovery document)"
    )
    authorization_endpoint: str = Field(
        pattern=HTTPS_URL_PATTERN, description="https URL of the OAuth authorization endpoint"
    )
    token_endpoint: str = Field(
        pattern=HTTPS_URL_PATTERN, description="https URL of the OAuth token endpoint"
    )
    capabilities: tuple[str, ...] = Field(
        min_length=1,
        description="SMART App Launch capabilities advertised, each one of "
        f"{', '.join(sorted(SMART_CAPABILITIES))}",
    )
    grant_types: tuple[Literal["authorization_code", "client_credentials"], ...] = Field(
        default=("authorization_code",),
        min_length=1,
        description="OAuth grant types the discovery document advertises (PKCE with S256 only)",
    )

    @field_validator("idp_lambda_arn")
    @classmethod
    def _lambda_arn(cls, value: str) -> str:
        if not _IDP_LAMBDA_ARN.match(value):
            raise ValueError(
                f"'{value}' is not a Lambda function ARN "
                "(arn:aws:lambda:<region>:<account>:function:<name>)"
            )
        return value

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - SMART_CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown SMART capabilities {unknown}")
        return value

    @property
    def idp_lambda_region(self) -> str:
        match = _IDP_LAMBDA_ARN.match(self.idp_lambda_arn)
        assert match is not None  # checked by the validator
        return match.group("region")

    def metadata(self) -> str:
        """The Metadata JSON string HealthLake serves as the SMART discovery document."""
        return json.dumps(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.authorization_endpoint,
                "token_endpoint": self.token_endpoint,
                "capabilities": list(self.capabilities),
                "grant_types_supported": list(self.grant_types),
                "code_challenge_methods_supported": list(CODE_CHALLENGE_METHODS),
            },
            sort_keys=True,
        )


class FhirConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str
    datastore_name: str = Field(pattern=r"^[A-Za-z0-9 _.:/=+%@-]{1,256}$")
    # Where sites drop FHIR NDJSON in the import bucket; the import role reads nothing else.
    import_prefix: str = Field(default="fhir-import/", pattern=S3_PREFIX_PATTERN)
    # Where HealthLake writes each import job's report; the import role writes nothing else.
    results_prefix: str = Field(default="fhir-import-results/", pattern=S3_PREFIX_PATTERN)
    production: bool
    smart_on_fhir: SmartOnFhir | None = None

    @field_validator("region")
    @classmethod
    def _healthlake_offered(cls, value: str) -> str:
        if value not in HEALTHLAKE_REGIONS:
            raise ValueError(
                f"AWS HealthLake is not offered in {value}; it is in "
                f"{', '.join(sorted(HEALTHLAKE_REGIONS))}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FhirConfig:
        first, second = sorted((self.import_prefix, self.results_prefix), key=len)
        if second.startswith(first):
            # Overlapping areas would let the role read what it wrote (or overwrite inputs).
            raise ValueError(
                f"import_prefix '{self.import_prefix}' and results_prefix "
                f"'{self.results_prefix}' overlap; they must be disjoint"
            )
        smart = self.smart_on_fhir
        if smart is not None and smart.idp_lambda_region != self.region:
            # Bearer tokens carry patient context: they are decoded in the datastore's region.
            raise ValueError(
                f"smart_on_fhir.idp_lambda_arn is in {smart.idp_lambda_region}, "
                f"not the datastore's region {self.region}"
            )
        return self

    @property
    def import_role_name(self) -> str:
        """Fixed, so the PHI key's policy can admit the role before it exists."""
        return f"phi-ml-{self.environment}-healthlake-import"


def datastore_template(config: FhirConfig, phi_key_arn: str) -> dict[str, Any]:
    """The CloudFormation template: one FHIR R4 datastore encrypted with the PHI key."""
    properties: dict[str, Any] = {
        "DatastoreName": config.datastore_name,
        "DatastoreTypeVersion": FHIR_VERSION,
        "SseConfiguration": {
            "KmsEncryptionConfig": {"CmkType": CUSTOMER_MANAGED_KEY, "KmsKeyId": phi_key_arn}
        },
        # Stack-level tags (the provider's default tags) are propagated by CloudFormation;
        # these keys are distinct from them so that the two never collide.
        "Tags": [
            {"Key": "phi-ml-layer", "Value": "fhir"},
            {"Key": "fhir-version", "Value": FHIR_VERSION},
        ],
    }
    smart = config.smart_on_fhir
    if smart is not None:
        properties["IdentityProviderConfiguration"] = {
            "AuthorizationStrategy": smart.authorization_strategy,
            "FineGrainedAuthorizationEnabled": smart.fine_grained_authorization,
            "IdpLambdaArn": smart.idp_lambda_arn,
            "Metadata": smart.metadata(),
        }
    datastore: dict[str, Any] = {"Type": "AWS::HealthLake::FHIRDatastore", "Properties": properties}
    if config.production:
        # Every datastore property is replace-on-change: a deleted stack or a replacing update
        # must not take the patient records with it.
        datastore["DeletionPolicy"] = "Retain"
        datastore["UpdateReplacePolicy"] = "Retain"

    def output(attribute: str, description: str) -> dict[str, Any]:
        return {
            "Description": description,
            "Value": {"Fn::GetAtt": [DATASTORE_LOGICAL_ID, attribute]},
        }

    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"PHI ML platform {config.environment}: HealthLake FHIR R4 datastore",
        "Resources": {DATASTORE_LOGICAL_ID: datastore},
        "Outputs": {
            "DatastoreId": output("DatastoreId", "HealthLake datastore id"),
            "DatastoreArn": output("DatastoreArn", "HealthLake datastore ARN"),
            "DatastoreEndpoint": output("DatastoreEndpoint", "FHIR REST endpoint"),
        },
    }


def stack_policy() -> str:
    """CloudFormation stack policy: the datastore may be updated but never replaced or deleted
    through a stack update."""
    return json.dumps(
        {
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": ["Update:Replace", "Update:Delete"],
                    "Resource": f"LogicalResourceId/{DATASTORE_LOGICAL_ID}",
                },
                {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"},
            ]
        },
        sort_keys=True,
    )


def import_trust_policy(account_id: str, datastore_arn: str) -> str:
    """HealthLake may assume the import role, only for this account's datastore."""
    return policy_document(
        {
            "Sid": "HealthLakeAssumesRoleForThisDatastoreOnly",
            "Effect": "Allow",
            "Principal": {"Service": "healthlake.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnEquals": {"aws:SourceArn": datastore_arn},
            },
        }
    )


def import_role_statements(
    config: FhirConfig, import_bucket_arn: str, phi_key_arn: str
) -> list[Statement]:
    """Read the import prefix, write the results prefix, use the PHI key through S3: no more."""
    return [
        statement(
            "ReadImportPrefixOnly",
            effect="Allow",
            actions="s3:GetObject",
            resources=f"{import_bucket_arn}/{config.import_prefix}*",
        ),
        statement(
            "ListImportPrefixOnly",
            effect="Allow",
            actions="s3:ListBucket",
            resources=import_bucket_arn,
            condition={"StringLike": {"s3:prefix": [f"{config.import_prefix}*"]}},
        ),
        # StartFHIRImportJob requires an OutputDataConfig (S3 URI + KMS key): HealthLake writes
        # each job's success/failure report there, so the role must be able to put objects.
        statement(
            "WriteImportResultsOnly",
            effect="Allow",
            actions="s3:PutObject",
            resources=f"{import_bucket_arn}/{config.results_prefix}*",
        ),
        # HealthLake refuses an output bucket that is public or unencrypted, and checks both
        # with the role before a job starts (HealthLake developer guide, "Setting up
        # permissions for import jobs"). Bucket configuration only, no object data.
        statement(
            "CheckOutputBucketIsPrivateAndEncrypted",
            effect="Allow",
            actions=["s3:GetBucketPublicAccessBlock", "s3:GetEncryptionConfiguration"],
            resources=import_bucket_arn,
        ),
        # The import bucket is SSE-KMS with the PHI key: reading imports needs Decrypt, writing
        # results needs GenerateDataKey. Both only ever happen inside S3 calls, hence ViaService.
        statement(
            "UsePhiKeyThroughS3Only",
            effect="Allow",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=phi_key_arn,
            condition={"StringEquals": {"kms:ViaService": f"s3.{config.region}.amazonaws.com"}},
        ),
        # HealthLake validates the output KMS key given to StartFHIRImportJob (key metadata).
        statement(
            "DescribePhiKey",
            effect="Allow",
            actions="kms:DescribeKey",
            resources=phi_key_arn,
        ),
    ]


class Fhir(Construct):
    """A HealthLake FHIR R4 datastore whose data is encrypted with the PHI customer-managed key,
    optionally SMART on FHIR, plus the role HealthLake assumes for imports: it reads only the
    import bucket's import prefix, writes only the results prefix, and uses only the PHI key.
    The import bucket is the raw bucket, or the datastore region's FHIR bucket when the
    datastore is outside the environment's home region. In production the datastore cannot be
    destroyed, replaced or deleted with its stack."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: FhirConfig,
        phi_key: CustomerManagedKey,
        import_bucket: HardenedBucket,
    ) -> None:
        super().__init__(scope, id_)
        if import_bucket.kms_key is not phi_key:
            raise ValueError(
                f"the {import_bucket.node.id} bucket is encrypted with the "
                f"{import_bucket.kms_key.config.purpose} key, not the PHI key: the import role "
                "could not read it"
            )
        if phi_key.config.region != config.region:
            # KMS keys are regional; HealthLake encrypts with a key of its own region only.
            raise ValueError(
                f"the PHI key is in {phi_key.config.region}, not the datastore's region "
                f"{config.region}"
            )
        self.config = config
        name = f"phi-ml-{config.environment}"
        production = config.production
        self.stack = aws.CloudformationStack(
            self,
            "datastore-stack",
            name=f"{name}-fhir-datastore",
            template_body=json.dumps(datastore_template(config, phi_key.key_arn), sort_keys=True),
            # A failed creation rolls back (nothing holds data yet); its events stay for review.
            on_failure="ROLLBACK",
            timeout_in_minutes=STACK_TIMEOUT_MINUTES,
            timeouts=aws.CloudformationStackTimeouts(
                create=TERRAFORM_WAIT, update=TERRAFORM_WAIT, delete=TERRAFORM_WAIT
            ),
            policy_body=stack_policy() if production else None,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if production else None,
        )
        # `outputs.<Name>` rather than the map accessor's `outputs["<Name>"]`: the reference
        # is embedded in JSON policy text, which must stay parseable before interpolation.
        self.datastore_id: str = self.stack.get_string_attribute("outputs.DatastoreId")
        self.datastore_arn: str = self.stack.get_string_attribute("outputs.DatastoreArn")
        self.datastore_endpoint: str = self.stack.get_string_attribute("outputs.DatastoreEndpoint")

        self.import_role = aws.IamRole(
            self,
            "import-role",
            name=config.import_role_name,
            description=(
                f"HealthLake FHIR import: reads the {import_bucket.node.id} bucket's import "
                "prefix only"
            ),
            assume_role_policy=import_trust_policy(config.account_id, self.datastore_arn),
        )
        aws.IamRolePolicy(
            self,
            "import-policy",
            name="read-import-prefix-write-results",
            role=self.import_role.id,
            policy=policy_document(
                *import_role_statements(config, import_bucket.bucket_arn, phi_key.key_arn)
            ),
        )
        self.import_role_arn: str = self.import_role.arn


class DatastoreRegionStorage(Construct):
    """The datastore region's own PHI key and FHIR bucket, for a datastore outside the
    environment's home region.

    HealthLake reads an import's input from, and writes its results and exports to, an S3
    bucket "in the same AWS Region as the service" (HealthLake developer guide, "Setting up
    permissions for import jobs", https://docs.aws.amazon.com/healthlake/latest/devguide/
    import-iam.html, and "Setting up permissions for export jobs", .../export-permissions.html),
    and a KMS key encrypts only in its own region. So that region gets the environment's keys
    built exactly as the data stack builds them (`KeysConfig.key_config`: rotation, 30-day
    window, administrators apart from users, `prevent_destroy` in production): a PHI key for
    the datastore and its bucket, a logs key for the bucket's access-log sink; and two hardened
    buckets named like the data stack's with the region appended: `<prefix>-fhir-<region>`
    (imports, job results, exports; SSE-KMS with that PHI key) and `<prefix>-access-logs-<region>`.
    """

    def __init__(
        self, scope: Construct, id_: str, *, keys: KeysConfig, storage: StorageConfig
    ) -> None:
        super().__init__(scope, id_)
        region = keys.region
        self.phi_key = CustomerManagedKey(
            self, KeyPurpose.PHI_DATA.value, config=keys.key_config(KeyPurpose.PHI_DATA)
        )
        self.logs_key = CustomerManagedKey(
            self,
            KeyPurpose.LOGS.value,
            config=keys.key_config(KeyPurpose.LOGS, ServiceUse.S3_SERVER_ACCESS_LOGS),
        )
        self.access_logs = HardenedBucket(
            self,
            "access-logs",
            config=storage.bucket_config(
                "access-logs", storage.audit_retention_days, region=region
            ),
            kms_key=self.logs_key,
            access_logs=None,
        )
        self.bucket = HardenedBucket(
            self,
            "fhir",
            config=storage.bucket_config(
                FHIR_BUCKET_PURPOSE, storage.noncurrent_version_days, region=region
            ),
            kms_key=self.phi_key,
            access_logs=self.access_logs,
        )
