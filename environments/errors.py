"""The one error every bad environment input becomes: the file, the field and the rule, on one
line. Every reader of environment files (the YAML reader, the schema, the layer configs, the
cross-environment rules, the names the platform composes) raises or collects it."""

from __future__ import annotations

from pathlib import Path


class EnvironmentFileError(Exception):
    """A bad environment file: the message names the file, the field and the rule."""

    def __init__(self, path: Path, field: str, rule: str) -> None:
        self.path = path
        self.field = field
        self.rule = rule
        location = f"{path}: {field}" if field else str(path)
        super().__init__(f"{location}: {rule}")


def display_path(path: Path) -> Path:
    """The path as a reader would type it: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except (ValueError, OSError, RuntimeError):  # outside the working directory; a link loop
        return path


def field_path(location: tuple[int | str, ...]) -> str:
    """`("ml", "features", "groups", 0, "name")` -> `ml.features.groups[0].name`."""
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts)
