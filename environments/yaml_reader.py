"""Read environment files as people write them, refusing whatever YAML would silently reinterpret.

`yaml.safe_load` accepts much that a reviewer does not see: a duplicate key replaces the first,
`on` and `yes` become booleans, `010` becomes 8, `2024-01-01` becomes a date, anchors and merge
keys copy values from elsewhere, and a FIFO or a symlink to any file on the machine is read as
if it were the environment. This reader refuses each of those with one `EnvironmentFileError`
naming the file, the field and the line, and returns only JSON data (dict with text keys, list,
str, int, finite float, bool, None), which is what the schema validates in strict mode.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
    StreamEndEvent,
)

from environments.errors import EnvironmentFileError, display_path, field_path

MAX_FILE_BYTES: Final = 1_000_000
MAX_DEPTH: Final = 20  # nesting of mappings/sequences

FILE_RULES: Final[tuple[str, ...]] = (
    "An environment file lives inside the environments folder: a symlink to the file, or to its "
    "folder, that leads outside it is refused.",
    "It is a regular file: a folder, FIFO, socket or device of that name is refused.",
    f"It holds at most {MAX_FILE_BYTES:,} bytes and is not empty (whitespace and comments only "
    "count as empty).",
    "It is UTF-8 text (a leading byte-order mark is allowed) without control characters other "
    "than tab and line breaks.",
    "It is well-formed YAML holding exactly one document.",
    "No key appears twice in the same mapping: the later one would silently replace the first.",
    "No list holds the same item twice (the platform would keep one silently, or build it twice).",
    "Keys are text: a key such as `on`, `yes`, `1` or `null` is refused unless quoted, and a "
    "sequence or mapping cannot be a key.",
    "Explicit tags (`!!str`, `!!binary`, `!!set`, `!custom`, ...) are refused.",
    "Anchors (`&name`), aliases (`*name`) and merge keys (`<<`) are refused: each value is "
    "written out where it applies.",
    f"Mappings and sequences nest at most {MAX_DEPTH} levels deep.",
    "Booleans are written `true` or `false`: `yes`, `no`, `on`, `off`, `y`, `n`, `True`, `FALSE` "
    "and the like are refused (quote them for text).",
    "Integers are plain decimals such as `10` or `-3`: octal (`010`, `0o12`), hexadecimal "
    "(`0x1F`), binary (`0b1`), underscores (`1_000`), a leading `+` and base 60 (`1:20`) are "
    "refused.",
    "Decimal numbers are plain, such as `0.8` or `1.5e+3`: `.inf`, `.nan`, underscores, base 60, "
    "numbers too large to be finite and forms YAML 1.1 reads as text (`1e3`) are refused.",
    "Dates and timestamps are quoted: YAML 1.1 turns an unquoted `2024-01-01` into a date.",
    "Quoted values are always text, whatever they look like.",
    "In a folder without an `environment.yaml`, a file named like one (`Environment.yaml`, "
    "`environment.yml`, `enviroment.yaml`, `environment.yaml.bak`) is reported, not skipped.",
)

# YAML 1.1 tags PyYAML's resolver gives plain scalars.
_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL = f"{_TAG}str", f"{_TAG}int", f"{_TAG}float", f"{_TAG}bool"
_NULL, _TIMESTAMP, _MERGE = f"{_TAG}null", f"{_TAG}timestamp", f"{_TAG}merge"

# The only spellings whose meaning every YAML (1.1, 1.2) and JSON reader agrees on.
_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]+([eE][-+][0-9]+)?")
_TRUE_FALSE = {"true": True, "false": False}
# YAML 1.1 booleans PyYAML reads as text; other YAML 1.1 readers (and the 1.1 spec) do not.
_UNRESOLVED_BOOLEANS = frozenset({"y", "Y", "n", "N"})
# Numbers of the YAML 1.2 core schema (and JSON) that YAML 1.1 reads as text: `1e3`, `0o12`,
# `09`, `-.5`. Someone writing them means a number; PyYAML would hand the schema a string.
_YAML12_NUMBER = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)
# YAML's printable set (what PyYAML's reader accepts): tab, line breaks and printable text.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_BOM = "\ufeff"
_ANCHORS_RULE = "anchors, aliases and merge keys are not accepted"
_ANCHORS_FIX = "write each value out"

Location = tuple[int | str, ...]


def read_yaml_file(path: Path, *, root: Path) -> Any:
    """Read one environment file strictly; EnvironmentFileError naming the file (and the field
    when there is one)."""
    try:
        shown = display_path(path)
    except (OSError, RuntimeError):  # it resolves the path, and a symlink loop cannot be resolved
        shown = _lexical_display(path)
    target = _checked_target(path, root, shown)
    text = _decoded(_read_bytes(target, shown), shown)
    loader = _StrictLoader(text, shown)
    try:
        return loader.single_document()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = error.problem or str(error)
        raise EnvironmentFileError(shown, "", f"malformed YAML at {where}: {problem}") from None
    except yaml.YAMLError as error:
        raise EnvironmentFileError(shown, "", f"malformed YAML at ?: {error}") from None
    finally:
        loader.dispose()


def near_misses(root: Path, expected: str = "environment.yaml") -> list[EnvironmentFileError]:
    """Files in root's sub-folders that look like an environment file but are not read: one
    error each."""
    errors: list[EnvironmentFileError] = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith((".", "_")) or not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            candidates = [
                entry.name
                for entry in entries
                if entry.is_symlink() or entry.is_file(follow_symlinks=False)
            ]
        # Compared by name, not by exists(): on a case-insensitive file system
        # `Environment.yaml` "exists" as environment.yaml, yet the loader's glob may miss it.
        if expected in candidates:
            continue
        errors.extend(
            EnvironmentFileError(
                _lexical_display(folder / name),
                "",
                f"is not read: an environment file must be named {expected} (this folder has none)",
            )
            for name in candidates
            if _is_near_miss(name, expected)
        )
    return sorted(errors, key=lambda error: str(error.path))


def _is_near_miss(name: str, expected: str) -> bool:
    stem, dot, extension = expected.lower().partition(".")
    extensions = {f"{dot}{extension}"} | (
        {".yaml", ".yml"} if extension in ("yaml", "yml") else set()
    )
    lowered = name.lower()
    if lowered.startswith(tuple(f"{stem}{ext}" for ext in extensions)):
        # Other case (`Environment.yaml`), other extension (`.yml`), or a suffix (`.yaml.bak`).
        return name != expected
    name_stem, name_extension = os.path.splitext(lowered)
    return (
        name_extension in extensions
        and difflib.SequenceMatcher(None, name_stem, stem).ratio() >= 0.8
    )


def _lexical_display(path: Path) -> Path:
    # display_path resolves symlinks, which would show a link's target instead of the link the
    # reader has to rename or remove.
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd())
    except ValueError:
        return path


def _checked_target(path: Path, root: Path, shown: Path) -> Path:
    """The file's resolved path, once nothing about it can block, escape root, or be huge."""
    try:
        link_status = os.lstat(path)
        target = path.resolve()
    except OSError as error:
        raise EnvironmentFileError(shown, "", f"cannot be read ({error.strerror})") from None
    except RuntimeError:  # Python 3.11 reports a symlink loop this way
        raise EnvironmentFileError(shown, "", "cannot be read (a symlink loop)") from None
    real_root = root.resolve()
    if not target.is_relative_to(real_root):
        raise _outside_root(path, root, target, stat.S_ISLNK(link_status.st_mode))
    try:
        status = os.stat(target)
    except OSError as error:
        raise EnvironmentFileError(shown, "", f"cannot be read ({error.strerror})") from None
    _check_status(status, shown)
    return target


def _outside_root(path: Path, root: Path, target: Path, is_link: bool) -> EnvironmentFileError:
    where = f"{display_path(target)}, outside {display_path(root)}"
    if is_link:
        rule = (
            f"is a symlink to {where}: keep environment files inside the environments folder "
            "(copy the file instead of linking to it)"
        )
    elif Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(root))):
        rule = (
            f"is in a symlinked folder and resolves to {where}: keep environment folders inside "
            "the environments folder (copy the folder instead of linking to it)"
        )
    else:
        rule = f"is outside {display_path(root)}: environment files are read from there only"
    return EnvironmentFileError(_lexical_display(path), "", rule)


def _check_status(status: os.stat_result, shown: Path) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise EnvironmentFileError(
            shown,
            "",
            f"is not a regular file ({_kind(status.st_mode)}): an environment file must be a "
            "plain text file",
        )
    if status.st_size > MAX_FILE_BYTES:
        raise _too_large(shown, f"is {status.st_size:,} bytes")
    if status.st_size == 0:
        raise _empty(shown)


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def _too_large(shown: Path, size: str) -> EnvironmentFileError:
    return EnvironmentFileError(
        shown,
        "",
        f"{size}, more than the {MAX_FILE_BYTES:,} an environment file may have: trim it to the "
        "environment's settings",
    )


def _empty(shown: Path) -> EnvironmentFileError:
    return EnvironmentFileError(
        shown, "", "is empty: write the environment's fields (see environments/README.md)"
    )


def _read_bytes(target: Path, shown: Path) -> bytes:
    # O_NONBLOCK: a FIFO put in the file's place after the checks above opens at once instead
    # of waiting for a writer, and fstat then refuses it. O_NOFOLLOW: the target was resolved,
    # so a symlink appearing there since is refused rather than followed.
    flags = os.O_RDONLY
    for name in ("O_NONBLOCK", "O_NOFOLLOW", "O_CLOEXEC", "O_BINARY"):
        flags |= getattr(os, name, 0)
    try:
        descriptor = os.open(target, flags)
    except OSError as error:
        raise EnvironmentFileError(shown, "", f"cannot be read ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as stream:
        _check_status(os.fstat(stream.fileno()), shown)
        try:
            raw = stream.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise EnvironmentFileError(shown, "", f"cannot be read ({error.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:  # it grew after fstat
        raise _too_large(shown, "is growing")
    return raw


def _decoded(raw: bytes, shown: Path) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise EnvironmentFileError(
            shown,
            "",
            f"is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}, line "
            f"{line}): save it as UTF-8",
        ) from None
    # Editors on Windows start UTF-8 files with a byte-order mark; it carries no meaning.
    text = text.removeprefix(_BOM)
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        start = bad.start()
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        raise EnvironmentFileError(
            shown,
            "",
            f"contains the control character U+{ord(bad.group()):04X} at line {line}, column "
            f"{column}: YAML does not allow it; remove it",
        )
    return text


def _line(event: Event) -> int:
    # The parser marks every event it produces; only hand-made events lack a mark.
    return event.start_mark.line + 1 if event.start_mark else 0


def _yaml12_number(raw: str) -> str:
    """How a YAML 1.2 reader reads a number YAML 1.1 takes for text, written the plain way."""
    if re.fullmatch(r"[-+]?[0-9]+", raw):
        return str(int(raw))
    if raw.startswith("0o"):
        return str(int(raw[2:], 8))
    # Only floats remain (`0x` and `.inf` forms are numbers in YAML 1.1 too, so never come here).
    plain = repr(float(raw))
    return plain if _PLAIN_FLOAT.fullmatch(plain) else "a plain decimal such as 0.5"


def _short_tag(tag: str) -> str:
    return f"!!{tag.removeprefix(_TAG)}" if tag.startswith(_TAG) else tag


def _key_reading(tag: str, raw: str) -> str | None:
    """What a plain key is read as when it is not text, or None when it is text."""
    readings = {_BOOL: "a boolean", _INT: "a number", _FLOAT: "a number", _NULL: "null"}
    if tag in readings:
        return f"{readings[tag]} by YAML 1.1"
    if tag == _TIMESTAMP:
        return "a date by YAML 1.1"
    if raw in _UNRESOLVED_BOOLEANS:
        return "a boolean by YAML 1.1"
    if tag != _STR:
        return f"{_short_tag(tag)} by YAML 1.1"
    if _YAML12_NUMBER.fullmatch(raw):
        return "a number by YAML 1.2 and JSON readers"
    return None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader used for its parser and YAML 1.1 resolver only: the data
    is built here from the event stream, so that every refusal names its field and line, depth
    is checked before descending (a deep document cannot exhaust the stack), and an alias is
    refused when met, before anything is expanded."""

    def __init__(self, text: str, shown: Path) -> None:
        super().__init__(text)
        self.shown = shown

    # PyYAML's stubs leave these untyped; typed here once.
    def next_event(self) -> Event:
        event: Event = self.get_event()  # type: ignore[no-untyped-call]
        return event

    def upcoming_event(self) -> Event:
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event

    def plain_tag(self, raw: str) -> str:
        """The YAML 1.1 tag PyYAML's resolver gives this plain (unquoted) scalar."""
        tag: str = self.resolve(yaml.ScalarNode, raw, (True, False))  # type: ignore[no-untyped-call]
        return tag

    def refuse(self, location: Location, rule: str) -> EnvironmentFileError:
        return EnvironmentFileError(self.shown, field_path(location), rule)

    def single_document(self) -> Any:
        self.next_event()  # stream start
        if self.check_event(StreamEndEvent):
            raise _empty(self.shown)
        self.next_event()  # document start
        first = self.upcoming_event()
        data = self.value((), 0)
        if (
            isinstance(first, ScalarEvent)
            and first.value == ""
            and not first.style
            and first.tag is None
        ):
            raise _empty(self.shown)  # `---` and nothing else
        self.next_event()  # document end
        if self.check_event(DocumentStartEvent):
            raise self.refuse(
                (),
                f"holds more than one YAML document (the second starts at line "
                f"{_line(self.upcoming_event())}): keep one document in the file",
            )
        return data

    def value(self, location: Location, depth: int) -> Any:
        event = self.next_event()
        self.refuse_decorations(event, location)
        if isinstance(event, CollectionStartEvent):
            if depth >= MAX_DEPTH:
                raise self.refuse(
                    location,
                    f"nests deeper than {MAX_DEPTH} levels of mappings and sequences at line "
                    f"{_line(event)}: flatten it",
                )
            if isinstance(event, MappingStartEvent):
                return self.mapping(location, depth + 1)
            return self.sequence(location, depth + 1)
        assert isinstance(event, ScalarEvent)  # the parser's grammar leaves nothing else here
        return self.scalar(event, location)

    def refuse_decorations(self, event: Event, location: Location) -> None:
        if isinstance(event, AliasEvent):
            raise self.refuse(
                location,
                f"{_ANCHORS_RULE} (alias '*{event.anchor}' at line {_line(event)}): {_ANCHORS_FIX}",
            )
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise self.refuse(
                location,
                f"{_ANCHORS_RULE} (anchor '&{event.anchor}' at line {_line(event)}): "
                f"{_ANCHORS_FIX}",
            )
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise self.refuse(
                location,
                f"explicit YAML tags are not accepted ({_short_tag(tag)} at line {_line(event)}): "
                "remove the tag and write the value plainly (quoted if it is text)",
            )

    def sequence(self, location: Location, depth: int) -> list[Any]:
        items: list[Any] = []
        first_lines: dict[str, int] = {}
        while not self.check_event(SequenceEndEvent):
            line = _line(self.upcoming_event())
            item = self.value((*location, len(items)), depth)
            # The same item twice is a copy-paste slip a reviewer reads past; the platform
            # would keep one silently (a set of regions, roles, endpoints) or build it twice.
            seen = json.dumps(item, sort_keys=True)
            if seen in first_lines:
                raise self.refuse(
                    (*location, len(items)),
                    f"repeats the item at line {first_lines[seen]} (again at line {line}): "
                    "list it once",
                )
            first_lines[seen] = line
            items.append(item)
        self.next_event()
        return items

    def mapping(self, location: Location, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_lines: dict[str, int] = {}
        while not self.check_event(MappingEndEvent):
            key_event = self.next_event()
            key = self.key(key_event, location)
            line = _line(key_event)
            if key in first_lines:
                raise self.refuse(
                    (*location, key),
                    f"duplicate key '{key}' (first at line {first_lines[key]}, again at line "
                    f"{line}): the later one would silently replace the first; keep one",
                )
            first_lines[key] = line
            result[key] = self.value((*location, key), depth)
        self.next_event()
        return result

    def key(self, event: Event, location: Location) -> str:
        if not isinstance(event, ScalarEvent):
            self.refuse_decorations(event, location)
            kind = "a mapping" if isinstance(event, MappingStartEvent) else "a sequence"
            raise self.refuse(
                location,
                f"key at line {_line(event)} is not text ({kind}): keys must be plain text",
            )
        raw = str(event.value)
        self.refuse_decorations(event, (*location, raw))
        if event.style:  # quoted or block: text, whatever it looks like
            return raw
        tag = self.plain_tag(raw)
        field = (*location, raw) if raw else location
        if tag == _MERGE:
            raise self.refuse(
                field, f"{_ANCHORS_RULE} (merge key '<<' at line {_line(event)}): {_ANCHORS_FIX}"
            )
        reading = _key_reading(tag, raw)
        if reading is not None:
            raise self.refuse(
                field,
                f"key '{raw or '(empty)'}' at line {_line(event)} is not text: quote it (it is "
                f"read as {reading})",
            )
        return raw

    def scalar(self, event: ScalarEvent, location: Location) -> Any:
        raw = str(event.value)
        if event.style:  # quoted or block scalar: always text
            return raw
        line = _line(event)
        tag = self.plain_tag(raw)
        if tag == _NULL:
            return None
        if tag == _BOOL or raw in _UNRESOLVED_BOOLEANS:
            if raw in _TRUE_FALSE:
                return _TRUE_FALSE[raw]
            raise self.refuse(
                location,
                f"'{raw}' at line {line} is read as a boolean by YAML 1.1: write true or false, "
                "or quote it for text",
            )
        if tag == _INT:
            return self.integer(raw, location, line)
        if tag == _FLOAT:
            return self.decimal(raw, location, line)
        if tag == _TIMESTAMP:
            raise self.refuse(
                location,
                f"'{raw}' at line {line} is read as a YAML date: quote it if it is text "
                f'("{raw}")',
            )
        if tag == _MERGE:
            raise self.refuse(location, f"{_ANCHORS_RULE} ('<<' at line {line}): {_ANCHORS_FIX}")
        if tag != _STR:
            raise self.refuse(
                location,
                f"'{raw}' at line {line} has a special meaning in YAML 1.1 ({_short_tag(tag)}): "
                "quote it for text",
            )
        if _YAML12_NUMBER.fullmatch(raw):
            number = _yaml12_number(raw)
            raise self.refuse(
                location,
                f"'{raw}' at line {line} is text to YAML 1.1 but the number {number} to YAML 1.2 "
                f"readers: write {number} if that is the number you mean, or quote it for text",
            )
        return raw

    def integer(self, raw: str, location: Location, line: int) -> int:
        if _PLAIN_INT.fullmatch(raw):
            return int(raw)
        number = self.construct_yaml_int(yaml.ScalarNode(_INT, raw))
        if "_" in raw:
            why = "underscores are dropped"
        elif ":" in raw:
            why = "base 60"
        elif "0x" in raw:
            why = "hexadecimal"
        elif "0b" in raw:
            why = "binary"
        elif raw.lstrip("+-").startswith("0"):
            why = "octal, because of the leading zero"
        else:
            why = "the + sign is dropped"
        raise self.refuse(
            location,
            f"'{raw}' at line {line} is read as the number {number} by YAML 1.1 ({why}): write "
            f"{number} if that is the number you mean, or quote it for text",
        )

    def decimal(self, raw: str, location: Location, line: int) -> float:
        number = self.construct_yaml_float(yaml.ScalarNode(_FLOAT, raw))
        if _PLAIN_FLOAT.fullmatch(raw) and math.isfinite(number):
            return float(raw)
        if math.isnan(number) or (math.isinf(number) and "inf" in raw.lower()):
            name = "not a number" if math.isnan(number) else "infinity"
            raise self.refuse(
                location,
                f"'{raw}' at line {line} is read as {name} by YAML 1.1, which no setting can "
                "hold: write a finite number",
            )
        if math.isinf(number):
            raise self.refuse(
                location,
                f"'{raw}' at line {line} is too large for a number (YAML 1.1 reads it as "
                "infinity): write a finite number",
            )
        if "_" in raw:
            why = "underscores are dropped"
        elif ":" in raw:
            why = "base 60"
        elif raw.startswith("+"):
            why = "the + sign is dropped"
        else:
            why = "not a plain decimal"
        plain = repr(number)
        suggestion = plain if _PLAIN_FLOAT.fullmatch(plain) else "a plain decimal such as 0.5"
        raise self.refuse(
            location,
            f"'{raw}' at line {line} is read as the number {plain} by YAML 1.1 ({why}): write "
            f"{suggestion}, or quote it for text",
        )
