"""CKV_PHI_27 "Ensure a HealthLake import role reads S3 objects under one prefix of one bucket".

HealthLake's import role can read whatever its policy allows, and every object it reads is
loaded into the FHIR datastore. The minimum necessary standard (HIPAA 45 CFR 164.502(b),
164.514(d)), access control (164.312(a)(1)) and GDPR Art. 5(1)(c) and 25 (data minimisation,
protection by design) ask that it reads only what sites drop for import: one prefix of one
bucket, not the rest of that bucket (other datasets, job results, exports) nor another bucket.

Judged, with the stack in view: every `aws_iam_role_policy` of an `aws_iam_role` of its stack
whose trust policy admits `healthlake.amazonaws.com` (and every `aws_iam_role_policy_attachment`
of such a role, which fails: a managed policy's scope cannot be read here). It fails when an
Allow statement
  - grants an S3 action (`s3:...`, `*`) on `*`;
  - grants an object read (`s3:GetObject...`, `s3:Get*`, `s3:*`, `*`) on anything but
    `<bucket ARN>/<prefix>/*` with a non-empty, wildcard-free prefix;
  - grants `s3:ListBucket` without an `s3:prefix` condition (StringEquals/StringLike) whose
    every value lies under a prefix the role reads;
or when the object reads name more than one bucket. When the datastore the role serves (its
trust policy's `aws:SourceArn` names an `aws_cloudformation_stack` of the stack) is encrypted
with a KMS key declared in the same stack (a datastore outside the environment's home region,
with that region's own key), the bucket read must be an `aws_s3_bucket` of the stack whose
default encryption uses that same key: the region's own FHIR bucket, never the home region's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import json_document
from policies.checks._documents import (
    actions,
    as_list,
    cloudformation_resources,
    condition_values,
    get_path,
    statements,
)
from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    refers_to,
    register,
)

HEALTHLAKE_SERVICE = "healthlake.amazonaws.com"
HEALTHLAKE_DATASTORE = "AWS::HealthLake::FHIRDatastore"
# `<bucket>/<prefix>/*`: the bucket is an interpolation or a literal ARN; the prefix is one or
# more S3 "safe character" segments, each ending in "/", with nothing IAM would expand.
_PREFIX = r"(?:[A-Za-z0-9!_.'()-]+/)+"
_OBJECT_UNDER_PREFIX = re.compile(
    r"^(?P<bucket>\$\{[^}]+\}|arn:aws[a-z-]*:s3:::[a-z0-9.-]+)/(?P<prefix>" + _PREFIX + r")\*$"
)


def _is_s3_action(action: str) -> bool:
    return action == "*" or action.startswith("s3:")


def _reads_objects(action: str) -> bool:
    return action in {"*", "s3:*", "s3:get*"} or action.startswith("s3:getobject")


def _lists_bucket(action: str) -> bool:
    return action in {"*", "s3:*", "s3:list*", "s3:listbucket"}


def _trusts_healthlake(role: dict[str, Any]) -> bool:
    trust = json_document(role.get("assume_role_policy"))
    if trust is None:
        return False
    for statement in statements(trust):
        principal = statement.get("Principal")
        services = as_list(principal.get("Service")) if isinstance(principal, dict) else []
        if statement.get("Effect") == "Allow" and HEALTHLAKE_SERVICE in services:
            return True
    return False


def _stack_local_datastore_keys(stack: Stack, role: dict[str, Any]) -> set[str]:
    """The `aws_kms_key`s of the stack that encrypt the datastores this role serves."""
    keys: set[str] = set()
    served = referenced_names(role.get("assume_role_policy"), "aws_cloudformation_stack")
    for name, conf in stack.resources("aws_cloudformation_stack").items():
        template = json_document(conf.get("template_body"))
        if name not in served or template is None:
            continue
        for _, properties in cloudformation_resources(template, HEALTHLAKE_DATASTORE):
            key = get_path(properties, "SseConfiguration", "KmsEncryptionConfig", "KmsKeyId")
            keys |= referenced_names(key, "aws_kms_key")
    return keys


def _buckets_encrypted_with(stack: Stack, keys: set[str]) -> set[str]:
    """The `aws_s3_bucket`s of the stack whose default encryption uses one of `keys`."""
    buckets: set[str] = set()
    for conf in stack.resources("aws_s3_bucket_server_side_encryption_configuration").values():
        rules = as_list(conf.get("rule"))
        key_ids = [
            get_path(rule, "apply_server_side_encryption_by_default", "kms_master_key_id")
            for rule in rules
        ]
        if any(referenced_names(k, "aws_kms_key") & keys for k in key_ids):
            buckets |= referenced_names(conf.get("bucket"), "aws_s3_bucket")
    return buckets


def _policy_problems(policy: dict[str, Any]) -> tuple[list[str], set[str]]:
    """(problems, the bucket expressions whose objects the policy reads)."""
    problems: list[str] = []
    read_buckets: set[str] = set()
    read_prefixes: list[str] = []
    listing: list[dict[str, Any]] = []
    for index, statement in enumerate(statements(policy)):
        if statement.get("Effect") != "Allow":
            continue
        sid = statement.get("Sid", index)
        granted = [a for a in actions(statement) if _is_s3_action(a)]
        if not granted:
            continue
        resources = [str(r) for r in as_list(statement.get("Resource"))]
        if "NotResource" in statement or "*" in resources:
            problems.append(f"statement {sid} grants S3 actions on every resource")
            continue
        if any(_reads_objects(a) for a in granted):
            for resource in resources:
                match = _OBJECT_UNDER_PREFIX.match(resource)
                if match is None:
                    problems.append(f"statement {sid} reads {resource}, not one prefix")
                    continue
                read_buckets.add(match.group("bucket"))
                read_prefixes.append(match.group("prefix"))
        if any(_lists_bucket(a) for a in granted):
            listing.append(statement)
    for statement in listing:
        sid = statement.get("Sid", "?")
        prefixes = [
            str(value)
            for operator in ("StringEquals", "StringLike")
            for value in condition_values(statement, operator, "s3:prefix")
        ]
        if not prefixes or not all(
            any(p.startswith(read) for read in read_prefixes) for p in prefixes
        ):
            problems.append(f"statement {sid} lists the bucket beyond the prefixes it reads")
    if len(read_buckets) > 1:
        problems.append(f"reads objects of {len(read_buckets)} buckets")
    return problems, read_buckets


def _import_policies(stack: Stack, role_name: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, configuration) of every policy resource attached to the role."""
    for resource_type in ("aws_iam_role_policy", "aws_iam_role_policy_attachment"):
        for name, conf in stack.resources(resource_type).items():
            if refers_to(conf.get("role"), "aws_iam_role", role_name):
                yield resource_type, name, conf


class HealthLakeImportRoleReadsImportPrefixOnly(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a HealthLake import role reads S3 objects under one prefix of one bucket",
            id="CKV_PHI_27",
            category=CheckCategories.IAM,
            judged_types=["aws_iam_role_policy", "aws_iam_role_policy_attachment"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for role_name, role in stack.resources("aws_iam_role").items():
            if not _trusts_healthlake(role):
                continue
            local_keys = _stack_local_datastore_keys(stack, role)
            region_buckets = _buckets_encrypted_with(stack, local_keys)
            for resource_type, name, conf in _import_policies(stack, role_name):
                judged = address(resource_type, name)
                if resource_type == "aws_iam_role_policy_attachment":
                    yield Verdict(judged, False, "a managed policy's scope cannot be verified")
                    continue
                policy = json_document(conf.get("policy"))
                if policy is None:
                    yield Verdict(judged, False, "policy is not a JSON policy document")
                    continue
                problems, read_buckets = _policy_problems(policy)
                if local_keys:
                    outside = [
                        bucket
                        for bucket in sorted(read_buckets)
                        if not referenced_names(bucket, "aws_s3_bucket") & region_buckets
                    ]
                    if outside:
                        problems.append(
                            f"reads {', '.join(outside)}, not a bucket of this stack encrypted "
                            "with the datastore's key"
                        )
                yield Verdict(judged, not problems, "; ".join(problems))


check = register(HealthLakeImportRoleReadsImportPrefixOnly())
