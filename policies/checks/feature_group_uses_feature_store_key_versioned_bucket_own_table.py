"""CKV_PHI_28 "Ensure a feature group uses the feature-store key, a versioned bucket and a Glue
table of its stack".

Feature groups hold features derived from patient records (PHI). HIPAA 45 CFR 164.312(a)(2)(iv)
and (c)(1) (encryption, integrity), GDPR Art. 5(1)(f), 25 and 32 ask that they are encrypted
with keys whose policy admits only the feature store's users (the feature-store purpose key:
not the PHI key every data reader may use, nor the logs key), that offline records survive an
overwrite or deletion (a versioned bucket), and that the offline table's schema is reviewed
like any other change (a Glue table the platform declares, not one SageMaker creates).
CKV_PHI_2 asks only that a key is named; this check asks which.

Judged, with the stack in view: every `aws_sagemaker_feature_group`. It fails unless
  - its online store's `security_config.kms_key_id` (when the online store is enabled) and its
    offline store's `s3_storage_config.kms_key_id` refer to an `aws_kms_key` of the stack
    tagged `key-purpose` = `feature-store`;
  - its offline `s3_uri` is `s3://${aws_s3_bucket.<name>.bucket}/...` for a bucket of the stack
    that an `aws_s3_bucket_versioning` of the stack sets to `Enabled`;
  - `disable_glue_table_creation` is true and `data_catalog_config.table_name` refers to an
    `aws_glue_catalog_table` of the stack, `data_catalog_config.database` to the
    `aws_glue_catalog_database` that table is in, and the table's location lies under the
    offline `s3_uri`.
A key, bucket or table outside the stack (a literal, or another stack's output) fails: what it
is cannot be verified here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import block, is_true
from policies.checks._stack import Stack, StackCheck, Verdict, address, referenced_names, register

KEY_PURPOSE_TAG = "key-purpose"
FEATURE_STORE_PURPOSE = "feature-store"
VERSIONING_ENABLED = "Enabled"
_BUCKET_URI = re.compile(r"^s3://\$\{aws_s3_bucket\.(?P<bucket>[A-Za-z0-9_-]+)\.(bucket|id)\}/.+")


def _key_problem(stack: Stack, store: str, key_id: Any) -> str | None:
    keys = referenced_names(key_id, "aws_kms_key") & set(stack.resources("aws_kms_key"))
    if not keys:
        return f"the {store} store's key is not a KMS key of this stack"
    for key in sorted(keys):
        tags = stack.resources("aws_kms_key")[key].get("tags") or {}
        purpose = tags.get(KEY_PURPOSE_TAG) if isinstance(tags, dict) else None
        if purpose != FEATURE_STORE_PURPOSE:
            return f"the {store} store's key is the {purpose!r} key, not {FEATURE_STORE_PURPOSE!r}"
    return None


def _versioned_buckets(stack: Stack) -> set[str]:
    versioned: set[str] = set()
    for conf in stack.resources("aws_s3_bucket_versioning").values():
        status = (block(conf, "versioning_configuration") or {}).get("status")
        if status == VERSIONING_ENABLED:
            versioned |= referenced_names(conf.get("bucket"), "aws_s3_bucket")
    return versioned


def _problems(stack: Stack, group: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    online = block(group, "online_store_config") or {}
    if is_true(online.get("enable_online_store")):
        security = block(online, "security_config") or {}
        problems.append(_key_problem(stack, "online", security.get("kms_key_id")) or "")
    offline = block(group, "offline_store_config")
    if offline is None:
        problems.append("no offline store")
        return [p for p in problems if p]
    storage = block(offline, "s3_storage_config") or {}
    problems.append(_key_problem(stack, "offline", storage.get("kms_key_id")) or "")
    uri = str(storage.get("s3_uri", ""))
    match = _BUCKET_URI.match(uri)
    if match is None or match.group("bucket") not in stack.resources("aws_s3_bucket"):
        problems.append(f"the offline store {uri!r} is not in a bucket of this stack")
    elif match.group("bucket") not in _versioned_buckets(stack):
        problems.append("the offline store's bucket is not versioned")
    if not is_true(offline.get("disable_glue_table_creation")):
        problems.append("SageMaker creates the Glue table (disable_glue_table_creation not true)")
    catalog = block(offline, "data_catalog_config") or {}
    tables = stack.resources("aws_glue_catalog_table")
    table_names = referenced_names(catalog.get("table_name"), "aws_glue_catalog_table") & set(
        tables
    )
    if not table_names:
        problems.append("data_catalog_config.table_name is not a Glue table of this stack")
    for table_name in sorted(table_names):
        table = tables[table_name]
        table_databases = referenced_names(table.get("database_name"), "aws_glue_catalog_database")
        databases = referenced_names(catalog.get("database"), "aws_glue_catalog_database")
        if not databases or databases != table_databases:
            problems.append("data_catalog_config.database is not its table's database")
        location = str((block(table, "storage_descriptor") or {}).get("location", ""))
        if not uri or not location.startswith(uri):
            problems.append(f"its Glue table's location {location!r} is not under {uri!r}")
    return [p for p in problems if p]


class FeatureGroupUsesFeatureStoreKeyVersionedBucketOwnTable(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a feature group uses the feature-store key, a versioned bucket and a "
                "Glue table of its stack"
            ),
            id="CKV_PHI_28",
            category=CheckCategories.ENCRYPTION,
            judged_types=["aws_sagemaker_feature_group"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for name, group in stack.resources("aws_sagemaker_feature_group").items():
            problems = _problems(stack, group)
            yield Verdict(
                address("aws_sagemaker_feature_group", name), not problems, "; ".join(problems)
            )


check = register(FeatureGroupUsesFeatureStoreKeyVersionedBucketOwnTable())
