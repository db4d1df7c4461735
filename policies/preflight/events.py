"""Every EventBridge rule's event pattern against AWS's documented sample event for the source
and detail-type it targets, so a pattern that can never match fails before it is deployed
(EventBridge accepts such a pattern and then never fires: a silent outage of the rollback,
the approval notice or the security alert behind it).

The sample events (`sample_events/*.json`) are AWS's documentation examples, each with its
`_source` URL. An example shows one event: its values are examples, except where AWS
documents the field's closed set of values. Those come from the same page (`_closed`: path ->
values) or from the API shape the event's detail carries (`_shapes`: path -> botocore
`service.Shape`; e.g. a processing-job event's detail is DescribeProcessingJob's response), whose
enums are the documented values and whose members are the fields an event can hold beyond the
example's.

Three rules, each one finding per rule and event rule:
- PF_EVENTS_SAMPLE: each source / detail-type the pattern names has a documented sample event.
  One without is a failure, not a pass: it cannot be shown to match.
- PF_EVENTS_FIELDS: each field the pattern matches on exists in that event (in the example or in
  the API shape behind it) with a JSON type the pattern's values can match.
- PF_EVENTS_VALUES: each literal for a field with a closed set of values is one of them, and each
  operator (prefix, anything-but, numeric ...) is satisfiable by some value the field can take.

Matching is judged field by field. EventBridge matches a pattern when every field matches (AND)
and a field when any of its values does (OR), and an array field when any element does, so a
pattern can match exactly when each field can: judging the sample event with each open field's
value replaced by the pattern's own is the same test. The matcher covers EventBridge's
comparison operators (exact, prefix, suffix, equals-ignore-case, wildcard, anything-but,
numeric, exists, cidr); an operator it does not know is a failure naming it.

This matcher is policy-side: `tests/eventbridge.py` (whole-event matching for the tests) cannot
be imported from policies, and it asserts on unknown operators instead of reporting them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import botocore
import botocore.session
from botocore.model import Shape

from policies.findings import Finding
from policies.preflight.base import (
    BOTOCORE,
    PreflightSourceError,
    Rule,
    SynthesizedStacks,
    has_token,
    verdict,
)

SAMPLE_EVENTS: Final = Path(__file__).with_name("sample_events")
RULE_RESOURCE: Final = "aws_cloudwatch_event_rule"
# Keys of a sample file that are about the example, not part of the event.
METADATA_PREFIX: Final = "_"
DOCUMENTATION: Final = "https://docs.aws.amazon.com/"
ENVELOPE_KEYS: Final = ("source", "detail-type")
STRING, NUMBER, BOOLEAN, NULL, OBJECT = "string", "number", "boolean", "null", "object"
ANY: Final = frozenset({STRING, NUMBER, BOOLEAN, NULL, OBJECT})
SHAPE_TYPES: Final = {
    "string": {STRING},
    "blob": {STRING},
    "integer": {NUMBER},
    "long": {NUMBER},
    "float": {NUMBER},
    "double": {NUMBER},
    "boolean": {BOOLEAN},
    "timestamp": {STRING, NUMBER},  # events carry ISO 8601 text or epoch milliseconds
    "structure": {OBJECT},
    "map": {OBJECT},
}
NUMERIC: Final[dict[str, Callable[[float, float], bool]]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}


def _in_network(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _wildcard(operand: str) -> re.Pattern[str]:
    return re.compile(".*".join(map(re.escape, operand.split("*"))), re.DOTALL)


# EventBridge's operators on string values: (event value, operand) -> matches.
STRING_COMPARISONS: Final[dict[str, Callable[[str, str], bool]]] = {
    "prefix": str.startswith,
    "suffix": str.endswith,
    "equals-ignore-case": lambda value, operand: value.casefold() == operand.casefold(),
    "wildcard": lambda value, operand: _wildcard(operand).fullmatch(value) is not None,
    "cidr": _in_network,
}
OPERATOR_TYPES: Final[dict[str, frozenset[str]]] = {
    **{operator: frozenset({STRING}) for operator in STRING_COMPARISONS},
    "numeric": frozenset({NUMBER}),
    "exists": ANY,
}

_SOURCE: Final = "AWS documentation sample events (policies/preflight/sample_events/, _source)"
SAMPLE: Final = Rule(
    id="PF_EVENTS_SAMPLE",
    family="events",
    title="Event patterns target a source and detail-type with a documented sample event",
    source=_SOURCE,
)
FIELDS: Final = Rule(
    id="PF_EVENTS_FIELDS",
    family="events",
    title="Event pattern fields exist in the documented event with a matching JSON type",
    source=f"{_SOURCE}; {BOTOCORE} service models",
)
VALUES: Final = Rule(
    id="PF_EVENTS_VALUES",
    family="events",
    title="Event pattern values are ones the documented event's fields can take",
    source=f"{_SOURCE}; {BOTOCORE} service models (enums)",
)
RULES: Final[tuple[Rule, ...]] = (SAMPLE, FIELDS, VALUES)


@dataclass(frozen=True)
class Domain:
    """What a field of a documented event can hold: its JSON types and, when AWS documents
    them, its only values (None: open, the example's value is only an example)."""

    types: frozenset[str]
    values: tuple[Any, ...] | None


@dataclass(frozen=True)
class SampleEvent:
    file: str
    url: str
    event: Mapping[str, Any]
    shapes: Mapping[str, Shape]  # dotted path -> the botocore shape the value there has
    closed: Mapping[str, tuple[Any, ...]]  # dotted path -> the documented values

    @property
    def key(self) -> tuple[str, str]:
        return str(self.event["source"]), str(self.event["detail-type"])

    def domain(self, path: tuple[str, ...]) -> Domain | None:
        """The field at `path` (arrays crossed as EventBridge does), None if the event has none."""
        nodes: list[Any] = [self.event]
        shape: Shape | None = None
        for depth, name in enumerate(path):
            present = any(isinstance(node, dict) and name in node for node in nodes)
            nodes = _flatten(
                node[name] for node in nodes if isinstance(node, dict) and name in node
            )
            shape = _member(shape, name) if shape is not None else None
            shape = self.shapes.get(".".join(path[: depth + 1]), shape)
            if not present and shape is None:
                return None
        dotted = ".".join(path)
        types = {_json_type(node) for node in nodes}
        if shape is not None:
            types |= SHAPE_TYPES.get(_element(shape).type_name, set())
        values = self.closed.get(dotted)
        enum = getattr(_element(shape), "enum", None) if shape is not None else None
        if values is None and enum:
            values = tuple(enum)
        # An empty array documents the field but not its elements' type.
        return Domain(frozenset(types) or ANY, values)


def check(stacks: SynthesizedStacks) -> list[Finding]:
    samples = load_samples()
    findings = []
    for resource in stacks.resources(RULE_RESOURCE):
        text = resource.block.get("event_pattern")
        if not isinstance(text, str) or (has_token(text) and not text.lstrip().startswith("{")):
            continue  # a scheduled rule, or a pattern that is wholly another resource's value
        try:
            pattern = json.loads(text)
        except json.JSONDecodeError as error:
            findings.append(verdict(SAMPLE, resource, f"event_pattern is not JSON ({error})"))
            continue
        if not isinstance(pattern, dict):
            findings.append(verdict(SAMPLE, resource, "event_pattern is not a JSON object"))
            continue
        matched, missing = targeted_samples(pattern, samples)
        judged = ", ".join(f"{s}/{d}" for s, d in sorted(m.key for m in matched))
        findings.append(verdict(SAMPLE, resource, missing, judged=judged))
        if matched:
            problems = [p for sample in matched for p in field_problems(pattern, sample)]
            findings.append(verdict(FIELDS, resource, _joined(problems), judged=judged))
            problems = [p for sample in matched for p in value_problems(pattern, sample)]
            findings.append(verdict(VALUES, resource, _joined(problems), judged=judged))
    return findings


def _joined(problems: list[str]) -> str | None:
    return "; ".join(dict.fromkeys(problems)) if problems else None


# --- the sample events ----------------------------------------------------------------------


def load_samples(folder: Path | None = None) -> dict[tuple[str, str], SampleEvent]:
    """(source, detail-type) -> its documented sample event (from SAMPLE_EVENTS by default);
    PreflightSourceError when the folder is missing or empty or a file is not a sample event
    as described above. A file deleted from a full folder surfaces as the PF_EVENTS_SAMPLE
    failure of each pattern that needed it, never as a pass."""
    folder = SAMPLE_EVENTS if folder is None else folder
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise PreflightSourceError(f"{folder}: no sample events (*.json)")
    session = botocore.session.get_session()
    samples: dict[tuple[str, str], SampleEvent] = {}
    for file in files:
        sample = _read_sample(file, session)
        if sample.key in samples:
            raise PreflightSourceError(
                f"{file}: {sample.key} already in {samples[sample.key].file}"
            )
        samples[sample.key] = sample
    return samples


def _read_sample(file: Path, session: botocore.session.Session) -> SampleEvent:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        url = document["_source"]
        event = {k: v for k, v in document.items() if not k.startswith(METADATA_PREFIX)}
        listed = document.get("_closed", {})
        closed = {path: tuple(values) for path, values in listed.items()}
        shapes = {path: _shape(session, name) for path, name in document.get("_shapes", {}).items()}
        well_formed = (
            isinstance(url, str)
            and url.startswith(DOCUMENTATION)
            and all(isinstance(event.get(key), str) for key in ENVELOPE_KEYS)
            and isinstance(event.get("detail"), dict)
            and all(isinstance(values, list) for values in listed.values())
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise PreflightSourceError(
            f"{file}: not a sample event ({type(e).__name__}: {e})"
        ) from None
    if not well_formed:
        raise PreflightSourceError(
            f"{file}: a sample event needs a _source {DOCUMENTATION}... URL, string "
            f"{' and '.join(ENVELOPE_KEYS)}, an object detail and _closed values as lists"
        )
    return SampleEvent(file.name, url, event, shapes, closed)


def _shape(session: botocore.session.Session, name: str) -> Shape:
    """`service.ShapeName` in botocore's service model."""
    service, _, shape_name = name.partition(".")
    try:
        shape: Shape = session.get_service_model(service).shape_for(shape_name)
    except Exception as error:  # UnknownServiceError, NoShapeFoundError, DataNotFoundError ...
        raise ValueError(f"botocore has no shape {name!r} ({error!r})") from None
    return shape


def _member(shape: Shape, name: str) -> Shape | None:
    """The member an event names `name`: its JSON name (locationName), else its own name."""
    shape = _element(shape)
    if shape.type_name == "map":
        value: Shape = getattr(shape, "value")  # noqa: B009  botocore's MapShape.value
        return value
    for member_name, member in getattr(shape, "members", {}).items():
        if member.serialization.get("name", member_name) == name:
            result: Shape = member
            return result
    return None


def _element(shape: Shape) -> Shape:
    while shape.type_name == "list":
        shape = getattr(shape, "member")  # noqa: B009  botocore's ListShape.member
    return shape


def _flatten(values: Iterator[Any] | list[Any]) -> list[Any]:
    flat: list[Any] = []
    for value in values:
        flat += _flatten(value) if isinstance(value, list) else [value]
    return flat


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    return NULL if value is None else OBJECT


# --- the judgements -------------------------------------------------------------------------


def targeted_samples(
    pattern: Mapping[str, Any], samples: Mapping[tuple[str, str], SampleEvent]
) -> tuple[list[SampleEvent], str | None]:
    """The sample events the pattern's source / detail-type name, and what it names without
    one (None when each has one)."""
    sources, detail_types = (pattern.get(key) for key in ENVELOPE_KEYS)
    if not isinstance(sources, list) or not _literal_list(sources):
        return [], "the pattern does not name its source as a list of literals: it cannot be judged"
    if detail_types is not None and not _literal_list(detail_types):
        return [], "the pattern's detail-type is not a list of literals: it cannot be judged"
    matched: list[SampleEvent] = []
    missing = []
    for source in sources:
        for detail_type in detail_types or [None]:
            found = [
                s for (src, dt), s in samples.items() if src == source and detail_type in (dt, None)
            ]
            matched += [s for s in found if s not in matched]
            if not found:
                missing.append(f"{source}/{detail_type or '*'}")
    problem = f"no documented sample event for {', '.join(missing)}" if missing else None
    return matched, problem


def _literal_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _leaves(
    pattern: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, the pattern's value there) for every field, objects included."""
    for name, value in pattern.items():
        if not path and name in ENVELOPE_KEYS:
            continue  # judged by PF_EVENTS_SAMPLE
        yield (*path, name), value
        if isinstance(value, dict):
            yield from _leaves(value, (*path, name))


def field_problems(pattern: Mapping[str, Any], sample: SampleEvent) -> Iterator[str]:
    for path, value in _leaves(pattern):
        dotted = ".".join(path)
        domain = sample.domain(path)
        if domain is None:
            yield f"{dotted} is not a field of {sample.file}"
        elif isinstance(value, dict):
            if OBJECT not in domain.types:
                yield f"{dotted} is {_types(domain)} in {sample.file}, not an object"
        elif not isinstance(value, list) or not value:
            yield f"{dotted}: a pattern field must be an object or a non-empty array"
        else:
            for option in value:
                needed = option_types(option)
                if needed is None:
                    yield f"{dotted}: {json.dumps(option)} is not an operator the preflight knows"
                elif not needed & domain.types:
                    yield (
                        f"{dotted} is {_types(domain)} in {sample.file}, "
                        f"{json.dumps(option)} matches only {' or '.join(sorted(needed))}"
                    )


def value_problems(pattern: Mapping[str, Any], sample: SampleEvent) -> Iterator[str]:
    for path, options in _leaves(pattern):
        domain = sample.domain(path)
        if domain is None or not isinstance(options, list):
            continue  # PF_EVENTS_FIELDS says why
        dotted = ".".join(path)
        for option in options:
            if option_types(option) is None or has_token(json.dumps(option)):
                continue  # an unknown operator (PF_EVENTS_FIELDS), or another resource's value
            if isinstance(option, dict) and "exists" in option:
                continue  # whether the field is there at all: PF_EVENTS_FIELDS
            if domain.values is not None:
                if not any(option_matches(option, v) for v in domain.values):
                    documented = ", ".join(map(json.dumps, domain.values))
                    yield f"{dotted}: {json.dumps(option)} is none of its values ({documented})"
            elif isinstance(option, dict) and not _satisfiable(option):
                yield f"{dotted}: {json.dumps(option)} matches no value"


def _types(domain: Domain) -> str:
    return "any type" if domain.types == ANY else " or ".join(sorted(domain.types))


def option_types(option: Any) -> frozenset[str] | None:
    """The JSON types a pattern value can match, None for an operator this matcher lacks."""
    if not isinstance(option, dict):
        return frozenset({_json_type(option)})
    if len(option) != 1:
        return None
    ((operator, operand),) = option.items()
    if operator != "anything-but":
        return OPERATOR_TYPES.get(operator)
    types = [option_types(o) for o in (operand if isinstance(operand, list) else [operand])]
    if not types or None in types:
        return None
    return frozenset().union(*(t for t in types if t is not None))


def option_matches(option: Any, value: Any) -> bool:
    """EventBridge's comparison of one pattern value with one event value."""
    if not isinstance(option, dict):
        return _json_type(option) == _json_type(value) and bool(option == value)
    ((operator, operand),) = option.items()
    if operator == "exists":
        return bool(operand)
    if operator == "anything-but":
        excluded = operand if isinstance(operand, list) else [operand]
        return not any(option_matches(o, value) for o in excluded)
    if operator == "numeric":
        bounds = _bounds(operand)
        return _json_type(value) == NUMBER and all(NUMERIC[op](value, b) for op, b in bounds)
    compare = STRING_COMPARISONS.get(operator)
    return (
        isinstance(value, str)
        and isinstance(operand, str)
        and bool(compare and compare(value, operand))
    )


def _bounds(operand: Any) -> list[tuple[str, float]]:
    """The (comparison, bound) pairs of a numeric operand; a malformed one (EventBridge refuses
    it) becomes a comparison nothing satisfies."""
    even = isinstance(operand, list) and len(operand) % 2 == 0
    pairs = list(zip(operand[::2], operand[1::2], strict=True)) if even else []
    well_formed = bool(pairs) and all(
        op in NUMERIC and _json_type(bound) == NUMBER for op, bound in pairs
    )
    return [(op, float(bound)) for op, bound in pairs] if well_formed else [("=", float("nan"))]


def _is_network(text: Any) -> bool:
    try:
        ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return False
    return True


def _satisfiable(option: Mapping[str, Any]) -> bool:
    """Whether some value of an open field (any value of its type) matches the operator: a
    numeric range must not be empty, a CIDR must be a network; the rest always can."""
    ((operator, operand),) = option.items()
    if operator == "cidr":
        return _is_network(operand)
    if operator != "numeric":
        return True
    bounds = [bound for _, bound in _bounds(operand)]
    candidates = [b + d for b in bounds for d in (-1e-9, 0.0, 1e-9)] + [
        (a + b) / 2 for a in bounds for b in bounds
    ]
    return any(option_matches(option, c) for c in candidates)
