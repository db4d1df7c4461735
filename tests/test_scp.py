"""Service control policies: each statement's effect, actions and condition, and what the
documents actually deny, judged by a small evaluator of the SCP semantics they rely on."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modules.scp import (
    CONTROL_PLANE_ACTIONS,
    CONTROL_TOWER_EXECUTION_ROLE,
    GLOBAL_SERVICE_ACTIONS,
    MAX_SCP_CHARACTERS,
    HipaaEligibleServices,
    ScpTooLargeError,
    checked_content,
    compact,
    deny_leaving_organization,
    deny_root_user,
    deny_unencrypted_s3_uploads,
    hipaa_eligible_services_only,
    load_hipaa_eligible_services,
    protect_security_services,
    region_allow_list,
)

BREAK_GLASS = "phi-ml-break-glass"
MEMBER = "123456789012"
WORKLOAD_ROLE = f"arn:aws:iam::{MEMBER}:role/data-scientist"
BREAK_GLASS_ARN = f"arn:aws:iam::{MEMBER}:role/{BREAK_GLASS}"
CONTROL_TOWER_ARN = f"arn:aws:iam::{MEMBER}:role/{CONTROL_TOWER_EXECUTION_ROLE}"
ROOT_ARN = f"arn:aws:iam::{MEMBER}:root"
EU = ("eu-central-1", "eu-west-1")
SSE = "s3:x-amz-server-side-encryption"
SSE_C = "s3:x-amz-server-side-encryption-customer-algorithm"

# --- a tiny evaluator --------------------------------------------------------------------
#
# Only what these documents use: Deny statements, Action / NotAction with `*` wildcards,
# Resource "*", and the operators StringEquals, StringNotEquals, ArnLike, ArnNotLike, Null.
# IAM semantics kept: action names match case-insensitively; several operators in one
# Condition must all hold; several values for one key match if any does (for the negated
# operators: the key equals none of them); a negated operator on an absent key holds, a
# positive one does not. Anything else raises, so a document outgrowing the evaluator fails
# loudly instead of being judged wrongly.


@dataclass(frozen=True)
class Request:
    action: str
    principal_arn: str = WORKLOAD_ROLE
    region: str = "us-east-1"
    context: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str | None:
        if key == "aws:RequestedRegion":
            return self.region
        if key.lower() == "aws:principalarn":
            return self.principal_arn
        return self.context.get(key)


def _values(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _action_matches(patterns: Any, action: str) -> bool:
    return any(fnmatchcase(action.lower(), p.lower()) for p in _values(patterns))


def _string_equals(actual: str, values: list[str]) -> bool:
    return actual in values


def _arn_like(actual: str, values: list[str]) -> bool:
    return any(fnmatchcase(actual, v) for v in values)


# operator -> (matches a present value, result when the key is absent, negated)
_OPERATORS: dict[str, tuple[Callable[[str, list[str]], bool], bool]] = {
    "StringEquals": (_string_equals, False),
    "ArnLike": (_arn_like, False),
    "StringNotEquals": (lambda actual, values: not _string_equals(actual, values), True),
    "ArnNotLike": (lambda actual, values: not _arn_like(actual, values), True),
}


def _condition_holds(operator: str, key: str, expected: Any, request: Request) -> bool:
    actual = request.value(key)
    values = _values(expected)
    if operator == "Null":
        (flag,) = values
        return (actual is None) == (flag == "true")
    if operator not in _OPERATORS:
        raise NotImplementedError(f"the evaluator does not know {operator}")
    matches, when_absent = _OPERATORS[operator]
    return when_absent if actual is None else matches(actual, values)


def _statement_denies(statement: Mapping[str, Any], request: Request) -> bool:
    if statement["Effect"] != "Deny":
        raise NotImplementedError("SCPs here are deny lists; an Allow statement is a defect")
    if statement.get("Resource") != "*":
        raise NotImplementedError(f"the evaluator only knows Resource '*': {statement}")
    if "Action" in statement:
        in_scope = _action_matches(statement["Action"], request.action)
    else:
        in_scope = not _action_matches(statement["NotAction"], request.action)
    conditions = statement.get("Condition", {})
    return in_scope and all(
        _condition_holds(operator, key, expected, request)
        for operator, keys in conditions.items()
        for key, expected in keys.items()
    )


def denied(request: Request, *documents: Mapping[str, Any]) -> bool:
    """True if any statement of any document denies the request (FullAWSAccess allows all
    else)."""
    return any(
        _statement_denies(statement, request)
        for document in documents
        for statement in document["Statement"]
    )


def test_the_evaluator_refuses_what_it_cannot_judge() -> None:
    allow = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    odd_operator = {
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            }
        ]
    }
    for document in (allow, odd_operator):
        with pytest.raises(NotImplementedError):
            denied(Request("s3:GetObject"), document)


# --- structural checkers (each shown to catch the defect it names) -------------------------


def only_statement(document: Mapping[str, Any]) -> dict[str, Any]:
    (statement,) = document["Statement"]
    return dict(statement)


def assert_well_formed(document: Mapping[str, Any]) -> None:
    """Version 2012-10-17; every statement a Deny with a unique, explanatory Sid."""
    assert document["Version"] == "2012-10-17"
    sids = [s.get("Sid", "") for s in document["Statement"]]
    assert all(sid.startswith("Deny") and len(sid) > 8 for sid in sids), sids
    assert len(set(sids)) == len(sids), sids
    assert all(s["Effect"] == "Deny" for s in document["Statement"])


def assert_region_restricted(
    document: Mapping[str, Any], regions: tuple[str, ...], break_glass: str
) -> None:
    statement = only_statement(document)
    assert statement["Effect"] == "Deny", statement
    assert set(statement["NotAction"]) == set(GLOBAL_SERVICE_ACTIONS), statement
    condition = statement.get("Condition", {})
    assert set(condition.get("StringNotEquals", {}).get("aws:RequestedRegion", [])) == set(
        regions
    ), statement
    exempt = condition.get("ArnNotLike", {}).get("aws:PrincipalArn", [])
    assert f"arn:aws:iam::*:role/{break_glass}" in exempt, statement


def assert_exempts_break_glass(document: Mapping[str, Any], break_glass: str) -> None:
    for statement in document["Statement"]:
        exempt = statement.get("Condition", {}).get("ArnNotLike", {}).get("aws:PrincipalArn", [])
        assert f"arn:aws:iam::*:role/{break_glass}" in exempt, statement


# --- region allow-list -------------------------------------------------------------------


@pytest.fixture(scope="module")
def eu_only() -> dict[str, Any]:
    return region_allow_list(EU, BREAK_GLASS)


def test_region_allow_list_statement(eu_only: dict[str, Any]) -> None:
    assert_well_formed(eu_only)
    assert_region_restricted(eu_only, EU, BREAK_GLASS)
    statement = only_statement(eu_only)
    assert statement["Resource"] == "*"
    # Regional services that hold data are never exempt: keys and recorders included.
    assert not {"kms:*", "config:*", "s3:*", "sagemaker:*"} & set(statement["NotAction"])


def test_region_checker_catches_a_missing_region_condition(eu_only: dict[str, Any]) -> None:
    broken = copy.deepcopy(eu_only)
    del broken["Statement"][0]["Condition"]["StringNotEquals"]
    with pytest.raises(AssertionError):
        assert_region_restricted(broken, EU, BREAK_GLASS)
    # And what the missing condition would do: deny the allowed regions too.
    assert denied(Request("sagemaker:CreateTrainingJob", region="eu-central-1"), broken)


def test_region_checker_catches_a_missing_break_glass_exception(eu_only: dict[str, Any]) -> None:
    broken = copy.deepcopy(eu_only)
    del broken["Statement"][0]["Condition"]["ArnNotLike"]
    with pytest.raises(AssertionError):
        assert_region_restricted(broken, EU, BREAK_GLASS)
    assert denied(Request("ec2:StopInstances", BREAK_GLASS_ARN, "us-east-1"), broken)


def test_region_checker_catches_allow_instead_of_deny(eu_only: dict[str, Any]) -> None:
    broken = copy.deepcopy(eu_only)
    broken["Statement"][0]["Effect"] = "Allow"
    with pytest.raises(AssertionError):
        assert_region_restricted(broken, EU, BREAK_GLASS)
    with pytest.raises(AssertionError):
        assert_well_formed(broken)


def test_request_in_a_region_outside_the_list_is_denied(eu_only: dict[str, Any]) -> None:
    for region in ("us-east-1", "eu-west-2", "ap-southeast-2"):
        assert denied(Request("s3:PutObject", region=region), eu_only), region


def test_request_in_an_allowed_region_is_not_denied(eu_only: dict[str, Any]) -> None:
    for region in EU:
        assert not denied(Request("s3:PutObject", region=region), eu_only), region
        assert not denied(Request("kms:Decrypt", region=region), eu_only), region


def test_global_service_request_is_not_denied(eu_only: dict[str, Any]) -> None:
    for action in ("iam:CreateRole", "sts:AssumeRole", "organizations:DescribeOrganization"):
        assert not denied(Request(action, region="us-east-1"), eu_only), action
    # A Regional service in the same Region is.
    assert denied(Request("kms:CreateKey", region="us-east-1"), eu_only)


def test_break_glass_and_control_tower_are_not_denied_outside_the_list(
    eu_only: dict[str, Any],
) -> None:
    for principal in (BREAK_GLASS_ARN, CONTROL_TOWER_ARN):
        assert not denied(Request("ec2:RunInstances", principal, "us-east-1"), eu_only)
    # A role whose name merely starts like the break-glass role is not exempt.
    impostor = f"arn:aws:iam::{MEMBER}:role/{BREAK_GLASS}-copy"
    assert denied(Request("ec2:RunInstances", impostor, "us-east-1"), eu_only)


def test_region_allow_list_needs_a_region_and_a_plain_role_name() -> None:
    with pytest.raises(ValueError, match="at least one region"):
        region_allow_list((), BREAK_GLASS)
    with pytest.raises(ValueError, match="role name"):
        region_allow_list(EU, "path/break-glass")


# --- protect security services ------------------------------------------------------------

TAMPERING = {
    "DenyStoppingOrChangingCloudTrail": ("cloudtrail:StopLogging", "cloudtrail:DeleteTrail"),
    "DenyStoppingOrDeletingConfig": (
        "config:StopConfigurationRecorder",
        "config:DeleteDeliveryChannel",
    ),
    "DenyDisablingGuardDuty": ("guardduty:DeleteDetector", "guardduty:DisassociateMembers"),
    "DenyDisablingSecurityHub": ("securityhub:DisableSecurityHub", "securityhub:DeleteMembers"),
    "DenyDeletingVpcFlowLogs": ("ec2:DeleteFlowLogs",),
    "DenyDisablingOrDeletingKmsKeys": ("kms:ScheduleKeyDeletion", "kms:DisableKey"),
}


@pytest.fixture(scope="module")
def protection() -> dict[str, Any]:
    return protect_security_services(BREAK_GLASS)


def test_protection_statements_name_their_actions(protection: dict[str, Any]) -> None:
    assert_well_formed(protection)
    by_sid = {s["Sid"]: s for s in protection["Statement"]}
    assert set(by_sid) == set(TAMPERING)
    for sid, actions in TAMPERING.items():
        assert set(actions) <= set(by_sid[sid]["Action"]), sid
    assert_exempts_break_glass(protection, BREAK_GLASS)


def test_protection_checker_catches_a_missing_break_glass_exception(
    protection: dict[str, Any],
) -> None:
    broken = copy.deepcopy(protection)
    del broken["Statement"][3]["Condition"]
    with pytest.raises(AssertionError):
        assert_exempts_break_glass(broken, BREAK_GLASS)


@pytest.mark.parametrize("action", [a for actions in TAMPERING.values() for a in actions])
def test_tampering_is_denied_except_to_break_glass(protection: dict[str, Any], action: str) -> None:
    assert denied(Request(action), protection)
    assert not denied(Request(action, BREAK_GLASS_ARN), protection)
    assert not denied(Request(action, CONTROL_TOWER_ARN), protection)


def test_setting_up_security_services_stays_allowed(protection: dict[str, Any]) -> None:
    for action in (
        "cloudtrail:CreateTrail",
        "config:PutConfigurationRecorder",
        "guardduty:CreateDetector",
        "securityhub:EnableSecurityHub",
        "ec2:CreateFlowLogs",
        "kms:CreateKey",
        "kms:EnableKeyRotation",
    ):
        assert not denied(Request(action), protection), action


# --- uploads ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploads() -> dict[str, Any]:
    return deny_unencrypted_s3_uploads()


def test_upload_statements(uploads: dict[str, Any]) -> None:
    assert_well_formed(uploads)
    header, customer_keys = uploads["Statement"]
    assert header["Action"] == customer_keys["Action"] == "s3:PutObject"
    assert header["Condition"] == {
        "Null": {SSE: "false"},
        "StringNotEquals": {SSE: ["aws:kms", "aws:kms:dsse"]},
    }
    assert customer_keys["Condition"] == {"Null": {SSE_C: "false"}}


def test_kms_and_default_encryption_uploads_pass(uploads: dict[str, Any]) -> None:
    assert not denied(Request("s3:PutObject", context={SSE: "aws:kms"}), uploads)
    assert not denied(Request("s3:PutObject", context={SSE: "aws:kms:dsse"}), uploads)
    # No header: the bucket's default encryption applies its CMK (see modules/storage.py).
    assert not denied(Request("s3:PutObject"), uploads)


def test_sse_s3_and_customer_keys_are_denied(uploads: dict[str, Any]) -> None:
    assert denied(Request("s3:PutObject", context={SSE: "AES256"}), uploads)
    assert denied(Request("s3:PutObject", context={SSE_C: "AES256"}), uploads)


def test_without_the_null_guard_header_less_uploads_would_break(uploads: dict[str, Any]) -> None:
    """Twin: the Null condition is what lets default encryption work."""
    broken = copy.deepcopy(uploads)
    del broken["Statement"][0]["Condition"]["Null"]
    assert denied(Request("s3:PutObject"), broken)


# --- root, leaving ------------------------------------------------------------------------


def test_root_user_is_denied_everything_and_roles_are_not() -> None:
    document = deny_root_user()
    assert_well_formed(document)
    assert only_statement(document)["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}
    }
    assert denied(Request("s3:GetObject", ROOT_ARN), document)
    assert denied(Request("iam:CreateAccessKey", ROOT_ARN), document)
    assert not denied(Request("s3:GetObject", WORKLOAD_ROLE), document)


def test_leaving_the_organization_is_denied_and_nothing_else() -> None:
    document = deny_leaving_organization()
    assert_well_formed(document)
    assert denied(Request("organizations:LeaveOrganization", BREAK_GLASS_ARN), document)
    assert not denied(Request("organizations:DescribeOrganization"), document)


# --- HIPAA-eligible services --------------------------------------------------------------


@pytest.fixture(scope="module")
def eligible() -> HipaaEligibleServices:
    return load_hipaa_eligible_services()


@pytest.fixture(scope="module")
def hipaa(eligible: HipaaEligibleServices) -> dict[str, Any]:
    return hipaa_eligible_services_only(eligible.services)


def test_hipaa_list_file_names_its_source(eligible: HipaaEligibleServices) -> None:
    assert eligible.source == "https://aws.amazon.com/compliance/hipaa-eligible-services-reference/"
    for prefix in ("s3", "sagemaker", "healthlake", "kms", "ec2", "ecr", "logs", "events"):
        assert prefix in eligible.services, prefix


def test_hipaa_statement_is_one_deny_with_not_action(
    hipaa: dict[str, Any], eligible: HipaaEligibleServices
) -> None:
    assert_well_formed(hipaa)
    statement = only_statement(hipaa)
    assert "Condition" not in statement  # applies to every principal
    expected = {f"{p}:*" for p in eligible.services} | set(CONTROL_PLANE_ACTIONS)
    assert set(statement["NotAction"]) == expected


def test_eligible_and_control_plane_services_pass(hipaa: dict[str, Any]) -> None:
    for action in (
        "sagemaker:CreateTrainingJob",
        "healthlake:StartFHIRImportJob",
        "s3:PutObject",
        "iam:PassRole",
        "sts:AssumeRole",
        "organizations:DescribeOrganization",
    ):
        assert not denied(Request(action), hipaa), action


def test_ineligible_services_are_denied_even_to_break_glass(hipaa: dict[str, Any]) -> None:
    for action in ("gamelift:CreateFleet", "lightsail:CreateInstances", "mturk:CreateHIT"):
        assert denied(Request(action), hipaa), action
        assert denied(Request(action, BREAK_GLASS_ARN), hipaa), action
    # Organizations is read-only from a PHI account.
    assert denied(Request("organizations:CreateAccount"), hipaa)


def test_splitting_a_not_action_allow_list_would_deny_both_halves(
    hipaa: dict[str, Any],
) -> None:
    """Why the code raises instead of splitting: two Deny+NotAction halves allow only what
    both list, so each half denies the other's services."""
    allowed = only_statement(hipaa)["NotAction"]
    half = len(allowed) // 2
    first, second = (
        {"Statement": [{**only_statement(hipaa), "NotAction": part}]}
        for part in (allowed[:half], allowed[half:])
    )
    one_from_each = (allowed[0].replace("*", "Anything"), allowed[-1].replace("*", "Anything"))
    for action in one_from_each:
        assert not denied(Request(action), hipaa)
        assert denied(Request(action), first, second)


def test_hipaa_list_rejects_what_is_not_a_prefix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an IAM service prefix"):
        hipaa_eligible_services_only(["sagemaker:*"])
    bad = tmp_path / "services.yaml"
    for services in ("[s3, S3 Glacier]", "[s3, s3]", "[]"):
        bad.write_text(
            "source: https://aws.amazon.com/compliance/hipaa-eligible-services-reference/\n"
            f"retrieved: 2026-11-28\nservices: {services}\n"
        )
        with pytest.raises(ValidationError):
            load_hipaa_eligible_services(bad)


# --- size ---------------------------------------------------------------------------------


def test_every_policy_fits_the_scp_quota(eligible: HipaaEligibleServices) -> None:
    every_region = (
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-central-1",
        "eu-central-2",
        "eu-west-1",
        "eu-west-3",
        "eu-south-1",
        "eu-south-2",
        "eu-north-1",
    )
    documents = {
        "deny-leaving-organization": deny_leaving_organization(),
        "protect-security-services": protect_security_services("b" * 64),
        "deny-root-user": deny_root_user(),
        "deny-unencrypted-s3-uploads": deny_unencrypted_s3_uploads(),
        "hipaa-eligible-services-only": hipaa_eligible_services_only(eligible.services),
        "region-allow-list": region_allow_list(every_region, "b" * 64),
    }
    for name, document in documents.items():
        content = checked_content(name, document)
        assert content == compact(document)
        assert len(content) <= MAX_SCP_CHARACTERS, name
        assert " " not in content, name  # compact: what is measured is what is sent


def test_an_oversized_policy_is_refused_with_its_name() -> None:
    too_many = [f"service{n:04d}" for n in range(400)]
    with pytest.raises(
        ScpTooLargeError, match=r"'hipaa-eligible-services-only' is \d+ characters.* 5120"
    ):
        checked_content("hipaa-eligible-services-only", hipaa_eligible_services_only(too_many))
