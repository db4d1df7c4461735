"""CKV_PHI_19 "Ensure a KMS key policy separates administrators from users and grants the account
root nothing".

Who can read PHI must be decided by the key policy alone, and the people who manage a key must
not be able to read what it protects: HIPAA 45 CFR 164.308(a)(3)-(4) (workforce access,
minimum necessary), 164.312(a)(1) (access control), GDPR Art. 25 and 32, NIST SP 800-53 AC-5
(separation of duties) and AC-6 (least privilege). A statement allowing the account root
(AWS's default key policy) hands the decision to every IAM policy of the account.

Judged: every `aws_kms_key`'s `policy` (absent, AWS's default policy, or not JSON fails). Only
Allow statements count. A statement's principals are its `AWS` principals; an account root
(`arn:aws:iam::<account>:root` or a bare account id) or `"*"` narrowed by an `ArnEquals` /
`StringEquals` `aws:PrincipalArn` condition with exact ARNs stands for those ARNs. It fails when
- a statement allows the account root or `"*"` without such a condition, or uses
  `NotPrincipal`;
- a principal allowed a key-management action (`kms:PutKeyPolicy`, `kms:ScheduleKeyDeletion`,
  `kms:DisableKey`, `kms:CreateAlias`, ... as the actions or wildcards name them) is also allowed
  to obtain plaintext: `kms:Decrypt`, `kms:ReEncryptFrom`, `kms:GenerateDataKey` or
  `kms:GenerateDataKeyPair` other than through an AWS service (`kms:ViaService`), or
  `kms:CreateGrant` other than for an AWS resource (`kms:GrantIsForAWSResource` true): a grant
  to oneself is decryption.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import json_document, scalar
from policies.checks._documents import ANYONE, as_list, conditions, statements

MANAGEMENT_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DeleteImportedKeyMaterial",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:ImportKeyMaterial",
    "kms:PutKeyPolicy",
    "kms:ReplicateKey",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
    "kms:UpdatePrimaryRegion",
)
DECRYPT_ACTIONS = ("kms:Decrypt", "kms:ReEncryptFrom")
# Plaintext data keys, unless a service (S3, Lambda, ...) generates them for its own use.
DATA_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:GenerateDataKeyPair")
GRANT_ACTION = "kms:CreateGrant"
_ROOT = re.compile(r"^(arn:aws[a-z-]*:iam::)?\d{12}(:root)?$")
_EXACT_OPERATORS = frozenset({"arnequals", "stringequals"})


def allows(statement: dict[str, Any], action: str) -> bool:
    """The statement's Action (or NotAction) covers `action` (IAM actions ignore case)."""
    wanted = action.lower()
    if "NotAction" in statement:
        return not any(
            fnmatch.fnmatchcase(wanted, str(p).lower()) for p in as_list(statement["NotAction"])
        )
    return any(
        fnmatch.fnmatchcase(wanted, str(p).lower()) for p in as_list(statement.get("Action"))
    )


def _condition(statement: dict[str, Any], operators: set[str], key: str) -> list[Any]:
    return [
        value
        for operator, found_key, values in conditions(statement)
        if operator in operators and found_key == key
        for value in values
    ]


def exact_principal_arns(statement: dict[str, Any]) -> list[str]:
    values = _condition(statement, set(_EXACT_OPERATORS), "aws:principalarn")
    if values and all("*" not in str(v) and "?" not in str(v) for v in values):
        return [str(v) for v in values]
    return []


def principals(statement: dict[str, Any]) -> tuple[set[str], list[str]]:
    """(the principals an Allow statement admits, those of them that are the whole account)."""
    principal = statement.get("Principal")
    named = as_list(principal.get("AWS")) if isinstance(principal, dict) else as_list(principal)
    narrowed = exact_principal_arns(statement)
    admitted: set[str] = set()
    unbounded: list[str] = []
    for value in (str(v) for v in named):
        if value == ANYONE or _ROOT.match(value):
            if narrowed:
                admitted.update(narrowed)
            else:
                unbounded.append(value)
                admitted.add(value)
        else:
            admitted.add(value)
    return admitted, unbounded


def manages(statement: dict[str, Any]) -> bool:
    return any(allows(statement, a) for a in MANAGEMENT_ACTIONS)


def obtains_plaintext(statement: dict[str, Any]) -> bool:
    if any(allows(statement, a) for a in DECRYPT_ACTIONS):
        return True
    through_service = bool(_condition(statement, {"stringequals", "stringlike"}, "kms:viaservice"))
    if not through_service and any(allows(statement, a) for a in DATA_KEY_ACTIONS):
        return True
    for_aws_resource = [
        str(v).lower() for v in _condition(statement, {"bool"}, "kms:grantisforawsresource")
    ]
    return allows(statement, GRANT_ACTION) and for_aws_resource != ["true"]


def policy_problems(policy: dict[str, Any]) -> list[str]:
    problems = []
    managers: set[str] = set()
    readers: set[str] = set()
    for index, statement in enumerate(statements(policy)):
        if statement.get("Effect") != "Allow":
            continue
        sid = statement.get("Sid", index)
        if "NotPrincipal" in statement:
            problems.append(f"statement {sid} allows everyone but its NotPrincipal")
            continue
        admitted, unbounded = principals(statement)
        if unbounded:
            problems.append(
                f"statement {sid} allows {', '.join(unbounded)} without an exact "
                "aws:PrincipalArn condition"
            )
        if manages(statement):
            managers |= admitted
        if obtains_plaintext(statement):
            readers |= admitted
    both = sorted(managers & readers)
    if both:
        problems.append(f"{', '.join(both)} both manage the key and obtain plaintext")
    return problems


class KmsKeyPolicySeparatesDuties(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a KMS key policy separates administrators from users and grants the "
                "account root nothing"
            ),
            id="CKV_PHI_19",
            categories=[CheckCategories.IAM],
            supported_resources=["aws_kms_key"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["policy"]
        policy = json_document(scalar(conf, "policy"))
        if policy is None:
            self.details.append(
                "no JSON key policy (AWS's default allows the account root everything)"
            )
            return CheckResult.FAILED
        self.details.extend(policy_problems(policy))
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = KmsKeyPolicySeparatesDuties()
