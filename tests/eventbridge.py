"""EventBridge event-pattern matching, for asserting which events a synthesized rule catches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NUMERIC: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}


def event_matches(pattern: Any, value: Any) -> bool:
    """EventBridge matching for what our patterns use: nested objects, lists of exact values,
    {"prefix": ...}, {"anything-but": ...} and {"numeric": [op, n, ...]}; an event array
    matches when any element does (EventBridge's flattening)."""
    if isinstance(value, list) and not isinstance(pattern, list):
        return any(event_matches(pattern, element) for element in value)
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            name in value and event_matches(sub, value[name]) for name, sub in pattern.items()
        )
    assert isinstance(pattern, list), pattern
    if isinstance(value, list):
        return any(event_matches(pattern, element) for element in value)
    return any(option_matches(option, value) for option in pattern)


def option_matches(option: Any, value: Any) -> bool:
    if not isinstance(option, dict):
        return bool(option == value)
    ((operator, operand),) = option.items()
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(operand)
    if operator == "anything-but":
        excluded = operand if isinstance(operand, list) else [operand]
        return value not in excluded
    if operator == "numeric":
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        pairs = list(zip(operand[::2], operand[1::2], strict=True))
        return all(NUMERIC[op](value, bound) for op, bound in pairs)
    raise AssertionError(f"the matcher does not know {operator}")
