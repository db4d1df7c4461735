"""Read and validate environment files, turning every failure into one readable error.

One pass, in order: the folder's files (a near miss of `environment.yaml` is reported, never
ignored), each file as people write YAML (`yaml_reader`), its fields against the schema with
no type coercion (a `true` is not 1, a number is not text), the configs every layer and the
organization's stacks are built from, and, when the whole folder is loaded, the rules across
environments (`cross_environment`). Every problem is an `EnvironmentFileError`; the first is
what a command reports, `--all-errors` lists them all.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from environments.cross_environment import Placed, cross_environment_problems
from environments.errors import EnvironmentFileError, display_path, field_path
from environments.layer_configs import LayerConfigError, layer_configs
from environments.organization_configs import organization_configs
from environments.schema import Environment, OrganizationEnvironment, WorkloadEnvironment
from environments.yaml_reader import near_misses, read_yaml_file

__all__ = [
    "ENVIRONMENTS_DIR",
    "ENVIRONMENT_FILE",
    "EnvironmentFileError",
    "EnvironmentFilesError",
    "check_environments",
    "display_path",
    "load_environment",
    "load_environments",
]

ENVIRONMENTS_DIR = Path(__file__).resolve().parent
ENVIRONMENT_FILE = "environment.yaml"

AnyEnvironment = WorkloadEnvironment | OrganizationEnvironment
_ENVIRONMENT_ADAPTER: TypeAdapter[AnyEnvironment] = TypeAdapter(Environment)


class EnvironmentFilesError(EnvironmentFileError):
    """Every problem found; reads as the first one, with how many more there are."""

    def __init__(self, problems: Sequence[EnvironmentFileError]) -> None:
        first = problems[0]
        more = len(problems) - 1
        rule = first.rule
        if more:
            rule += f" (and {more} more problem{'s' if more > 1 else ''} after this one)"
        super().__init__(first.path, first.field, rule)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Checked:
    """What a load found: the environments that passed every rule of their own file, and every
    problem (of any file, and across them)."""

    environments: tuple[AnyEnvironment, ...]
    problems: tuple[EnvironmentFileError, ...]


def _field(location: tuple[int | str, ...]) -> str:
    # "workload" and "organization" are the discriminator's tags in pydantic's locations, not
    # YAML keys.
    return field_path(tuple(p for p in location if p not in ("workload", "organization")))


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


# Strict types: what each refused type should have been, said the way YAML is written.
_EXPECTED = {
    "string_type": "text (quote it in YAML)",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping of fields",
    "model_type": "a mapping of fields",
    "model_attributes_type": "a mapping of fields",
}


def _rule(detail: ErrorDetails) -> str:
    kind = detail["type"]
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {_json_kind(detail.get('input'))}"
    if kind == "missing":
        return "required field is missing"
    if kind == "finite_number":
        return "must be a finite number (not .inf or .nan)"
    return str(detail["msg"]).removeprefix("Value error, ")


def _validation_problems(path: Path, error: ValidationError) -> list[EnvironmentFileError]:
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
    # one is the cause, reported with the missing name as the likely intent; the missing one
    # is its echo.
    echoes: set[int] = set()
    found: list[EnvironmentFileError] = []
    for problem in sorted(problems, key=lambda p: p["type"] != "extra_forbidden"):
        if id(problem) in echoes:
            continue
        field = _field(problem["loc"])
        rule = _rule(problem)
        if problem["type"] == "extra_forbidden":
            missing = {
                str(p["loc"][-1]): p
                for p in problems
                if p["type"] == "missing" and p["loc"][:-1] == problem["loc"][:-1]
            }
            close = difflib.get_close_matches(str(problem["loc"][-1]), list(missing), n=1)
            rule = (
                f"unknown field (did you mean '{close[0]}'?)"
                if close
                else "unknown field (see environments/README.md)"
            )
            echoes.update(id(missing[name]) for name in close)
        elif problem["type"] == "union_tag_invalid":
            field, rule = "kind", "must be 'workload' or 'organization'"
        elif problem["type"] == "union_tag_not_found":
            field, rule = "kind", "required field is missing ('workload' or 'organization')"
        found.append(EnvironmentFileError(path, field, rule))
    # Reported in the order of the file's fields as pydantic walked them, unknown fields first
    # (the likeliest cause of everything after them).
    return found


def _check_file(path: Path, root: Path) -> tuple[AnyEnvironment | None, list[EnvironmentFileError]]:
    shown = display_path(path)
    try:
        data: Any = read_yaml_file(path, root=root)
    except EnvironmentFileError as error:
        return None, [error]
    if not isinstance(data, dict):
        return None, [EnvironmentFileError(shown, "", "must be a YAML mapping of fields")]
    try:
        # As JSON, strictly: YAML's scalars are JSON's, and no value is converted to fit
        # (pydantic's lax mode would read true as 1 and "3" as 3).
        environment = _ENVIRONMENT_ADAPTER.validate_json(json.dumps(data), strict=True)
    except ValidationError as error:
        return None, _validation_problems(shown, error)
    if environment.name != path.parent.name:
        rule = f"'{environment.name}' must equal its folder name '{path.parent.name}'"
        return None, [EnvironmentFileError(shown, "name", rule)]
    try:
        if isinstance(environment, WorkloadEnvironment):
            layer_configs(environment)
        else:
            organization_configs(environment)
    except LayerConfigError as error:
        return None, [EnvironmentFileError(shown, error.field, error.rule)]
    return environment, []


def load_environment(path: Path) -> AnyEnvironment:
    """Parse and validate one environment file (its own rules, not those across files)."""
    environment, problems = _check_file(path, path.parent.parent)
    if environment is None:
        raise EnvironmentFilesError(problems)
    return environment


def available_environments(root: Path = ENVIRONMENTS_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob(f"*/{ENVIRONMENT_FILE}"))


def check_environments(names: list[str] | None = None, root: Path = ENVIRONMENTS_DIR) -> Checked:
    """Check the named environments (all when none are named) and collect every problem.
    The rules across environments, and the near-miss file names, apply when all are loaded."""
    if not root.is_dir():
        return Checked((), (EnvironmentFileError(display_path(root), "", "is not a folder"),))
    known = available_environments(root)
    unknown = [name for name in names or () if name not in known]
    if unknown:
        problem = EnvironmentFileError(
            display_path(root / unknown[0] / ENVIRONMENT_FILE),
            "",
            f"no such environment (known: {', '.join(known)})",
        )
        return Checked((), (problem,))
    problems: list[EnvironmentFileError] = [] if names else near_misses(root, ENVIRONMENT_FILE)
    placed: list[Placed] = []
    for name in names or known:
        path = root / name / ENVIRONMENT_FILE
        environment, found = _check_file(path, root)
        problems += found
        if environment is not None:
            placed.append(Placed(display_path(path), environment))
    # Across files only once each file is valid alone: a rule across environments judged on a
    # partial estate would report what the missing file may well fix.
    if not names and not problems:
        problems += cross_environment_problems(placed, display_path(root))
    return Checked(tuple(p.environment for p in placed), tuple(problems))


def load_environments(
    names: list[str] | None = None, root: Path = ENVIRONMENTS_DIR
) -> list[AnyEnvironment]:
    """Load the named environments (all when none are named), all validated before any use;
    EnvironmentFilesError (the first problem, and how many more) when anything is wrong."""
    checked = check_environments(names, root)
    if checked.problems:
        raise EnvironmentFilesError(checked.problems)
    return list(checked.environments)
