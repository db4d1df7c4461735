"""One synthesis of every environment (for real AWS, as `make preflight` judges it) shared by
the preflight tests, and copies of it with one stack edited: the mutants."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import main
from policies.preflight.base import SynthesizedStacks, read_stacks

StackEdit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("preflight") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize([], out)
    return out


@pytest.fixture(scope="session")
def stacks(synthesized: Path) -> SynthesizedStacks:
    return read_stacks(synthesized)


def stack_configuration(out: Path, stack: str) -> dict[str, Any]:
    data = json.loads((out / "stacks" / stack / "cdk.tf.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def mutant(out: Path, scratch: Path, stack: str, edit: StackEdit) -> SynthesizedStacks:
    """The synthesized stacks with `edit` applied to a copy of one stack's configuration."""
    copied = scratch / "cdktf.out"
    shutil.copytree(out, copied)
    configuration = copy.deepcopy(stack_configuration(out, stack))
    edit(configuration)
    (copied / "stacks" / stack / "cdk.tf.json").write_text(
        json.dumps(configuration, indent=2), encoding="utf-8"
    )
    return read_stacks(copied)


def first(configuration: dict[str, Any], resource_type: str, prefix: str = "") -> dict[str, Any]:
    """The first block of `resource_type` (whose logical name starts with `prefix`)."""
    blocks = configuration["resource"][resource_type]
    name = next(n for n in sorted(blocks) if n.startswith(prefix))
    block = blocks[name]
    assert isinstance(block, dict)
    return block
