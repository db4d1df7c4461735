"""CKV_PHI_43 "Ensure an Organizations member account is never closed when its resource is
deleted".

A member account holds PHI, its backups and its audit logs. With `close_on_deletion` true, a
`terraform destroy` or an account removed from the environment file closes the account, and AWS
deletes what is in it after the 90-day post-closure period: records HIPAA 45 CFR 164.316(b)(2)
keeps six years and 164.308(a)(7) (contingency plan) and 164.312(c)(1) (integrity) protect;
GDPR Art. 32(1)(c) (availability). Without it, deleting the resource only removes the account
from the organization's state, and closing an account stays a deliberate, reviewed act.

Judged: every `aws_organizations_account`. It fails when `close_on_deletion` is true (a boolean
or the string "true"), and passes when it is false or absent (the provider's default is false).
An interpolated value fails: it cannot be verified.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import is_true, scalar


class OrganizationsAccountNotClosedOnDeletion(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure an Organizations member account is never closed when its resource is "
                "deleted"
            ),
            id="CKV_PHI_43",
            categories=[CheckCategories.BACKUP_AND_RECOVERY],
            supported_resources=["aws_organizations_account"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["close_on_deletion"]
        value = scalar(conf, "close_on_deletion")
        if value is None or value is False:
            return CheckResult.PASSED
        if isinstance(value, str) and value.strip().lower() == "false":
            return CheckResult.PASSED
        self.details.append(
            "close_on_deletion is true: deleting the resource closes the account"
            if is_true(value)
            else f"close_on_deletion is {value!r}, which cannot be verified"
        )
        return CheckResult.FAILED


check = OrganizationsAccountNotClosedOnDeletion()
