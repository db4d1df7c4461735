"""CKV_PHI_56 "Ensure every CloudTrail trail delivers into a bucket of its stack that is
Object-Locked in COMPLIANCE mode for at least six years (2192 days)".

The trail's log files are the audit record of who touched PHI: HIPAA 45 CFR 164.312(b) and
(c)(1) (audit controls, integrity), 164.316(b)(2)(i) (documentation kept six years), EHDS
Art. 73(1)(e) (access logs of the secure processing environment), EU AI Act Art. 12. Log file
validation shows a file was altered; only Object Lock in COMPLIANCE mode, which nobody (the
account root included) can shorten or lift, keeps it from being deleted or overwritten for the
retention period.

Judged, with the stack in view: every `aws_cloudtrail`. It passes when its `s3_bucket_name`
refers to an `aws_s3_bucket` of its stack (`${aws_s3_bucket.<name>.bucket}` / `.id`) that has
`object_lock_enabled` true and exactly one `aws_s3_bucket_object_lock_configuration` of the
stack whose `rule.default_retention` is in `COMPLIANCE` mode for at least 2192 days (or six
years). A trail delivering to a bucket this stack does not declare fails: its lock cannot be
seen here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, is_true
from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    refers_to,
    register,
)

COMPLIANCE_MODE = "COMPLIANCE"
SIX_YEARS_IN_DAYS = 2192
SIX_YEARS = 6


def lock_problem(lock: dict[str, Any]) -> str | None:
    """What keeps the lock's default retention from being COMPLIANCE for six years, or None."""
    retentions = [r for rule in blocks(lock, "rule") for r in blocks(rule, "default_retention")]
    if not retentions:
        return "Object Lock without a default retention"
    mode, days, years = (retentions[0].get(k) for k in ("mode", "days", "years"))
    if mode != COMPLIANCE_MODE:
        return f"Object Lock in {mode} mode, not {COMPLIANCE_MODE}"
    if (isinstance(days, int) and days >= SIX_YEARS_IN_DAYS) or (
        isinstance(years, int) and years >= SIX_YEARS
    ):
        return None
    return f"Object Lock default retention of {days} days / {years} years, under six years"


class CloudtrailArchiveObjectLockedSixYears(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every CloudTrail trail delivers into a bucket of its stack that is "
                "Object-Locked in COMPLIANCE mode for at least six years (2192 days)"
            ),
            id="CKV_PHI_56",
            category=CheckCategories.LOGGING,
            judged_types=["aws_cloudtrail"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        buckets = stack.resources("aws_s3_bucket")
        locks = stack.resources("aws_s3_bucket_object_lock_configuration")
        for name, trail in sorted(stack.resources("aws_cloudtrail").items()):
            archive = sorted(referenced_names(trail.get("s3_bucket_name"), "aws_s3_bucket"))
            if len(archive) != 1 or archive[0] not in buckets:
                unseen = "delivers to a bucket this stack does not declare"
                yield Verdict(address("aws_cloudtrail", name), False, unseen)
                continue
            bucket = archive[0]
            problems: list[str] = []
            if not is_true(buckets[bucket].get("object_lock_enabled")):
                problems.append(f"aws_s3_bucket.{bucket} has no Object Lock")
            own = [c for c in locks.values() if refers_to(c.get("bucket"), "aws_s3_bucket", bucket)]
            if len(own) != 1:
                problems.append(f"{len(own)} Object Lock configurations of aws_s3_bucket.{bucket}")
            elif (problem := lock_problem(own[0])) is not None:
                problems.append(problem)
            yield Verdict(address("aws_cloudtrail", name), not problems, "; ".join(problems))


check = register(CloudtrailArchiveObjectLockedSixYears())
