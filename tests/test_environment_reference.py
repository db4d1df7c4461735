"""The environment reference (environments/README.md) is generated from the schema: every field
is documented, the README is what the renderer writes, and the renderer shows each kind of
field (nested, list of models, optional, enum, mapping) with its type, default and rule.

Renderer tests use small fake models and fake rule modules; the freshness test uses the real
schema, environment files, YAML reader and cross-environment rules."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pytest
from cdktf import TerraformStack
from pydantic import BaseModel, Field

from environments import reference
from environments.loader import load_environments
from environments.reference import (
    BEGIN,
    END,
    README,
    Row,
    field_rows,
    render_fields,
    render_reference,
    replace_generated,
    stacks,
    undocumented_fields,
)
from environments.schema import OrganizationEnvironment, WorkloadEnvironment

REPOSITORY = Path(__file__).resolve().parents[1]


# --- fakes --------------------------------------------------------------------------------


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class Leaf(BaseModel):
    """A leaf section."""

    size: int = Field(ge=1, le=9, description="how big")
    label: str | None = Field(default=None, max_length=8, description="a <name> | or not")


class PlainLeaf(Leaf):
    pass  # no docstring of its own: Leaf's says nothing about this section


class Outer(BaseModel):
    colour: Colour = Field(description="paint")
    kind: Literal["a", "b"] = Field(default="a", description="which")
    leaf: Leaf = Field(description="the leaf")
    maybe: PlainLeaf | None = None
    leaves: tuple[Leaf, ...] = Field(default=(), description="many")
    by_name: dict[str, Leaf] = Field(description="named leaves")
    tags: dict[str, int | str] = Field(description="free tags")
    ratio: float = Field(gt=0, le=1, description="a share")
    names: tuple[str, ...] = Field(min_length=1, pattern="^[a-z]+$", description="names")
    switched: bool = Field(default=True, description="on or off")


class Bare(BaseModel):
    count: int


class Undocumented(BaseModel):
    documented: int = Field(description="says what it is")
    secret: int
    bare: tuple[Bare, ...] = ()


def rows_by_path(model: type[BaseModel]) -> dict[str, Row]:
    return {row.path: row for row in field_rows(model)}


@dataclass(frozen=True)
class FakeCrossRule:
    id: str
    text: str


def fake_rule_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for the modules whose rules the reference prints, and no environment files."""
    yaml_reader = types.ModuleType("environments.yaml_reader")
    yaml_reader.FILE_RULES = ("It is UTF-8.", "No key appears twice in one\n    mapping.")  # type: ignore[attr-defined]
    cross = types.ModuleType("environments.cross_environment")
    cross.RULES = (FakeCrossRule("one-org", "exactly one `kind: organization` | no more"),)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "environments.yaml_reader", yaml_reader)
    monkeypatch.setitem(sys.modules, "environments.cross_environment", cross)
    monkeypatch.setattr(reference, "load_environments", list)


# --- every field is documented ------------------------------------------------------------


@pytest.mark.parametrize("model", [WorkloadEnvironment, OrganizationEnvironment])
def test_every_leaf_field_of_an_environment_has_a_description(model: type[BaseModel]) -> None:
    assert undocumented_fields(model) == []
    assert all(row.rule for row in field_rows(model) if not row.section)


def test_a_field_without_a_description_is_found_nested_ones_too() -> None:
    assert undocumented_fields(Undocumented) == ["secret", "bare[].count"]


def test_a_section_needs_no_description_of_its_own() -> None:
    # `maybe` has neither a description nor a docstring; its fields are documented.
    assert undocumented_fields(Outer) == []


# --- the README is fresh ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_reference() -> str:
    return render_reference()


def test_readme_is_what_the_renderer_writes(fresh_reference: str) -> None:
    readme = README.read_text(encoding="utf-8")
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    assert replace_generated(readme, fresh_reference) == readme


def test_readme_names_every_field_of_both_kinds(fresh_reference: str) -> None:
    for model in (WorkloadEnvironment, OrganizationEnvironment):
        for row in field_rows(model):
            assert f"`{row.path}`" in fresh_reference


def test_check_passes_on_a_fresh_readme(
    fresh_reference: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(reference, "render_reference", lambda: fresh_reference)
    copy = tmp_path / "README.md"
    copy.write_text(README.read_text(encoding="utf-8"), encoding="utf-8")
    assert reference.main(["--check", "--readme", str(copy)]) == 0


def test_check_fails_on_a_stale_readme_and_regenerating_fixes_it(
    fresh_reference: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(reference, "render_reference", lambda: fresh_reference)
    readme = README.read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `network.az_count` |"))
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace(f"{row}\n", ""), encoding="utf-8")

    assert reference.main(["--check", "--readme", str(stale)]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "stale" in message and "README.md" in message

    assert reference.main(["--readme", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == readme
    assert reference.main(["--check", "--readme", str(stale)]) == 0


def test_regenerating_keeps_the_hand_written_text_around_the_markers(
    fresh_reference: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(reference, "render_reference", lambda: fresh_reference)
    path = tmp_path / "README.md"
    path.write_text(
        f"# Intro\n\nhand-written\n\n{BEGIN}\nSTALE GENERATED TEXT\n{END}\n\nafter\n",
        encoding="utf-8",
    )
    assert reference.main(["--readme", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Intro\n\nhand-written\n\n") and text.endswith(f"{END}\n\nafter\n")
    assert "STALE GENERATED TEXT" not in text and fresh_reference in text


def test_a_missing_readme_is_one_line_and_exit_2_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "README.md"
    result = subprocess.run(
        [sys.executable, "-m", "environments.reference", "--check", "--readme", str(missing)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{missing}: cannot be read (No such file or directory)"]


def test_a_readme_without_markers_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "README.md"
    path.write_text("# Environments\n", encoding="utf-8")
    assert reference.main(["--check", "--readme", str(path)]) == 2
    assert "markers" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == "# Environments\n"


# --- the rule modules ---------------------------------------------------------------------


def test_file_and_cross_environment_rules_are_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rule_modules(monkeypatch)
    rendered = render_reference()
    file_part = rendered.split("## The file itself\n", 1)[1].split("## Across environments")[0]
    assert file_part.strip().splitlines() == [
        "- It is UTF-8.",
        "- No key appears twice in one mapping.",
    ]
    cross_part = rendered.split("## Across environments\n", 1)[1]
    assert cross_part.strip().splitlines() == [
        "| rule | what is refused |",
        "|---|---|",
        "| `one-org` | exactly one `kind: organization` \\| no more |",
    ]


@pytest.mark.parametrize("missing", ["environments.yaml_reader", "environments.cross_environment"])
def test_a_missing_rule_module_fails_the_render(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_rule_modules(monkeypatch)
    monkeypatch.setitem(sys.modules, missing, None)  # what `import` finds for a missing module
    with pytest.raises(ImportError):
        render_reference()
    assert reference.main(["--check"]) == 2
    assert missing in capsys.readouterr().err


# --- the renderer on fake models ----------------------------------------------------------


def test_rows_follow_nested_optional_listed_and_mapped_models() -> None:
    assert list(rows_by_path(Outer)) == [
        "colour",
        "kind",
        "leaf",
        "leaf.size",
        "leaf.label",
        "maybe",
        "maybe.size",
        "maybe.label",
        "leaves",
        "leaves[].size",
        "leaves[].label",
        "by_name",
        "by_name.<key>.size",
        "by_name.<key>.label",
        "tags",
        "ratio",
        "names",
        "switched",
    ]
    rows = rows_by_path(Outer)
    assert [rows[p].section for p in ("leaf", "maybe", "leaves", "by_name", "tags")] == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert (rows["leaves"].type, rows["by_name"].type) == (
        "list of sections",
        "mapping of sections",
    )


def test_a_section_row_carries_the_field_description_and_the_models_own_docstring() -> None:
    rows = rows_by_path(Outer)
    assert rows["leaf"].rule == "the leaf. A leaf section"
    assert rows["leaves"].rule == "many. A leaf section"
    assert rows["maybe"].rule == ""  # PlainLeaf inherits Leaf's docstring: not shown


def test_types_list_enum_and_literal_values() -> None:
    rows = rows_by_path(Outer)
    assert rows["colour"].type == "`red` or `green`"
    assert rows["kind"].type == "`a` or `b`"
    assert rows["tags"].type == "mapping of string to integer or string"
    assert rows["names"].type == "list of string"
    assert rows["maybe.label"].type == "string"


def test_required_optional_and_defaults() -> None:
    rows = rows_by_path(Outer)
    assert rows["colour"].presence == "required"
    assert rows["kind"].presence == "default `a`"
    assert rows["maybe"].presence == "optional"
    assert rows["leaf.label"].presence == "optional"
    assert rows["leaves"].presence == "default `[]`"
    assert rows["switched"].presence == "default `true`"


def test_rules_add_the_bounds_pydantic_enforces() -> None:
    rows = rows_by_path(Outer)
    assert rows["leaf.size"].rule == "how big; 1 to 9"
    assert rows["ratio"].rule == "a share; > 0 and <= 1"
    assert rows["leaf.label"].rule == "a <name> | or not; at most 8 characters"
    assert rows["names"].rule == "names; at least 1 item; matches `^[a-z]+$`"
    assert rows["colour"].rule == "paint"


def test_a_bound_changed_in_the_model_changes_the_rule() -> None:
    class Wider(BaseModel):
        size: int = Field(ge=1, le=99, description="how big")

    assert rows_by_path(Wider)["size"].rule == "how big; 1 to 99"


def test_markdown_cells_escape_pipes_and_tags_outside_code() -> None:
    table = render_fields(Outer)
    assert table.splitlines()[:2] == [
        "| field | type | required/default | rule |",
        "|---|---|---|---|",
    ]
    label = next(line for line in table.splitlines() if line.startswith("| `leaf.label` |"))
    assert (
        label
        == "| `leaf.label` | string | optional | a \\<name> \\| or not; at most 8 characters |"
    )
    assert "| **`leaf`** | section | required | the leaf. A leaf section |" in table
    # Inside a code span `<` stays as written (a backslash would show).
    assert "| `by_name.<key>.size` |" in table


# --- the environments table ---------------------------------------------------------------


@pytest.fixture(scope="module")
def environments() -> list[WorkloadEnvironment | OrganizationEnvironment]:
    return load_environments()


@pytest.fixture(scope="module")
def composed_stacks(
    environments: list[WorkloadEnvironment | OrganizationEnvironment],
) -> list[str]:
    from environments.composition import build_app  # noqa: PLC0415 (cdktf only here)
    from environments.source import source_revision  # noqa: PLC0415
    from environments.target import Target  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as outdir:
        app = build_app(
            environments,
            selected=None,
            outdir=outdir,
            target=Target.AWS,
            source=source_revision({}),
        )
        return [c.node.id for c in app.node.children if isinstance(c, TerraformStack)]


def stack_name(shown: str) -> str:
    return shown.split("`")[1]


def test_the_stacks_column_is_what_composition_builds(
    environments: list[WorkloadEnvironment | OrganizationEnvironment], composed_stacks: list[str]
) -> None:
    listed = [stack_name(s) for environment in environments for s in stacks(environment)]
    assert sorted(listed) == sorted(composed_stacks)


def test_a_fhir_datastore_elsewhere_is_shown_with_its_region(
    environments: list[WorkloadEnvironment | OrganizationEnvironment],
) -> None:
    by_name = {e.name: e for e in environments}
    assert "`eu-research-fhir` (in eu-west-1: no HealthLake in eu-central-1)" in stacks(
        by_name["eu-research"]
    )
    assert "`dev-fhir`" in stacks(by_name["dev"])


def test_a_workload_without_fhir_has_no_fhir_stack(
    environments: list[WorkloadEnvironment | OrganizationEnvironment],
) -> None:
    dev = next(e for e in environments if e.name == "dev")
    assert isinstance(dev, WorkloadEnvironment)
    without = dev.model_copy(update={"ml": dev.ml.model_copy(update={"fhir": None})})
    assert [stack_name(s) for s in stacks(without)] == [
        "dev-data",
        "dev-network",
        "dev-ml",
        "dev-security",
    ]
