"""Edits of a synthesized stack's Terraform JSON, the building blocks of mutants."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tools.mutants.model import Apply, Document


class MutantError(Exception):
    """A mutant no longer finds what it edits: the stacks changed under the corpus."""


def named(document: Document, resource_type: str, path_part: str) -> tuple[str, Document]:
    """The one resource of `resource_type` whose construct path contains `path_part`."""
    found = [
        (name, conf)
        for name, conf in document.get("resource", {}).get(resource_type, {}).items()
        if path_part in conf["//"]["metadata"]["path"]
    ]
    if len(found) != 1:
        raise MutantError(
            f"{resource_type} with {path_part!r} in its construct path: "
            f"{len(found)} found ({[name for name, _ in found]})"
        )
    return found[0]


def address(resource_type: str, name: str) -> str:
    return f"{resource_type}.{name}"


def edit_json(conf: Document, key: str, change: Callable[[Any], None]) -> None:
    """Change a JSON document held in a string attribute."""
    document = json.loads(conf[key])
    change(document)
    conf[key] = json.dumps(document)


def set_attribute(resource_type: str, path_part: str, key: str, value: Any) -> Apply:
    """Set one top-level attribute of one resource."""

    def apply(document: Document) -> str:
        name, conf = named(document, resource_type, path_part)
        conf[key] = value
        return address(resource_type, name)

    return apply


def delete_attribute(resource_type: str, path_part: str, key: str) -> Apply:
    """Remove one top-level attribute of one resource (AWS's default applies)."""

    def apply(document: Document) -> str:
        name, conf = named(document, resource_type, path_part)
        if key not in conf:
            raise MutantError(f"{resource_type}.{name} has no {key!r} to remove")
        del conf[key]
        return address(resource_type, name)

    return apply


def delete_resource(document: Document, resource_type: str, path_part: str) -> str:
    """Remove one resource; returns its address."""
    name, _ = named(document, resource_type, path_part)
    del document["resource"][resource_type][name]
    if not document["resource"][resource_type]:
        del document["resource"][resource_type]
    return address(resource_type, name)


def statements_without(sid: str) -> Callable[[Any], None]:
    """A policy-document change dropping the statement `sid`."""

    def change(policy: Any) -> None:
        kept = [s for s in policy["Statement"] if s.get("Sid") != sid]
        if len(kept) == len(policy["Statement"]):
            raise MutantError(f"no statement {sid!r} to drop")
        policy["Statement"] = kept

    return change


def pipeline_step(definition: Document, step_name: str) -> Document:
    """A step of a SageMaker pipeline definition, condition branches included."""
    steps = list(definition["Steps"])
    while steps:
        step: Document = steps.pop(0)
        if step["Name"] == step_name:
            return step
        steps += step.get("Arguments", {}).get("IfSteps", [])
    raise MutantError(f"no pipeline step {step_name!r}")


def bucket_policy_without(bucket_path: str, sid: str) -> Apply:
    """Drop the statement `sid` from the policy of the bucket whose construct path contains
    `bucket_path` (`.../bucket`; its policy is `.../policy` beside it); the bucket must fail."""

    def apply(document: Document) -> str:
        bucket, _ = named(document, "aws_s3_bucket", bucket_path)
        _, policy = named(document, "aws_s3_bucket_policy", bucket_path.removesuffix("/bucket"))
        edit_json(policy, "policy", statements_without(sid))
        return address("aws_s3_bucket", bucket)

    return apply
