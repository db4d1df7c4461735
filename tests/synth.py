"""Helpers to synthesize constructs in isolation and read the Terraform JSON they produce."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from cdktf import App, TerraformStack, Testing

from modules import aws


def synth_stack(build: Callable[[TerraformStack], object]) -> dict[str, Any]:
    """Synthesize a throwaway stack holding whatever `build` adds to it."""
    app: App = Testing.app()
    stack = TerraformStack(app, "test")
    aws.AwsProvider(stack, "aws", region="us-east-1")
    build(stack)
    return dict(json.loads(Testing.synth(stack)))


def resources(synthesized: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """All resources of one type, by logical name."""
    return dict(synthesized.get("resource", {}).get(resource_type, {}))


def only(synthesized: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = resources(synthesized, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def statements(policy_json: str) -> Iterator[dict[str, Any]]:
    yield from json.loads(policy_json)["Statement"]


def statement_by_sid(policy_json: str, sid: str) -> dict[str, Any]:
    for candidate in statements(policy_json):
        if candidate.get("Sid") == sid:
            return candidate
    raise AssertionError(f"no statement {sid!r} in {policy_json}")


def ref(synthesized: dict[str, Any], type_: str, attribute: str, *, named: str = "") -> str:
    """The Terraform reference to an attribute of the one resource of a type whose logical
    name contains `named`."""
    (name,) = [n for n in resources(synthesized, type_) if named in n]
    return f"${{{type_}.{name}.{attribute}}}"


def role_policy_named(synthesized: dict[str, Any], name: str) -> str:
    """The document of the one inline role policy (aws_iam_role_policy) called `name`."""
    (policy,) = [
        p["policy"]
        for p in resources(synthesized, "aws_iam_role_policy").values()
        if p["name"] == name
    ]
    return str(policy)
