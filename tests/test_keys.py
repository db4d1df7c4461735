"""Keys layer: rotation, deletion window, and key policies that separate who manages a key from
who can read what it encrypts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from modules.keys import (
    CustomerManagedKeyConfig,
    KeyPurpose,
    Keys,
    KeysConfig,
    ServiceUse,
    key_policy,
)
from modules.policy import policy_document, statement
from tests.iam import action_matches, as_list
from tests.synth import resources, statement_by_sid, statements, synth_stack

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ENVIRONMENT = "unit"
ADMINISTRATORS = (
    f"arn:aws:iam::{ACCOUNT}:role/key-admin-b",
    f"arn:aws:iam::{ACCOUNT}:role/key-admin-a",
)
USERS = (
    f"arn:aws:iam::{ACCOUNT}:role/data-engineer",
    f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution",
)
ADMIN_SID = "KeyAdministratorsManageButCannotUse"
USERS_SID = "KeyUsersEncryptAndDecrypt"
GRANTS_SID = "KeyUsersGrantOnlyToAwsServices"
LAYER_PURPOSES = ("phi-data", "logs", "ml-artifacts", "feature-store", "alerts")
NON_LOG_PURPOSES = ("phi-data", "ml-artifacts", "feature-store")
# Every KMS operation that reads or produces data under the key.
CRYPTOGRAPHIC_ACTIONS = (
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)
ROOT_PRINCIPAL = re.compile(r"^(arn:aws:iam::[0-9]{12}:root|[0-9]{12})$")


def grants(policy_statement: dict[str, Any], action: str) -> bool:
    """Whether the statement's Action patterns match `action` (IAM wildcards, case-insensitive)."""
    return any(action_matches(pattern, action) for pattern in as_list(policy_statement["Action"]))


def aws_principals(policy_statement: dict[str, Any]) -> list[str]:
    principal = policy_statement.get("Principal", {})
    if principal == "*":
        return ["*"]
    return [str(p) for p in as_list(principal.get("AWS", []))]


def service_principals(policy_json: str) -> set[str]:
    found: set[str] = set()
    for candidate in statements(policy_json):
        principal = candidate.get("Principal", {})
        if isinstance(principal, dict):
            found.update(as_list(principal.get("Service", [])))
    return found


def pinned_to_exact_roles(policy_statement: dict[str, Any]) -> bool:
    """A root principal narrowed by aws:PrincipalArn to exact role ARNs admits only those."""
    arns = policy_statement.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn")
    return bool(arns) and all("*" not in arn and "?" not in arn for arn in as_list(arns))


def root_or_anyone_principals(policy_json: str) -> list[str]:
    """Principals that would hand the decision to IAM policies (the root) or to anybody."""
    return [
        principal
        for candidate in statements(policy_json)
        for principal in aws_principals(candidate)
        if principal == "*"
        or (ROOT_PRINCIPAL.match(principal) and not pinned_to_exact_roles(candidate))
    ]


def grants_not_confined_to_aws_resources(policy_json: str) -> list[str]:
    """Sids of Allow statements that permit kms:CreateGrant without GrantIsForAWSResource."""
    return [
        candidate["Sid"]
        for candidate in statements(policy_json)
        if candidate["Effect"] == "Allow"
        and grants(candidate, "kms:CreateGrant")
        and candidate.get("Condition", {}).get("Bool", {}).get("kms:GrantIsForAWSResource")
        != "true"
    ]


def synth_keys(*, production: bool) -> dict[str, Any]:
    def build(stack: Any) -> None:
        Keys(
            stack,
            "keys",
            config=KeysConfig(
                environment=ENVIRONMENT,
                account_id=ACCOUNT,
                region=REGION,
                administrators=ADMINISTRATORS,
                users=USERS,
                production=production,
            ),
        )

    return synth_stack(build)


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    return synth_keys(production=False)


@pytest.fixture(scope="module")
def keys_by_purpose(synthesized: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """purpose -> (logical name, aws_kms_key resource)."""
    return {
        key["tags"]["key-purpose"]: (name, key)
        for name, key in resources(synthesized, "aws_kms_key").items()
    }


def policy_of(keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str) -> str:
    return str(keys_by_purpose[purpose][1]["policy"])


def test_one_key_per_purpose(keys_by_purpose: dict[str, tuple[str, dict[str, Any]]]) -> None:
    assert sorted(keys_by_purpose) == sorted(LAYER_PURPOSES)


@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_key_rotates_yearly_and_waits_30_days_before_deletion(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str
) -> None:
    key = keys_by_purpose[purpose][1]
    assert key["enable_key_rotation"] is True
    assert key["rotation_period_in_days"] == 365
    assert key["deletion_window_in_days"] == 30
    assert key["key_usage"] == "ENCRYPT_DECRYPT"
    assert key["customer_master_key_spec"] == "SYMMETRIC_DEFAULT"
    # A multi-Region key could be replicated (and decrypted) outside the residency region.
    assert key["multi_region"] is False


@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_alias_names_environment_and_purpose_and_targets_its_own_key(
    synthesized: dict[str, Any],
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]],
    purpose: str,
) -> None:
    logical_name = keys_by_purpose[purpose][0]
    targets = {
        alias["name"]: alias["target_key_id"]
        for alias in resources(synthesized, "aws_kms_alias").values()
    }
    assert targets[f"alias/phi-ml/{ENVIRONMENT}/{purpose}"] == (
        f"${{aws_kms_key.{logical_name}.key_id}}"
    )


@pytest.mark.parametrize("action", CRYPTOGRAPHIC_ACTIONS)
@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_administrator_statement_cannot_use_the_key(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str, action: str
) -> None:
    administrators = statement_by_sid(policy_of(keys_by_purpose, purpose), ADMIN_SID)
    assert not grants(administrators, action)


@pytest.mark.parametrize("action", CRYPTOGRAPHIC_ACTIONS)
@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_users_statement_can_use_the_key(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str, action: str
) -> None:
    """Twin of the administrator test: the same matcher sees the actions where they are."""
    users = statement_by_sid(policy_of(keys_by_purpose, purpose), USERS_SID)
    assert grants(users, action)


@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_users_statement_cannot_manage_the_key(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str
) -> None:
    users = statement_by_sid(policy_of(keys_by_purpose, purpose), USERS_SID)
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DisableKey"):
        assert not grants(users, action), action


@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_principals_are_exactly_the_configured_ones(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str
) -> None:
    policy = policy_of(keys_by_purpose, purpose)
    assert aws_principals(statement_by_sid(policy, ADMIN_SID)) == sorted(ADMINISTRATORS)
    assert aws_principals(statement_by_sid(policy, USERS_SID)) == sorted(USERS)
    assert aws_principals(statement_by_sid(policy, GRANTS_SID)) == sorted(USERS)
    everyone = {p for candidate in statements(policy) for p in aws_principals(candidate)}
    assert everyone == set(ADMINISTRATORS) | set(USERS)


@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_no_statement_names_the_account_root_or_anyone(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str
) -> None:
    assert root_or_anyone_principals(policy_of(keys_by_purpose, purpose)) == []


@pytest.mark.parametrize(
    "principal",
    [f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT, "*"],
    ids=["root-arn", "bare-account-id", "anyone"],
)
def test_root_detector_catches_a_root_statement(principal: str) -> None:
    enables_iam = policy_document(
        statement(
            "EnableIamPolicies",
            effect="Allow",
            principal={"AWS": principal} if principal != "*" else "*",
            actions="kms:*",
            resources="*",
        )
    )
    assert root_or_anyone_principals(enables_iam) == [principal]


def test_logs_key_lets_cloudwatch_logs_use_it_only_for_this_accounts_log_groups(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]],
) -> None:
    logs = statement_by_sid(
        policy_of(keys_by_purpose, "logs"), "CloudWatchLogsEncryptsThisAccountsLogGroups"
    )
    assert logs["Effect"] == "Allow"
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"
        }
    }
    assert grants(logs, "kms:GenerateDataKey") and grants(logs, "kms:Decrypt")
    assert not grants(logs, "kms:CreateGrant") and not grants(logs, "kms:PutKeyPolicy")


def test_logs_key_lets_s3_log_delivery_generate_data_keys_for_this_account_only(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]],
) -> None:
    delivery = statement_by_sid(
        policy_of(keys_by_purpose, "logs"), "S3ServerAccessLogDeliveryEncrypts"
    )
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == ["kms:GenerateDataKey*"]
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert not grants(delivery, "kms:Decrypt")


def test_logs_key_service_principals_are_exactly_the_log_services(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]],
) -> None:
    """Twin of the next test: the detector finds service principals where there are some."""
    assert service_principals(policy_of(keys_by_purpose, "logs")) == {
        f"logs.{REGION}.amazonaws.com",
        "logging.s3.amazonaws.com",
    }


@pytest.mark.parametrize("purpose", ["phi-data", "feature-store"])
def test_data_keys_allow_no_service_principal(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str
) -> None:
    assert service_principals(policy_of(keys_by_purpose, purpose)) == set()


@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_users_create_grants_only_for_aws_resources(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str
) -> None:
    grant = statement_by_sid(policy_of(keys_by_purpose, purpose), GRANTS_SID)
    assert sorted(grant["Action"]) == ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


@pytest.mark.parametrize("purpose", LAYER_PURPOSES)
def test_no_statement_allows_grants_beyond_aws_resources(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]], purpose: str
) -> None:
    assert grants_not_confined_to_aws_resources(policy_of(keys_by_purpose, purpose)) == []


def test_grant_detector_catches_an_unconditional_grant_statement() -> None:
    policy = policy_document(
        statement(
            "Broad",
            effect="Allow",
            principal={"AWS": USERS[0]},
            actions="kms:*",
            resources="*",
        ),
        statement(
            "Confined",
            effect="Allow",
            principal={"AWS": USERS[0]},
            actions="kms:CreateGrant",
            resources="*",
            condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
    )
    assert grants_not_confined_to_aws_resources(policy) == ["Broad"]


def key_config(**overrides: Any) -> CustomerManagedKeyConfig:
    values: dict[str, Any] = {
        "purpose": KeyPurpose.TERRAFORM_STATE,
        "alias": "alias/phi-ml/terraform-state",
        "account_id": ACCOUNT,
        "region": REGION,
        "administrators": ADMINISTRATORS[:1],
        "users": USERS[:1],
    }
    values.update(overrides)
    return CustomerManagedKeyConfig(**values)


def test_key_policy_without_service_uses_has_only_the_three_role_statements() -> None:
    policy = key_policy(key_config())
    assert [s["Sid"] for s in statements(policy)] == [ADMIN_SID, USERS_SID, GRANTS_SID]
    assert json.loads(policy)["Version"] == "2012-10-17"


def test_key_policy_deduplicates_principals() -> None:
    policy = key_policy(key_config(users=(USERS[0], USERS[0], USERS[1])))
    assert aws_principals(statement_by_sid(policy, USERS_SID)) == sorted(USERS)


@pytest.mark.parametrize(
    ("use", "sid"),
    [
        (ServiceUse.CLOUDWATCH_LOGS, "CloudWatchLogsEncryptsThisAccountsLogGroups"),
        (ServiceUse.S3_SERVER_ACCESS_LOGS, "S3ServerAccessLogDeliveryEncrypts"),
    ],
    ids=["cloudwatch-logs", "s3-access-logs"],
)
def test_each_service_statement_is_confined_to_this_account(use: ServiceUse, sid: str) -> None:
    confined = statement_by_sid(key_policy(key_config(service_uses=(use,))), sid)
    assert ACCOUNT in json.dumps(confined["Condition"])


@pytest.mark.parametrize("alias", ["phi-ml/data", "alias/", "alias/with space"])
def test_alias_must_be_a_kms_alias_name(alias: str) -> None:
    with pytest.raises(ValidationError, match="alias"):
        key_config(alias=alias)


def test_a_principal_cannot_be_both_administrator_and_user() -> None:
    with pytest.raises(ValidationError):
        key_config(administrators=(USERS[0],), users=(USERS[0],))


SERVICE_ROLES = (
    f"arn:aws:iam::{ACCOUNT}:role/phi-ml-unit-pipeline",
    f"arn:aws:iam::{ACCOUNT}:role/phi-ml-unit-endpoint",
)


def service_role_config(roles: tuple[str, ...] = SERVICE_ROLES) -> CustomerManagedKeyConfig:
    return CustomerManagedKeyConfig(
        purpose=KeyPurpose.ML_ARTIFACTS,
        alias="alias/phi-ml/unit/ml-artifacts",
        account_id=ACCOUNT,
        region=REGION,
        administrators=ADMINISTRATORS,
        users=USERS,
        service_roles=roles,
    )


def test_platform_roles_use_the_key_through_an_exact_principal_arn_list() -> None:
    policy = key_policy(service_role_config())
    usage = statement_by_sid(policy, "PlatformServiceRolesEncryptAndDecrypt")
    assert usage["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert usage["Condition"] == {"ArnEquals": {"aws:PrincipalArn": sorted(SERVICE_ROLES)}}
    assert grants(usage, "kms:Decrypt")
    assert not grants(usage, "kms:PutKeyPolicy")
    assert root_or_anyone_principals(policy) == []
    assert grants_not_confined_to_aws_resources(policy) == []


def test_root_detector_catches_a_root_statement_pinned_by_a_pattern() -> None:
    """Twin: a PrincipalArn condition with a wildcard is no pin: every matching role gets in."""
    wildcard = policy_document(
        statement(
            "RolesByPattern",
            effect="Allow",
            principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            actions="kms:Decrypt",
            resources="*",
            condition={"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/*"}},
        )
    )
    assert root_or_anyone_principals(wildcard) == [f"arn:aws:iam::{ACCOUNT}:root"]


@pytest.mark.parametrize(
    "roles",
    [(f"arn:aws:iam::{ACCOUNT}:role/phi-ml-*",), (ADMINISTRATORS[0],)],
    ids=["pattern", "administrator"],
)
def test_service_roles_must_be_exact_and_never_administrators(roles: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError):
        service_role_config(roles)


def test_eventbridge_may_use_only_the_ml_artifacts_key(
    keys_by_purpose: dict[str, tuple[str, dict[str, Any]]],
) -> None:
    with_eventbridge = {
        purpose
        for purpose in LAYER_PURPOSES
        if "events.amazonaws.com" in service_principals(policy_of(keys_by_purpose, purpose))
    }
    assert with_eventbridge == {"ml-artifacts", "alerts"}
    events = statement_by_sid(
        policy_of(keys_by_purpose, "ml-artifacts"), "EventBridgeDeliversToEncryptedQueuesAndTopics"
    )
    assert events["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/*"},
    }


@pytest.mark.parametrize(
    ("use", "service", "sid"),
    [
        (ServiceUse.CLOUDTRAIL, "cloudtrail.amazonaws.com", "CloudTrailEncryptsThisAccountsTrails"),
        (
            ServiceUse.CLOUDWATCH_ALARMS,
            "cloudwatch.amazonaws.com",
            "CloudWatchAlarmsPublishToEncryptedTopics",
        ),
    ],
)
def test_audit_services_use_a_key_only_for_this_account(
    use: ServiceUse, service: str, sid: str
) -> None:
    config = CustomerManagedKeyConfig(
        purpose=KeyPurpose.LOGS,
        alias="alias/phi-ml/unit/audit",
        account_id=ACCOUNT,
        region=REGION,
        administrators=ADMINISTRATORS,
        users=USERS,
        service_uses=(use,),
    )
    policy = key_policy(config)
    granted = statement_by_sid(policy, sid)
    assert granted["Principal"] == {"Service": service}
    assert granted["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert not grants(granted, "kms:CreateGrant")
    # Twin: without the use, the service gets nothing.
    bare = key_policy(config.model_copy(update={"service_uses": ()}))
    assert service not in service_principals(bare)


def test_the_deployer_encrypts_function_environments_through_lambda_and_never_decrypts() -> None:
    deployer = ADMINISTRATORS[0]
    config = CustomerManagedKeyConfig(
        purpose=KeyPurpose.ALERTS,
        alias="alias/phi-ml/unit/alerts",
        account_id=ACCOUNT,
        region=REGION,
        administrators=ADMINISTRATORS,
        users=USERS,
        function_deployers=(deployer,),
    )
    policy = key_policy(config)
    encrypt = statement_by_sid(policy, "DeployersEncryptFunctionEnvironmentsThroughLambdaOnly")
    assert aws_principals(encrypt) == [deployer]
    assert grants(encrypt, "kms:Encrypt")
    assert encrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"lambda.{REGION}.amazonaws.com"}
    }
    deployer_statements = [c for c in statements(policy) if deployer in aws_principals(c)]
    assert not any(grants(c, "kms:Decrypt") for c in deployer_statements)
    assert grants_not_confined_to_aws_resources(policy) == []
    # Twin: without deployers, the statements are absent.
    bare = key_policy(config.model_copy(update={"function_deployers": ()}))
    assert "DeployersEncryptFunctionEnvironmentsThroughLambdaOnly" not in bare


@pytest.fixture(scope="module")
def production_keys() -> dict[str, Any]:
    return synth_keys(production=True)


def test_production_keys_refuse_destroy(
    production_keys: dict[str, Any], synthesized: dict[str, Any]
) -> None:
    """A destroyed key takes everything it encrypted with it 30 days later."""
    keys = resources(production_keys, "aws_kms_key").values()
    assert len(keys) == len(resources(synthesized, "aws_kms_key")) == 5
    assert all(key.get("lifecycle") == {"prevent_destroy": True} for key in keys)


def test_non_production_keys_can_be_destroyed(synthesized: dict[str, Any]) -> None:
    """Twin: the same check sees keys without the guard."""
    assert all("lifecycle" not in key for key in resources(synthesized, "aws_kms_key").values())
