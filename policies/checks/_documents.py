"""Documents embedded in resources: IAM policies, CloudFormation templates, pipeline definitions.

Terraform holds them as JSON strings; the checks parse them (`_conf.json_document`) and read
them with these helpers.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from typing import Any

ANYONE = "*"

# Condition keys that pin a wildcard principal to known accounts, organizations or sources:
# with one of these (and no wildcard in its value) IAM Access Analyzer does not call a policy
# public. Compared in lower case: IAM condition keys are case-insensitive.
_RESTRICTING_KEYS = frozenset(
    {
        "aws:principalaccount",
        "aws:principalarn",
        "aws:principalorgid",
        "aws:principalorgpaths",
        "aws:sourceaccount",
        "aws:sourcearn",
        "aws:sourceorgid",
        "aws:sourceorgpaths",
        "aws:sourceowner",
        "aws:userid",
    }
)
# Operators that admit only the listed values (negations and ...IfExists do not restrict).
_RESTRICTING_OPERATORS = frozenset(
    {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike"}
)
_ARN_ACCOUNT = re.compile(r"^arn:[^:]*:[^:]*:[^:]*:(\d{12}):")


def as_list(value: Any) -> list[Any]:
    """IAM's "one value or a list of values" as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def statements(policy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The statements of an IAM policy document (IAM allows a single statement object too)."""
    for statement in as_list(policy.get("Statement")):
        if isinstance(statement, dict):
            yield statement


def principals(statement: dict[str, Any]) -> list[str]:
    """Every principal a statement names: `"*"`, or the values of `{"AWS": ..., ...}`."""
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        return [str(p) for values in principal.values() for p in as_list(values)]
    return [str(p) for p in as_list(principal)]


def names_anyone(statement: dict[str, Any]) -> bool:
    """The statement applies to every principal (`"*"` or `{"AWS": "*"}`)."""
    return ANYONE in principals(statement)


def conditions(statement: dict[str, Any]) -> Iterator[tuple[str, str, list[Any]]]:
    """(operator, key, values) of a statement's Condition, operator and key in lower case."""
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return
    for operator, entries in condition.items():
        if isinstance(entries, dict):
            for key, values in entries.items():
                yield str(operator).lower(), str(key).lower(), as_list(values)


def _restricting_value(key: str, value: Any) -> bool:
    text = str(value)
    if ANYONE not in text:
        return True
    # An ARN pattern still pins the principal when its account field is a fixed account id.
    return key.endswith("arn") and _ARN_ACCOUNT.match(text) is not None


def restricted_by_condition(statement: dict[str, Any]) -> bool:
    """A condition limits the statement to known accounts, organizations or sources."""
    for operator, key, values in conditions(statement):
        base_operator = operator.split(":")[-1]
        if (
            base_operator in _RESTRICTING_OPERATORS
            and key in _RESTRICTING_KEYS
            and values
            and all(_restricting_value(key, v) for v in values)
        ):
            return True
    return False


def grants_public_access(statement: dict[str, Any]) -> bool:
    """An Allow to anyone (a `"*"` principal, or `NotPrincipal`, which allows everyone but the
    listed) that no condition narrows to known accounts or organizations."""
    if statement.get("Effect") != "Allow":
        return False
    if "NotPrincipal" in statement:
        return True
    return names_anyone(statement) and not restricted_by_condition(statement)


def actions(statement: dict[str, Any]) -> list[str]:
    return [str(a).lower() for a in as_list(statement.get("Action"))]


def resources_cover(statement: dict[str, Any], targets: list[str]) -> bool:
    """Every target ARN is matched by one of the statement's Resource patterns."""
    patterns = [str(r) for r in as_list(statement.get("Resource"))]
    return all(any(fnmatch.fnmatchcase(t, p) for p in patterns) for t in targets)


def condition_values(statement: dict[str, Any], operator: str, key: str) -> list[Any]:
    """The values a statement's Condition gives `key` under `operator` (case-insensitive)."""
    return [
        value
        for found_operator, found_key, values in conditions(statement)
        if found_operator == operator.lower() and found_key == key.lower()
        for value in values
    ]


def cloudformation_resources(
    template: dict[str, Any], resource_type: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, Properties) of every resource of `resource_type` in a template."""
    resources = template.get("Resources")
    if not isinstance(resources, dict):
        return
    for logical_id, resource in resources.items():
        if isinstance(resource, dict) and resource.get("Type") == resource_type:
            properties = resource.get("Properties")
            yield str(logical_id), properties if isinstance(properties, dict) else {}


def pipeline_steps(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step of a SageMaker pipeline definition, those inside Condition branches too."""
    pending = [step for step in as_list(definition.get("Steps")) if isinstance(step, dict)]
    while pending:
        step = pending.pop(0)
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments")
            if isinstance(arguments, dict):
                for branch in ("IfSteps", "ElseSteps"):
                    pending.extend(s for s in as_list(arguments.get(branch)) if isinstance(s, dict))


def get_path(document: Any, *keys: str) -> Any:
    """document[k1][k2]..., or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document
