"""CKV_PHI_12 "Ensure logs and audit records are kept at least six years (2192 days)".

HIPAA 45 CFR 164.316(b)(2)(i) keeps documentation, audit logs included, six years; 164.312(b)
audit controls; EU AI Act Art. 12 (logs of high-risk systems kept for their lifetime). Judged:
- `aws_cloudwatch_log_group`: `retention_in_days` at least 2192, or absent / 0 (never expire);
- `aws_config_retention_configuration`: `retention_period_in_days` at least 2192;
- `aws_s3_bucket_object_lock_configuration` (the audit archive): a default retention of at
  least 2192 days or 6 years (without one, objects are not locked by default).
2192 is modules/retention.py's HIPAA_MIN_AUDIT_RETENTION_DAYS, the smallest CloudWatch Logs
value covering six years.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from modules.retention import HIPAA_MIN_AUDIT_RETENTION_DAYS
from policies.checks._conf import block, scalar

SIX_YEARS = 6


def _at_least_six_years(days: Any) -> bool:
    return isinstance(days, int) and days >= HIPAA_MIN_AUDIT_RETENTION_DAYS


class LogRetentionSixYears(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure logs and audit records are kept at least six years (2192 days)",
            id="CKV_PHI_12",
            categories=[CheckCategories.LOGGING],
            supported_resources=[
                "aws_cloudwatch_log_group",
                "aws_config_retention_configuration",
                "aws_s3_bucket_object_lock_configuration",
            ],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        if self.entity_type == "aws_cloudwatch_log_group":
            self.evaluated_keys = ["retention_in_days"]
            days = scalar(conf, "retention_in_days")
            # CloudWatch Logs keeps a group without retention (or with 0) forever.
            ok = days in (None, 0) or _at_least_six_years(days)
        elif self.entity_type == "aws_config_retention_configuration":
            self.evaluated_keys = ["retention_period_in_days"]
            days = scalar(conf, "retention_period_in_days")
            ok = _at_least_six_years(days)
        else:
            self.evaluated_keys = ["rule/[0]/default_retention"]
            retention = block(block(conf, "rule") or {}, "default_retention") or {}
            days, years = scalar(retention, "days"), scalar(retention, "years")
            ok = _at_least_six_years(days) or (isinstance(years, int) and years >= SIX_YEARS)
            if years is not None:
                days = f"{years} years"
        if not ok:
            self.details.append(f"retention {days!r} < {HIPAA_MIN_AUDIT_RETENTION_DAYS} days")
        return CheckResult.PASSED if ok else CheckResult.FAILED


check = LogRetentionSixYears()
