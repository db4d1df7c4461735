"""CKV_PHI_45 "Ensure every OU holding PHI is confined by SCPs to HIPAA-eligible services and
SSE-KMS uploads".

Under the AWS Business Associate Addendum, PHI may be stored or processed only in HIPAA-eligible
services (HIPAA 45 CFR 164.308(b)(1), 164.314(a)); an upload that asks for SSE-S3 or SSE-C
escapes the customer-managed keys whose use is logged and whose grants are reviewed
(164.312(a)(2)(iv), 164.312(b)); GDPR Art. 28 and 32; EHDS Art. 73. The platform's
`hipaa-eligible-services-only` and `deny-unencrypted-s3-uploads` SCPs enforce both where PHI
lives.

Judged, with the stack in view:
- every SCP (`aws_organizations_policy`, type SERVICE_CONTROL_POLICY) holding a service
  allow-list statement (Effect Deny, NotAction, Resource "*", no Condition) fails when one of
  its NotAction entries is neither `<prefix>:...` of a service listed in
  policies/hipaa_eligible_services.yaml (AWS's HIPAA Eligible Services Reference) nor one of
  CONTROL_PLANE_ACTIONS (identity, keys, audit and detection, read-only Organizations, which
  hold no PHI);
- every OU holding PHI (an `aws_organizations_organizational_unit` directly under the root that
  is named Workloads or Research-EU, or whose subtree holds an `aws_organizations_account`
  tagged `account-role` = `workload`) fails unless the SCPs attached to it or to the root
  include (1) a service allow-list statement, (2) a Deny of s3:PutObject whose only conditions
  are StringNotEquals(IfExists) s3:x-amz-server-side-encryption with values among aws:kms and
  aws:kms:dsse (and optionally Null s3:x-amz-server-side-encryption false), and (3) a Deny of
  s3:PutObject whose only condition is Null s3:x-amz-server-side-encryption-customer-algorithm
  false (SSE-C). OUs below inherit them (NonProd, Prod under Workloads). Every other OU directly
  under the root passes (it holds no PHI), so that moving a workload account into it fails it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from checkov.common.models.enums import CheckCategories

from policies.checks._documents import as_list, conditions, statements
from policies.checks._organizations import (
    POLICY,
    UNIT,
    Organization,
    denies,
    governing_statements,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

HIPAA_ELIGIBLE_SERVICES_FILE = (
    Path(__file__).resolve().parent.parent / "hipaa_eligible_services.yaml"
)

# Services every account needs whatever data it holds; none stores PHI.
CONTROL_PLANE_ACTIONS = frozenset(
    {
        "access-analyzer:*",
        "cloudformation:*",
        "cloudtrail:*",
        "config:*",
        "guardduty:*",
        "health:*",
        "iam:*",
        "kms:*",
        "logs:*",
        "organizations:describe*",
        "organizations:list*",
        "securityhub:*",
        "sts:*",
        "support:*",
        "tag:*",
    }
)
PUT_OBJECT = "s3:PutObject"
SSE_HEADER = "s3:x-amz-server-side-encryption"
SSE_C_HEADER = "s3:x-amz-server-side-encryption-customer-algorithm"
KMS_ENCRYPTION = frozenset({"aws:kms", "aws:kms:dsse"})


@cache
def hipaa_eligible_prefixes() -> frozenset[str]:
    data = yaml.safe_load(HIPAA_ELIGIBLE_SERVICES_FILE.read_text(encoding="utf-8"))
    return frozenset(str(s).lower() for s in data["services"])


def is_service_allow_list(statement: dict[str, Any]) -> bool:
    return (
        statement.get("Effect") == "Deny"
        and "NotAction" in statement
        and "Condition" not in statement
        and "*" in [str(r) for r in as_list(statement.get("Resource"))]
        and "NotResource" not in statement
    )


def not_eligible(statement: dict[str, Any]) -> list[str]:
    eligible = hipaa_eligible_prefixes()
    return [
        str(entry)
        for entry in as_list(statement.get("NotAction"))
        if str(entry).lower() not in CONTROL_PLANE_ACTIONS
        and str(entry).split(":", 1)[0].lower() not in eligible
    ]


def _is_false(value: Any) -> bool:
    return value is False or str(value).strip().lower() == "false"


def denies_non_kms_header(statement: dict[str, Any]) -> bool:
    if not denies(statement, PUT_OBJECT):
        return False
    allowed: list[Any] = []
    for operator, key, values in conditions(statement):
        if key != SSE_HEADER.lower():
            return False
        if operator in ("stringnotequals", "stringnotequalsifexists"):
            allowed += values
        elif not (operator == "null" and all(_is_false(v) for v in values)):
            return False
    return bool(allowed) and {str(v) for v in allowed} <= KMS_ENCRYPTION


def denies_customer_provided_keys(statement: dict[str, Any]) -> bool:
    found = list(conditions(statement))
    return (
        denies(statement, PUT_OBJECT)
        and bool(found)
        and all(
            operator == "null" and key == SSE_C_HEADER.lower() and all(_is_false(v) for v in values)
            for operator, key, values in found
        )
    )


REQUIRED = (
    ("no HIPAA-eligible service allow-list", is_service_allow_list),
    ("no Deny of uploads asking for SSE-S3 or other non-KMS encryption", denies_non_kms_header),
    ("no Deny of uploads with customer-provided keys (SSE-C)", denies_customer_provided_keys),
)


class PhiOusHipaaEligibleServicesAndKmsUploads(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every OU holding PHI is confined by SCPs to HIPAA-eligible services "
                "and SSE-KMS uploads"
            ),
            id="CKV_PHI_45",
            category=CheckCategories.IAM,
            judged_types=[POLICY, UNIT],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        organization = Organization.of(stack)
        for name, document in sorted(organization.policies.items()):
            allow_lists = [s for s in statements(document or {}) if is_service_allow_list(s)]
            if allow_lists:
                extra = sorted({e for s in allow_lists for e in not_eligible(s)})
                reason = f"allows services that are not HIPAA eligible: {', '.join(extra)}"
                yield Verdict(address(POLICY, name), not extra, reason if extra else "")
        phi_units = set(organization.phi_units())
        for unit in organization.top_level_units():
            if unit not in phi_units:
                yield Verdict(address(UNIT, unit), True, "holds no PHI")
                continue
            governing = [s for _, s in governing_statements(organization, unit)]
            missing = [why for why, test in REQUIRED if not any(test(s) for s in governing)]
            yield Verdict(address(UNIT, unit), not missing, "; ".join(missing))


check = register(PhiOusHipaaEligibleServicesAndKmsUploads())
