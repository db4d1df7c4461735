"""CKV_PHI_20 "Ensure an S3 bucket encrypts with its customer-managed KMS key and a bucket key,
and its policy refuses other encryption".

Objects holding PHI or audit records are encrypted with the platform's customer-managed key of
their purpose, whose key policy is the record of who can read them: HIPAA 45 CFR
164.312(a)(2)(iv) (encryption and decryption) and 164.312(b) (every decryption is a CloudTrail
event), GDPR Art. 32(1)(a), EHDS secure processing environments. An S3 Bucket Key keeps that
affordable (one data key per bucket, not a KMS call per object). An upload asking for SSE-S3
(`AES256`) or SSE-C would bypass the key and its policy: the bucket policy refuses it.

Judged, with the stack in view: every `aws_s3_bucket`. It passes when
- exactly one `aws_s3_bucket_server_side_encryption_configuration` of the stack refers to it
  (`${aws_s3_bucket.<name>.id}` / `.bucket`, or its literal name), and a rule of it has
  `apply_server_side_encryption_by_default` with `sse_algorithm` `aws:kms` and a
  `kms_master_key_id` that is not an AWS managed key (`alias/aws/...`), and
  `bucket_key_enabled` true; and
- exactly one `aws_s3_bucket_policy` of the stack refers to it, with a Deny to any principal of
  `s3:PutObject` (or a wildcard covering it) on the bucket's objects whose only conditions are
  `StringNotEquals` `s3:x-amz-server-side-encryption` listing nothing but `aws:kms` /
  `aws:kms:dsse` and, optionally, `Null` `s3:x-amz-server-side-encryption` false (uploads
  without the header get the default encryption above).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, is_set, is_true, json_document
from policies.checks._documents import (
    actions,
    conditions,
    names_anyone,
    resources_cover,
    statements,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

KMS_ALGORITHM = "aws:kms"
KMS_HEADER_VALUES = frozenset({"aws:kms", "aws:kms:dsse"})
ENCRYPTION_HEADER = "s3:x-amz-server-side-encryption"


def _aws_managed(key_id: str) -> bool:
    return key_id.startswith("alias/aws/") or ":alias/aws/" in key_id


def _targets(target: Any, name: str, conf: dict[str, Any]) -> bool:
    literal = conf.get("bucket")
    return refers_to(target, "aws_s3_bucket", name) or (
        isinstance(literal, str) and "${" not in literal and target == literal
    )


def encryption_problems(sse_conf: dict[str, Any]) -> list[str]:
    for rule in blocks(sse_conf, "rule"):
        for default in blocks(rule, "apply_server_side_encryption_by_default"):
            algorithm, key_id = default.get("sse_algorithm"), default.get("kms_master_key_id")
            if algorithm != KMS_ALGORITHM:
                continue
            if not is_set(key_id) or _aws_managed(str(key_id)):
                return ["default encryption is not with a customer-managed KMS key"]
            if not is_true(rule.get("bucket_key_enabled")):
                return ["default encryption without an S3 Bucket Key"]
            return []
    return ["default encryption is not SSE-KMS"]


def _refuses_other_encryption(statement: dict[str, Any], object_arns: list[str]) -> bool:
    if not (
        statement.get("Effect") == "Deny"
        and names_anyone(statement)
        and any(fnmatch.fnmatchcase("s3:putobject", a) for a in actions(statement))
        and any(resources_cover(statement, [arn]) for arn in object_arns)
    ):
        return False
    found = list(conditions(statement))
    allowed_values: list[Any] = []
    for operator, key, values in found:
        if key != ENCRYPTION_HEADER:
            return False
        if operator == "stringnotequals":
            allowed_values += values
        elif operator != "null" or [str(v).lower() for v in values] != ["false"]:
            return False
    return bool(allowed_values) and set(map(str, allowed_values)) <= KMS_HEADER_VALUES


def policy_problems(policy_text: Any, object_arns: list[str]) -> list[str]:
    policy = json_document(policy_text)
    if policy is None:
        return ["bucket policy is not a JSON policy document"]
    if not any(_refuses_other_encryption(s, object_arns) for s in statements(policy)):
        return ["bucket policy does not deny uploads with a non-KMS encryption header"]
    return []


def object_arns(name: str, conf: dict[str, Any]) -> list[str]:
    arns = [f"${{aws_s3_bucket.{name}.arn}}/*"]
    literal = conf.get("bucket")
    if isinstance(literal, str) and "${" not in literal:
        arns.append(f"arn:aws:s3:::{literal}/*")
    return arns


class S3BucketEncryptsOnlyWithKms(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure an S3 bucket encrypts with its customer-managed KMS key and a bucket "
                "key, and its policy refuses other encryption"
            ),
            id="CKV_PHI_20",
            category=CheckCategories.ENCRYPTION,
            judged_types=["aws_s3_bucket"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        encryption = stack.resources("aws_s3_bucket_server_side_encryption_configuration")
        policies = stack.resources("aws_s3_bucket_policy")
        for name, conf in sorted(stack.resources("aws_s3_bucket").items()):
            problems = []
            own_sse = [c for c in encryption.values() if _targets(c.get("bucket"), name, conf)]
            if len(own_sse) != 1:
                problems.append(f"{len(own_sse)} encryption configurations (S3 keeps one)")
            else:
                problems += encryption_problems(own_sse[0])
            own_policies = [c for c in policies.values() if _targets(c.get("bucket"), name, conf)]
            if len(own_policies) != 1:
                problems.append(f"{len(own_policies)} bucket policies (S3 keeps one)")
            else:
                problems += policy_problems(own_policies[0].get("policy"), object_arns(name, conf))
            yield Verdict(address("aws_s3_bucket", name), not problems, "; ".join(problems))


check = register(S3BucketEncryptsOnlyWithKms())
