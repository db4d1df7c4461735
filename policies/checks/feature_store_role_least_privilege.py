"""CKV_PHI_29 "Ensure a feature store role reaches only its feature groups' bucket prefix, keys and
Glue tables".

SageMaker Feature Store assumes the role named by a feature group to write offline records
(PHI) and update their Glue tables. Access control and the minimum necessary standard (HIPAA
45 CFR 164.312(a)(1), 164.502(b)) and GDPR Art. 25 and 32 ask that this role reaches nothing
else: not other buckets or the rest of its bucket, not other keys, not other tables.

Judged, with the stack in view: every `aws_iam_role_policy` of an `aws_iam_role` that an
`aws_sagemaker_feature_group` of the stack names in `role_arn` (and every
`aws_iam_role_policy_attachment` of such a role, which fails: a managed policy's scope cannot be
read here). It fails when an Allow statement
  - uses `NotAction` or `NotResource`, or an action with a wildcard (`*`, `s3:*`, `glue:Get*`);
  - names the resource `*`, or any resource with a wildcard other than the trailing `*` of
    `<bucket ARN>/<prefix>/*` (a non-empty, wildcard-free prefix);
  - names an S3 bucket other than the offline-store buckets of the role's feature groups
    (`s3://${aws_s3_bucket.<name>.bucket}/...`), a KMS key other than their store keys, or a
    Glue database or table other than those of their `data_catalog_config` (the account's
    catalog ARN is allowed: Glue authorizes every table call against it too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import block, json_document
from policies.checks._documents import as_list, statements
from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    refers_to,
    register,
)

_OBJECT_UNDER_PREFIX = re.compile(r"^(?P<bucket>\$\{[^}]+\})/(?:[A-Za-z0-9!_.'()-]+/)+\*$")
_BUCKET_URI = re.compile(r"^s3://\$\{aws_s3_bucket\.(?P<bucket>[A-Za-z0-9_-]+)\.(bucket|id)\}/")
_GLUE_ARN = re.compile(
    r"^arn:aws[a-z-]*:glue:[a-z0-9-]+:\d{12}:(?P<kind>catalog|database|table)(/(?P<rest>.*))?$"
)


class _Scope:
    """What the feature groups of one role use: their buckets, keys, databases and tables."""

    def __init__(self, stack: Stack, groups: list[dict[str, Any]]) -> None:
        self.buckets: set[str] = set()
        self.keys: set[str] = set()
        self.databases: set[str] = set()
        self.tables: set[str] = set()  # "<database>/<table>"
        glue_databases = stack.resources("aws_glue_catalog_database")
        glue_tables = stack.resources("aws_glue_catalog_table")
        for group in groups:
            online = block(group, "online_store_config") or {}
            self.keys |= referenced_names(block(online, "security_config"), "aws_kms_key")
            offline = block(group, "offline_store_config") or {}
            storage = block(offline, "s3_storage_config") or {}
            self.keys |= referenced_names(storage.get("kms_key_id"), "aws_kms_key")
            match = _BUCKET_URI.match(str(storage.get("s3_uri", "")))
            if match:
                self.buckets.add(match.group("bucket"))
            catalog = block(offline, "data_catalog_config") or {}
            for table_name in referenced_names(catalog.get("table_name"), "aws_glue_catalog_table"):
                table = glue_tables.get(table_name, {})
                for database_name in referenced_names(
                    table.get("database_name"), "aws_glue_catalog_database"
                ):
                    database = str(glue_databases.get(database_name, {}).get("name", ""))
                    self.databases.add(database)
                    self.tables.add(f"{database}/{table.get('name', '')}")

    def resource_problem(self, resource: str) -> str | None:
        object_match = _OBJECT_UNDER_PREFIX.match(resource)
        if object_match is None and "*" in resource:
            return f"{resource} has a wildcard"
        bucket_expression = object_match.group("bucket") if object_match else resource
        buckets = referenced_names(bucket_expression, "aws_s3_bucket")
        if buckets or resource.startswith("arn:aws:s3:"):
            return None if buckets and buckets <= self.buckets else f"{resource}: another bucket"
        keys = referenced_names(resource, "aws_kms_key")
        if keys or resource.startswith("arn:aws:kms:"):
            return None if keys and keys <= self.keys else f"{resource}: another key"
        glue = _GLUE_ARN.match(resource)
        if glue is None:
            return f"{resource} is none of its buckets, keys or Glue tables"
        kind, rest = glue.group("kind"), glue.group("rest") or ""
        allowed = {"catalog": {""}, "database": self.databases, "table": self.tables}[kind]
        return None if rest in allowed else f"{resource}: another Glue {kind}"


def _statement_problems(statement: dict[str, Any], scope: _Scope, index: int) -> list[str]:
    sid = statement.get("Sid", index)
    if "NotAction" in statement or "NotResource" in statement:
        return [f"statement {sid} uses NotAction or NotResource"]
    problems = [
        f"statement {sid} grants {action}"
        for action in as_list(statement.get("Action"))
        if "*" in str(action)
    ]
    for resource in as_list(statement.get("Resource")):
        problem = scope.resource_problem(str(resource))
        if problem:
            problems.append(f"statement {sid}: {problem}")
    return problems


class FeatureStoreRoleLeastPrivilege(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a feature store role reaches only its feature groups' bucket prefix, "
                "keys and Glue tables"
            ),
            id="CKV_PHI_29",
            category=CheckCategories.IAM,
            judged_types=["aws_iam_role_policy", "aws_iam_role_policy_attachment"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        groups = list(stack.resources("aws_sagemaker_feature_group").values())
        for role_name in sorted(stack.resources("aws_iam_role")):
            served = [g for g in groups if refers_to(g.get("role_arn"), "aws_iam_role", role_name)]
            if not served:
                continue
            scope = _Scope(stack, served)
            for name, conf in stack.resources("aws_iam_role_policy_attachment").items():
                if refers_to(conf.get("role"), "aws_iam_role", role_name):
                    yield Verdict(
                        address("aws_iam_role_policy_attachment", name),
                        False,
                        "a managed policy's scope cannot be verified",
                    )
            for name, conf in stack.resources("aws_iam_role_policy").items():
                if not refers_to(conf.get("role"), "aws_iam_role", role_name):
                    continue
                policy = json_document(conf.get("policy"))
                if policy is None:
                    problems = ["policy is not a JSON policy document"]
                else:
                    problems = [
                        problem
                        for index, statement in enumerate(statements(policy))
                        if statement.get("Effect") == "Allow"
                        for problem in _statement_problems(statement, scope, index)
                    ]
                yield Verdict(
                    address("aws_iam_role_policy", name), not problems, "; ".join(problems)
                )


check = register(FeatureStoreRoleLeastPrivilege())
