"""What every preflight rule family shares: the rule record (with the source its facts come
from), the synthesized stacks as resources with their stack's region, Terraform references
told apart from literal values, and the finding a rule writes.

A rule family is a module with `RULES` (its `Rule`s) and `check(stacks) -> list[Finding]`,
one PASSED or FAILED finding per rule and judged value. A value that holds a Terraform
reference (`${...}`) is judged on its literal parts where the rule can be, and skipped where
it cannot: the referenced value is another resource's and judged there.

A rule whose source cannot be read (a package missing, a model file that changed shape) raises
`PreflightSourceError`: the preflight then stops with exit 2, it never passes in silence.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from policies.findings import Finding, Source, Status

STACK_FILE: Final = "cdk.tf.json"
# A Terraform interpolation as cdktf writes it: `${aws_iam_role.x.arn}`, `${var.y}`; not
# `$${...}`, Terraform's escape for a literal `${` (CloudFormation's own Fn::Sub syntax).
TOKEN: Final = re.compile(r"(?<!\$)\$\{[^}]*\}")


def package_data(package: str, *parts: str) -> Path:
    """A data file or folder inside an installed package, found without importing the package
    (cfn-lint's `__init__` imports all of cfn-lint, sympy included: half a second for a file).
    ModuleNotFoundError when the package is not installed."""
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec else None
    if not locations:
        raise ModuleNotFoundError(f"no installed package {package!r}")
    return Path(next(iter(locations))).joinpath(*parts)


def installed_version(distribution: str) -> str:
    """The installed version of a rule's source package, as its Rule.source names it; a package
    that is absent reads "(not installed)" here, and the family that reads its data raises
    PreflightSourceError then, naming it."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(not installed)"


BOTOCORE: Final = f"botocore {installed_version('botocore')}"
CFN_LINT_VERSION: Final = installed_version("cfn-lint")


class PreflightSourceError(Exception):
    """A rule's source (a package's data, a model file, a schema) cannot be read as expected."""


class PreflightInputError(Exception):
    """The synthesized directory or a stack in it is missing or malformed (exit 2)."""


@dataclass(frozen=True)
class Rule:
    id: str  # PF_<FAMILY>_<WHAT>
    family: str  # names, iam, sizes, cloudformation, pipelines, events, regions, conformance
    title: str  # what holds when it passes, e.g. "Lambda function names are valid"
    source: str  # where its facts come from: package and version, model, document


@dataclass(frozen=True)
class Resource:
    stack: str
    file: str  # the stack file, relative to the synthesized directory
    type: str
    name: str
    block: dict[str, Any]
    region: str

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"

    @property
    def construct_path(self) -> str:
        metadata = self.block.get("//", {}).get("metadata", {})
        return str(metadata.get("path", "")) if isinstance(metadata, dict) else ""


@dataclass(frozen=True)
class Stack:
    name: str
    file: str
    configuration: dict[str, Any]

    @property
    def region(self) -> str:
        """The default AWS provider's region (the provider without an alias)."""
        providers = self.configuration.get("provider", {}).get("aws", [])
        for provider in providers if isinstance(providers, list) else [providers]:
            if isinstance(provider, dict) and "alias" not in provider:
                return str(provider.get("region", ""))
        return ""

    def resources(self, resource_type: str | None = None) -> Iterator[Resource]:
        region = self.region
        for type_, blocks in sorted(self.configuration.get("resource", {}).items()):
            if resource_type is not None and type_ != resource_type:
                continue
            for name, block in sorted(blocks.items()):
                yield Resource(self.name, self.file, type_, name, block, region)


@dataclass(frozen=True)
class SynthesizedStacks:
    outdir: Path
    stacks: tuple[Stack, ...]

    def resources(self, resource_type: str | None = None) -> Iterator[Resource]:
        for stack in self.stacks:
            yield from stack.resources(resource_type)


def read_stacks(outdir: Path) -> SynthesizedStacks:
    """Every stacks/<name>/cdk.tf.json of a synthesized directory; a missing or malformed
    one is a PreflightInputError naming it."""
    stacks_dir = outdir / "stacks"
    if not stacks_dir.is_dir():
        raise PreflightInputError(f"{stacks_dir}: no such directory (synthesize first: make synth)")
    stacks = []
    for folder in sorted(p for p in stacks_dir.iterdir()):
        file = folder / STACK_FILE
        if not folder.is_dir() or not file.is_file():
            raise PreflightInputError(f"{folder}: not a synthesized stack (no {STACK_FILE})")
        try:
            configuration = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PreflightInputError(f"{file}: not readable Terraform JSON ({error})") from None
        if not isinstance(configuration, dict) or not isinstance(
            configuration.get("resource", {}), dict
        ):
            raise PreflightInputError(f"{file}: not a Terraform JSON configuration")
        stacks.append(Stack(folder.name, str(file.relative_to(outdir)), configuration))
    if not stacks:
        raise PreflightInputError(f"{stacks_dir}: no stacks/<name>/{STACK_FILE} (make synth)")
    return SynthesizedStacks(outdir, tuple(stacks))


def has_token(value: Any) -> bool:
    return isinstance(value, str) and TOKEN.search(value) is not None


def literal(value: Any) -> str | None:
    """The value when it is a literal string (no Terraform reference in it), else None."""
    return value if isinstance(value, str) and not has_token(value) else None


def verdict(rule: Rule, resource: Resource, problem: str | None, *, judged: str = "") -> Finding:
    """A PASSED finding when `problem` is None, else FAILED with the problem and the source."""
    if problem is not None:
        detail = f"{problem} [source: {rule.source}]"
    else:
        detail = f"{judged}: ok" if judged else ""
    return Finding(
        check_id=rule.id,
        check_name=rule.title,
        status=Status.PASSED if problem is None else Status.FAILED,
        source=Source.DEPLOYABILITY,
        stack=resource.stack,
        resource=resource.address,
        construct_path=resource.construct_path,
        detail=detail,
        file=resource.file,
    )
