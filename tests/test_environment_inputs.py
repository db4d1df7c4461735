"""The bad-input corpus (tests/fixtures/environment_inputs.yaml), run through `main.py` as a
user runs it.

Each case edits a scratch copy of the shipped environment files and must give exit 2, exactly
one error line naming the file and the field with the case's rule, and a byte-identical
`cdktf.out`. Its twin, the nearest valid edit, must pass the same validation: the loader's for
rules the loader enforces, `main.py --check` (which synthesizes and judges the composed names)
for the names class.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import main
from environments.loader import ENVIRONMENT_FILE, ENVIRONMENTS_DIR, check_environments
from environments.yaml_reader import MAX_FILE_BYTES
from tests.deadline import deadline

CORPUS = Path(__file__).parent / "fixtures" / "environment_inputs.yaml"
CLASSES = ("yaml", "file", "types", "aws", "names", "organization", "cross")
MIN_CASES = 80
# A case that blocks (a FIFO read without O_NONBLOCK) fails instead of hanging CI.
LOADER_SECONDS = 20
SYNTH_SECONDS = 240


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    edits: tuple[dict[str, Any], ...]
    twin: tuple[dict[str, Any], ...]
    file: str  # environment folder (or a path under the root, or "." for the root itself)
    field: str
    rule: str
    args: tuple[str, ...] = ()


def _cases() -> list[Case]:
    raw = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    return [
        Case(
            id=entry["id"],
            kind=entry["class"],
            edits=tuple(entry["edits"]),
            twin=tuple(entry["twin"]),
            file=entry["error"]["file"],
            field=entry["error"].get("field", ""),
            rule=entry["error"]["rule"],
            args=tuple(entry.get("args", ())),
        )
        for entry in raw
    ]


CASES = _cases()


# --- applying a case's edits --------------------------------------------------------------


def scratch_environments(root: Path) -> Path:
    for source in sorted(ENVIRONMENTS_DIR.glob(f"*/{ENVIRONMENT_FILE}")):
        target = root / source.parent.name / ENVIRONMENT_FILE
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
    return root


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        steps.append(name)
        steps += [int(index.rstrip("]")) for index in rest.split("[") if index] if rest else []
    return steps


def _parent(data: Any, path: str) -> tuple[Any, str | int]:
    *walk, last = _steps(path)
    for step in walk:
        data = data[step]
    return data, last


def _edit_data(text: str, edit: dict[str, Any]) -> str:
    data = yaml.safe_load(text)
    raw: dict[str, str] = {}
    for path, value in (edit.get("set") or {}).items():
        parent, last = _parent(data, path)
        parent[last] = value
    for path, yaml_text in (edit.get("yaml") or {}).items():
        token = f"RAW{len(raw)}TOKEN"
        raw[token] = yaml_text
        parent, last = _parent(data, path)
        parent[last] = token
    for path in edit.get("delete") or ():
        parent, last = _parent(data, path)
        del parent[last]
    dumped = yaml.safe_dump(data, sort_keys=False, width=1000)
    for token, yaml_text in raw.items():
        assert dumped.count(token) == 1, f"{token} not written exactly once"
        dumped = dumped.replace(token, yaml_text)
    return dumped


def apply_edit(root: Path, edit: dict[str, Any]) -> None:
    folder = root / edit.get("env", "dev")
    path = folder / ENVIRONMENT_FILE
    if "copy_to" in edit:
        shutil.copytree(folder, root / edit["copy_to"])
    if "remove" in edit:
        shutil.rmtree(folder)
    if "add_file" in edit:
        added = root / edit["add_file"]["path"]
        added.parent.mkdir(parents=True, exist_ok=True)
        added.write_text(edit["add_file"].get("text", ""), encoding="utf-8")
    if any(key in edit for key in ("set", "yaml", "delete")):
        path.write_text(_edit_data(path.read_text(encoding="utf-8"), edit), encoding="utf-8")
    if "replace_all" in edit:
        old, new = edit["replace_all"]
        path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    if "replace" in edit:
        old, new = edit["replace"]
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
        path.write_text(text.replace(old, new), encoding="utf-8")
    if "append" in edit:
        with path.open("a", encoding="utf-8") as file:
            file.write(edit["append"])
    if "encode" in edit:
        path.write_bytes(path.read_text(encoding="utf-8").encode(edit["encode"]))
    if "prepend_bytes" in edit:
        path.write_bytes(edit["prepend_bytes"].encode("latin-1") + path.read_bytes())
    if "rename" in edit:
        path.rename(folder / edit["rename"])
    if "make" in edit:
        _make(root, path, edit["make"])


def _make(root: Path, path: Path, kind: str) -> None:
    if kind == "oversized":
        with path.open("a", encoding="utf-8") as file:
            file.write(f"# {'x' * 98}\n" * (MAX_FILE_BYTES // 100 + 1))
        return
    if kind != "symlink-inside-root":
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_text("", encoding="utf-8")
    elif kind == "comments-only":
        path.write_text("# nothing here yet\n\n", encoding="utf-8")
    elif kind in ("symlink-outside-root", "symlink-inside-root"):
        source = ENVIRONMENTS_DIR / path.parent.name / ENVIRONMENT_FILE
        if kind == "symlink-outside-root":
            path.symlink_to(source)  # the repository's own file: outside the scratch root
        else:
            kept = root / "shared" / f"{path.parent.name}.yaml"
            kept.parent.mkdir(exist_ok=True)
            path.rename(kept)
            path.symlink_to(kept)
    elif kind == "folder-symlink-outside-root":
        path.parent.rmdir()
        path.parent.symlink_to(ENVIRONMENTS_DIR / path.parent.name, target_is_directory=True)
    else:
        raise AssertionError(f"unknown make: {kind}")


# --- running main.py ----------------------------------------------------------------------


def run_main(*argv: str, seconds: int) -> tuple[int, list[str]]:
    stderr = io.StringIO()
    with deadline(seconds), contextlib.redirect_stderr(stderr):
        code = main.main(list(argv))
    return code, [line for line in stderr.getvalue().splitlines() if line]


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def previous_output(tmp_path: Path) -> Path:
    """A last good cdktf.out stand-in: what a failed run must leave exactly as it was."""
    out = tmp_path / "cdktf.out"
    (out / "stacks" / "dev-data").mkdir(parents=True)
    (out / "stacks" / "dev-data" / "cdk.tf.json").write_text('{"resource": {}}\n')
    (out / "manifest.json").write_text('{"stacks": {}}\n')
    return out


def expected_path(root: Path, file: str) -> Path:
    if file == ".":
        return root
    return root / (file if "/" in file else f"{file}/{ENVIRONMENT_FILE}")


# --- the corpus ---------------------------------------------------------------------------


def test_the_corpus_is_large_and_covers_every_class() -> None:
    assert len(CASES) >= MIN_CASES
    assert len({case.id for case in CASES}) == len(CASES), "case ids repeat"
    assert {case.kind for case in CASES} == set(CLASSES)
    for case in CASES:
        assert case.twin != case.edits, f"{case.id}: its twin is the case itself"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_error_naming_file_and_field(tmp_path: Path, case: Case) -> None:
    root = scratch_environments(tmp_path / "environments")
    for edit in case.edits:
        apply_edit(root, edit)
    out = previous_output(tmp_path)
    before = tree_digest(out)

    seconds = SYNTH_SECONDS if case.kind == "names" else LOADER_SECONDS
    code, lines = run_main(
        "--environments-dir", str(root), "--out", str(out), *case.args, seconds=seconds
    )

    assert code == 2, lines
    assert len(lines) == 1, lines
    where = expected_path(root, case.file)
    prefix = f"error: {where}: {case.field}: " if case.field else f"error: {where}: "
    assert lines[0].startswith(prefix), lines[0]
    assert case.rule in lines[0]
    assert "Traceback" not in lines[0]
    assert tree_digest(out) == before, "a refused input changed cdktf.out"
    assert not list(tmp_path.glob("cdktf.out.*")), "a temporary output was left behind"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_its_twin_is_accepted(tmp_path: Path, case: Case) -> None:
    root = scratch_environments(tmp_path / "environments")
    for edit in case.twin:
        apply_edit(root, edit)
    if case.kind == "names":
        out = previous_output(tmp_path)
        code, lines = run_main(
            "--environments-dir", str(root), "--out", str(out), "--check", *case.args,
            seconds=SYNTH_SECONDS,
        )  # fmt: skip
        assert code == 0, lines
        return
    with deadline(LOADER_SECONDS):
        checked = check_environments(None, root)
    assert not checked.problems, [str(problem) for problem in checked.problems]


def test_all_errors_lists_every_problem_of_every_file(tmp_path: Path) -> None:
    """Three cases' edits at once: --all-errors reports each on its own line; without it, the
    first, counting the rest."""
    root = scratch_environments(tmp_path / "environments")
    chosen = [case for case in CASES if case.id in ALL_AT_ONCE]
    for case in chosen:
        for edit in case.edits:
            apply_edit(root, edit)
    out = previous_output(tmp_path)

    code, lines = run_main(
        "--environments-dir", str(root), "--out", str(out), "--all-errors", seconds=LOADER_SECONDS
    )
    assert code == 2
    assert len(lines) == len(chosen), lines
    for case in chosen:
        assert any(
            str(expected_path(root, case.file)) in line and case.rule in line for line in lines
        )

    code, lines = run_main(
        "--environments-dir", str(root), "--out", str(out), seconds=LOADER_SECONDS
    )
    assert code == 2
    assert len(lines) == 1
    assert f"(and {len(chosen) - 1} more problems after this one)" in lines[0]


ALL_AT_ONCE = ("duplicate-nested-key", "empty-file", "org-state-bucket-sibling-too-long")


def test_an_environments_folder_that_is_not_one_is_one_error(tmp_path: Path) -> None:
    out = previous_output(tmp_path)
    before = tree_digest(out)
    missing = tmp_path / "no-such-folder"
    code, lines = run_main(
        "--environments-dir", str(missing), "--out", str(out), seconds=LOADER_SECONDS
    )
    assert (code, lines) == (2, [f"error: {missing}: is not a folder"])
    assert tree_digest(out) == before
    # Its twin: the same command on a real folder checks clean.
    root = scratch_environments(tmp_path / "environments")
    code, lines = run_main(
        "--environments-dir", str(root), "--out", str(out), "--check", "dev", seconds=SYNTH_SECONDS
    )
    assert code == 0, lines
    assert tree_digest(out) == before, "--check wrote to cdktf.out"
