"""CKV_PHI_18 "Ensure a KMS key waits 30 days before deletion and is protected when its bucket is".

A deleted key makes everything it encrypted unreadable for good. A 30-day deletion window (the
maximum AWS allows) leaves time to notice and cancel an unintended `ScheduleKeyDeletion`; and a
bucket Terraform refuses to destroy (`prevent_destroy`), a WORM archive (Object Lock) or the
bucket holding Terraform state is only as durable as its key, so its key must refuse
`terraform destroy` too, in every environment. HIPAA 45 CFR 164.308(a)(7) (contingency plan:
data backup, disaster recovery), 164.312(c)(1) (integrity) and 164.316(b)(2)(i) (six-year
retention of audit records), GDPR Art. 32(1)(b)-(c) (availability and resilience).

Judged, with the stack in view: every `aws_kms_key`. It fails when
- `deletion_window_in_days` is below 30 (absent is AWS's default, 30), or
- it is the default-encryption key (`kms_master_key_id`, directly or through an `aws_kms_alias`
  of the stack) of an `aws_s3_bucket_server_side_encryption_configuration` whose bucket has
  `lifecycle.prevent_destroy`, `object_lock_enabled` true, or is the bucket of the stack's own
  S3 backend, and the key itself lacks `lifecycle.prevent_destroy`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import is_true
from policies.checks._stack import (
    TERRAFORM_JSON_SUFFIX,
    Stack,
    StackCheck,
    Verdict,
    address,
    lifecycle_prevents_destroy,
    referenced_names,
    register,
)

DELETION_WINDOW_DAYS = 30


def backend_buckets(stack: Stack) -> set[str]:
    """The buckets named by the S3 backend blocks of the stack's Terraform JSON files."""
    names: set[str] = set()
    for path in stack.directory.glob(f"*{TERRAFORM_JSON_SUFFIX}"):
        document = json.loads(path.read_text(encoding="utf-8"))
        terraform = document.get("terraform") if isinstance(document, dict) else None
        backends = terraform.get("backend") if isinstance(terraform, dict) else None
        s3 = backends.get("s3") if isinstance(backends, dict) else None
        if isinstance(s3, dict) and isinstance(s3.get("bucket"), str):
            names.add(s3["bucket"])
    return names


def why_protected(conf: dict[str, Any], state_buckets: set[str]) -> str:
    if lifecycle_prevents_destroy(conf):
        return "protected by prevent_destroy"
    if is_true(conf.get("object_lock_enabled")):
        return "object-locked"
    if conf.get("bucket") in state_buckets:
        return "holding Terraform state"
    return ""


def bucket_targets(target: Any, buckets: dict[str, dict[str, Any]]) -> set[str]:
    named = referenced_names(target, "aws_s3_bucket") & set(buckets)
    return named | {
        n for n, c in buckets.items() if isinstance(target, str) and c.get("bucket") == target
    }


def window_too_short(conf: dict[str, Any]) -> bool:
    days = conf.get("deletion_window_in_days")
    if days is None:
        return False
    try:
        return int(days) < DELETION_WINDOW_DAYS
    except (TypeError, ValueError):
        return True


class KmsKeyDeletionGuarded(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a KMS key waits 30 days before deletion and is protected when its bucket is"
            ),
            id="CKV_PHI_18",
            category=CheckCategories.BACKUP_AND_RECOVERY,
            judged_types=["aws_kms_key"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        keys = stack.resources("aws_kms_key")
        buckets = stack.resources("aws_s3_bucket")
        state_buckets = backend_buckets(stack)
        key_of_alias = {
            name: referenced_names(conf.get("target_key_id"), "aws_kms_key")
            for name, conf in stack.resources("aws_kms_alias").items()
        }
        protected_buckets_of: dict[str, set[str]] = {name: set() for name in keys}
        sse = stack.resources("aws_s3_bucket_server_side_encryption_configuration")
        for conf in sse.values():
            reasons = {
                f"{bucket} {reason}"
                for bucket in bucket_targets(conf.get("bucket"), buckets)
                if (reason := why_protected(buckets[bucket], state_buckets))
            }
            if not reasons:
                continue
            target = json.dumps(conf.get("rule"))
            encrypting = referenced_names(target, "aws_kms_key")
            for alias in referenced_names(target, "aws_kms_alias"):
                encrypting |= key_of_alias.get(alias, set())
            for key in encrypting & set(keys):
                protected_buckets_of[key] |= reasons
        for name in sorted(keys):
            conf = keys[name]
            problems = []
            if window_too_short(conf):
                problems.append(
                    f"deletion_window_in_days {conf.get('deletion_window_in_days')} is below "
                    f"{DELETION_WINDOW_DAYS}"
                )
            if protected_buckets_of[name] and not lifecycle_prevents_destroy(conf):
                problems.append(
                    "no lifecycle.prevent_destroy, yet it encrypts "
                    + ", ".join(sorted(protected_buckets_of[name]))
                )
            yield Verdict(address("aws_kms_key", name), not problems, "; ".join(problems))


check = register(KmsKeyDeletionGuarded())
