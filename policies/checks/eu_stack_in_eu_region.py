"""CKV_PHI_11 "Ensure a stack holding EU patients' data deploys only to an EU residency region".

GDPR Chapter V (Art. 44-49) restricts transfers of personal data out of the EU, and the EHDS
expects secondary use of health data inside a secure processing environment in the Union. The
platform keeps EU environments in EU regions (modules/regions.py EU_RESIDENCY_REGIONS: EU
member states only, not London or Zurich).

Judged: every `provider "aws"` block whose `default_tags` put the stack in GDPR or EHDS scope
(`compliance-scope`, e.g. `GDPR+EHDS`). Its `region` must be one of EU_RESIDENCY_REGIONS; a
missing or interpolated region fails (it is decided outside the code). Providers of other
stacks are not judged. A provider without default tags is caught by CKV_PHI_14.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.provider.base_check import BaseProviderCheck

from policies.checks._conf import scalar
from policies.checks._tags import default_tags, is_eu_stack
from requirements.residency import EU_RESIDENCY_REGIONS


class EuStackInEuRegion(BaseProviderCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a stack holding EU patients' data deploys only to an EU residency region",
            id="CKV_PHI_11",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_provider=["aws"],
        )

    def scan_provider_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["region", "default_tags"]
        if not is_eu_stack(default_tags(conf)):
            return CheckResult.UNKNOWN
        region = scalar(conf, "region")
        if region in EU_RESIDENCY_REGIONS:
            return CheckResult.PASSED
        self.details.append(
            f"region {region!r} is not one of {', '.join(sorted(EU_RESIDENCY_REGIONS))}"
        )
        return CheckResult.FAILED


check = EuStackInEuRegion()
