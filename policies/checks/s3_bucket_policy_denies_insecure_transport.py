"""CKV_PHI_10 "Ensure an S3 bucket's policy denies requests without TLS or with TLS older than
1.2".

PHI and audit logs must never travel in clear text or over broken TLS versions: HIPAA 45 CFR
164.312(e)(1) and (e)(2)(ii) (transmission security, encryption), GDPR Art. 32, NIST SP 800-52
(TLS 1.2 minimum). The bucket policy is where S3 enforces both for every caller.

Judged, with the stack in view: every `aws_s3_bucket`. It passes when exactly one
`aws_s3_bucket_policy` of the stack refers to it (`${aws_s3_bucket.<name>.id}` / `.bucket`, or
its literal name) and that policy has
- a Deny of `s3:*` (or `*`) to any principal on the bucket and its objects when the `Bool`
  condition `aws:SecureTransport` is false, and
- a Deny of `s3:*` (or `*`) to any principal on the bucket and its objects when
  `NumericLessThan` `s3:TlsVersion` is 1.2 or higher.
A bucket policy whose bucket is not in its own stack is judged itself: the same two statements,
on a bucket ARN and its objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import json_document
from policies.checks._documents import (
    actions,
    as_list,
    condition_values,
    names_anyone,
    resources_cover,
    statements,
)
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

MINIMUM_TLS_VERSION = 1.2


def _denies_all_s3_to_anyone(statement: dict[str, Any]) -> bool:
    return (
        statement.get("Effect") == "Deny"
        and names_anyone(statement)
        and any(a in ("*", "s3:*") for a in actions(statement))
    )


def _covers(statement: dict[str, Any], bucket_arns: list[str]) -> bool:
    """On the bucket and its objects: one of the bucket's ARN forms, or any bucket when the
    bucket is not known (`arn:aws:s3:::x` and `arn:aws:s3:::x/*` shapes)."""
    if bucket_arns:
        return any(resources_cover(statement, [arn, f"{arn}/*"]) for arn in bucket_arns)
    patterns = [str(r) for r in as_list(statement.get("Resource"))]
    return "*" in patterns or (
        any(p.endswith("/*") for p in patterns) and any("/" not in p for p in patterns)
    )


def _denies_plain_http(statement: dict[str, Any]) -> bool:
    values = condition_values(statement, "Bool", "aws:SecureTransport")
    return bool(values) and all(str(v).lower() == "false" for v in values)


def _denies_old_tls(statement: dict[str, Any]) -> bool:
    values = condition_values(statement, "NumericLessThan", "s3:TlsVersion")
    try:
        return bool(values) and all(float(v) >= MINIMUM_TLS_VERSION for v in values)
    except (TypeError, ValueError):
        return False


def policy_problems(policy_text: Any, bucket_arns: list[str]) -> list[str]:
    policy = json_document(policy_text)
    if policy is None:
        return ["policy is not a JSON policy document"]
    denials = [
        s for s in statements(policy) if _denies_all_s3_to_anyone(s) and _covers(s, bucket_arns)
    ]
    problems = []
    if not any(_denies_plain_http(s) for s in denials):
        problems.append("no Deny when aws:SecureTransport is false")
    if not any(_denies_old_tls(s) for s in denials):
        problems.append(f"no Deny when s3:TlsVersion is below {MINIMUM_TLS_VERSION}")
    return problems


def bucket_arns(name: str, conf: dict[str, Any]) -> list[str]:
    arns = [f"${{aws_s3_bucket.{name}.arn}}"]
    literal = conf.get("bucket")
    if isinstance(literal, str) and "${" not in literal:
        arns.append(f"arn:aws:s3:::{literal}")
    return arns


def _targets(policy_conf: dict[str, Any], name: str, conf: dict[str, Any]) -> bool:
    target = policy_conf.get("bucket")
    literal = conf.get("bucket")
    return refers_to(target, "aws_s3_bucket", name) or (
        isinstance(literal, str) and target == literal
    )


class S3BucketPolicyDeniesInsecureTransport(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure an S3 bucket's policy denies requests without TLS or with TLS "
                "older than 1.2"
            ),
            id="CKV_PHI_10",
            category=CheckCategories.ENCRYPTION,
            judged_types=["aws_s3_bucket", "aws_s3_bucket_policy"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        policies = stack.resources("aws_s3_bucket_policy")
        attached: set[str] = set()
        for name, conf in stack.resources("aws_s3_bucket").items():
            own = [p for p, pconf in policies.items() if _targets(pconf, name, conf)]
            attached.update(own)
            if len(own) != 1:
                problems = [f"{len(own)} bucket policies (S3 keeps one)"]
            else:
                problems = policy_problems(policies[own[0]].get("policy"), bucket_arns(name, conf))
            yield Verdict(address("aws_s3_bucket", name), not problems, "; ".join(problems))
        for name, conf in policies.items():
            if name not in attached:
                problems = policy_problems(conf.get("policy"), [])
                yield Verdict(
                    address("aws_s3_bucket_policy", name), not problems, "; ".join(problems)
                )


check = register(S3BucketPolicyDeniesInsecureTransport())
