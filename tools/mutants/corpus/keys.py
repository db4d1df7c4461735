"""Mutants of the keys layer (modules/keys.py)."""

from __future__ import annotations

import json

from tools.mutants.edits import address, delete_attribute, edit_json, named, set_attribute
from tools.mutants.model import Apply, Document, Mutant, RuntimeTwin

# AWS's default key policy statement: every IAM policy of the account may then use the key.
ACCOUNT_ROOT_STATEMENT = {
    "Sid": "Enable IAM User Permissions",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::{account}:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def key_folded_into(folded_path: str, kept_path: str) -> Apply:
    """One key serving two purposes: every use of the folded key (bucket encryption, alias,
    outputs) moved to the kept key, and the folded key deleted."""

    def apply(document: Document) -> str:
        folded, _ = named(document, "aws_kms_key", folded_path)
        kept, _ = named(document, "aws_kms_key", kept_path)
        del document["resource"]["aws_kms_key"][folded]
        moved = json.loads(
            json.dumps(document).replace(f"aws_kms_key.{folded}.", f"aws_kms_key.{kept}.")
        )
        document.clear()
        document.update(moved)
        return address("aws_kms_key", kept)

    return apply


def administrator_also_user(key_path: str) -> Apply:
    def apply(document: Document) -> str:
        name, conf = named(document, "aws_kms_key", key_path)

        def change(policy: Document) -> None:
            statements = {s["Sid"]: s for s in policy["Statement"]}
            administrators = statements["KeyAdministratorsManageButCannotUse"]["Principal"]["AWS"]
            users = statements["KeyUsersEncryptAndDecrypt"]["Principal"]["AWS"]
            admin = next(a for a in administrators if a.endswith(":role/phi-ml-key-admin"))
            users.append(admin)

        edit_json(conf, "policy", change)
        return address("aws_kms_key", name)

    return apply


def account_root_statement(key_path: str) -> Apply:
    def apply(document: Document) -> str:
        name, conf = named(document, "aws_kms_key", key_path)

        def change(policy: Document) -> None:
            admins = policy["Statement"][0]["Principal"]["AWS"]
            account = admins[0].split(":")[4]
            root = json.loads(json.dumps(ACCOUNT_ROOT_STATEMENT).replace("{account}", account))
            policy["Statement"].insert(0, root)

        edit_json(conf, "policy", change)
        return address("aws_kms_key", name)

    return apply


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="keys-feature-store-key-folded-into-phi-key",
        layer="keys",
        guarantee="one KMS CMK per purpose",
        check_id="CKV_PHI_17",
        stack="dev-data",
        change="the feature-store key removed; its alias and the feature offline bucket use the "
        "PHI key",
        apply=key_folded_into("keys/feature-store/key", "keys/phi-data/key"),
    ),
    Mutant(
        name="keys-logs-key-not-rotated",
        layer="keys",
        guarantee="yearly rotation",
        check_id="CKV_AWS_7",
        stack="staging-data",
        change="the logs key with enable_key_rotation false",
        apply=set_attribute("aws_kms_key", "keys/logs/key", "enable_key_rotation", False),
        runtime=RuntimeTwin("RT_PHI_KMS_KEY_ROTATION", "key rotation off"),
    ),
    Mutant(
        name="keys-ml-artifacts-key-7-day-deletion-window",
        layer="keys",
        guarantee="30-day deletion window",
        check_id="CKV_PHI_18",
        stack="dev-data",
        change="the ML artifacts key's deletion window shortened to 7 days",
        apply=set_attribute("aws_kms_key", "keys/ml-artifacts/key", "deletion_window_in_days", 7),
    ),
    Mutant(
        name="keys-administrator-decrypts-phi",
        layer="keys",
        guarantee="key policy separates administrators (manage, never decrypt) from users",
        check_id="CKV_PHI_19",
        stack="dev-data",
        change="the key administrator role added to the PHI key's users (encrypt/decrypt)",
        apply=administrator_also_user("keys/phi-data/key"),
    ),
    Mutant(
        name="keys-logs-key-account-root-statement",
        layer="keys",
        guarantee="no account-root statement",
        check_id="CKV_PHI_19",
        stack="eu-research-data",
        change="AWS's default 'Enable IAM User Permissions' statement (account root, kms:*) "
        "added to the logs key's policy",
        apply=account_root_statement("keys/logs/key"),
    ),
    Mutant(
        name="prod-phi-key-destroyable",
        layer="keys",
        guarantee="prevent_destroy in production",
        check_id="CKV_PHI_13",
        stack="prod-data",
        change="the production PHI key without lifecycle.prevent_destroy",
        apply=delete_attribute("aws_kms_key", "keys/phi-data/key", "lifecycle"),
    ),
    Mutant(
        name="keys-state-key-destroyable",
        layer="keys",
        guarantee="prevent_destroy, everywhere, on the keys of the state bucket",
        check_id="CKV_PHI_18",
        stack="bootstrap",
        change="the Terraform state bucket's key without lifecycle.prevent_destroy",
        apply=delete_attribute("aws_kms_key", "bootstrap/state-key/key", "lifecycle"),
    ),
    Mutant(
        name="keys-audit-archive-key-destroyable",
        layer="keys",
        guarantee="prevent_destroy, everywhere, on the keys of the audit archives",
        check_id="CKV_PHI_18",
        stack="org-audit",
        change="the audit archive's key without lifecycle.prevent_destroy",
        apply=delete_attribute("aws_kms_key", "org-audit/audit-key/key", "lifecycle"),
    ),
)
