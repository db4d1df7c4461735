"""Reading IAM policy documents as AWS evaluates them: single values or lists, `*` principals."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_ACCOUNT_IN_PRINCIPAL = re.compile(r"^(?:arn:aws[a-z-]*:iam::)?([0-9]{12})(?::.*)?$")


def parse(document: str) -> dict[str, Any]:
    """The policy as a mapping; ValueError when it is not a JSON object."""
    parsed = json.loads(document)
    if not isinstance(parsed, dict):
        raise ValueError("the policy is not a JSON object")
    return parsed


def statements(policy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    found = policy.get("Statement", [])
    for item in found if isinstance(found, list) else [found]:
        if isinstance(item, dict):
            yield item


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def principals(statement: dict[str, Any]) -> list[str]:
    """Every principal of a statement: `"*"` itself, or each AWS/Service/Federated value."""
    principal = statement.get("Principal")
    if isinstance(principal, str):
        return [principal]
    if isinstance(principal, dict):
        return [str(value) for values in principal.values() for value in as_list(values)]
    return []


def is_anyone(statement: dict[str, Any]) -> bool:
    return "*" in principals(statement)


def principal_accounts(statement: dict[str, Any]) -> set[str]:
    """The account ids an Allow statement's AWS principals belong to."""
    principal = statement.get("Principal")
    values = as_list(principal.get("AWS")) if isinstance(principal, dict) else []
    accounts = set()
    for value in values:
        match = _ACCOUNT_IN_PRINCIPAL.match(str(value))
        if match:
            accounts.add(match.group(1))
    return accounts


def actions_cover(statement: dict[str, Any], action: str) -> bool:
    """Whether the statement's Action names `action` itself or a wildcard covering it."""
    service = action.split(":", 1)[0]
    wanted = {action.lower(), "*", f"{service}:*".lower()}
    return any(str(value).lower() in wanted for value in as_list(statement.get("Action")))


def condition_values(statement: dict[str, Any], operator: str, key: str) -> list[str]:
    """Values of `key` under `operator` in the statement's Condition (keys match
    case-insensitively, as IAM matches condition keys)."""
    block = statement.get("Condition", {})
    if not isinstance(block, dict):
        return []
    for found_operator, conditions in block.items():
        if found_operator != operator or not isinstance(conditions, dict):
            continue
        for found_key, value in conditions.items():
            if found_key.lower() == key.lower():
                return [str(item).lower() for item in as_list(value)]
    return []
