"""A small IAM evaluator: statement matching with IAM's wildcard semantics and the condition
operators our policies use, so tests can ask what a synthesized policy allows or denies."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tests.synth import statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def arn_matches(pattern: str, value: str) -> bool:
    """IAM resource matching: `*` is any run of characters (slashes included), `?` exactly one
    character, everything else literal (no character classes, unlike fnmatch)."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def action_matches(pattern: str, action: str) -> bool:
    """IAM action matching: the same wildcards, case-insensitive."""
    return arn_matches(pattern.lower(), action.lower())


# Positive operators: whether one present value satisfies the expected values.
POSITIVE_OPERATORS: dict[str, Callable[[str, list[str]], bool]] = {
    "StringEquals": lambda value, expected: value in expected,
    "ArnEquals": lambda value, expected: value in expected,
    "StringLike": lambda value, expected: any(arn_matches(p, value) for p in expected),
    "ArnLike": lambda value, expected: any(arn_matches(p, value) for p in expected),
    "Bool": lambda value, expected: value.lower() in [e.lower() for e in expected],
    "NumericLessThan": lambda value, expected: float(value) < float(expected[0]),
}


def condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    """IAM condition semantics for the operators our policies use. A context value may be a
    list (a multivalued key: any value satisfies a positive operator); an absent key never
    satisfies a positive operator, and always satisfies a negated one."""
    present = key in context
    expected_values = [str(value) for value in as_list(expected)]
    if operator == "Null":
        # "true": the key must be absent; "false": the key must be present.
        return (not present) == (expected_values[0].lower() == "true")
    actual = [str(value) for value in as_list(context[key])] if present else []
    if operator == "StringNotEquals":
        # A negated operator matches when the key is absent: why the Null guards exist.
        return not any(value in expected_values for value in actual)
    if operator not in POSITIVE_OPERATORS:
        raise AssertionError(f"the evaluator does not know {operator}")
    return any(POSITIVE_OPERATORS[operator](value, expected_values) for value in actual)


def statement_applies(
    candidate: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any]
) -> bool:
    """Whether the statement's actions, resources and every condition match the request."""
    return (
        any(action_matches(pattern, action) for pattern in as_list(candidate["Action"]))
        and any(arn_matches(pattern, resource) for pattern in as_list(candidate["Resource"]))
        and all(
            condition_holds(operator, key, expected, context)
            for operator, pairs in candidate.get("Condition", {}).items()
            for key, expected in pairs.items()
        )
    )


def iam_allows(
    policy_json: str, action: str, resource: str, context: Mapping[str, Any] | None = None
) -> bool:
    """Identity-policy evaluation: some Allow applies and no Deny does."""
    context = context or {}
    applicable = [
        s for s in statements(policy_json) if statement_applies(s, action, resource, context)
    ]
    return any(s["Effect"] == "Allow" for s in applicable) and not any(
        s["Effect"] == "Deny" for s in applicable
    )


def denied_by(
    policy_json: str, action: str, resource: str, context: Mapping[str, Any]
) -> list[str]:
    """Sids of the Deny statements that match a request."""
    return [
        candidate["Sid"]
        for candidate in statements(policy_json)
        if candidate["Effect"] == "Deny" and statement_applies(candidate, action, resource, context)
    ]
