"""CKV_PHI_14 "Ensure the AWS provider tags every resource with environment, owner,
data-classification and compliance-scope".

An inventory that says who owns each resource, which environment it belongs to, what data it
holds and which regulations apply is where HIPAA 45 CFR 164.308(a)(1)(ii)(A) risk analysis and
GDPR Art. 30 records of processing start, and what cost, access and incident processes key on.
The platform tags through the provider's `default_tags` (applied to every resource it creates).

Judged: every `provider "aws"` block (aliased ones too). Its `default_tags` must give each of
REQUIRED_TAGS (policies/checks/_tags.py) a non-empty value.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.provider.base_check import BaseProviderCheck

from policies.checks._tags import REQUIRED_TAGS, default_tags


class ProviderRequiredTags(BaseProviderCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure the AWS provider tags every resource with environment, owner, "
                "data-classification and compliance-scope"
            ),
            id="CKV_PHI_14",
            categories=[CheckCategories.CONVENTION],
            supported_provider=["aws"],
        )

    def scan_provider_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["default_tags"]
        tags = default_tags(conf)
        missing = [t for t in REQUIRED_TAGS if not tags.get(t, "").strip()]
        if missing:
            self.details.append(f"default_tags lack {', '.join(missing)}")
            return CheckResult.FAILED
        return CheckResult.PASSED


check = ProviderRequiredTags()
