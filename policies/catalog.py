"""The regulatory control catalog (policies/controls.yaml), loaded and validated.

A bad catalog stops with one message naming the file, the control (by id when it has one), the
field and the rule it breaks, so the audit layer never deploys a conformance pack built from a
typo and the evidence report never shows a control nobody can prove.

What the evidence report and the gate use:

- `Catalog.frameworks()`: the frameworks present, in catalog order.
- `Catalog.controls_of(framework)` / `Catalog.applicable_to(jurisdiction)`: the controls of one
  framework / those that apply to an environment of that jurisdiction (`US`, `EU`).
- `Catalog.controls_for_check(check_id)`: the controls a checkov check (`CKV_AWS_19`,
  `CKV_PHI_3`), a runtime check (`RT_...`) or an AWS Config rule identifier evidences, so a
  finding can name its controls.
- `Catalog.coverage(...)`: how each control is evidenced (`Evidence`): automated, manual only,
  inherited from AWS, or explicitly unmapped; optionally for one framework or jurisdiction.
- `Catalog.static_check_ids()` / `Catalog.runtime_check_ids()` / `Catalog.config_rules()`: every
  check id and Config rule the catalog names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from policies.yaml_files import read_mapping

DEFAULT_CATALOG = Path(__file__).with_name("controls.yaml")

# AWS Config managed rule identifiers, e.g. S3_BUCKET_SSL_REQUESTS_ONLY.
CONFIG_RULE_IDENTIFIER = r"^[A-Z0-9_]+$"
# checkov built-in (CKV_AWS_19, CKV2_AWS_10) and custom (CKV_PHI_1) check ids.
CHECKOV_CHECK_ID = r"^CKV2?_[A-Z0-9]+_[0-9]+$"
# Our boto3 checks of deployed accounts (policies/runtime/), e.g. RT_S3_OBJECT_LOCK.
RUNTIME_CHECK_ID = r"^RT_[A-Z0-9_]+$"
# What follows `<framework>-` in a control id: an article or section reference such as
# 164.312(a)(2)(iv), 5(1)(f) or 12, or a short name for guidance without numbered sections
# (versioning). No spaces, so ids survive in file names and URLs.
_SECTION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.()-]*$")

ConfigRuleIdentifier = Annotated[str, StringConstraints(pattern=CONFIG_RULE_IDENTIFIER)]
CheckovCheckId = Annotated[str, StringConstraints(pattern=CHECKOV_CHECK_ID)]
RuntimeCheckId = Annotated[str, StringConstraints(pattern=RUNTIME_CHECK_ID)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Framework(StrEnum):
    HIPAA = "HIPAA"
    GDPR = "GDPR"
    EHDS = "EHDS"
    FDA_PCCP = "FDA-PCCP"
    EU_AI_ACT = "EU-AI-Act"

    @property
    def full_name(self) -> str:
        """The regulation's name as an auditor reads it in a report heading."""
        return _FRAMEWORK_NAMES[self]

    @property
    def jurisdiction(self) -> Jurisdiction:
        """Where the framework's controls apply unless a control says otherwise."""
        return _FRAMEWORK_JURISDICTIONS[self]


class Jurisdiction(StrEnum):
    """The environments a control applies to: US (HIPAA) accounts, EU (GDPR, EHDS) accounts, or
    all of them. Environment files use the same US / EU values (environments/schema.py)."""

    US = "US"
    EU = "EU"
    ALL = "all"


_FRAMEWORK_NAMES = {
    Framework.HIPAA: "HIPAA Security Rule (45 CFR Part 164, Subpart C)",
    Framework.GDPR: "GDPR (Regulation (EU) 2016/679)",
    Framework.EHDS: "European Health Data Space (Regulation (EU) 2025/327)",
    Framework.FDA_PCCP: "FDA Predetermined Change Control Plans for AI-enabled device software",
    Framework.EU_AI_ACT: "EU AI Act (Regulation (EU) 2024/1689)",
}
# Model change control and AI Act obligations follow the model to whichever market it is placed
# on, not the data's location, and the same pipeline and registry run in every environment.
_FRAMEWORK_JURISDICTIONS = {
    Framework.HIPAA: Jurisdiction.US,
    Framework.GDPR: Jurisdiction.EU,
    Framework.EHDS: Jurisdiction.EU,
    Framework.FDA_PCCP: Jurisdiction.ALL,
    Framework.EU_AI_ACT: Jurisdiction.ALL,
}
# Laws that bind only one jurisdiction's environments: a control of theirs may not widen that.
_FIXED_JURISDICTIONS = {
    Framework.HIPAA: Jurisdiction.US,
    Framework.GDPR: Jurisdiction.EU,
    Framework.EHDS: Jurisdiction.EU,
}


class Responsibility(StrEnum):
    """Who operates the control under the AWS shared responsibility model."""

    CUSTOMER = "customer"
    AWS = "aws"
    SHARED = "shared"


class Evidence(StrEnum):
    """How a control is evidenced; every control is exactly one of these (see Control.evidence).

    automated    a static check, a runtime check or an AWS Config rule evaluates it
    manual-only  only process records an auditor asks for (runtime_evidence.manual)
    inherited    AWS operates it (responsibility: aws); its attestations are the evidence
    unmapped     nothing evidences it yet, and the catalog says why (`unmapped:`)
    """

    AUTOMATED = "automated"
    MANUAL_ONLY = "manual-only"
    INHERITED = "inherited"
    UNMAPPED = "unmapped"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_duplicates(kind: str, values: tuple[str, ...]) -> None:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"{kind} listed twice: {', '.join(repeated)}")


class RuntimeEvidence(_Entry):
    """Evidence gathered while the platform runs: AWS Config rule evaluations, our boto3 checks of
    the deployed accounts, and the process records an auditor asks for."""

    config_rules: tuple[ConfigRuleIdentifier, ...] = ()
    runtime_checks: tuple[RuntimeCheckId, ...] = ()
    # Of runtime_checks, those that judge what the ML loop did (a registered version, an
    # approval, a monitoring run). Until each passes, the control is "configured, not
    # demonstrated", however well its configuration checks fare.
    demonstrated_by: tuple[RuntimeCheckId, ...] = ()
    manual: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _listed_once(self) -> RuntimeEvidence:
        _no_duplicates("config rule", self.config_rules)
        _no_duplicates("runtime check", self.runtime_checks)
        _no_duplicates("demonstrating check", self.demonstrated_by)
        stray = sorted(set(self.demonstrated_by) - set(self.runtime_checks))
        if stray:
            raise ValueError(
                f"demonstrated_by names checks that are not among runtime_checks: "
                f"{', '.join(stray)}"
            )
        return self


class Control(_Entry):
    id: str
    framework: Framework
    title: Text
    citation: Text
    responsibility: Responsibility
    # Defaults to the framework's jurisdiction (filled in before validation).
    applies_to: Jurisdiction
    # Required even when empty, so a missing list is a mistake and not an implied "none".
    static_checks: tuple[CheckovCheckId, ...]
    runtime_evidence: RuntimeEvidence
    # What AWS operates for this control, and the attestation that proves it (SOC 2, ISO 27001,
    # the BAA): required when AWS holds all or part of the control, refused when it holds none.
    inherited_from_aws: Text | None = Field(default=None, validate_default=True)
    # Why nothing evidences the control yet. Stating it is the only way to list a control
    # without evidence, so "unmapped" is always a decision someone wrote down.
    unmapped: Text | None = None

    @model_validator(mode="before")
    @classmethod
    def _framework_jurisdiction_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "applies_to" not in data:
            try:
                default = Framework(str(data.get("framework"))).jurisdiction
            except ValueError:
                # The framework field reports the mistake; a second "applies_to: Field
                # required" about the same mistake would only mislead.
                default = Jurisdiction.ALL
            return {**data, "applies_to": default.value}
        return data

    @field_validator("applies_to")
    @classmethod
    def _jurisdiction_fits_the_law(cls, value: Jurisdiction, info: ValidationInfo) -> Jurisdiction:
        framework = info.data.get("framework")
        fixed = _FIXED_JURISDICTIONS.get(framework) if framework else None
        if fixed is not None and value is not fixed:
            raise ValueError(
                f"{framework} controls apply to {fixed} environments only, not {value.value!r}"
            )
        return value

    @field_validator("inherited_from_aws")
    @classmethod
    def _inherited_when_aws_holds_a_part(
        cls, value: str | None, info: ValidationInfo
    ) -> str | None:
        responsibility = info.data.get("responsibility")
        if responsibility is None:
            return value  # the responsibility field reports its own error
        if responsibility is Responsibility.CUSTOMER and value is not None:
            raise ValueError(
                "a customer control inherits nothing from AWS: drop inherited_from_aws or make "
                "the responsibility 'shared'"
            )
        if responsibility is not Responsibility.CUSTOMER and value is None:
            raise ValueError(
                f"required when the responsibility is {responsibility.value!r}: say what AWS "
                "operates and which attestation (SOC 2, ISO 27001, the BAA) proves it"
            )
        return value

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

    @model_validator(mode="after")
    def _evidenced_or_explained(self) -> Control:
        if self.unmapped is not None:
            listed = self._evidence_fields()
            if listed:
                raise ValueError(
                    f"unmapped: says nothing evidences this control, yet it lists "
                    f"{', '.join(listed)}: remove one or the other"
                )
        elif not self._evidence_fields() and self.responsibility is not Responsibility.AWS:
            raise ValueError(
                "no evidence: list static_checks, runtime_evidence (config_rules, "
                "runtime_checks or manual), or say why there is none in `unmapped:`"
            )
        return self

    def _evidence_fields(self) -> list[str]:
        evidence = self.runtime_evidence
        fields = {
            "static_checks": self.static_checks,
            "runtime_evidence.config_rules": evidence.config_rules,
            "runtime_evidence.runtime_checks": evidence.runtime_checks,
            "runtime_evidence.manual": evidence.manual,
        }
        return [name for name, values in fields.items() if values]

    @property
    def automated(self) -> bool:
        """A tool evaluates it: a static check, a runtime check or an AWS Config rule."""
        evidence = self.runtime_evidence
        return bool(self.static_checks or evidence.runtime_checks or evidence.config_rules)

    @property
    def evidence(self) -> Evidence:
        """How the control is evidenced. AWS-operated controls count as inherited whatever else
        they list: their proof is AWS's attestation, not ours."""
        if self.responsibility is Responsibility.AWS:
            return Evidence.INHERITED
        if self.unmapped is not None:
            return Evidence.UNMAPPED
        return Evidence.AUTOMATED if self.automated else Evidence.MANUAL_ONLY

    def applies_in(self, jurisdiction: Jurisdiction | str) -> bool:
        """Whether the control applies to an environment of `jurisdiction` (US or EU)."""
        wanted = Jurisdiction(jurisdiction)
        return self.applies_to is Jurisdiction.ALL or self.applies_to is wanted

    def evidenced_by(self, check_id: str) -> bool:
        """Whether a static check, runtime check or Config rule of this id evidences it."""
        evidence = self.runtime_evidence
        return (
            check_id in self.static_checks
            or check_id in evidence.runtime_checks
            or check_id in evidence.config_rules
        )


@dataclass(frozen=True)
class Coverage:
    """The ids of the controls in each Evidence class; the four classes partition the controls
    counted. `with_static_checks` and `with_runtime_evidence` overlap the partition: they say
    which tools the automated controls rely on."""

    automated: tuple[str, ...]
    manual_only: tuple[str, ...]
    inherited: tuple[str, ...]
    unmapped: tuple[str, ...]
    with_static_checks: tuple[str, ...]
    with_runtime_evidence: tuple[str, ...]

    @property
    def total(self) -> int:
        return (
            len(self.automated) + len(self.manual_only) + len(self.inherited) + len(self.unmapped)
        )

    def counts(self) -> dict[Evidence, int]:
        return {
            Evidence.AUTOMATED: len(self.automated),
            Evidence.MANUAL_ONLY: len(self.manual_only),
            Evidence.INHERITED: len(self.inherited),
            Evidence.UNMAPPED: len(self.unmapped),
        }


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

    def frameworks(self) -> tuple[Framework, ...]:
        """The frameworks that have controls, in the order the catalog first lists them."""
        return tuple(dict.fromkeys(control.framework for control in self.controls))

    def controls_of(self, framework: Framework | str) -> tuple[Control, ...]:
        wanted = Framework(framework)
        return tuple(control for control in self.controls if control.framework is wanted)

    def applicable_to(self, jurisdiction: Jurisdiction | str) -> tuple[Control, ...]:
        """The controls that apply to an environment of `jurisdiction` (US or EU)."""
        return tuple(control for control in self.controls if control.applies_in(jurisdiction))

    def controls_for_check(self, check_id: str) -> tuple[Control, ...]:
        """The controls evidenced by a checkov check id, a runtime check id or an AWS Config rule
        identifier, in catalog order; empty when no control names it."""
        return tuple(control for control in self.controls if control.evidenced_by(check_id))

    def coverage(
        self,
        framework: Framework | str | None = None,
        jurisdiction: Jurisdiction | str | None = None,
    ) -> Coverage:
        """How the controls (of one framework, applying to one jurisdiction, when given) are
        evidenced; see Evidence."""
        chosen = [
            control
            for control in self.controls
            if (framework is None or control.framework is Framework(framework))
            and (jurisdiction is None or control.applies_in(jurisdiction))
        ]

        def ids(kind: Evidence) -> tuple[str, ...]:
            return tuple(control.id for control in chosen if control.evidence is kind)

        return Coverage(
            automated=ids(Evidence.AUTOMATED),
            manual_only=ids(Evidence.MANUAL_ONLY),
            inherited=ids(Evidence.INHERITED),
            unmapped=ids(Evidence.UNMAPPED),
            with_static_checks=tuple(c.id for c in chosen if c.static_checks),
            with_runtime_evidence=tuple(
                c.id
                for c in chosen
                if c.runtime_evidence.config_rules or c.runtime_evidence.runtime_checks
            ),
        )

    def static_check_ids(self) -> tuple[str, ...]:
        """Every checkov check id the catalog names, sorted, once."""
        return tuple(sorted({check for c in self.controls for check in c.static_checks}))

    def runtime_check_ids(self) -> tuple[str, ...]:
        """Every runtime check id the catalog names, sorted, once."""
        return tuple(
            sorted({check for c in self.controls for check in c.runtime_evidence.runtime_checks})
        )

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


def load_catalog(path: Path | str = DEFAULT_CATALOG) -> Catalog:
    """Read and validate a control catalog; raise CatalogError naming the file and control."""
    path = Path(path)
    raw = read_mapping(path, CatalogError, "catalog_version and controls")
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
