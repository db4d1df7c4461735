"""A key policy's verdict for one principal, with the evaluator of tests/iam.py plus the two
case-insensitive string operators the Nitro Enclaves condition key is used with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.iam import as_list, statement_applies
from tests.synth import statements

# Operator -> negated. IAM compares IgnoreCase operators after folding case on both sides.
IGNORE_CASE_OPERATORS = {"StringEqualsIgnoreCase": False, "StringNotEqualsIgnoreCase": True}


def _ignore_case_holds(negated: bool, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    expected_values = [str(value).lower() for value in as_list(expected)]
    actual = [str(value).lower() for value in as_list(context[key])] if key in context else []
    matched = any(value in expected_values for value in actual)
    # An absent key never satisfies the positive operator and always satisfies the negated one.
    return not matched if negated else matched


def applies(candidate: Mapping[str, Any], action: str, context: Mapping[str, Any]) -> bool:
    conditions = dict(candidate.get("Condition", {}))
    folded = {op: conditions.pop(op) for op in list(conditions) if op in IGNORE_CASE_OPERATORS}
    rest = {**candidate, "Condition": conditions}
    return statement_applies(rest, action, "*", context) and all(
        _ignore_case_holds(IGNORE_CASE_OPERATORS[op], key, expected, context)
        for op, pairs in folded.items()
        for key, expected in pairs.items()
    )


def names(candidate: Mapping[str, Any], principal: str) -> bool:
    """Whether the statement's Principal covers `principal` (an ARN, or `*` for anyone)."""
    stated = candidate.get("Principal", {})
    aws = as_list(stated.get("AWS", [])) if isinstance(stated, dict) else [stated]
    return "*" in aws or principal in aws


def key_policy_allows(
    policy_json: str, principal: str, action: str, context: Mapping[str, Any] | None = None
) -> bool:
    """Some Allow naming the principal applies, and no Deny naming it does."""
    context = context or {}
    applicable = [
        s for s in statements(policy_json) if names(s, principal) and applies(s, action, context)
    ]
    return any(s["Effect"] == "Allow" for s in applicable) and not any(
        s["Effect"] == "Deny" for s in applicable
    )
