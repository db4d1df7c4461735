"""Reading Dockerfiles and pyproject pins, for the tests that hold an image's contract (its
entrypoint, its base, its pinned packages) without building it (no Docker daemon here)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, rest = stripped.partition(" ")
            found.append((instruction.upper(), " ".join(rest.split())))
    return found


def pip_pins(dockerfile: Path) -> dict[str, str]:
    pins = {}
    for instruction, rest in instructions(dockerfile):
        if instruction == "RUN" and rest.startswith("pip install"):
            for word in rest.split():
                if "==" in word:
                    name, version = word.split("==")
                    pins[name.lower()] = version
    return pins


def entrypoint(dockerfile: Path) -> list[str]:
    (found,) = [
        rest for instruction, rest in instructions(dockerfile) if instruction == "ENTRYPOINT"
    ]
    return list(json.loads(found))


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        name.lower(): version
        for name, _, version in (d.partition("==") for d in project["dependencies"])
    }
