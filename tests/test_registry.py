"""Registry layer: one group per model, read-only access for the production account and for
nobody else, approvals and rejections (never pending registrations) published to an encrypted
topic only EventBridge's approval rule may publish to."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformOutput
from pydantic import ValidationError

from modules.keys import CustomerManagedKey, CustomerManagedKeyConfig, KeyPurpose
from modules.registry import Registry, RegistryConfig
from tests.eventbridge import event_matches
from tests.iam import as_list, statement_applies
from tests.synth import only, resources, statement_by_sid, statements, synth_stack
from tests.terraform_check import terraform_validate
from tests.test_pipelines import (
    resolve_path,
    service_publish_violations,
)

ACCOUNT = "123456789012"
PRODUCTION = "210987654321"
OTHER_ACCOUNT = "999988887777"
REGION = "eu-west-1"
GROUPS = ("readmission", "sepsis-risk")
# Written out, not imported: widening the module's action list must fail a test.
READ_ONLY = {
    "sagemaker:DescribeModelPackage",
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:ListModelPackages",
}


def registry_config(**overrides: Any) -> RegistryConfig:
    values: dict[str, Any] = {
        "environment": "unit",
        "account_id": ACCOUNT,
        "region": REGION,
        "model_package_groups": GROUPS,
        "production_account_id": PRODUCTION,
    }
    values.update(overrides)
    return RegistryConfig(**values)


def key(stack: Any, purpose: KeyPurpose, alias: str) -> CustomerManagedKey:
    return CustomerManagedKey(
        stack,
        alias.rsplit("/", 1)[-1],
        config=CustomerManagedKeyConfig(
            purpose=purpose,
            alias=alias,
            account_id=ACCOUNT,
            region=REGION,
            administrators=(f"arn:aws:iam::{ACCOUNT}:role/key-admin",),
            users=(f"arn:aws:iam::{ACCOUNT}:role/ml-engineer",),
        ),
    )


def build_registry(stack: Any, config: RegistryConfig) -> Registry:
    notification = key(stack, KeyPurpose.ML_ARTIFACTS, "alias/unit/notifications")
    # A second key in the stack: the topic check must tell the given key from another.
    key(stack, KeyPurpose.LOGS, "alias/unit/decoy")
    registry = Registry(stack, "registry", config=config, notification_key=notification)
    for name in ("approval_rule_name", "approval_rule_arn", "notification_topic_arn"):
        TerraformOutput(stack, name.replace("_", "-"), value=getattr(registry, name))
    return registry


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    return synth_stack(lambda stack: build_registry(stack, registry_config()))


@pytest.fixture(scope="module")
def same_account() -> dict[str, Any]:
    return synth_stack(
        lambda stack: build_registry(stack, registry_config(production_account_id=ACCOUNT))
    )


def ref(synthesized: dict[str, Any], type_: str, attribute: str) -> str:
    (logical,) = resources(synthesized, type_)
    return f"${{{type_}.{logical}.{attribute}}}"


def key_ref(synthesized: dict[str, Any], alias: str) -> str:
    (target,) = [
        a["target_key_id"]
        for a in resources(synthesized, "aws_kms_alias").values()
        if a["name"] == alias
    ]
    return str(target).replace(".key_id}", ".arn}")


def group_policies(synthesized: dict[str, Any]) -> dict[str, str]:
    """Group name -> its resource policy."""
    names = {
        f"${{aws_sagemaker_model_package_group.{logical}.model_package_group_name}}": group[
            "model_package_group_name"
        ]
        for logical, group in resources(synthesized, "aws_sagemaker_model_package_group").items()
    }
    return {
        names[policy["model_package_group_name"]]: policy["resource_policy"]
        for policy in resources(synthesized, "aws_sagemaker_model_package_group_policy").values()
    }


# --- groups and the production account's read access --------------------------------------


def test_one_group_per_configured_model(synthesized: dict[str, Any]) -> None:
    groups = resources(synthesized, "aws_sagemaker_model_package_group").values()
    assert sorted(g["model_package_group_name"] for g in groups) == sorted(GROUPS)


def test_each_group_has_its_own_production_read_policy(synthesized: dict[str, Any]) -> None:
    assert sorted(group_policies(synthesized)) == sorted(GROUPS)


def principal_violations(policy_json: str, production_account: str) -> list[str]:
    """Every statement must allow exactly the production account, and nobody else."""
    expected = {"AWS": f"arn:aws:iam::{production_account}:root"}
    found = []
    for candidate in statements(policy_json):
        sid = candidate.get("Sid", "?")
        if candidate["Effect"] != "Allow":
            found.append(f"{sid}: {candidate['Effect']}")
        if candidate.get("Principal") != expected:
            found.append(f"{sid}: principal {candidate.get('Principal')}")
    return found


@pytest.mark.parametrize("group", GROUPS)
def test_only_the_production_account_is_a_principal(
    synthesized: dict[str, Any], group: str
) -> None:
    assert principal_violations(group_policies(synthesized)[group], PRODUCTION) == []


@pytest.mark.parametrize(
    "principal",
    [
        "*",
        {"AWS": "*"},
        {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
        {"AWS": [f"arn:aws:iam::{PRODUCTION}:root", f"arn:aws:iam::{OTHER_ACCOUNT}:root"]},
        {"AWS": PRODUCTION},
        {"Service": "sagemaker.amazonaws.com"},
    ],
    ids=["star", "aws-star", "other-account", "production-plus-other", "bare-id", "service"],
)
def test_principal_checker_detects_anyone_else(synthesized: dict[str, Any], principal: Any) -> None:
    policy = json.loads(group_policies(synthesized)[GROUPS[0]])
    policy["Statement"][0]["Principal"] = principal
    found = principal_violations(json.dumps(policy), PRODUCTION)
    assert found == [f"{policy['Statement'][0]['Sid']}: principal {principal}"]


def write_actions(policy_json: str) -> list[str]:
    """Anything beyond the three read actions, wildcards included."""
    return sorted(
        action
        for candidate in statements(policy_json)
        for action in as_list(candidate["Action"])
        if action not in READ_ONLY
    )


@pytest.mark.parametrize("group", GROUPS)
def test_production_account_can_only_read(synthesized: dict[str, Any], group: str) -> None:
    policy = group_policies(synthesized)[group]
    assert write_actions(policy) == []
    granted = {a for s in statements(policy) for a in as_list(s["Action"])}
    assert granted == READ_ONLY


@pytest.mark.parametrize(
    "action",
    ["sagemaker:UpdateModelPackage", "sagemaker:DeleteModelPackage", "sagemaker:*", "*"],
)
def test_read_only_checker_detects_write_actions(synthesized: dict[str, Any], action: str) -> None:
    policy = json.loads(group_policies(synthesized)[GROUPS[0]])
    policy["Statement"][-1]["Action"] = [*as_list(policy["Statement"][-1]["Action"]), action]
    assert write_actions(json.dumps(policy)) == [action]


def resource_policy_allows(policy_json: str, account: str, action: str, resource: str) -> bool:
    """Does the resource policy let a principal of `account` make this request?"""
    for candidate in statements(policy_json):
        principals = as_list(candidate.get("Principal", {}).get("AWS", []))
        if (
            candidate["Effect"] == "Allow"
            and f"arn:aws:iam::{account}:root" in principals
            and statement_applies(candidate, action, resource, {})
        ):
            return True
    return False


def sagemaker_arn(resource: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource}"


@pytest.mark.parametrize(
    ("account", "action", "resource", "allowed"),
    [
        (PRODUCTION, "sagemaker:DescribeModelPackage", "model-package/readmission/3", True),
        (PRODUCTION, "sagemaker:ListModelPackages", "model-package/readmission/3", True),
        (
            PRODUCTION,
            "sagemaker:DescribeModelPackageGroup",
            "model-package-group/readmission",
            True,
        ),
        (PRODUCTION, "sagemaker:UpdateModelPackage", "model-package/readmission/3", False),
        (PRODUCTION, "sagemaker:DeleteModelPackageGroup", "model-package-group/readmission", False),
        (PRODUCTION, "sagemaker:DescribeModelPackage", "model-package/sepsis-risk/1", False),
        (OTHER_ACCOUNT, "sagemaker:DescribeModelPackage", "model-package/readmission/3", False),
    ],
    ids=[
        "describe-package",
        "list-packages",
        "describe-group",
        "approve",
        "delete-group",
        "another-groups-package",
        "another-account",
    ],
)
def test_readmission_policy_reaches_its_own_packages_for_production_only(
    synthesized: dict[str, Any], account: str, action: str, resource: str, allowed: bool
) -> None:
    policy = group_policies(synthesized)["readmission"]
    assert resource_policy_allows(policy, account, action, sagemaker_arn(resource)) is allowed


def test_same_account_registry_has_no_resource_policy(
    synthesized: dict[str, Any], same_account: dict[str, Any]
) -> None:
    """In the production account itself IAM governs access; the cross-account fixture above
    is the twin that does get policies."""
    assert resources(same_account, "aws_sagemaker_model_package_group_policy") == {}
    assert len(resources(synthesized, "aws_sagemaker_model_package_group_policy")) == len(GROUPS)
    assert len(resources(same_account, "aws_sagemaker_model_package_group")) == len(GROUPS)


# --- the approval notification ------------------------------------------------------------


def test_topic_is_encrypted_with_the_notification_key(synthesized: dict[str, Any]) -> None:
    topic = only(synthesized, "aws_sns_topic")
    notification = key_ref(synthesized, "alias/unit/notifications")
    decoy = key_ref(synthesized, "alias/unit/decoy")
    assert notification != decoy
    assert topic["kms_master_key_id"] == notification


def approval_event(group: str, status: str, **overrides: Any) -> dict[str, Any]:
    event = {
        "version": "0",
        "id": "5b3a1e7f-2a3c-4f6e-9d7a-0c1e2f3a4b5c",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": "2025-02-03T10:11:12Z",
        "region": REGION,
        "resources": [sagemaker_arn(f"model-package/{group}/4")],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": 4,
            "ModelPackageArn": sagemaker_arn(f"model-package/{group}/4"),
            "ModelApprovalStatus": status,
            "ModelPackageStatus": "Completed",
        },
    }
    event.update(overrides)
    return event


@pytest.fixture(scope="module")
def approval_pattern(synthesized: dict[str, Any]) -> dict[str, Any]:
    rule = only(synthesized, "aws_cloudwatch_event_rule")
    assert rule["state"] == "ENABLED"
    return dict(json.loads(rule["event_pattern"]))


APPROVAL_EVENTS = {
    "approved": (approval_event("readmission", "Approved"), True),
    "rejected": (approval_event("sepsis-risk", "Rejected"), True),
    "pending": (approval_event("readmission", "PendingManualApproval"), False),
    "other-group": (approval_event("marketing-churn", "Approved"), False),
    "group-name-prefix": (approval_event("readmission-v2", "Approved"), False),
    "other-detail-type": (
        approval_event(
            "readmission", "Approved", **{"detail-type": "SageMaker Model State Change"}
        ),
        False,
    ),
    "other-source": (approval_event("readmission", "Approved", source="custom.approvals"), False),
}


@pytest.mark.parametrize("case", sorted(APPROVAL_EVENTS))
def test_rule_matches_decisions_on_configured_groups_only(
    approval_pattern: dict[str, Any], case: str
) -> None:
    event, expected = APPROVAL_EVENTS[case]
    assert event_matches(approval_pattern, event) is expected


def test_matcher_would_catch_a_rule_that_notifies_every_registration(
    approval_pattern: dict[str, Any],
) -> None:
    """Twin: without the status filter, the pending registration would match."""
    wide = copy.deepcopy(approval_pattern)
    del wide["detail"]["ModelApprovalStatus"]
    assert event_matches(wide, APPROVAL_EVENTS["pending"][0])
    no_group = copy.deepcopy(approval_pattern)
    del no_group["detail"]["ModelPackageGroupName"]
    assert event_matches(no_group, APPROVAL_EVENTS["other-group"][0])


def render(transformer: dict[str, Any], event: dict[str, Any]) -> str:
    """EventBridge's input transformer for a plain-text template."""
    values = {name: resolve_path(event, path) for name, path in transformer["input_paths"].items()}
    template = transformer["input_template"]
    placeholders = set(re.findall(r"<([A-Za-z0-9_.-]+)>", template))
    assert placeholders <= set(values), f"undefined placeholders {placeholders - set(values)}"
    for name, value in values.items():
        template = template.replace(f"<{name}>", str(value))
    return str(template)


def test_target_sends_a_readable_message_to_the_topic(synthesized: dict[str, Any]) -> None:
    target = only(synthesized, "aws_cloudwatch_event_target")
    assert target["arn"] == ref(synthesized, "aws_sns_topic", "arn")
    assert target["rule"] == ref(synthesized, "aws_cloudwatch_event_rule", "name")
    assert target["retry_policy"]["maximum_retry_attempts"] > 0
    message = render(target["input_transformer"], APPROVAL_EVENTS["approved"][0])
    assert message == (
        '"Model readmission version 4 was Approved at 2025-02-03T10:11:12Z in account '
        f'{ACCOUNT}: {sagemaker_arn("model-package/readmission/4")}"'
    )


def test_topic_accepts_only_the_approval_rule_through_eventbridge(
    synthesized: dict[str, Any],
) -> None:
    policy = only(synthesized, "aws_sns_topic_policy")
    assert policy["arn"] == ref(synthesized, "aws_sns_topic", "arn")
    rule = ref(synthesized, "aws_cloudwatch_event_rule", "arn")
    assert (
        service_publish_violations(
            policy["policy"], service="events.amazonaws.com", action="sns:Publish", source_arn=rule
        )
        == []
    )
    assert [s["Effect"] for s in statements(policy["policy"])].count("Allow") == 1
    insecure = statement_by_sid(policy["policy"], "DenyInsecureTransport")
    assert insecure["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize(
    "change",
    [{"Principal": "*"}, {"Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:events:x"}}}],
    ids=["anyone", "other-rule"],
)
def test_topic_policy_checker_detects_a_wider_allow(
    synthesized: dict[str, Any], change: dict[str, Any]
) -> None:
    policy = json.loads(only(synthesized, "aws_sns_topic_policy")["policy"])
    next(s for s in policy["Statement"] if s["Effect"] == "Allow").update(change)
    rule = ref(synthesized, "aws_cloudwatch_event_rule", "arn")
    assert service_publish_violations(
        json.dumps(policy), service="events.amazonaws.com", action="sns:Publish", source_arn=rule
    )


def test_the_approval_rule_is_exposed_for_a_deployment_target(synthesized: dict[str, Any]) -> None:
    outputs = {name: output["value"] for name, output in synthesized["output"].items()}
    assert outputs["approval-rule-name"] == ref(synthesized, "aws_cloudwatch_event_rule", "name")
    assert outputs["approval-rule-arn"] == ref(synthesized, "aws_cloudwatch_event_rule", "arn")
    assert outputs["notification-topic-arn"] == ref(synthesized, "aws_sns_topic", "arn")


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_package_groups", ()),
        ("model_package_groups", ("readmission", "readmission")),
        ("model_package_groups", ("Readmission",)),
        ("model_package_groups", ("sepsis_risk",)),
        ("model_package_groups", ("-sepsis",)),
        ("model_package_groups", ("sepsis--risk",)),
        ("model_package_groups", ("a" * 64,)),
        ("production_account_id", "12345"),
        ("production_account_id", "abcdefghijkl"),
        ("account_id", "1234567890123"),
    ],
)
def test_config_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        registry_config(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_package_groups", ("a" * 63,)),
        ("model_package_groups", ("a", "b-2")),
        ("production_account_id", ACCOUNT),
    ],
)
def test_config_accepts_the_boundaries(field: str, value: Any) -> None:
    """Twin of the rejections."""
    assert getattr(registry_config(**{field: value}), field) == value


# --- real terraform -----------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_registry_layer(tmp_path: Path) -> None:
    result = terraform_validate(
        tmp_path, lambda stack: build_registry(stack, registry_config()), region=REGION
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The configuration is valid" in result.stdout
