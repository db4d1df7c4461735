"""The strict environment-file reader: every refusal names the file, the field and the line, and
its twin (the same intent written unambiguously) reads to plain JSON data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from environments.errors import EnvironmentFileError, display_path
from environments.yaml_reader import (
    FILE_RULES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    near_misses,
    read_yaml_file,
)
from tests.deadline import deadline

ENVIRONMENTS_DIR = Path(__file__).resolve().parent.parent / "environments"
SHIPPED = sorted(ENVIRONMENTS_DIR.glob("*/environment.yaml"))


def _write(root: Path, content: str | bytes, folder: str = "dev") -> Path:
    path = root / folder / "environment.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _refusal(path: Path, root: Path) -> EnvironmentFileError:
    with pytest.raises(EnvironmentFileError) as caught:
        read_yaml_file(path, root=root)
    return caught.value


def _nested_sequences(levels: int) -> str:
    return "[" * levels + "]" * levels


def _nested_lists(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _nested_mappings(levels: int) -> str:
    lines = [f"{'  ' * depth}k:" for depth in range(levels)]
    return "\n".join(lines) + " 1\n"


def _nested_dicts(levels: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return dict(value)


# (id, refused content, field, fragments of the rule, twin content, what the twin reads to)
TWINS: list[tuple[str, str | bytes, str, tuple[str, ...], str | bytes, Any]] = [
    # Explicit tags.
    ("tag-str", "a: !!str 5\n", "a", ("explicit YAML tags are not accepted", "!!str", "line 1"),
     "a: '5'\n", {"a": "5"}),
    ("tag-binary", "a: !!binary aGk=\n", "a", ("explicit YAML tags", "!!binary"),
     "a: aGk=\n", {"a": "aGk="}),
    ("tag-local", "x: 1\na: !foo x\n", "a", ("explicit YAML tags", "!foo", "line 2"),
     "x: 1\na: x\n", {"x": 1, "a": "x"}),
    ("tag-python", "a: !!python/object/apply:os.system [ls]\n", "a",
     ("explicit YAML tags", "!!python/object/apply:os.system"), "a: [ls]\n", {"a": ["ls"]}),
    ("tag-set", "a: !!set {x: null}\n", "a", ("explicit YAML tags", "!!set"),
     "a: [x]\n", {"a": ["x"]}),
    ("tag-omap", "a: !!omap [{x: 1}]\n", "a", ("explicit YAML tags", "!!omap"),
     "a: [{x: 1}]\n", {"a": [{"x": 1}]}),
    ("tag-on-key", "!!str k: 1\n", "k", ("explicit YAML tags", "!!str"), "k: 1\n", {"k": 1}),
    # Anchors, aliases, merge keys.
    ("anchor", "a: &x 1\nb: 2\n", "a",
     ("anchors, aliases and merge keys are not accepted", "&x", "line 1", "write each value out"),
     "a: 1\nb: 2\n", {"a": 1, "b": 2}),
    ("alias", "a: 1\nb: [*x]\n", "b[0]", ("anchors, aliases and merge keys", "*x", "line 2"),
     "a: 1\nb: [1]\n", {"a": 1, "b": [1]}),
    ("merge-key", "base: {x: 1}\nc:\n  <<: {x: 2}\n", "c.<<",
     ("anchors, aliases and merge keys", "merge key '<<'", "line 3"),
     "base: {x: 1}\nc:\n  x: 2\n", {"base": {"x": 1}, "c": {"x": 2}}),
    # Duplicate keys.
    ("duplicate-nested", "ml:\n  groups:\n    - name: a\n      name: b\n", "ml.groups[0].name",
     ("duplicate key 'name'", "first at line 3, again at line 4", "silently replace the first"),
     "ml:\n  groups:\n    - name: a\n    - name: b\n",
     {"ml": {"groups": [{"name": "a"}, {"name": "b"}]}}),
    ("duplicate-top", "a: 1\nb: 2\na: 3\n", "a",
     ("duplicate key 'a'", "first at line 1, again at line 3"),
     "a: 1\nb: {a: 3}\n", {"a": 1, "b": {"a": 3}}),
    ("duplicate-quoted", "a: 1\n'a': 2\n", "a", ("duplicate key 'a'", "again at line 2"),
     "a: 1\n'b': 2\n", {"a": 1, "b": 2}),
    # Depth.
    ("depth-flow", _nested_sequences(MAX_DEPTH + 1), "[0]" * MAX_DEPTH,
     (f"nests deeper than {MAX_DEPTH} levels", "line 1"),
     _nested_sequences(MAX_DEPTH), _nested_lists(MAX_DEPTH)),
    ("depth-block", _nested_mappings(MAX_DEPTH + 1), ".".join(["k"] * MAX_DEPTH),
     (f"nests deeper than {MAX_DEPTH} levels", f"line {MAX_DEPTH + 1}"),
     _nested_mappings(MAX_DEPTH), _nested_dicts(MAX_DEPTH)),
    # Keys that are not text.
    ("key-sequence", "? [a, b]\n: 1\n", "", ("key at line 1 is not text (a sequence)",),
     "'[a, b]': 1\n", {"[a, b]": 1}),
    ("key-mapping", "x:\n  ? {a: 1}\n  : 1\n", "x", ("key at line 2 is not text (a mapping)",),
     "x:\n  '{a: 1}': 1\n", {"x": {"{a: 1}": 1}}),
    ("key-integer", "1: x\n", "1", ("key '1' at line 1 is not text: quote it", "a number"),
     "'1': x\n", {"1": "x"}),
    ("key-true", "true: x\n", "true", ("key 'true' at line 1 is not text: quote it", "a boolean"),
     "'true': x\n", {"true": "x"}),
    ("key-null", "null: x\n", "null", ("key 'null' at line 1 is not text", "null"),
     "'null': x\n", {"null": "x"}),
    ("key-on", "network:\n  on: x\n", "network.on",
     ("key 'on' at line 2 is not text: quote it", "a boolean by YAML 1.1"),
     "network:\n  'on': x\n", {"network": {"on": "x"}}),
    ("key-date", "2024-01-01: x\n", "2024-01-01", ("is not text", "a date"),
     "'2024-01-01': x\n", {"2024-01-01": "x"}),
    # Booleans YAML 1.1 reads that people do not mean.
    *[
        (f"boolean-{word}", f"production: {word}\n", "production",
         (f"'{word}' at line 1 is read as a boolean by YAML 1.1", "write true or false",
          "quote it for text"),
         f"production: '{word}'\n", {"production": word})
        for word in ("yes", "no", "on", "off", "y", "n", "Yes", "NO", "True", "FALSE")
    ],
    ("boolean-capitalised", "production: True\n", "production", ("read as a boolean",),
     "production: true\n", {"production": True}),
    # Integers other than plain decimals.
    *[
        (f"integer-{spelling}", f"network:\n  az_count: {spelling}\n", "network.az_count",
         (f"'{spelling}' at line 2 is read as the number {number}", why),
         f"network:\n  az_count: {plain}\n", {"network": {"az_count": int(plain)}})
        for spelling, number, why, plain in (
            ("010", 8, "octal", "10"),
            ("0x1F", 31, "hexadecimal", "31"),
            ("0b1", 1, "binary", "1"),
            ("1_000", 1000, "underscores", "1000"),
            ("1:20", 80, "base 60", "80"),
            ("+5", 5, "sign", "5"),
        )
    ],
    ("integer-0o", "network:\n  az_count: 0o12\n", "network.az_count",
     ("'0o12' at line 2 is text to YAML 1.1 but the number 10 to YAML 1.2",),
     "network:\n  az_count: 10\n", {"network": {"az_count": 10}}),
    ("integer-leading-zero-9", "network:\n  az_count: 09\n", "network.az_count",
     ("'09' at line 2 is text to YAML 1.1 but the number 9",), "network:\n  az_count: '09'\n",
     {"network": {"az_count": "09"}}),
    # Decimal numbers other than plain ones.
    ("float-inf", "t: .inf\n", "t", ("'.inf' at line 1 is read as infinity", "write a finite"),
     "t: '.inf'\n", {"t": ".inf"}),
    ("float-minus-inf", "t: -.inf\n", "t", ("is read as infinity",), "t: -0.5\n", {"t": -0.5}),
    ("float-nan", "t: .nan\n", "t", ("'.nan' at line 1 is read as not a number",),
     "t: 0.8\n", {"t": 0.8}),
    ("float-overflow", "t: 1.0e+999\n", "t", ("too large for a number",),
     "t: 1.0e+99\n", {"t": 1.0e99}),
    ("float-underscore", "t: 1_000.5\n", "t", ("'1_000.5' at line 1 is read as the number 1000.5",
     "underscores"), "t: 1000.5\n", {"t": 1000.5}),
    ("float-base-60", "t: 1:20.5\n", "t", ("the number 80.5", "base 60"), "t: 80.5\n", {"t": 80.5}),
    ("float-plus", "t: +0.5\n", "t", ("the number 0.5", "sign"), "t: 0.5\n", {"t": 0.5}),
    ("float-no-leading-digit", "t: .5\n", "t", ("'.5' at line 1 is read as the number 0.5",
     "write 0.5"), "t: 0.5\n", {"t": 0.5}),
    ("float-trailing-point", "t: 1.\n", "t", ("write 1.0",), "t: 1.0\n", {"t": 1.0}),
    ("float-exponent-as-text", "t: 1e3\n", "t",
     ("'1e3' at line 1 is text to YAML 1.1 but the number 1000.0",),
     "t: 1.0e+3\n", {"t": 1000.0}),
    ("float-unsigned-exponent", "t: 1.5e3\n", "t", ("the number 1500.0",),
     "t: 1.5e+3\n", {"t": 1500.0}),
    # Dates.
    ("date", "since: 2024-01-01\n", "since", ("'2024-01-01' at line 1 is read as a YAML date",
     "quote it if it is text"), "since: '2024-01-01'\n", {"since": "2024-01-01"}),
    ("timestamp", "since: 2024-01-01 10:00:00\n", "since", ("is read as a YAML date",),
     "since: \"2024-01-01 10:00:00\"\n", {"since": "2024-01-01 10:00:00"}),
    # Other YAML 1.1 special plain scalars.
    ("value-key", "a: =\n", "a", ("special meaning in YAML 1.1", "quote it"),
     "a: '='\n", {"a": "="}),
    # Documents.
    ("two-documents", "a: 1\n---\nb: 2\n", "", ("more than one YAML document", "line 2"),
     "---\na: 1\n...\n", {"a": 1}),
    ("malformed", "a: [1, 2\n", "", ("malformed YAML at line 2, column 1:",),
     "a: [1, 2]\n", {"a": [1, 2]}),
    ("empty", "", "", ("is empty",), "a: 1\n", {"a": 1}),
    ("whitespace-only", "  \n\n", "", ("is empty",), "a: 1\n", {"a": 1}),
    ("comments-only", "# nothing yet\n", "", ("is empty",), "# something\na: 1\n", {"a": 1}),
    ("document-marker-only", "---\n", "", ("is empty",), "--- {a: 1}\n", {"a": 1}),
    # Text.
    ("not-utf8", b"a: caf\xe9\n", "", ("is not UTF-8 text (byte 0xe9 at offset 6, line 1)",),
     "a: café\n".encode(), {"a": "café"}),
    ("utf16", "a: 1\n".encode("utf-16"), "", ("is not UTF-8 text (byte 0xff at offset 0",),
     b"\xef\xbb\xbfa: 1\r\nb: 2\r\n", {"a": 1, "b": 2}),
    ("nul", "a: 1\nb: x\x00\n", "", ("control character U+0000 at line 2, column 5",),
     "a: 1\nb: x\n", {"a": 1, "b": "x"}),
    ("bell", "a: b\x07c\n", "", ("control character U+0007 at line 1, column 5",),
     "a: 'b\tc'\n", {"a": "b\tc"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "field", "fragments"),
    [pytest.param(bad, field, fragments, id=case) for case, bad, field, fragments, *_ in TWINS],
)
def test_refused_with_field_and_rule(
    tmp_path: Path, content: str | bytes, field: str, fragments: tuple[str, ...]
) -> None:
    path = _write(tmp_path, content)
    error = _refusal(path, tmp_path)
    assert error.path == display_path(path)
    assert error.field == field
    for fragment in fragments:
        assert fragment in error.rule
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    ("content", "expected"),
    [pytest.param(good, expected, id=case) for case, *_, good, expected in TWINS],
)
def test_twin_reads_to_plain_json_data(tmp_path: Path, content: str | bytes, expected: Any) -> None:
    data = read_yaml_file(_write(tmp_path, content), root=tmp_path)
    # Through JSON, as the loader validates it: the types must survive exactly (1 is not 1.0 is
    # not True, though Python compares them equal).
    assert json.dumps(data, allow_nan=False) == json.dumps(expected)
    assert data == expected


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.parent.name)
def test_shipped_environment_reads_as_safe_load_does(path: Path) -> None:
    # The reader refuses (the twins above) but never changes what a good file means.
    expected = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = read_yaml_file(path, root=ENVIRONMENTS_DIR)
    assert json.dumps(data, allow_nan=False) == json.dumps(expected)
    assert data == expected


def test_every_shipped_environment_is_checked() -> None:
    assert {"dev", "staging", "prod", "eu-research", "org"} <= {p.parent.name for p in SHIPPED}


def test_deep_nesting_is_refused_without_exhausting_the_stack(tmp_path: Path) -> None:
    path = _write(tmp_path, _nested_sequences(2000))
    error = _refusal(path, tmp_path)  # a RecursionError would escape pytest.raises
    assert f"nests deeper than {MAX_DEPTH} levels" in error.rule


def test_billion_laughs_is_refused_at_its_first_anchor(tmp_path: Path) -> None:
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{n}: &lol{n} [{', '.join([f'*lol{n - 1}'] * 9)}]" for n in range(1, 10)]
    error = _refusal(_write(tmp_path, "\n".join(lines) + "\n"), tmp_path)
    assert error.field == "lol0"
    assert "anchors, aliases and merge keys are not accepted" in error.rule


def test_written_out_laughs_read(tmp_path: Path) -> None:
    # Distinct items: a list may not repeat one (its own rule, below).
    data = read_yaml_file(_write(tmp_path, "lol0: [lol, lul]\nlol1: [[lol, lul]]\n"), root=tmp_path)
    assert data == {"lol0": ["lol", "lul"], "lol1": [["lol", "lul"]]}


# File-level rules.


def test_a_repeated_list_item_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "regions:\n  - us-east-1\n  - us-west-2\n  - us-east-1\n")
    with pytest.raises(EnvironmentFileError) as raised:
        read_yaml_file(path, root=tmp_path)
    assert raised.value.field == "regions[2]"
    assert "repeats the item at line 2 (again at line 4)" in raised.value.rule


def test_equal_items_in_different_lists_are_read(tmp_path: Path) -> None:
    """The twin: a repetition across lists (or a repeated key's value) is no repetition."""
    data = read_yaml_file(_write(tmp_path, "a: [x, z]\nb: [x, z]\n"), root=tmp_path)
    assert data == {"a": ["x", "z"], "b": ["x", "z"]}


def test_symlink_leaving_the_environments_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "environments"
    secret = tmp_path / "elsewhere" / "secret.yaml"
    secret.parent.mkdir()
    secret.write_text("a: 1\n")
    link = root / "dev" / "environment.yaml"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)
    error = _refusal(link, root)
    assert error.path == link  # the link to remove, not its target
    assert error.field == ""
    assert f"is a symlink to {secret}, outside {root}" in error.rule


def test_symlink_inside_the_environments_folder_reads(tmp_path: Path) -> None:
    root = tmp_path / "environments"
    shared = _write(root, "a: 1\n", folder="_shared")
    link = root / "dev" / "environment.yaml"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "_shared" / shared.name)
    assert read_yaml_file(link, root=root) == {"a": 1}


def test_symlinked_folder_leaving_the_environments_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "environments"
    root.mkdir()
    outside = _write(tmp_path, "a: 1\n", folder="elsewhere").parent
    (root / "dev").symlink_to(outside, target_is_directory=True)
    error = _refusal(root / "dev" / "environment.yaml", root)
    assert error.field == ""
    assert "is in a symlinked folder" in error.rule
    assert f"outside {root}" in error.rule


def test_symlinked_folder_inside_the_environments_folder_reads(tmp_path: Path) -> None:
    root = tmp_path / "environments"
    template = _write(root, "a: 1\n", folder="_templates").parent
    (root / "dev").symlink_to(template, target_is_directory=True)
    assert read_yaml_file(root / "dev" / "environment.yaml", root=root) == {"a": 1}


def test_file_outside_root_is_refused_and_reads_under_its_own_root(tmp_path: Path) -> None:
    path = _write(tmp_path, "a: 1\n", folder="elsewhere")
    root = tmp_path / "environments"
    root.mkdir()
    assert f"is outside {root}" in _refusal(path, root).rule
    assert read_yaml_file(path, root=tmp_path) == {"a": 1}


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "environment.yaml"
    link.parent.mkdir()
    link.symlink_to(link.name)
    assert "cannot be read" in _refusal(link, tmp_path).rule


def test_missing_file_is_refused(tmp_path: Path) -> None:
    error = _refusal(tmp_path / "dev" / "environment.yaml", tmp_path)
    assert error.rule == "cannot be read (No such file or directory)"


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dev" / "environment.yaml").mkdir(parents=True)
    error = _refusal(tmp_path / "dev" / "environment.yaml", tmp_path)
    assert error.field == ""
    assert "is not a regular file (a directory)" in error.rule


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


@needs_fifo
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "dev" / "environment.yaml"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    with deadline(5):
        error = _refusal(fifo, tmp_path)
    assert error.field == ""
    assert "is not a regular file (a FIFO)" in error.rule


@needs_fifo
def test_fifo_swapped_in_after_the_checks_is_refused_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The FIFO appears between the stat and the open: stat is made to report the regular file
    # that stood there, so only the non-blocking open and the fstat after it stand between the
    # reader and a wait for a writer that never comes.
    regular = _write(tmp_path, "a: 1\n", folder="regular")
    fifo = tmp_path / "dev" / "environment.yaml"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    real_stat = os.stat
    swapped = os.fspath(fifo.resolve())

    def stat_before_the_swap(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(path) == swapped:
            return real_stat(regular)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_before_the_swap)
    with deadline(5):
        error = _refusal(fifo, tmp_path)
    assert "is not a regular file (a FIFO)" in error.rule


def test_file_at_the_size_limit_reads(tmp_path: Path) -> None:
    content = "a: " + "x" * (MAX_FILE_BYTES - len("a: \n")) + "\n"
    assert len(content.encode()) == MAX_FILE_BYTES
    data = read_yaml_file(_write(tmp_path, content), root=tmp_path)
    assert len(data["a"]) == MAX_FILE_BYTES - 4


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    content = "a: " + "x" * (MAX_FILE_BYTES - len("a: \n") + 1) + "\n"
    error = _refusal(_write(tmp_path, content), tmp_path)
    assert error.field == ""
    assert f"is {MAX_FILE_BYTES + 1:,} bytes, more than the {MAX_FILE_BYTES:,}" in error.rule


def test_file_rules_are_one_sentence_each_naming_the_limits() -> None:
    assert all(rule.endswith(".") and "\n" not in rule for rule in FILE_RULES)
    text = " ".join(FILE_RULES)
    assert f"{MAX_FILE_BYTES:,} bytes" in text
    assert f"at most {MAX_DEPTH} levels" in text


# Near misses: files named like an environment file that the loader would skip.

NEAR_MISS_RULE = (
    "is not read: an environment file must be named environment.yaml (this folder has none)"
)


@pytest.mark.parametrize(
    "name",
    [
        "Environment.yaml",
        "environment.YAML",
        "environment.yml",
        "Environment.yml",
        "enviroment.yaml",
        "environments.yaml",
        "environmnet.yml",
        "environment.yaml.bak",
        "environment.yaml.txt",
        "environment.yml.orig",
    ],
)
def test_near_miss_is_reported(tmp_path: Path, name: str) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / name).write_text("a: 1\n")
    errors = near_misses(tmp_path)
    assert [(e.path, e.field, e.rule) for e in errors] == [
        (tmp_path / "dev" / name, "", NEAR_MISS_RULE)
    ]


@pytest.mark.parametrize("name", ["env.yaml", "notes.md", "config.yaml", "environment.json"])
def test_unrelated_file_is_not_a_near_miss(tmp_path: Path, name: str) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / name).write_text("a: 1\n")
    assert near_misses(tmp_path) == []


def test_folder_with_its_environment_file_has_no_near_misses(tmp_path: Path) -> None:
    _write(tmp_path, "a: 1\n")
    (tmp_path / "dev" / "environment.yaml.bak").write_text("a: 0\n")
    assert near_misses(tmp_path) == []


@pytest.mark.parametrize("folder", ["_shared", ".git", "__pycache__"])
def test_hidden_and_private_folders_are_ignored(tmp_path: Path, folder: str) -> None:
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "environment.yml").write_text("a: 1\n")
    assert near_misses(tmp_path) == []


def test_near_miss_symlink_is_reported_by_its_own_name(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    link = tmp_path / "dev" / "environment.yml"
    link.symlink_to(tmp_path / "missing.yaml")  # dangling: still a file someone meant to be read
    assert [e.path for e in near_misses(tmp_path)] == [link]


def test_near_misses_are_sorted_by_path(tmp_path: Path) -> None:
    for folder in ("zeta", "alpha", "mid"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "environment.yml").write_text("a: 1\n")
    paths = [e.path for e in near_misses(tmp_path)]
    assert paths == [tmp_path / f / "environment.yml" for f in ("alpha", "mid", "zeta")]


def test_shipped_environments_have_no_near_misses() -> None:
    assert near_misses(ENVIRONMENTS_DIR) == []
