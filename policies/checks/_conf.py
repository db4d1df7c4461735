"""Reading a resource's configuration as checkov hands it to a Python check.

checkov's terraform_json parser wraps every value in a list ("HCL-ified"): a scalar `x` becomes
`[x]`, a list of scalars `[a, b]` becomes `[[a, b]]`, and a nested block (a JSON object or a
list of objects) becomes a list of dicts. Strings holding JSON (IAM policies, CloudFormation
templates, pipeline definitions) stay strings. It also turns "true"/"false" strings into
booleans. These helpers read such a configuration without caring which form a value took.
"""

from __future__ import annotations

import json
from typing import Any


def scalar(conf: dict[str, Any], key: str) -> Any:
    """The value of `key`: a scalar, a list of scalars, or None when absent or empty."""
    value = conf.get(key)
    if isinstance(value, list):
        if not value:
            return None
        if len(value) == 1 and not isinstance(value[0], dict):
            return value[0]
    return value


def scalars(conf: dict[str, Any], key: str) -> list[Any]:
    """The value of `key` as a list of scalars (empty when absent)."""
    value = scalar(conf, key)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def blocks(conf: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The nested blocks under `key` (a `[{...}]` list or a bare dict)."""
    value = conf.get(key)
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def block(conf: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The first nested block under `key`, or None."""
    found = blocks(conf, key)
    return found[0] if found else None


def is_true(value: Any) -> bool:
    """True for a literal boolean true, whether JSON gave it as a bool or a string."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def is_set(value: Any) -> bool:
    """A non-empty string value (an ARN, id or Terraform interpolation)."""
    return isinstance(value, str) and bool(value.strip())


def json_document(value: Any) -> dict[str, Any] | None:
    """A JSON object held in a string attribute (policy, template), or None if it is not one."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
