"""Read and validate environment files, turning every failure into one readable error."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from environments.layer_configs import LayerConfigError, layer_configs
from environments.schema import Environment, OrganizationEnvironment, WorkloadEnvironment

ENVIRONMENTS_DIR = Path(__file__).resolve().parent
ENVIRONMENT_FILE = "environment.yaml"

_ENVIRONMENT_ADAPTER: TypeAdapter[WorkloadEnvironment | OrganizationEnvironment] = TypeAdapter(
    Environment
)


class EnvironmentFileError(Exception):
    """A bad environment file: the message names the file, the field and the rule."""

    def __init__(self, path: Path, field: str, rule: str) -> None:
        self.path = path
        self.field = field
        self.rule = rule
        location = f"{path}: {field}" if field else str(path)
        super().__init__(f"{location}: {rule}")


def display_path(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def _field_path(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part not in ("workload", "organization"):  # discriminator tags, not YAML keys
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts)


def _first_error(path: Path, error: ValidationError) -> EnvironmentFileError:
    # Reported one at a time, like a compiler: fixing the first often fixes the rest, and one
    # message that names one field is what a reviewer can act on.
    every = error.errors(include_url=False)
    # A container whose item failed also reports itself (e.g. "at least 1 item" once its only
    # item was rejected): an echo of the item's problem, not a second one.
    problems = [
        p
        for p in every
        if not any(
            len(q["loc"]) > len(p["loc"]) and q["loc"][: len(p["loc"])] == p["loc"] for q in every
        )
    ]
    # A misspelt field shows up twice: as unknown, and its real name as missing. The unknown
    # one is the cause, so it is reported, with the missing name as the likely intent.
    details = next((p for p in problems if p["type"] == "extra_forbidden"), problems[0])
    field = _field_path(details["loc"])
    rule = details["msg"].removeprefix("Value error, ")
    explained = [details]
    if details["type"] == "extra_forbidden":
        missing = {
            str(p["loc"][-1]): p
            for p in problems
            if p["type"] == "missing" and p["loc"][:-1] == details["loc"][:-1]
        }
        close = difflib.get_close_matches(str(details["loc"][-1]), list(missing), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "see environments/README.md"
        rule = f"unknown field ({hint})"
        explained += [missing[name] for name in close]
    elif details["type"] == "missing":
        rule = "required field is missing"
    elif details["type"] == "union_tag_invalid":
        field = "kind"
        rule = "must be 'workload' or 'organization'"
    elif details["type"] == "union_tag_not_found":
        field = "kind"
        rule = "required field is missing ('workload' or 'organization')"
    extra = len(problems) - len(explained)
    if extra:
        rule += f" (and {extra} more problem{'s' if extra > 1 else ''} after this one)"
    return EnvironmentFileError(path, field, rule)


def load_environment(path: Path) -> WorkloadEnvironment | OrganizationEnvironment:
    """Parse and validate one environment file; the folder name must equal `name`."""
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EnvironmentFileError(shown, "", f"cannot be read ({error.strerror})") from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(error, "problem", None) or str(error)
        raise EnvironmentFileError(shown, "", f"malformed YAML at {where}: {problem}") from None
    if not isinstance(data, dict):
        raise EnvironmentFileError(shown, "", "must be a YAML mapping of fields")
    try:
        environment = _ENVIRONMENT_ADAPTER.validate_python(data)
    except ValidationError as error:
        raise _first_error(shown, error) from None
    if environment.name != path.parent.name:
        raise EnvironmentFileError(
            shown, "name", f"'{environment.name}' must equal its folder name '{path.parent.name}'"
        )
    if isinstance(environment, WorkloadEnvironment):
        try:
            layer_configs(environment)
        except LayerConfigError as error:
            raise EnvironmentFileError(shown, error.field, error.rule) from None
    return environment


def available_environments(root: Path = ENVIRONMENTS_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob(f"*/{ENVIRONMENT_FILE}"))


def load_environments(
    names: list[str] | None = None, root: Path = ENVIRONMENTS_DIR
) -> list[WorkloadEnvironment | OrganizationEnvironment]:
    """Load the named environments (all when none are named), all validated before any use."""
    known = available_environments(root)
    wanted = names or known
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise EnvironmentFileError(
            display_path(root / unknown[0] / ENVIRONMENT_FILE),
            "",
            f"no such environment (known: {', '.join(known)})",
        )
    return [load_environment(root / name / ENVIRONMENT_FILE) for name in wanted]
