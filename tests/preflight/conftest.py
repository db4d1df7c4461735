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
from policies.findings import Finding, Status
from policies.preflight.base import SynthesizedStacks, read_stacks

StackEdit = Callable[[dict[str, Any]], None]
# A change to one resource block, given the whole stack configuration too.
BlockEdit = Callable[[dict[str, Any], dict[str, Any]], None]


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


def block_name(configuration: dict[str, Any], resource_type: str, prefix: str = "") -> str:
    """The first logical name of `resource_type` that starts with `prefix`."""
    names = sorted(configuration["resource"][resource_type])
    return str(next(n for n in names if n.startswith(prefix)))


def first(configuration: dict[str, Any], resource_type: str, prefix: str = "") -> dict[str, Any]:
    """The first block of `resource_type` (whose logical name starts with `prefix`)."""
    block = configuration["resource"][resource_type][
        block_name(configuration, resource_type, prefix)
    ]
    assert isinstance(block, dict)
    return block


def mutate_block(
    out: Path, scratch: Path, *, stack: str, resource_type: str, prefix: str, change: BlockEdit
) -> tuple[SynthesizedStacks, str]:
    """The stacks with one block of one stack changed (the first of its type whose logical name
    starts with `prefix`), and that block's Terraform address."""
    address: list[str] = []

    def edit(configuration: dict[str, Any]) -> None:
        name = block_name(configuration, resource_type, prefix)
        address.append(f"{resource_type}.{name}")
        change(configuration["resource"][resource_type][name], configuration)

    return mutant(out, scratch, stack, edit), address[0]


def failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status is Status.FAILED]
