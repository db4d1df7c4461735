"""Reading the policy files (controls.yaml, exemptions.yaml): one YAML mapping, strictly.

YAML keeps the last of two equal keys silently; in a control catalog or an exemption register
that hides a mistake (two `reason:` lines), so it is an error here, as is a file that is not a
mapping at all.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice."""

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


def read_mapping(path: Path, error: type[ValueError], expected: str) -> dict[str, Any]:
    """The file's top-level mapping; `error` (naming the file) when it is unreadable, not YAML,
    has a duplicate key, or is not a mapping (`expected` says what it should hold)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as problem:
        raise error(f"{path}: cannot be read ({problem.strerror})") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as problem:
        raise error(f"{path}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping with {expected}")
    return raw
