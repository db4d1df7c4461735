"""FHIR layer: the HealthLake datastore is R4 and encrypted with exactly the PHI key, SMART on
FHIR appears only when configured, production datastores survive destroy/replace, and the import
role reads only the import prefix, writes only the results prefix and uses only the PHI key.

A datastore outside its environment's region (eu-research's, in eu-west-1) has that region's
own PHI key and hardened FHIR bucket, built like the data stack's, and uses nothing else."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformOutput
from pydantic import ValidationError

import main
from modules.fhir import DatastoreRegionStorage, Fhir, FhirConfig, SmartOnFhir
from modules.keys import DELETION_WINDOW_DAYS, KeyPurpose, KeysConfig
from modules.storage import HardenedBucketConfig, StorageConfig
from tests.base_layers import (
    AUDIT_RETENTION_DAYS,
    BUCKET_PREFIX,
    KEY_ADMINISTRATORS,
    KEY_USERS,
    NONCURRENT_VERSION_DAYS,
    add_keys_and_storage,
)
from tests.iam import arn_matches, as_list, iam_allows
from tests.synth import only, resources, statements, synth_stack
from tests.terraform_check import terraform_validate

ACCOUNT = "123456789012"
REGION = "us-east-1"
PREFIX = BUCKET_PREFIX
RAW = f"arn:aws:s3:::{PREFIX}-raw"
CURATED = f"arn:aws:s3:::{PREFIX}-curated"
IDP_LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:smart-token-decoder"
S3_VIA = f"s3.{REGION}.amazonaws.com"


def key_arn(purpose: str) -> str:
    """A stand-in literal ARN for the key of one purpose (tests resolve references to it)."""
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{purpose}-0000"


PHI_KEY = key_arn("phi-data")
LOGS_KEY = key_arn("logs")


# --- what the import role's policy allows ------------------------------------------------------


def allows(
    policy_json: str, action: str, resource: str, context: dict[str, str] | None = None
) -> bool:
    """Whether the policy grants `action` on `resource` in `context`. The layer's role
    policies have no Deny, which this asserts rather than assumes."""
    for candidate in statements(policy_json):
        assert candidate["Effect"] == "Allow", candidate
    return iam_allows(policy_json, action, resource, context)


def literal_references(synthesized: dict[str, Any]) -> dict[str, str]:
    """Terraform references to bucket and key ARNs -> literal ARNs, so policies can be matched."""
    references = {
        f"${{aws_s3_bucket.{logical}.arn}}": f"arn:aws:s3:::{bucket['bucket']}"
        for logical, bucket in resources(synthesized, "aws_s3_bucket").items()
    }
    references.update(
        {
            f"${{aws_kms_key.{logical}.arn}}": key_arn(key["tags"]["key-purpose"])
            for logical, key in resources(synthesized, "aws_kms_key").items()
        }
    )
    return references


def resolve(synthesized: dict[str, Any], text: str) -> str:
    for reference, literal in literal_references(synthesized).items():
        text = text.replace(reference, literal)
    assert "${" not in text, f"unresolved reference in {text}"
    return text


def role_policy(synthesized: dict[str, Any]) -> str:
    return resolve(synthesized, only(synthesized, "aws_iam_role_policy")["policy"])


def granted_resources(policy_json: str) -> set[str]:
    return {r for s in statements(policy_json) for r in as_list(s["Resource"])}


def granted_actions(policy_json: str) -> set[str]:
    return {a for s in statements(policy_json) for a in as_list(s["Action"])}


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        (f"{RAW}/fhir-import/*", f"{RAW}/fhir-import/site-a/2024/patients.ndjson", True),
        (f"{RAW}/fhir-import/*", f"{RAW}/fhir-import/", True),
        (f"{RAW}/fhir-import/*", f"{RAW}/fhir-import-results/job/out.ndjson", False),
        (f"{RAW}/fhir-import/*", f"{RAW}-evil/fhir-import/x.ndjson", False),
        (f"{RAW}/fhir-import/*", f"{CURATED}/fhir-import/x.ndjson", False),
        (f"{RAW}/fhir-import/*", RAW, False),
        (f"{RAW}/job-?/*", f"{RAW}/job-1/x", True),
        (f"{RAW}/job-?/*", f"{RAW}/job-12/x", False),
        ("arn:aws:s3:::a.b/*", "arn:aws:s3:::aXb/x", False),
        ("arn:aws:s3:::[ab]/*", "arn:aws:s3:::a/x", False),
    ],
)
def test_the_matcher_has_iam_wildcard_semantics(pattern: str, value: str, expected: bool) -> None:
    """The matcher grants and refuses: `*` crosses `/`, `.` and `[` are literal."""
    assert arn_matches(pattern, value) is expected


# --- configs and fixtures ---------------------------------------------------------------------


def smart(**overrides: Any) -> SmartOnFhir:
    values: dict[str, Any] = {
        "authorization_strategy": "SMART_ON_FHIR",
        "idp_lambda_arn": IDP_LAMBDA,
        "fine_grained_authorization": True,
        "issuer": "https://idp.acme-health.example",
        "authorization_endpoint": "https://idp.acme-health.example/oauth2/authorize",
        "token_endpoint": "https://idp.acme-health.example/oauth2/token",
        "capabilities": ("launch-ehr", "client-confidential-symmetric", "permission-v2"),
    }
    values.update(overrides)
    return SmartOnFhir(**values)


def fhir_config(**overrides: Any) -> FhirConfig:
    values: dict[str, Any] = {
        "environment": "unit",
        "account_id": ACCOUNT,
        "region": REGION,
        "datastore_name": "unit-clinical-fhir",
        "production": False,
    }
    values.update(overrides)
    return FhirConfig(**values)


def add_fhir(stack: Any, config: FhirConfig) -> Fhir:
    keys, storage = add_keys_and_storage(stack, region=REGION, production=config.production)
    fhir = Fhir(stack, "fhir", config=config, phi_key=keys.phi_data, import_bucket=storage.raw)
    TerraformOutput(stack, "datastore-arn", value=fhir.datastore_arn)
    TerraformOutput(stack, "datastore-endpoint", value=fhir.datastore_endpoint)
    TerraformOutput(stack, "import-role-arn", value=fhir.import_role_arn)
    return fhir


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    """A non-production datastore with SigV4 (AWS_AUTH) access only."""
    return synth_stack(lambda stack: add_fhir(stack, fhir_config()))


@pytest.fixture(scope="module")
def smart_production() -> dict[str, Any]:
    config = fhir_config(production=True, smart_on_fhir=smart())
    return synth_stack(lambda stack: add_fhir(stack, config))


def cfn_stack(synthesized: dict[str, Any]) -> dict[str, Any]:
    return only(synthesized, "aws_cloudformation_stack")


def template(synthesized: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(cfn_stack(synthesized)["template_body"]))


def datastore(tmpl: dict[str, Any]) -> dict[str, Any]:
    """The template's one resource (the dict itself, so tests can tamper with it)."""
    (resource,) = tmpl["Resources"].values()
    assert resource["Type"] == "AWS::HealthLake::FHIRDatastore"
    assert isinstance(resource, dict)
    return resource


def phi_key_reference(synthesized: dict[str, Any]) -> str:
    (logical,) = [
        name
        for name, key in resources(synthesized, "aws_kms_key").items()
        if key["tags"]["key-purpose"] == "phi-data"
    ]
    return f"${{aws_kms_key.{logical}.arn}}"


def stack_reference(synthesized: dict[str, Any]) -> str:
    (logical,) = resources(synthesized, "aws_cloudformation_stack")
    return f"aws_cloudformation_stack.{logical}"


# --- the datastore ---------------------------------------------------------------------------


def assert_encrypted_with(tmpl: dict[str, Any], key: str) -> None:
    sse = datastore(tmpl)["Properties"].get("SseConfiguration")
    assert sse == {"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": key}}


@pytest.mark.parametrize("variant", ["plain", "smart_production"])
def test_datastore_is_encrypted_with_exactly_the_phi_key(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synthesized = request.getfixturevalue(variant)
    assert_encrypted_with(template(synthesized), phi_key_reference(synthesized))


def test_the_encryption_check_detects_another_key_or_an_aws_owned_key(
    plain: dict[str, Any],
) -> None:
    """Twin: the same check fails on a datastore keyed otherwise."""
    phi = phi_key_reference(plain)
    other_keys = [
        ref for ref in literal_references(plain) if ref.startswith("${aws_kms_key.") and ref != phi
    ]
    assert other_keys, "the stack has keys other than the PHI key to try"
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda kms: kms.update(KmsKeyId=other_keys[0]),
        lambda kms: kms.update(CmkType="AWS_OWNED_KMS_KEY"),
        lambda kms: kms.pop("KmsKeyId"),
    ]
    for mutate in mutations:
        tampered = template(plain)
        mutate(datastore(tampered)["Properties"]["SseConfiguration"]["KmsEncryptionConfig"])
        with pytest.raises(AssertionError):
            assert_encrypted_with(tampered, phi)


def test_datastore_is_fhir_r4_with_its_configured_name(plain: dict[str, Any]) -> None:
    properties = datastore(template(plain))["Properties"]
    assert properties["DatastoreTypeVersion"] == "R4"
    assert properties["DatastoreName"] == "unit-clinical-fhir"


def test_template_outputs_come_from_the_datastore(plain: dict[str, Any]) -> None:
    tmpl = template(plain)
    (logical,) = tmpl["Resources"]
    assert {name: output["Value"] for name, output in tmpl["Outputs"].items()} == {
        attribute: {"Fn::GetAtt": [logical, attribute]}
        for attribute in ("DatastoreId", "DatastoreArn", "DatastoreEndpoint")
    }


def test_construct_exposes_the_stack_outputs(plain: dict[str, Any]) -> None:
    stack = stack_reference(plain)
    outputs = {name: output["value"] for name, output in plain["output"].items()}
    assert outputs["datastore-arn"] == f"${{{stack}.outputs.DatastoreArn}}"
    assert outputs["datastore-endpoint"] == f"${{{stack}.outputs.DatastoreEndpoint}}"
    (role,) = resources(plain, "aws_iam_role")
    assert outputs["import-role-arn"] == f"${{aws_iam_role.{role}.arn}}"


def smart_block(synthesized: dict[str, Any]) -> dict[str, Any] | None:
    properties = datastore(template(synthesized))["Properties"]
    block = properties.get("IdentityProviderConfiguration")
    return None if block is None else dict(block)


def test_no_smart_on_fhir_block_unless_configured(plain: dict[str, Any]) -> None:
    assert smart_block(plain) is None


def test_smart_on_fhir_block_carries_the_configuration(smart_production: dict[str, Any]) -> None:
    """Twin of the test above: the same reader finds the block when it is configured."""
    block = smart_block(smart_production)
    assert block is not None
    metadata = json.loads(block.pop("Metadata"))
    assert block == {
        "AuthorizationStrategy": "SMART_ON_FHIR",
        "FineGrainedAuthorizationEnabled": True,
        "IdpLambdaArn": IDP_LAMBDA,
    }
    assert metadata == {
        "issuer": "https://idp.acme-health.example",
        "authorization_endpoint": "https://idp.acme-health.example/oauth2/authorize",
        "token_endpoint": "https://idp.acme-health.example/oauth2/token",
        "capabilities": ["launch-ehr", "client-confidential-symmetric", "permission-v2"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
    }


# --- stack behaviour --------------------------------------------------------------------------


def test_production_datastore_survives_destroy_replace_and_stack_deletion(
    smart_production: dict[str, Any],
) -> None:
    stack = cfn_stack(smart_production)
    assert stack.get("lifecycle") == {"prevent_destroy": True}
    resource = datastore(template(smart_production))
    assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == (
        "Retain",
        "Retain",
    )
    (logical,) = template(smart_production)["Resources"]
    deny, allow = json.loads(stack["policy_body"])["Statement"]
    assert deny == {
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["Update:Replace", "Update:Delete"],
        "Resource": f"LogicalResourceId/{logical}",
    }
    assert allow == {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}


def test_non_production_datastore_can_be_destroyed(plain: dict[str, Any]) -> None:
    """Twin of the production test: the same fields are absent."""
    stack = cfn_stack(plain)
    assert "lifecycle" not in stack
    assert "policy_body" not in stack
    resource = datastore(template(plain))
    assert "DeletionPolicy" not in resource
    assert "UpdateReplacePolicy" not in resource


def test_failed_creation_rolls_back_within_the_timeouts(plain: dict[str, Any]) -> None:
    stack = cfn_stack(plain)
    assert stack["on_failure"] == "ROLLBACK"
    assert "disable_rollback" not in stack
    cloudformation_minutes = stack["timeout_in_minutes"]
    assert 30 <= cloudformation_minutes <= 120
    # Terraform must outwait CloudFormation, or it reports a timeout instead of the rollback.
    for operation in ("create", "update", "delete"):
        assert int(stack["timeouts"][operation].removesuffix("m")) > cloudformation_minutes


# --- the import role --------------------------------------------------------------------------


def assert_trust_confined(trust_json: str, datastore_arn: str) -> None:
    (trust,) = statements(trust_json)
    assert trust["Effect"] == "Allow"
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Principal"] == {"Service": "healthlake.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnEquals": {"aws:SourceArn": datastore_arn},
    }


def test_only_healthlake_for_this_datastore_and_account_assumes_the_import_role(
    plain: dict[str, Any],
) -> None:
    trust = only(plain, "aws_iam_role")["assume_role_policy"]
    assert_trust_confined(trust, f"${{{stack_reference(plain)}.outputs.DatastoreArn}}")


def test_the_trust_check_detects_a_wider_trust(plain: dict[str, Any]) -> None:
    """Twin: another service, a missing account or datastore condition is each refused."""
    arn = f"${{{stack_reference(plain)}.outputs.DatastoreArn}}"
    original = json.loads(only(plain, "aws_iam_role")["assume_role_policy"])

    def tampered(change: Callable[[dict[str, Any]], object]) -> str:
        document = copy.deepcopy(original)
        change(document["Statement"][0])
        return json.dumps(document)

    changes: list[Callable[[dict[str, Any]], object]] = [
        lambda s: s.update(
            Principal={"Service": ["healthlake.amazonaws.com", "ec2.amazonaws.com"]}
        ),
        lambda s: s["Condition"].pop("StringEquals"),
        lambda s: s["Condition"].pop("ArnEquals"),
        lambda s: s.update(Principal={"AWS": "*"}),
    ]
    for change in changes:
        with pytest.raises(AssertionError):
            assert_trust_confined(tampered(change), arn)


REQUESTS = [
    # (id, action, resource, request context, allowed)
    ("read-import", "s3:GetObject", f"{RAW}/fhir-import/site-a/patients.ndjson", {}, True),
    ("read-results", "s3:GetObject", f"{RAW}/fhir-import-results/job-1/out.ndjson", {}, False),
    ("read-other-prefix", "s3:GetObject", f"{RAW}/clinical-notes/note.txt", {}, False),
    ("read-other-bucket", "s3:GetObject", f"{CURATED}/fhir-import/patients.ndjson", {}, False),
    ("read-lookalike-bucket", "s3:GetObject", f"{RAW}x/fhir-import/patients.ndjson", {}, False),
    ("list-import", "s3:ListBucket", RAW, {"s3:prefix": "fhir-import/site-a/"}, True),
    ("list-everything", "s3:ListBucket", RAW, {"s3:prefix": ""}, False),
    ("list-no-prefix", "s3:ListBucket", RAW, {}, False),
    ("list-other-prefix", "s3:ListBucket", RAW, {"s3:prefix": "clinical-notes/"}, False),
    ("list-other-bucket", "s3:ListBucket", CURATED, {"s3:prefix": "fhir-import/"}, False),
    ("write-results", "s3:PutObject", f"{RAW}/fhir-import-results/job-1/SUCCESS/a", {}, True),
    ("write-import", "s3:PutObject", f"{RAW}/fhir-import/injected.ndjson", {}, False),
    ("write-elsewhere", "s3:PutObject", f"{RAW}/clinical-notes/x", {}, False),
    ("delete-import", "s3:DeleteObject", f"{RAW}/fhir-import/patients.ndjson", {}, False),
    ("check-output-bucket", "s3:GetBucketPublicAccessBlock", RAW, {}, True),
    ("check-other-bucket", "s3:GetEncryptionConfiguration", CURATED, {}, False),
    ("change-bucket-policy", "s3:PutBucketPolicy", RAW, {}, False),
    ("decrypt-via-s3", "kms:Decrypt", PHI_KEY, {"kms:ViaService": S3_VIA}, True),
    ("data-key-via-s3", "kms:GenerateDataKey", PHI_KEY, {"kms:ViaService": S3_VIA}, True),
    ("decrypt-directly", "kms:Decrypt", PHI_KEY, {}, False),
    (
        "decrypt-via-other-service",
        "kms:Decrypt",
        PHI_KEY,
        {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"},
        False,
    ),
    ("decrypt-other-key", "kms:Decrypt", LOGS_KEY, {"kms:ViaService": S3_VIA}, False),
    ("encrypt-via-s3", "kms:Encrypt", PHI_KEY, {"kms:ViaService": S3_VIA}, False),
    ("grant", "kms:CreateGrant", PHI_KEY, {"kms:ViaService": S3_VIA}, False),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in REQUESTS])
def test_import_role_grants_exactly_the_import_requests(
    plain: dict[str, Any], case: tuple[Any, ...]
) -> None:
    """Each granted request has refused twins that differ in prefix, bucket, key or context."""
    _, action, resource, context, expected = case
    assert allows(role_policy(plain), action, resource, context) is expected


def test_import_role_policy_names_nothing_but_its_prefixes_and_the_phi_key(
    plain: dict[str, Any],
) -> None:
    policy = role_policy(plain)
    assert granted_resources(policy) == {
        RAW,
        f"{RAW}/fhir-import/*",
        f"{RAW}/fhir-import-results/*",
        PHI_KEY,
    }
    assert granted_actions(policy) == {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetEncryptionConfiguration",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:DescribeKey",
    }
    # Twin: a wildcard grant slipped into the policy is what these checks would see.
    document = json.loads(policy)
    document["Statement"].append(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{RAW}/*"}
    )
    widened = json.dumps(document)
    assert granted_resources(widened) != granted_resources(policy)
    assert allows(widened, "s3:GetObject", f"{RAW}/clinical-notes/note.txt")


def test_the_raw_bucket_must_be_encrypted_with_the_phi_key() -> None:
    def build(stack: Any) -> None:
        keys, storage = add_keys_and_storage(stack, region=REGION)
        Fhir(
            stack,
            "fhir",
            config=fhir_config(),
            phi_key=keys.phi_data,
            import_bucket=storage.ml_artifacts,
        )

    with pytest.raises(ValueError, match="encrypted with the ml-artifacts key, not the PHI key"):
        synth_stack(build)


def test_the_phi_key_must_be_in_the_datastore_region() -> None:
    """Twin of every plain stack above (key and datastore in us-east-1): a key of another
    region is refused, since HealthLake encrypts only with a key of its own region."""

    def build(stack: Any) -> None:
        keys, storage = add_keys_and_storage(stack, region="us-west-2")
        Fhir(stack, "fhir", config=fhir_config(), phi_key=keys.phi_data, import_bucket=storage.raw)

    with pytest.raises(ValueError, match="the PHI key is in us-west-2, not the datastore's region"):
        synth_stack(build)


# --- configuration ----------------------------------------------------------------------------


def test_a_complete_configuration_is_accepted() -> None:
    """Twin of the rejections below: each differs from this one in one value."""
    config = fhir_config(
        region="eu-west-1",
        smart_on_fhir=smart(idp_lambda_arn=IDP_LAMBDA.replace(REGION, "eu-west-1")),
    )
    assert config.smart_on_fhir is not None
    assert config.import_prefix == "fhir-import/"
    assert config.results_prefix == "fhir-import-results/"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"region": "eu-central-1"}, "AWS HealthLake is not offered in eu-central-1"),
        ({"region": "us-west-1"}, "AWS HealthLake is not offered in us-west-1"),
        ({"import_prefix": "fhir-import"}, "import_prefix"),
        ({"import_prefix": "/fhir-import/"}, "import_prefix"),
        ({"import_prefix": "fhir-*/"}, "import_prefix"),
        ({"import_prefix": "fhir//import/"}, "import_prefix"),
        ({"results_prefix": "results"}, "results_prefix"),
        (
            {"import_prefix": "fhir/", "results_prefix": "fhir/results/"},
            "overlap; they must be disjoint",
        ),
        ({"datastore_name": "bad*name"}, "datastore_name"),
        ({"account_id": "12345"}, "account_id"),
    ],
    ids=str,
)
def test_bad_configuration_is_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        fhir_config(**overrides)


def test_smart_on_fhir_without_an_idp_lambda_is_rejected() -> None:
    values = smart().model_dump()
    del values["idp_lambda_arn"]
    with pytest.raises(ValidationError, match=r"idp_lambda_arn\n  Field required"):
        fhir_config(smart_on_fhir=values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"idp_lambda_arn": f"arn:aws:iam::{ACCOUNT}:role/not-a-lambda-function-at-all"}, "Lambda"),
        ({"authorization_strategy": "AWS_AUTH"}, "authorization_strategy"),
        ({"token_endpoint": "http://idp.acme-health.example/token"}, "token_endpoint"),
        ({"issuer": "idp.acme-health.example"}, "issuer"),
        ({"capabilities": ()}, "capabilities"),
        ({"capabilities": ("launch-ehr", "lunch-standalone")}, "unknown SMART capabilities"),
        ({"grant_types": ("implicit",)}, "grant_types"),
    ],
    ids=str,
)
def test_bad_smart_on_fhir_settings_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        smart(**overrides)


def test_the_idp_lambda_must_be_in_the_datastore_region() -> None:
    elsewhere = IDP_LAMBDA.replace(REGION, "us-west-2")
    with pytest.raises(ValidationError, match="is in us-west-2, not the datastore's region"):
        fhir_config(smart_on_fhir=smart(idp_lambda_arn=elsewhere))


# --- terraform --------------------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_fhir_layer(tmp_path: Path) -> None:
    config = fhir_config(production=True, smart_on_fhir=smart())
    result = terraform_validate(tmp_path, lambda stack: add_fhir(stack, config), region=REGION)
    assert result.returncode == 0, result.stderr
    assert "The configuration is valid" in result.stdout


# --- a datastore outside the environment's region ----------------------------------------------

ELSEWHERE = "eu-west-1"
IMPORT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/phi-ml-unit-healthlake-import"
REGION_FHIR_BUCKET = f"{PREFIX}-fhir-{ELSEWHERE}"
REGION_LOGS_BUCKET = f"{PREFIX}-access-logs-{ELSEWHERE}"


def region_keys(*, production: bool = False) -> KeysConfig:
    return KeysConfig(
        environment="unit",
        account_id=ACCOUNT,
        region=ELSEWHERE,
        administrators=KEY_ADMINISTRATORS,
        users=KEY_USERS,
        service_roles={KeyPurpose.PHI_DATA: (IMPORT_ROLE,)},
        production=production,
    )


def unit_storage(*, production: bool = False) -> StorageConfig:
    return StorageConfig(
        bucket_prefix=PREFIX,
        account_id=ACCOUNT,
        noncurrent_version_days=NONCURRENT_VERSION_DAYS,
        audit_retention_days=AUDIT_RETENTION_DAYS,
        production=production,
    )


def add_fhir_elsewhere(stack: Any, *, production: bool = False) -> Fhir:
    storage = DatastoreRegionStorage(
        stack,
        "region-storage",
        keys=region_keys(production=production),
        storage=unit_storage(production=production),
    )
    return Fhir(
        stack,
        "fhir",
        config=fhir_config(region=ELSEWHERE, production=production),
        phi_key=storage.phi_key,
        import_bucket=storage.bucket,
    )


@pytest.fixture(scope="module")
def elsewhere() -> dict[str, Any]:
    return synth_stack(add_fhir_elsewhere)


@pytest.fixture(scope="module")
def elsewhere_production() -> dict[str, Any]:
    return synth_stack(lambda stack: add_fhir_elsewhere(stack, production=True))


def key_named(synthesized: dict[str, Any], purpose: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (name, key)
        for name, key in resources(synthesized, "aws_kms_key").items()
        if key["tags"]["key-purpose"] == purpose
    ]
    return found


def bucket_named(synthesized: dict[str, Any], bucket: str) -> str:
    (logical,) = [
        name for name, b in resources(synthesized, "aws_s3_bucket").items() if b["bucket"] == bucket
    ]
    return logical


def of_bucket(synthesized: dict[str, Any], resource_type: str, logical: str) -> dict[str, Any]:
    (found,) = [
        body
        for body in resources(synthesized, resource_type).values()
        if body["bucket"] == f"${{aws_s3_bucket.{logical}.id}}"
    ]
    return found


def test_the_datastore_elsewhere_is_encrypted_with_that_regions_phi_key(
    elsewhere: dict[str, Any],
) -> None:
    phi, _ = key_named(elsewhere, "phi-data")
    assert_encrypted_with(template(elsewhere), f"${{aws_kms_key.{phi}.arn}}")
    # Twin: the region's other key (the access-log sink's) is not the datastore's.
    logs, _ = key_named(elsewhere, "logs")
    with pytest.raises(AssertionError):
        assert_encrypted_with(template(elsewhere), f"${{aws_kms_key.{logs}.arn}}")


def test_the_regions_keys_are_built_like_the_data_stacks(elsewhere: dict[str, Any]) -> None:
    """Rotation, the 30-day window, administrators apart from users, the alias of the
    environment's key of that purpose (aliases are regional), and the import role admitted
    by exact ARN to the PHI key only."""
    aliases = {a["name"] for a in resources(elsewhere, "aws_kms_alias").values()}
    assert aliases == {"alias/phi-ml/unit/phi-data", "alias/phi-ml/unit/logs"}
    for purpose in ("phi-data", "logs"):
        _, key = key_named(elsewhere, purpose)
        assert key["enable_key_rotation"] is True
        assert key["deletion_window_in_days"] == DELETION_WINDOW_DAYS == 30
        assert "lifecycle" not in key
        policy = key["policy"]
        admins = next(s for s in statements(policy) if s["Sid"].startswith("KeyAdministrators"))
        assert admins["Principal"] == {"AWS": list(KEY_ADMINISTRATORS)}
        assert "kms:Decrypt" not in admins["Action"]
        users = next(s for s in statements(policy) if s["Sid"] == "KeyUsersEncryptAndDecrypt")
        assert users["Principal"] == {"AWS": list(KEY_USERS)}
        admitted = [
            s["Condition"]["ArnEquals"]["aws:PrincipalArn"]
            for s in statements(policy)
            if "ArnEquals" in s.get("Condition", {})
        ]
        assert admitted == ([[IMPORT_ROLE], [IMPORT_ROLE]] if purpose == "phi-data" else [])


def test_production_keys_and_buckets_elsewhere_refuse_destroy(
    elsewhere: dict[str, Any], elsewhere_production: dict[str, Any]
) -> None:
    """Twins: the same resources without prevent_destroy outside production."""
    for synthesized, protected in ((elsewhere_production, True), (elsewhere, False)):
        for type_ in ("aws_kms_key", "aws_s3_bucket", "aws_cloudformation_stack"):
            for body in resources(synthesized, type_).values():
                assert (body.get("lifecycle") == {"prevent_destroy": True}) is protected, type_


def test_the_fhir_bucket_elsewhere_is_hardened(elsewhere: dict[str, Any]) -> None:
    fhir = bucket_named(elsewhere, REGION_FHIR_BUCKET)
    sink = bucket_named(elsewhere, REGION_LOGS_BUCKET)
    phi, _ = key_named(elsewhere, "phi-data")
    logs, _ = key_named(elsewhere, "logs")
    for logical, key in ((fhir, phi), (sink, logs)):
        (rule,) = of_bucket(
            elsewhere, "aws_s3_bucket_server_side_encryption_configuration", logical
        )["rule"]
        assert rule["apply_server_side_encryption_by_default"] == {
            "sse_algorithm": "aws:kms",
            "kms_master_key_id": f"${{aws_kms_key.{key}.arn}}",
        }
        assert rule["bucket_key_enabled"] is True
        versioning = of_bucket(elsewhere, "aws_s3_bucket_versioning", logical)
        assert versioning["versioning_configuration"] == {"status": "Enabled"}
        block = of_bucket(elsewhere, "aws_s3_bucket_public_access_block", logical)
        assert all(block[f] is True for f in ("block_public_acls", "restrict_public_buckets"))
        policy = of_bucket(elsewhere, "aws_s3_bucket_policy", logical)["policy"]
        (no_http,) = [
            s
            for s in statements(policy)
            if s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert no_http["Effect"] == "Deny" and no_http["Principal"] == "*"
    (logging,) = resources(elsewhere, "aws_s3_bucket_logging").values()
    assert logging["bucket"] == f"${{aws_s3_bucket.{fhir}.id}}"
    assert logging["target_bucket"] == f"${{aws_s3_bucket.{sink}.id}}"


def test_the_import_role_elsewhere_reads_only_that_buckets_import_prefix(
    elsewhere: dict[str, Any],
) -> None:
    policy = role_policy(elsewhere)
    region_bucket = f"arn:aws:s3:::{REGION_FHIR_BUCKET}"
    reads = {
        r
        for s in statements(policy)
        if "s3:GetObject" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    }
    assert reads == {f"{region_bucket}/fhir-import/*"}
    assert allows(policy, "s3:GetObject", f"{region_bucket}/fhir-import/site/patients.ndjson")
    # Twins: the home raw bucket, the region's access logs and other prefixes are refused.
    assert not allows(policy, "s3:GetObject", f"{RAW}/fhir-import/site/patients.ndjson")
    assert not allows(policy, "s3:GetObject", f"arn:aws:s3:::{REGION_LOGS_BUCKET}/x")
    assert not allows(policy, "s3:GetObject", f"{region_bucket}/fhir-export/x.ndjson")
    via = {"kms:ViaService": f"s3.{ELSEWHERE}.amazonaws.com"}
    phi_key = key_arn("phi-data")
    assert allows(policy, "kms:Decrypt", phi_key, via)
    assert not allows(policy, "kms:Decrypt", phi_key, {"kms:ViaService": S3_VIA})
    assert not allows(policy, "kms:Decrypt", key_arn("logs"), via)


@pytest.mark.parametrize("region", ["ap-southeast-2", "ca-central-1", "eu-west-1"])
def test_region_bucket_names_fit_s3_for_the_longest_prefix(region: str) -> None:
    """The longest prefix the storage config accepts (32) with a HealthLake region still
    gives bucket names S3 accepts; twin: one character more is refused."""
    storage = unit_storage().model_copy(update={"bucket_prefix": "a" * 32})
    for purpose in ("fhir", "access-logs"):
        name = storage.bucket_name(purpose, region=region)
        assert name.endswith(f"-{purpose}-{region}")
        assert HardenedBucketConfig(name=name, account_id=ACCOUNT, noncurrent_version_days=1)
    with pytest.raises(ValidationError, match="name"):
        HardenedBucketConfig(name="a" * 64, account_id=ACCOUNT, noncurrent_version_days=1)


# --- composed: eu-research's datastore in eu-west-1, dev's at home ------------------------------


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    outdir = tmp_path_factory.mktemp("fhir-synth") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev", "eu-research"], outdir)
    return {
        stack.name: json.loads((stack / "cdk.tf.json").read_text())
        for stack in (outdir / "stacks").iterdir()
    }


def provider(stack: dict[str, Any]) -> dict[str, Any]:
    (configuration,) = stack["provider"]["aws"]
    assert isinstance(configuration, dict)
    return configuration


def test_the_eu_datastore_stack_is_in_eu_west_1_with_the_environments_provider(
    composed: dict[str, dict[str, Any]],
) -> None:
    fhir, data = provider(composed["eu-research-fhir"]), provider(composed["eu-research-data"])
    assert (fhir["region"], data["region"]) == ("eu-west-1", "eu-central-1")
    for same in ("allowed_account_ids", "default_tags"):
        assert fhir[same] == data[same]
    assert fhir["assume_role"][0]["role_arn"] == data["assume_role"][0]["role_arn"]
    # Twin: dev's datastore stays in dev's region.
    assert provider(composed["dev-fhir"])["region"] == provider(composed["dev-data"])["region"]


def test_the_eu_datastore_uses_only_eu_west_1_keys_and_buckets(
    composed: dict[str, dict[str, Any]],
) -> None:
    stack = composed["eu-research-fhir"]
    phi, key = key_named(stack, "phi-data")
    assert_encrypted_with(template(stack), f"${{aws_kms_key.{phi}.arn}}")
    assert "terraform_remote_state" not in json.dumps(stack.get("data", {}))
    names = {b["bucket"] for b in resources(stack, "aws_s3_bucket").values()}
    assert names == {"acme-eu-research-fhir-eu-west-1", "acme-eu-research-access-logs-eu-west-1"}
    role = "arn:aws:iam::444444444444:role/phi-ml-eu-research-healthlake-import"
    assert role in key["policy"]
    # Twin: the eu-central-1 PHI key does not admit the import role, which never uses it;
    # dev's home PHI key does, since dev's datastore reads the raw bucket.
    _, home = key_named(composed["eu-research-data"], "phi-data")
    assert "healthlake-import" not in home["policy"]
    _, dev_home = key_named(composed["dev-data"], "phi-data")
    assert "phi-ml-dev-healthlake-import" in dev_home["policy"]
    dev_template = json.dumps(template(composed["dev-fhir"]))
    assert "terraform_remote_state" in dev_template and "phi-data" in dev_template


def test_the_organization_trail_records_the_eu_fhir_bucket(
    composed: dict[str, dict[str, Any]],
) -> None:
    (trail,) = resources(composed["org-audit"], "aws_cloudtrail").values()
    watched = json.dumps(trail["advanced_event_selector"])
    assert "arn:aws:s3:::acme-eu-research-fhir-eu-west-1/" in watched
    assert "arn:aws:s3:::acme-eu-research-raw/" in watched
    # Twin: its access-log sink holds no PHI and is not among them.
    assert "acme-eu-research-access-logs-eu-west-1" not in watched


@pytest.mark.terraform
def test_terraform_validates_a_datastore_elsewhere(tmp_path: Path) -> None:
    result = terraform_validate(
        tmp_path, lambda stack: add_fhir_elsewhere(stack, production=True), region=ELSEWHERE
    )
    assert "The configuration is valid" in result.stdout
