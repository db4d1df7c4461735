"""Service control policies (SCPs) as pure functions returning policy documents.

Every document here is a deny list: the organization keeps AWS's `FullAWSAccess` SCP on each
target, and these statements subtract from it. Denies cannot be overridden by any IAM policy
in a member account; SCPs never apply to the management account or to service-linked roles.

Two kinds of principal are exempted from the guard rails that would otherwise lock out the
people and services who must repair the platform:

- the break-glass role (one name, the same in every account), used only in an incident, and
- `AWSControlTowerExecution`, the role Control Tower assumes to baseline enrolled accounts
  (CloudTrail, Config, the region deny); Control Tower's own guard rails exempt it the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from requirements.residency import GLOBAL_SERVICE_ACTIONS

PolicyDocument = dict[str, Any]

# AWS Organizations quota: an SCP document holds at most 5,120 characters.
MAX_SCP_CHARACTERS = 5120

CONTROL_TOWER_EXECUTION_ROLE = "AWSControlTowerExecution"

# Actions of global services, whose requests are made to us-east-1 (or have no Region), after

# Services every account needs whatever data it holds: identity, keys, the audit trail and the
# detective controls, read-only Organizations, CloudFormation (Control Tower baselines accounts
# with StackSets), tagging, and AWS Health/Support. None of them stores PHI; they are not on the
# HIPAA list because they are the control plane, not a place to put patient data.
CONTROL_PLANE_ACTIONS = (
    "access-analyzer:*",
    "cloudformation:*",
    "cloudtrail:*",
    "config:*",
    "guardduty:*",
    "health:*",
    "iam:*",
    "kms:*",
    "logs:*",
    "organizations:Describe*",
    "organizations:List*",
    "securityhub:*",
    "sts:*",
    "support:*",
    "tag:*",
)

_SERVICE_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")


class ScpTooLargeError(ValueError):
    """A policy document would exceed the Organizations size quota."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        super().__init__(
            f"SCP {name!r} is {size} characters; AWS Organizations accepts at most "
            f"{MAX_SCP_CHARACTERS}"
        )


def compact(document: PolicyDocument) -> str:
    """The document exactly as it is sent to Organizations (no whitespace, stable order):
    what is measured against the quota is what is deployed."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def checked_content(name: str, document: PolicyDocument) -> str:
    """The compact document, or ScpTooLargeError naming the policy."""
    content = compact(document)
    if len(content) > MAX_SCP_CHARACTERS:
        raise ScpTooLargeError(name, len(content))
    return content


def _document(*statements: dict[str, Any]) -> PolicyDocument:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def exempt_principal_arns(break_glass_role_name: str) -> list[str]:
    """`aws:PrincipalArn` patterns of the roles a guard rail must not lock out."""
    if not _ROLE_NAME.match(break_glass_role_name):
        raise ValueError(f"{break_glass_role_name!r} is not an IAM role name (no path)")
    return [
        f"arn:aws:iam::*:role/{break_glass_role_name}",
        f"arn:aws:iam::*:role/{CONTROL_TOWER_EXECUTION_ROLE}",
    ]


def deny_leaving_organization() -> PolicyDocument:
    """A member account that leaves escapes every SCP, the organization trail and the
    delegated GuardDuty/Security Hub administration at once."""
    return _document(
        {
            "Sid": "DenyLeavingTheOrganization",
            "Effect": "Deny",
            "Action": "organizations:LeaveOrganization",
            "Resource": "*",
        }
    )


def protect_security_services(break_glass_role_name: str) -> PolicyDocument:
    """Deny switching off or deleting the audit trail, the configuration recorder, threat
    detection, posture management, flow logs and keys, except for the break-glass role and
    Control Tower's execution role.

    Creating and configuring these services stays allowed (`PutConfigurationRecorder`,
    `UpdateDetector`, `UpdateStandardsControl`): the same actions set them up, so denying them
    would stop the platform from deploying its own detection; turning a detector or a recorder
    down is itself recorded by CloudTrail and flagged by Security Hub (Config.1, GuardDuty.1).
    """
    exempt = {"ArnNotLike": {"aws:PrincipalArn": exempt_principal_arns(break_glass_role_name)}}

    def deny(sid: str, actions: list[str]) -> dict[str, Any]:
        return {
            "Sid": sid,
            "Effect": "Deny",
            "Action": sorted(actions),
            "Resource": "*",
            "Condition": exempt,
        }

    return _document(
        deny(
            "DenyStoppingOrChangingCloudTrail",
            [
                "cloudtrail:DeleteEventDataStore",
                "cloudtrail:DeleteTrail",
                "cloudtrail:PutEventSelectors",
                "cloudtrail:StopEventDataStoreIngestion",
                "cloudtrail:StopLogging",
                "cloudtrail:UpdateTrail",
            ],
        ),
        deny(
            "DenyStoppingOrDeletingConfig",
            [
                "config:DeleteAggregationAuthorization",
                "config:DeleteConfigurationAggregator",
                "config:DeleteConfigurationRecorder",
                "config:DeleteDeliveryChannel",
                "config:DeleteRetentionConfiguration",
                "config:StopConfigurationRecorder",
            ],
        ),
        deny(
            "DenyDisablingGuardDuty",
            [
                "guardduty:DeleteDetector",
                "guardduty:DeleteMembers",
                "guardduty:DisassociateFromAdministratorAccount",
                "guardduty:DisassociateFromMasterAccount",
                "guardduty:DisassociateMembers",
                "guardduty:StopMonitoringMembers",
            ],
        ),
        deny(
            "DenyDisablingSecurityHub",
            [
                "securityhub:BatchDisableStandards",
                "securityhub:DeleteMembers",
                "securityhub:DisableSecurityHub",
                "securityhub:DisassociateFromAdministratorAccount",
                "securityhub:DisassociateFromMasterAccount",
                "securityhub:DisassociateMembers",
            ],
        ),
        deny("DenyDeletingVpcFlowLogs", ["ec2:DeleteFlowLogs"]),
        deny(
            "DenyDisablingOrDeletingKmsKeys",
            ["kms:DisableKey", "kms:DisableKeyRotation", "kms:ScheduleKeyDeletion"],
        ),
    )


def deny_unencrypted_s3_uploads() -> PolicyDocument:
    """Deny uploads that ask for anything but SSE-KMS, and uploads with customer-provided keys.

    Same rule as every HardenedBucket's policy (modules/storage.py), one level up: an upload
    without an encryption header is allowed, because the bucket's default encryption then
    applies its CMK (and S3 encrypts every new object since January 2023); requiring the header
    would break AWS services that write through default encryption (log delivery, SageMaker,
    Athena results). What is denied is an explicit request for SSE-S3 (AES256), and SSE-C,
    whose keys AWS never holds: data nobody here can decrypt or audit (the pattern of S3
    ransomware), and which the bucket-key CMK never touches.
    """
    return _document(
        {
            "Sid": "DenyEncryptionHeaderOtherThanKms",
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": "*",
            "Condition": {
                "Null": {"s3:x-amz-server-side-encryption": "false"},
                "StringNotEquals": {"s3:x-amz-server-side-encryption": ["aws:kms", "aws:kms:dsse"]},
            },
        },
        {
            "Sid": "DenyCustomerProvidedKeys",
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": "*",
            "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}},
        },
    )


def deny_root_user() -> PolicyDocument:
    """Root credentials bypass every IAM policy and leave no role session in CloudTrail. The
    rare root-only tasks (restoring a locked bucket policy, closing the account) are done
    under change control with this policy detached from the account's path."""
    return _document(
        {
            "Sid": "DenyEverythingToTheRootUser",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}},
        }
    )


def region_allow_list(regions: Sequence[str], break_glass_role_name: str) -> PolicyDocument:
    """Deny every Regional action requested outside `regions` (data residency), except global
    services (see GLOBAL_SERVICE_ACTIONS), the break-glass role and Control Tower."""
    if not regions:
        raise ValueError("a region allow-list needs at least one region")
    return _document(
        {
            "Sid": "DenyRequestsOutsideAllowedRegions",
            "Effect": "Deny",
            "NotAction": sorted(GLOBAL_SERVICE_ACTIONS),
            "Resource": "*",
            "Condition": {
                "StringNotEquals": {"aws:RequestedRegion": sorted(set(regions))},
                "ArnNotLike": {"aws:PrincipalArn": exempt_principal_arns(break_glass_role_name)},
            },
        }
    )


def hipaa_eligible_services_only(services: Iterable[str]) -> PolicyDocument:
    """Deny every action of a service that is neither HIPAA eligible nor control plane.

    An allow-list written as Deny + NotAction must be ONE statement: two such statements (or
    two policies) each deny what the other lists, so their combination allows only the
    intersection. If the list outgrows the quota, shorten it (wildcards) or move the OU to an
    Allow-list strategy; never split it.
    """
    prefixes = sorted(set(services))
    for prefix in prefixes:
        if not _SERVICE_PREFIX.match(prefix):
            raise ValueError(f"{prefix!r} is not an IAM service prefix (e.g. sagemaker)")
    allowed = sorted({f"{prefix}:*" for prefix in prefixes} | set(CONTROL_PLANE_ACTIONS))
    return _document(
        {
            "Sid": "DenyServicesThatAreNotHipaaEligible",
            "Effect": "Deny",
            "NotAction": allowed,
            "Resource": "*",
        }
    )


class HipaaEligibleServices(BaseModel):
    """policies/hipaa_eligible_services.yaml: the IAM prefixes of the services PHI may touch,
    with where the list came from and when it was checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(pattern=r"^https://aws\.amazon\.com/compliance/")
    retrieved: date
    services: tuple[str, ...] = Field(min_length=1)

    @field_validator("services")
    @classmethod
    def _prefixes(cls, services: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in services:
            if not _SERVICE_PREFIX.match(prefix):
                raise ValueError(f"{prefix!r} is not an IAM service prefix (e.g. sagemaker)")
        duplicates = sorted({p for p in services if services.count(p) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return services


HIPAA_ELIGIBLE_SERVICES_FILE = (
    Path(__file__).resolve().parent.parent / "policies" / "hipaa_eligible_services.yaml"
)


def load_hipaa_eligible_services(
    path: Path = HIPAA_ELIGIBLE_SERVICES_FILE,
) -> HipaaEligibleServices:
    data: Mapping[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return HipaaEligibleServices.model_validate(data)
