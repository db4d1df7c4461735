"""SageMaker pipeline definitions against AWS's published pipeline-definition JSON schema.

The schema is vendored byte-for-byte (`schemas/sagemaker-pipeline-definition.schema.json`);
where it refuses shapes SageMaker accepts and the SageMaker Python SDK emits, a reviewed list of
corrections (`schemas/sagemaker-pipeline-definition.corrections.json`) patches the loaded copy.
Each correction names its reason and its evidence (the SDK line that emits the shape, the API
shape it is passed to); `schemas/README.md` says where the schema came from.

- `load_schema()`: the vendored schema with the corrections applied (optionally without some,
  by id, to show each one is needed).
- `validate_definition(definition)`: readable problems, `"<JSON path>: <message>"`, none when
  the definition is valid.

Pure: reads the two JSON files next to this module, nothing else.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMAS = Path(__file__).with_name("schemas")
UPSTREAM_SCHEMA = SCHEMAS / "sagemaker-pipeline-definition.schema.json"
CORRECTIONS = SCHEMAS / "sagemaker-pipeline-definition.corrections.json"

# The schema declares "$schema": "http://json-schema.org/schema#", the unversioned alias for
# "the latest draft", which jsonschema no longer resolves (it warns and falls back to its latest
# draft). We name that draft, 2020-12, instead of relying on the fallback. The schema uses only
# keywords whose meaning is the same from draft 7 on ("definitions" is reached by JSON pointer,
# no "$ref" has siblings, no array-form "items").
VALIDATOR = Draft202012Validator

# The member every step, condition and parameter is told apart by.
DISCRIMINATOR = "Type"
LONGEST_MESSAGE = 300


class CorrectionError(ValueError):
    """A correction does not apply to the vendored schema as it was reviewed."""


@dataclass(frozen=True)
class Correction:
    id: str
    reason: str
    evidence: tuple[str, ...]
    patch: tuple[Mapping[str, Any], ...]


def load_upstream_schema() -> dict[str, Any]:
    """The vendored schema exactly as AWS publishes it."""
    schema: dict[str, Any] = json.loads(UPSTREAM_SCHEMA.read_text(encoding="utf-8"))
    return schema


def load_corrections() -> tuple[Correction, ...]:
    document = json.loads(CORRECTIONS.read_text(encoding="utf-8"))
    return tuple(
        Correction(
            id=entry["id"],
            reason=entry["reason"],
            evidence=tuple(entry["evidence"]),
            patch=tuple(entry["patch"]),
        )
        for entry in document["corrections"]
    )


def load_schema(*, without: Collection[str] = ()) -> dict[str, Any]:
    """The vendored schema with every correction applied, except those named in `without`."""
    corrections = load_corrections()
    unknown = set(without) - {c.id for c in corrections}
    if unknown:
        raise ValueError(f"no such correction: {', '.join(sorted(unknown))}")
    schema = load_upstream_schema()
    for correction in corrections:
        if correction.id not in without:
            schema = apply_patch(schema, correction.patch, correction.id)
    return schema


def apply_patch(
    document: dict[str, Any], operations: Iterable[Mapping[str, Any]], name: str = "patch"
) -> dict[str, Any]:
    """A copy of `document` with RFC 6902 `test`, `add` and `replace` operations applied.

    Stricter than RFC 6902 in one way: `add` refuses to overwrite an existing member (that is
    what `replace` is for), so a correction never silently replaces upstream text.
    """
    patched = copy.deepcopy(document)
    for operation in operations:
        op, path = operation["op"], operation["path"]
        *parents, last = _pointer(path)
        try:
            container: Any = patched
            for token in parents:
                container = container[int(token) if isinstance(container, list) else token]
        except (KeyError, IndexError, ValueError, TypeError) as missing:
            raise CorrectionError(f"{name}: {op} {path}: no such location") from missing
        if op == "test":
            if _member(container, last, name, path) != operation["value"]:
                raise CorrectionError(f"{name}: test {path}: upstream differs from the review")
        elif op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(container, list):
                container.insert(len(container) if last == "-" else int(last), value)
            elif last in container:
                raise CorrectionError(f"{name}: add {path}: already present upstream")
            else:
                container[last] = value
        elif op == "replace":
            _member(container, last, name, path)
            container[int(last) if isinstance(container, list) else last] = copy.deepcopy(
                operation["value"]
            )
        else:
            raise CorrectionError(f"{name}: unsupported operation {op!r}")
    return patched


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise CorrectionError(f"not a JSON pointer: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _member(container: Any, token: str, name: str, path: str) -> Any:
    try:
        return container[int(token) if isinstance(container, list) else token]
    except (KeyError, IndexError, ValueError, TypeError) as missing:
        raise CorrectionError(f"{name}: {path}: no such location") from missing


def validate_definition(
    definition: Mapping[str, Any], schema: Mapping[str, Any] | None = None
) -> list[str]:
    """Every problem of a pipeline definition, as "<JSON path>: <message>", sorted; [] if valid.

    `schema` defaults to `load_schema()`.
    """
    validator = VALIDATOR(load_schema() if schema is None else schema)
    problems = {
        problem for error in validator.iter_errors(definition) for problem in _explain(error)
    }
    return sorted(problems)


def _explain(error: ValidationError) -> Iterator[str]:
    """The errors that say what is wrong, rather than "not valid under any of the given schemas".

    A oneOf/anyOf failure is explained by the one alternative the instance was evidently meant
    to be: the step (or condition) whose Type it names, else the only alternative that accepts
    the instance's JSON type and required members. When no alternative names its Type, the
    message lists the Types there are. When several alternatives remain, the problems they all
    report explain the failure; if they share none, the oneOf/anyOf message itself does.
    """
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        yield _line(error.json_path, error.message)
        return
    by_branch: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    branches = [b for b, errors in by_branch.items() if not any(map(_wrong_type_member, errors))]
    if not branches:
        known = sorted(
            {v for e in error.context if _wrong_type_member(e) for v in e.validator_value}
        )
        value = error.instance.get(DISCRIMINATOR) if isinstance(error.instance, dict) else None
        yield _line(f"{error.json_path}.{DISCRIMINATOR}", f"{value!r} is not one of {known}")
        return
    for refuses_outright in (_wrong_json_type, _missing_member, _at_instance):
        if len(branches) == 1:
            break
        narrowed = [b for b in branches if not any(map(refuses_outright, by_branch[b]))]
        branches = narrowed or branches
    explanations = [
        {line for sub in by_branch[branch] for line in _explain(sub)} for branch in branches
    ]
    # Several alternatives still fit (a condition operand may be a string, an integer, a float
    # or a boolean): what they all say is wrong is the explanation.
    common = set.intersection(*explanations)
    yield from sorted(common) if common else [_line(error.json_path, error.message)]


def _wrong_type_member(error: ValidationError) -> bool:
    """The alternative is a different kind of step or condition (its Type enum refuses)."""
    return list(error.relative_path) == [DISCRIMINATOR] and error.validator == "enum"


def _wrong_json_type(error: ValidationError) -> bool:
    return error.validator == "type" and not error.relative_path


def _missing_member(error: ValidationError) -> bool:
    return error.validator == "required" and not error.relative_path


def _at_instance(error: ValidationError) -> bool:
    return not error.relative_path


def _line(path: str, message: str) -> str:
    if len(message) > LONGEST_MESSAGE:
        message = message[: LONGEST_MESSAGE - 1] + "…"
    return f"{path}: {message}"
