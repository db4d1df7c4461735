"""CKV_PHI_30 "Ensure a SageMaker model package group policy grants only read actions, to one
other account".

The registry is shared with the production account so that it can see which versions exist and
which a person approved; it must not be able to register, approve or delete versions, nor may a
second account read models trained on patient data. HIPAA 45 CFR 164.312(a)(1) (access
control) and 164.308(a)(4) (access authorization), GDPR Art. 25/32 and EU AI Act Art. 14 and 15
(human oversight, integrity of high-risk systems) ask for exactly that. CKV_PHI_5 rejects a
public policy; this check rejects write access and a second account.

Judged: every `aws_sagemaker_model_package_group_policy`. Each Allow statement must name only
actions that read, spelled out (`sagemaker:Describe...`, `sagemaker:List...`,
`sagemaker:Get...`; no wildcard such as `*`, `sagemaker:*` or `sagemaker:Describe*`, no
`NotAction`), and only AWS account principals (a 12-digit account id or
`arn:aws:iam::<account>:root`); across all Allow statements exactly one account may appear. A
policy that is not JSON fails (it cannot be verified).
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import json_document, scalar
from policies.checks._documents import actions, as_list, statements

READ_ACTION_PREFIXES = ("sagemaker:describe", "sagemaker:list", "sagemaker:get")
_ACCOUNT = re.compile(r"^(?:arn:aws[a-z-]*:iam::)?(?P<account>\d{12})(?::root)?$")


def _is_read_action(action: str) -> bool:
    return action.startswith(READ_ACTION_PREFIXES) and "*" not in action


def _accounts(statement: dict[str, Any]) -> tuple[set[str], list[str]]:
    """(accounts, principals that are not an account) of a statement."""
    principal = statement.get("Principal")
    accounts: set[str] = set()
    others: list[str] = []
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        return accounts, [str(principal)]
    for value in as_list(principal["AWS"]):
        match = _ACCOUNT.match(str(value))
        if match:
            accounts.add(match.group("account"))
        else:
            others.append(str(value))
    return accounts, others


class ModelPackageGroupPolicyReadOnlyOneAccount(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a SageMaker model package group policy grants only read actions, "
                "to one other account"
            ),
            id="CKV_PHI_30",
            categories=[CheckCategories.IAM],
            supported_resources=["aws_sagemaker_model_package_group_policy"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["resource_policy"]
        policy = json_document(scalar(conf, "resource_policy"))
        if policy is None:
            self.details.append("resource_policy is not a JSON policy document")
            return CheckResult.FAILED
        accounts: set[str] = set()
        for index, statement in enumerate(statements(policy)):
            if statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid", index)
            if "NotAction" in statement or "NotPrincipal" in statement:
                self.details.append(f"statement {sid} uses NotAction or NotPrincipal")
            writes = [a for a in actions(statement) if not _is_read_action(a)]
            if writes:
                self.details.append(f"statement {sid} grants {', '.join(writes)}")
            found, others = _accounts(statement)
            if others:
                self.details.append(f"statement {sid} names {', '.join(others)}, not an account")
            accounts |= found
        if len(accounts) > 1:
            self.details.append(f"shared with {len(accounts)} accounts: {sorted(accounts)}")
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = ModelPackageGroupPolicyReadOnlyOneAccount()
