"""CKV_PHI_21 "Ensure an S3 bucket's old versions expire by lifecycle and its Object Lock, if any,
is in COMPLIANCE mode with a default retention".

Versioning keeps every overwritten or deleted object; without an expiration of noncurrent
versions, PHI nobody needs any more is kept for ever, against GDPR Art. 5(1)(e) (storage
limitation) and HIPAA's minimum necessary (45 CFR 164.502(b)). An audit archive's Object Lock
must be in COMPLIANCE mode, which nobody (the account root included) can shorten or lift, with
a default retention, so that every record is locked without the writer asking: HIPAA 45 CFR
164.312(b) and (c)(1) (audit controls, integrity) and 164.316(b)(2)(i) (six-year retention),
SEC 17a-4-style WORM. GOVERNANCE mode yields to `s3:BypassGovernanceRetention`.

Judged, with the stack in view: every `aws_s3_bucket`. It passes when
- exactly one `aws_s3_bucket_lifecycle_configuration` of the stack refers to it
  (`${aws_s3_bucket.<name>.id}` / `.bucket`, or its literal name), with a rule whose `status` is
  `Enabled`, whose filter covers the whole bucket (none, or an empty `prefix`), and whose
  `noncurrent_version_expiration` has `noncurrent_days` of at least 1; and
- when it has `object_lock_enabled` true or an `aws_s3_bucket_object_lock_configuration` of the
  stack refers to it: exactly one such configuration, whose `rule.default_retention` has `mode`
  `COMPLIANCE` and `days` or `years` of at least 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, is_true
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

COMPLIANCE_MODE = "COMPLIANCE"
_FILTER_NARROWING = ("and", "tag", "object_size_greater_than", "object_size_less_than")


def _targets(target: Any, name: str, conf: dict[str, Any]) -> bool:
    literal = conf.get("bucket")
    return refers_to(target, "aws_s3_bucket", name) or (
        isinstance(literal, str) and "${" not in literal and target == literal
    )


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _whole_bucket(rule: dict[str, Any]) -> bool:
    if rule.get("prefix") not in (None, ""):
        return False
    for found in blocks(rule, "filter"):
        if found.get("prefix") not in (None, "") or any(found.get(k) for k in _FILTER_NARROWING):
            return False
    return True


def expires_old_versions(lifecycle: dict[str, Any]) -> bool:
    return any(
        rule.get("status") == "Enabled"
        and _whole_bucket(rule)
        and any(
            _positive(expiration.get("noncurrent_days"))
            for expiration in blocks(rule, "noncurrent_version_expiration")
        )
        for rule in blocks(lifecycle, "rule")
    )


def lock_problems(lock: dict[str, Any]) -> list[str]:
    retentions = [r for rule in blocks(lock, "rule") for r in blocks(rule, "default_retention")]
    if not retentions:
        return ["Object Lock without a default retention"]
    retention = retentions[0]
    problems = []
    if retention.get("mode") != COMPLIANCE_MODE:
        problems.append(f"Object Lock in {retention.get('mode')} mode, not {COMPLIANCE_MODE}")
    if not (_positive(retention.get("days")) or _positive(retention.get("years"))):
        problems.append("Object Lock default retention without days or years")
    return problems


class S3BucketOldVersionsExpireLocksInComplianceMode(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure an S3 bucket's old versions expire by lifecycle and its Object Lock, if "
                "any, is in COMPLIANCE mode with a default retention"
            ),
            id="CKV_PHI_21",
            category=CheckCategories.BACKUP_AND_RECOVERY,
            judged_types=["aws_s3_bucket"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        lifecycles = stack.resources("aws_s3_bucket_lifecycle_configuration")
        locks = stack.resources("aws_s3_bucket_object_lock_configuration")
        for name, conf in sorted(stack.resources("aws_s3_bucket").items()):
            problems = []
            own = [c for c in lifecycles.values() if _targets(c.get("bucket"), name, conf)]
            if len(own) != 1:
                problems.append(f"{len(own)} lifecycle configurations (S3 keeps one)")
            elif not expires_old_versions(own[0]):
                problems.append("no enabled whole-bucket rule expiring noncurrent versions")
            own_locks = [c for c in locks.values() if _targets(c.get("bucket"), name, conf)]
            if own_locks or is_true(conf.get("object_lock_enabled")):
                if len(own_locks) != 1:
                    problems.append(f"{len(own_locks)} Object Lock configurations")
                else:
                    problems += lock_problems(own_locks[0])
            yield Verdict(address("aws_s3_bucket", name), not problems, "; ".join(problems))


check = register(S3BucketOldVersionsExpireLocksInComplianceMode())
