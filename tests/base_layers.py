"""The base layers other layers stand on (keys and storage), built as the tests build them:
one unit environment in one account, with the same key administrators, users and buckets."""

from __future__ import annotations

from constructs import Construct

from modules.keys import Keys, KeysConfig
from modules.storage import Storage, StorageConfig

ACCOUNT = "123456789012"
BUCKET_PREFIX = "acme-unit"
KEY_ADMINISTRATORS = (f"arn:aws:iam::{ACCOUNT}:role/key-admin",)
KEY_USERS = (f"arn:aws:iam::{ACCOUNT}:role/data-engineer",)
NONCURRENT_VERSION_DAYS = 90
AUDIT_RETENTION_DAYS = 2192


def add_keys_and_storage(
    stack: Construct, *, region: str, production: bool = False
) -> tuple[Keys, Storage]:
    """The unit environment's keys and the buckets they encrypt, in `region`."""
    keys = Keys(
        stack,
        "keys",
        config=KeysConfig(
            environment="unit",
            account_id=ACCOUNT,
            region=region,
            administrators=KEY_ADMINISTRATORS,
            users=KEY_USERS,
        ),
    )
    storage = Storage(
        stack,
        "storage",
        config=StorageConfig(
            bucket_prefix=BUCKET_PREFIX,
            account_id=ACCOUNT,
            noncurrent_version_days=NONCURRENT_VERSION_DAYS,
            audit_retention_days=AUDIT_RETENTION_DAYS,
            production=production,
        ),
        keys=keys,
    )
    return keys, storage
