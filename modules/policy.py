"""IAM-style policy documents built as Python data, so tests can assert on statements."""

from __future__ import annotations

import json
from typing import Any

Statement = dict[str, Any]


def policy_document(*statements: Statement) -> str:
    """Serialize statements as a policy document (stable key order keeps diffs reviewable)."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def statement(
    sid: str,
    *,
    effect: str,
    actions: list[str] | str,
    resources: list[str] | str,
    principal: dict[str, Any] | str | None = None,
    condition: dict[str, dict[str, Any]] | None = None,
) -> Statement:
    result: Statement = {"Sid": sid, "Effect": effect, "Action": actions, "Resource": resources}
    if principal is not None:
        result["Principal"] = principal
    if condition:
        result["Condition"] = condition
    return result


def assume_role_policy(service: str, account_id: str) -> str:
    """Trust policy for an AWS service, confined to this account (confused-deputy guard)."""
    return policy_document(
        {
            "Sid": "ServiceAssumesRoleForThisAccountOnly",
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    )
