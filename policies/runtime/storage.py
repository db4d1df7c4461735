"""S3: every bucket of the environment encrypted with its expected CMK, versioned, closed to the
public, and refusing plain HTTP and TLS below 1.2."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from policies.runtime import policy_documents as documents
from policies.runtime.clients import error_code
from policies.runtime.expected import ExpectedBucket
from policies.runtime.model import (
    CheckContext,
    Missing,
    Outcome,
    RuntimeCheck,
    failed,
    passed,
)

MINIMUM_TLS_VERSION = 1.2
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
PUBLIC_ACCESS_SETTINGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def _each_bucket(
    context: CheckContext, evaluate: Callable[[CheckContext, Any, ExpectedBucket], Outcome]
) -> Iterator[Outcome]:
    """`evaluate(where, s3, bucket)` for every expected bucket, with the context and client of
    the bucket's region (its key alias resolves there)."""
    for where, regional in context.regions():
        s3 = where.client("s3")
        for bucket in regional.buckets:
            yield where.judge(bucket.arn, partial(evaluate, where, s3, bucket))


def _read(call: Callable[[], Any], *, absent: set[str], meaning: str) -> Any:
    """Call an S3 getter; a NoSuchBucket or one of the `absent` codes becomes Missing."""
    try:
        return call()
    except ClientError as problem:
        if error_code(problem) == "NoSuchBucket":
            raise Missing("the bucket does not exist") from problem
        if error_code(problem) in absent:
            raise Missing(meaning) from problem
        raise


def encryption(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(where: CheckContext, s3: Any, bucket: ExpectedBucket) -> Outcome:
        configuration = _read(
            lambda: s3.get_bucket_encryption(Bucket=bucket.name),
            absent={"ServerSideEncryptionConfigurationNotFoundError"},
            meaning="the bucket has no default encryption",
        )
        rules = configuration["ServerSideEncryptionConfiguration"].get("Rules", [])
        defaults = [rule.get("ApplyServerSideEncryptionByDefault", {}) for rule in rules]
        kms = [d for d in defaults if d.get("SSEAlgorithm") in KMS_ALGORITHMS]
        if not kms:
            algorithms = ", ".join(str(d.get("SSEAlgorithm")) for d in defaults) or "none"
            return failed(bucket.arn, f"default encryption is {algorithms}, not SSE-KMS")
        same, why = where.same_key(kms[0].get("KMSMasterKeyID"), bucket.key_alias)
        return (passed if same else failed)(bucket.arn, f"SSE-KMS: {why}")

    return _each_bucket(context, evaluate)


def versioning(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(where: CheckContext, s3: Any, bucket: ExpectedBucket) -> Outcome:
        state = _read(
            lambda: s3.get_bucket_versioning(Bucket=bucket.name), absent=set(), meaning=""
        )
        status = state.get("Status", "never enabled")
        if status == "Enabled":
            return passed(bucket.arn, "versioning is enabled")
        return failed(bucket.arn, f"versioning is {status}")

    return _each_bucket(context, evaluate)


def public_access(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(where: CheckContext, s3: Any, bucket: ExpectedBucket) -> Outcome:
        block = _read(
            lambda: s3.get_public_access_block(Bucket=bucket.name),
            absent={"NoSuchPublicAccessBlockConfiguration"},
            meaning="the bucket has no public access block",
        )["PublicAccessBlockConfiguration"]
        open_settings = [name for name in PUBLIC_ACCESS_SETTINGS if not block.get(name)]
        if open_settings:
            return failed(bucket.arn, f"public access block off: {', '.join(open_settings)}")
        return passed(bucket.arn, "all four public access block settings are on")

    return _each_bucket(context, evaluate)


def _denies_everyone_all_s3(statement: dict[str, Any], bucket: ExpectedBucket) -> bool:
    resources = {str(r) for r in documents.as_list(statement.get("Resource"))}
    covers_bucket = bool({bucket.arn, "*"} & resources)
    covers_objects = bool({f"{bucket.arn}/*", "*"} & resources)
    return (
        statement.get("Effect") == "Deny"
        and documents.is_anyone(statement)
        and documents.actions_cover(statement, "s3:*")
        and covers_bucket
        and covers_objects
    )


def _minimum_tls(statement: dict[str, Any]) -> float | None:
    values = documents.condition_values(statement, "NumericLessThan", "s3:TlsVersion")
    try:
        return max(float(value) for value in values) if values else None
    except ValueError:
        return None


def tls_only(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(where: CheckContext, s3: Any, bucket: ExpectedBucket) -> Outcome:
        text = _read(
            lambda: s3.get_bucket_policy(Bucket=bucket.name),
            absent={"NoSuchBucketPolicy"},
            meaning="the bucket has no policy, so plain HTTP is not denied",
        )["Policy"]
        try:
            policy = documents.parse(text)
        except ValueError as problem:
            return failed(bucket.arn, f"the bucket policy cannot be read: {problem}")
        denials = [s for s in documents.statements(policy) if _denies_everyone_all_s3(s, bucket)]
        plain_http = any(
            documents.condition_values(s, "Bool", "aws:SecureTransport") == ["false"]
            for s in denials
        )
        floors = [floor for floor in map(_minimum_tls, denials) if floor is not None]
        missing = []
        if not plain_http:
            missing.append("no Deny of s3:* to everyone when aws:SecureTransport is false")
        if not floors or max(floors) < MINIMUM_TLS_VERSION:
            found = f" (lowest version denied below: {max(floors)})" if floors else ""
            missing.append(
                f"no Deny of s3:* to everyone when s3:TlsVersion < {MINIMUM_TLS_VERSION}{found}"
            )
        if missing:
            return failed(bucket.arn, "; ".join(missing))
        return passed(bucket.arn, f"denies plain HTTP and TLS below {max(floors)}")

    return _each_bucket(context, evaluate)


CHECKS = (
    RuntimeCheck(
        "RT_PHI_S3_CMK_ENCRYPTION",
        "S3 bucket encrypted by default with its expected customer-managed KMS key",
        encryption,
    ),
    RuntimeCheck("RT_PHI_S3_VERSIONING", "S3 bucket versioning enabled", versioning),
    RuntimeCheck(
        "RT_PHI_S3_PUBLIC_ACCESS_BLOCKED",
        "S3 bucket public access block fully on",
        public_access,
    ),
    RuntimeCheck(
        "RT_PHI_S3_TLS_ONLY",
        "S3 bucket policy denies plain HTTP and TLS below 1.2",
        tls_only,
    ),
)
