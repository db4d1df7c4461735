"""Exemptions (policies/exemptions.yaml): the failed checks we accept, loaded and validated.

Each entry names one check, a stack and a Terraform address (fnmatch globs allowed in the stack
and in the resource name, with a written `why_several`), a reason, an owner and an expiry date
at most MAX_HORIZON_DAYS ahead. Checks listed under `never_exemptable` refuse every exemption.
A bad file stops with one message per problem naming the file, the entry and the rule, so the
gate never runs with an exemption nobody meant.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
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

from policies.catalog import CHECKOV_CHECK_ID
from policies.findings import Exemption as FindingExemption
from policies.yaml_files import read_mapping

DEFAULT_EXEMPTIONS = Path(__file__).with_name("exemptions.yaml")

# An exemption is a decision to revisit, not a permanent waiver: at most a year ahead.
MAX_HORIZON_DAYS = 365
MIN_REASON_LENGTH = 40
MIN_WHY_LENGTH = 20

# Text that promises a reason instead of giving one.
_PLACEHOLDER = re.compile(
    r"\b(TODO|TBD|TBC|FIXME|XXX|placeholder|lorem|changeme|fill (me )?in)\b|\bn/a\b",
    re.IGNORECASE,
)
_GLOB_CHARACTERS = re.compile(r"[*?\[]")
# Stack names are lower-case words joined by '-' (dev-data, eu-research-ml); globs allowed.
_STACK = re.compile(r"^[a-z0-9*?\[\]!-]+$")
# TYPE.NAME, data.TYPE.NAME or provider.NAME: the type literal, globs only in the name.
_ADDRESS = re.compile(r"^(data\.)?[a-z][a-z0-9_]*\.[A-Za-z0-9_*?\[\]!-]+$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_GITHUB_TEAM = re.compile(r"^@[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

CheckId = Annotated[str, StringConstraints(pattern=CHECKOV_CHECK_ID)]


def _justification(value: str, minimum: int) -> str:
    text = " ".join(value.split())
    placeholder = _PLACEHOLDER.search(text)
    if placeholder:
        raise ValueError(f"{placeholder.group(0)!r} is a placeholder, not a reason")
    if len(text) < minimum:
        raise ValueError(
            f"{len(text)} characters; say why in at least {minimum} (the risk accepted and what "
            "compensates for it)"
        )
    return text


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NeverExemptable(_Entry):
    check: CheckId
    why: str

    @field_validator("why")
    @classmethod
    def _why_is_written(cls, value: str) -> str:
        return _justification(value, MIN_WHY_LENGTH)


class ExemptionEntry(_Entry):
    check: CheckId
    stack: str
    resource: str
    reason: str
    owner: str
    expires: dt.date
    why_several: str | None = None

    @field_validator("stack")
    @classmethod
    def _stack_name(cls, value: str) -> str:
        if not _STACK.match(value):
            raise ValueError(
                f"{value!r} is not a stack name or glob (lower-case letters, digits, '-', and "
                "the glob characters * ? [ ]), e.g. dev-data or *-data"
            )
        return value

    @field_validator("resource")
    @classmethod
    def _terraform_address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(
                f"{value!r} is not a Terraform address TYPE.NAME, data.TYPE.NAME or "
                "provider.NAME with globs only in NAME, e.g. "
                "aws_s3_bucket.storage_raw_bucket_0EBA1063"
            )
        return value

    @field_validator("reason")
    @classmethod
    def _reason_is_written(cls, value: str) -> str:
        return _justification(value, MIN_REASON_LENGTH)

    @field_validator("why_several")
    @classmethod
    def _why_several_is_written(cls, value: str | None) -> str | None:
        return None if value is None else _justification(value, MIN_WHY_LENGTH)

    @field_validator("owner")
    @classmethod
    def _owner_answers(cls, value: str) -> str:
        if not (_EMAIL.match(value) or _GITHUB_TEAM.match(value)):
            raise ValueError(
                f"{value!r} must be an email address (name@example.org) or a GitHub team "
                "(@org/team)"
            )
        return value

    @field_validator("expires", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> dt.date:
        # YAML reads an unquoted 2026-06-30 as a date and a quoted one as text; accept both, and
        # nothing else (pydantic alone would take a number as a Unix timestamp).
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str) and _ISO_DATE.match(value):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not an ISO date YYYY-MM-DD")

    @field_validator("expires")
    @classmethod
    def _within_horizon(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        today = _today(info)
        latest = today + dt.timedelta(days=MAX_HORIZON_DAYS)
        if value > latest:
            raise ValueError(
                f"{value.isoformat()} is more than {MAX_HORIZON_DAYS} days ahead (latest "
                f"{latest.isoformat()}): exemptions are reviewed at least yearly"
            )
        return value

    @model_validator(mode="after")
    def _glob_says_why(self) -> ExemptionEntry:
        if self.is_glob and self.why_several is None:
            raise ValueError(
                "why_several: required because stack or resource is a glob: say why one "
                "decision is right for every resource it matches"
            )
        if not self.is_glob and self.why_several is not None:
            raise ValueError(
                "why_several: only for an entry whose stack or resource is a glob; this one "
                "names a single resource"
            )
        return self

    @property
    def is_glob(self) -> bool:
        return bool(_GLOB_CHARACTERS.search(self.stack) or _GLOB_CHARACTERS.search(self.resource))

    def covers(self, check_id: str, stack: str, resource: str) -> bool:
        return (
            check_id == self.check
            and fnmatchcase(stack, self.stack)
            and fnmatchcase(resource, self.resource)
        )

    def in_force(self, today: dt.date) -> bool:
        """Holds through its expiry date."""
        return today <= self.expires

    def as_finding_exemption(self) -> FindingExemption:
        return FindingExemption(
            reason=self.reason, owner=self.owner, expires=self.expires.isoformat()
        )


def _today(info: ValidationInfo) -> dt.date:
    context = info.context if isinstance(info.context, dict) else {}
    today = context.get("today")
    return today if isinstance(today, dt.date) else dt.date.today()


class ExemptionsFile(_Entry):
    exemptions_version: Literal[1]
    never_exemptable: tuple[NeverExemptable, ...] = Field(min_length=1)
    # Required even when empty, so a file without the key is a mistake, not "no exemptions".
    exemptions: tuple[ExemptionEntry, ...]


@dataclass(frozen=True)
class Exemptions:
    """The validated file: entries in file order (index = position in `exemptions:`)."""

    path: Path
    entries: tuple[ExemptionEntry, ...]
    never_exemptable: dict[str, str]  # check id -> why

    def describe(self, index: int) -> str:
        """'policies/exemptions.yaml: exemptions[2] (CKV_AWS_144 *-data aws_s3_bucket.x)'."""
        entry = self.entries[index]
        return f"{self.path}: exemptions[{index}] ({_label(entry)})"

    def first_in_force(
        self, check_id: str, stack: str, resource: str, today: dt.date
    ) -> int | None:
        """Index of the first entry in force covering this failure, if any."""
        for index, entry in enumerate(self.entries):
            if entry.in_force(today) and entry.covers(check_id, stack, resource):
                return index
        return None

    def covering(self, check_id: str, stack: str, resource: str) -> list[int]:
        """Indexes of every entry covering this failure, in force or not."""
        return [
            index
            for index, entry in enumerate(self.entries)
            if entry.covers(check_id, stack, resource)
        ]


def _label(entry: ExemptionEntry) -> str:
    return f"{entry.check} {entry.stack} {entry.resource}"


class ExemptionsError(ValueError):
    """The exemptions file is unreadable or breaks a rule; the message says where and which."""


def load_exemptions(
    path: Path | str = DEFAULT_EXEMPTIONS, *, today: dt.date | None = None
) -> Exemptions:
    """Read and validate an exemptions file; raise ExemptionsError naming file, entry, field."""
    path = Path(path)
    raw = read_mapping(path, ExemptionsError, "exemptions_version, never_exemptable and exemptions")
    try:
        parsed = ExemptionsFile.model_validate(raw, context={"today": today or dt.date.today()})
    except ValidationError as error:
        raise ExemptionsError(_describe(path, raw, error)) from None
    problems = list(_cross_entry_problems(parsed, raw))
    if problems:
        raise ExemptionsError("\n".join(f"{path}: {problem}" for problem in problems))
    return Exemptions(
        path=path,
        entries=parsed.exemptions,
        never_exemptable={item.check: item.why for item in parsed.never_exemptable},
    )


def _cross_entry_problems(parsed: ExemptionsFile, raw: dict[str, Any]) -> Iterable[str]:
    never: dict[str, str] = {}
    for index, item in enumerate(parsed.never_exemptable):
        if item.check in never:
            yield f"never_exemptable[{index}]: check: {item.check} is listed twice"
        never[item.check] = item.why
    seen: dict[tuple[str, str, str], int] = {}
    for index, entry in enumerate(parsed.exemptions):
        where = _entry_location(raw, index)
        if entry.check in never:
            yield (
                f"{where}: check: {entry.check} can never be exempted "
                f"({never[entry.check]}); fix the resource instead"
            )
        key = (entry.check, entry.stack, entry.resource)
        if key in seen:
            yield f"{where}: repeats exemptions[{seen[key]}] (same check, stack and resource)"
        seen.setdefault(key, index)


def _entry_location(raw: dict[str, Any], index: int) -> str:
    entries = raw.get("exemptions")
    entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
    if isinstance(entry, dict):
        label = " ".join(str(entry.get(key, "?")) for key in ("check", "stack", "resource"))
        return f"exemptions[{index}] ({label})"
    return f"exemptions[{index}]"


def _describe(path: Path, raw: dict[str, Any], error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        loc = list(problem["loc"])
        parts: list[str] = []
        if len(loc) >= 2 and loc[0] == "exemptions" and isinstance(loc[1], int):
            parts.append(_entry_location(raw, loc[1]))
            loc = loc[2:]
        elif len(loc) >= 2 and loc[0] == "never_exemptable" and isinstance(loc[1], int):
            parts.append(f"never_exemptable[{loc[1]}]")
            loc = loc[2:]
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] in {"literal_error", "string_pattern_mismatch"}:
            message = f"{problem['input']!r}: {message}"
        if problem["type"] == "string_pattern_mismatch" and loc and loc[-1] == "check":
            message = f"{problem['input']!r} is not a checkov check id (CKV_AWS_19, CKV2_AWS_6)"
        field = ".".join(str(item) for item in loc)
        # A rule spanning fields (why_several) names its field in the message itself.
        if field:
            parts.append(field)
        lines.append(f"{path}: {': '.join([*parts, message])}")
    return "\n".join(lines)
