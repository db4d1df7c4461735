"""The regulatory control catalog (policies/controls.yaml), loaded and validated.

A bad catalog stops with one message naming the file, the control (by id when it has one) and
the rule it breaks, so the audit layer never deploys a conformance pack built from a typo.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

DEFAULT_CATALOG = Path(__file__).with_name("controls.yaml")

# AWS Config managed rule identifiers, e.g. S3_BUCKET_SSL_REQUESTS_ONLY.
CONFIG_RULE_IDENTIFIER = r"^[A-Z0-9_]+$"
# checkov built-in (CKV_AWS_19, CKV2_AWS_10) and custom (CKV_PHI_1) check ids.
CHECKOV_CHECK_ID = r"^CKV2?_[A-Z0-9]+_[0-9]+$"
# What follows `<framework>-` in a control id: an article or section reference such as
# 164.312(a)(2)(iv), 5(1)(f) or 12. No spaces, so ids survive in file names and URLs.
_SECTION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.()-]*$")

ConfigRuleIdentifier = Annotated[str, StringConstraints(pattern=CONFIG_RULE_IDENTIFIER)]
CheckovCheckId = Annotated[str, StringConstraints(pattern=CHECKOV_CHECK_ID)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Framework(StrEnum):
    HIPAA = "HIPAA"
    GDPR = "GDPR"
    EHDS = "EHDS"
    FDA_PCCP = "FDA-PCCP"
    EU_AI_ACT = "EU-AI-Act"


class Responsibility(StrEnum):
    """Who operates the control under the AWS shared responsibility model."""

    CUSTOMER = "customer"
    AWS = "aws"
    SHARED = "shared"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_duplicates(kind: str, values: tuple[str, ...]) -> None:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"{kind} listed twice: {', '.join(repeated)}")


class RuntimeEvidence(_Entry):
    """Evidence gathered while the platform runs: AWS Config rule evaluations, and the process
    records an auditor asks for."""

    config_rules: tuple[ConfigRuleIdentifier, ...] = ()
    manual: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _rules_once(self) -> RuntimeEvidence:
        _no_duplicates("config rule", self.config_rules)
        return self


class Control(_Entry):
    id: str
    framework: Framework
    title: Text
    citation: Text
    responsibility: Responsibility
    # Required even when empty, so a missing list is a mistake and not an implied "none".
    static_checks: tuple[CheckovCheckId, ...]
    runtime_evidence: RuntimeEvidence

    @model_validator(mode="after")
    def _id_names_its_framework(self) -> Control:
        prefix = f"{self.framework.value}-"
        if not self.id.startswith(prefix) or not _SECTION.match(self.id[len(prefix) :]):
            raise ValueError(
                f"control id {self.id!r} must be '{prefix}' followed by the article or section "
                "(letters, digits, '.', '(', ')' and '-')"
            )
        _no_duplicates("static check", self.static_checks)
        return self


class Catalog(_Entry):
    catalog_version: Literal[1]
    # Input parameters for rules whose defaults are too weak for these regulations.
    config_rule_parameters: dict[ConfigRuleIdentifier, dict[str, str]] = Field(default_factory=dict)
    controls: tuple[Control, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_unique_and_parameters_used(self) -> Catalog:
        ids = [control.id for control in self.controls]
        _no_duplicates("control id", tuple(ids))
        used = {rule for control in self.controls for rule in control.runtime_evidence.config_rules}
        unused = sorted(set(self.config_rule_parameters) - used)
        if unused:
            raise ValueError(
                f"config_rule_parameters for {', '.join(unused)}, which no control lists"
            )
        return self

    def control(self, control_id: str) -> Control:
        for control in self.controls:
            if control.id == control_id:
                return control
        raise KeyError(control_id)

    def config_rules(self) -> dict[str, tuple[str, ...]]:
        """Each AWS Config managed rule identifier (sorted, once) with the ids of the controls
        it evidences, in catalog order."""
        evidenced: dict[str, list[str]] = {}
        for control in self.controls:
            for rule in control.runtime_evidence.config_rules:
                evidenced.setdefault(rule, []).append(control.id)
        return {rule: tuple(evidenced[rule]) for rule in sorted(evidenced)}

    def parameters(self, rule: str) -> dict[str, str]:
        return dict(self.config_rule_parameters.get(rule, {}))


class CatalogError(ValueError):
    """The catalog file is unreadable or breaks a rule; the message says where and which."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys silently; in a control catalog that hides a
    mistake (two `title:` lines), so it is an error here."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_catalog(path: Path | str = DEFAULT_CATALOG) -> Catalog:
    """Read and validate a control catalog; raise CatalogError naming the file and control."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise CatalogError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected a mapping with catalog_version and controls")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as error:
        raise CatalogError(_describe(path, raw, error)) from None


def _describe(path: Path, raw: dict[str, Any], error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = _location(raw, problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] in {"enum", "literal_error", "string_pattern_mismatch"}:
            message = f"{problem['input']!r}: {message}"
        lines.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")
    return "\n".join(lines)


def _location(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """('controls', 3, 'title') -> 'controls[3] (GDPR-32): title'."""
    parts: list[str] = []
    rest = list(loc)
    if len(rest) >= 2 and rest[0] == "controls" and isinstance(rest[1], int):
        index = rest[1]
        controls = raw.get("controls")
        control = controls[index] if isinstance(controls, list) and index < len(controls) else None
        control_id = control.get("id") if isinstance(control, dict) else None
        parts.append(f"controls[{index}]" + (f" ({control_id})" if control_id else ""))
        rest = rest[2:]
    field = ""
    for item in rest:
        field += f"[{item}]" if isinstance(item, int) else (f".{item}" if field else str(item))
    if field:
        parts.append(field)
    return ": ".join(parts)
