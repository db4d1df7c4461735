"""What promoting one environment to the next would change: `make diff FROM=staging TO=prod`.

    python -m tools.diff staging prod                     # synthesizes both into a temp dir
    python -m tools.diff staging prod --out cdktf.out     # reads an existing synthesized dir
    python -m tools.diff staging prod --format markdown   # for a pull-request description
    python -m tools.diff staging prod --no-controls       # skips the checkov scan
    python -m tools.diff staging prod --out cdktf.out --findings reports/scan/findings.json
                                                          # reuses a gate run over cdktf.out

Three comparisons:

1. The environment files, field by field after validation. Fields each environment holds for
   itself (name, account, region, CIDRs, VPN peer, bucket prefix) and fields that differ only in
   those values (role ARNs in the environment's account, names built from the environment name)
   are listed apart, as expected per-environment values, from real configuration differences.
   A per-environment field present on one side only (a Direct Connect gateway, a second site
   range) is a real difference: the value may differ, its presence may not.
2. The synthesized stacks, `<FROM>-<layer>` against `<TO>-<layer>`, resources keyed by
   Terraform address. Construct paths are the same in every environment, so logical ids are
   too; per-environment values in names and attributes are replaced by placeholders ({env},
   {account}, {vpc_cidr}.subnet(3,1), ...) so that only real differences remain.
3. The gate's static scan of both sides (policies.gate.run_gate over a copy holding only the
   compared stacks): controls whose status, the worst of their findings, differs, with the
   checks and resources responsible.

Exit status: 0 whenever the comparison was made (a difference is information, not failure);
2 on bad input (unknown or invalid environment, the organization environment, a synthesized
directory without the environments, an unreadable findings file, a bad catalog or exemptions
file); 1 when checkov could not run.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from environments.loader import (
    ENVIRONMENTS_DIR,
    EnvironmentFileError,
    display_path,
    load_environments,
)
from environments.schema import WorkloadEnvironment
from policies.findings import Findings, Status, read_findings


class DiffInputError(Exception):
    """Bad input: the message says what is wrong and what to do instead."""


class ControlScanError(Exception):
    """The gate's static scan could not run."""


class _Absent:
    """A field or resource that one side does not have (distinct from a JSON null)."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Final = _Absent()

# Fields every environment is expected to hold for itself, and why. Lists among them (site
# ranges) are expected to differ in value, not in length: a second site range is a real change.
EXPECTED_PER_ENVIRONMENT: Final[Mapping[str, str]] = {
    "name": "the environment's own name",
    "account_id": "each environment is its own AWS account",
    "deployment_role_arn": "the deployment role lives in the environment's account",
    "region": "the environment's home region",
    "network.vpc_cidr": "each VPC has its own address range",
    "ingest.vpn.peer_ip": "each environment has its own site VPN device",
    "ingest.vpn.bgp_asn": "each site connection has its own BGP ASN",
    "ingest.vpn.amazon_side_asn": "each virtual private gateway has its own ASN",
    "ingest.vpn.onprem_cidrs": "the site ranges routed to this environment",
    "ingest.direct_connect.amazon_side_asn": "each Direct Connect gateway has its own ASN",
    "storage.bucket_prefix": "bucket names are globally unique",
}

# List items carrying one of these keys are matched by it rather than by position, so that an
# inserted policy statement or feature shows as one addition, not as every later item changed.
_IDENTITY_KEYS: Final = ("Sid", "name", "Name")
_ADDRESS_PATTERN: Final = re.compile(
    r"(?<![0-9.])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![0-9]|\.\d)"
)
# Status shown for a control or check that one side has no finding for.
NOT_EVALUATED: Final = "not evaluated"
# The worst status of a control's findings is the control's status.
_STATUS_SEVERITY: Final[Mapping[str, int]] = {
    NOT_EVALUATED: 0,
    Status.NOT_EMULATED.value: 1,
    Status.NOT_DEMONSTRATED.value: 2,
    Status.PASSED.value: 3,
    Status.EXEMPT.value: 4,
    Status.FAILED.value: 5,
    Status.ERROR.value: 6,
}


# --- normalization ---------------------------------------------------------------------------


class Normalizer:
    """Replaces one environment's own values by placeholders, in text and in JSON values.

    Names and identifiers are replaced where they stand as a whole word (not inside a longer
    name: `prod` in `phi-ml-prod-readmission`, never in `production`); addresses inside the VPC
    or a site range are written relative to it, so a subnet reads `{vpc_cidr}.subnet(3,1)`
    whatever the VPC's range; ASNs are replaced only as whole values.
    """

    def __init__(self, environment: WorkloadEnvironment) -> None:
        words = {
            "{env}": environment.name,
            "{account}": environment.account_id,
            "{region}": environment.region,
            "{bucket_prefix}": environment.storage.bucket_prefix,
        }
        networks: dict[str, str] = {"{vpc_cidr}": environment.network.vpc_cidr}
        whole_values: dict[str, str] = {}
        vpn = environment.ingest.vpn
        if vpn is not None:
            words["{vpn_peer_ip}"] = vpn.peer_ip
            whole_values["{vpn_bgp_asn}"] = str(vpn.bgp_asn)
            whole_values["{vpn_amazon_side_asn}"] = str(vpn.amazon_side_asn)
            for index, cidr in enumerate(vpn.onprem_cidrs):
                networks[f"{{onprem_cidr_{index}}}"] = cidr
        if environment.ingest.direct_connect is not None:
            asn = str(environment.ingest.direct_connect.amazon_side_asn)
            whole_values["{dx_amazon_side_asn}"] = asn
        self.placeholders: dict[str, str] = {**words, **networks, **whole_values}
        self._word_for = {value: placeholder for placeholder, value in words.items()}
        # Names that allow no hyphen (Glue databases, SQL identifiers) use underscores.
        for placeholder in ("{env}", "{bucket_prefix}"):
            self._word_for.setdefault(words[placeholder].replace("-", "_"), placeholder)
        # Longest first: the bucket prefix `acme-phi-staging` before the name `staging`.
        alternatives = sorted(self._word_for, key=len, reverse=True)
        self._words = re.compile(
            r"(?<![A-Za-z0-9])("
            + "|".join(re.escape(word) for word in alternatives)
            + r")(?![A-Za-z0-9])"
        )
        self._networks = [
            (ipaddress.IPv4Network(cidr), placeholder) for placeholder, cidr in networks.items()
        ]
        self._whole_values = {value: placeholder for placeholder, value in whole_values.items()}

    def text(self, value: str) -> str:
        if value in self._whole_values:
            return self._whole_values[value]
        relative = _ADDRESS_PATTERN.sub(self._relative_address, value)
        return self._words.sub(lambda match: self._word_for[match.group(1)], relative)

    def value(self, value: Any) -> Any:
        """A JSON value with every string (and whole-number ASN) normalized."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and str(value) in self._whole_values:
            return self._whole_values[str(value)]
        if isinstance(value, dict):
            return {self.text(str(key)): self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def _relative_address(self, match: re.Match[str]) -> str:
        try:
            found = ipaddress.IPv4Network(match.group(0), strict=True)
        except ValueError:
            return match.group(0)
        for network, placeholder in self._networks:
            if found == network:
                return placeholder
            if found.subnet_of(network):
                index = (int(found.network_address) - int(network.network_address)) >> (
                    32 - found.prefixlen
                )
                if match.group(2) is None:
                    return f"{placeholder}.host({index})"
                return f"{placeholder}.subnet({found.prefixlen - network.prefixlen},{index})"
        return match.group(0)


# --- structural comparison -------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One value at `path` that differs: old is FROM's, new is TO's (ABSENT when missing)."""

    path: str
    old: Any
    new: Any


def _decoded(value: Any) -> Any:
    """A JSON document held in a string (a policy, a pipeline definition), or None."""
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return None
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict | list) else None


def _scalars(items: Sequence[Any]) -> bool:
    return all(not isinstance(item, dict | list) for item in items)


def _identity_key(items: Sequence[Any]) -> str | None:
    for key in _IDENTITY_KEYS:
        if items and all(isinstance(item, dict) and key in item for item in items):
            names = [str(item[key]) for item in items]
            if len(set(names)) == len(names):
                return key
    return None


def _unchanged(value: Any) -> Any:
    return value


def changes(
    old: Any,
    new: Any,
    path: str = "",
    *,
    normalize_old: Callable[[Any], Any] = _unchanged,
    normalize_new: Callable[[Any], Any] = _unchanged,
) -> list[Change]:
    """Every leaf where `new` differs from `old`, reported with normalized values.

    Equal values never differ, even where normalization would tell them apart (AWS's own
    `prod-us-east-1-starport-layer-bucket` in both environments); values that normalize
    alike do not differ either. Lists of scalars are compared whole; lists of named items are
    matched by name; JSON held in strings (policies, definitions) is compared as JSON.
    """
    found: list[Change] = []
    _collect(old, new, path, found, (normalize_old, normalize_new))
    return found


def _keyed(
    items: Mapping[str, Any] | Sequence[Any], key: str | None, normalize: Callable[[Any], Any]
) -> dict[str, Any]:
    if isinstance(items, Mapping):
        return {normalize(str(name)): value for name, value in items.items()}
    return {normalize(str(item[key])): item for item in items}


def _collect(
    old: Any,
    new: Any,
    path: str,
    found: list[Change],
    normalizers: tuple[Callable[[Any], Any], Callable[[Any], Any]],
) -> None:
    if old == new:
        return
    normalize_old, normalize_new = normalizers
    old_document, new_document = _decoded(old), _decoded(new)
    if old_document is not None and new_document is not None:
        _collect(old_document, new_document, f"{path}<json>", found, normalizers)
        return
    named: tuple[dict[str, Any], dict[str, Any]] | None = None
    if isinstance(old, dict) and isinstance(new, dict):
        named = (_keyed(old, None, normalize_old), _keyed(new, None, normalize_new))
        template = "{path}.{name}" if path else "{name}"
    elif isinstance(old, list) and isinstance(new, list) and not (_scalars(old) and _scalars(new)):
        key = _identity_key(old)
        if key is not None and key == _identity_key(new):
            named = (_keyed(old, key, normalize_old), _keyed(new, key, normalize_new))
            template = "{path}[{name}]"
        else:
            for index in range(max(len(old), len(new))):
                old_item = old[index] if index < len(old) else ABSENT
                new_item = new[index] if index < len(new) else ABSENT
                _collect(old_item, new_item, f"{path}[{index}]", found, normalizers)
            return
    if named is not None:
        old_named, new_named = named
        names = [*old_named, *(n for n in new_named if n not in old_named)]
        for name in sorted(names) if isinstance(old, dict) else names:
            child = template.format(path=path, name=name)
            old_item, new_item = old_named.get(name, ABSENT), new_named.get(name, ABSENT)
            _collect(old_item, new_item, child, found, normalizers)
        return
    shown_old = old if old is ABSENT else normalize_old(old)
    shown_new = new if new is ABSENT else normalize_new(new)
    if shown_old != shown_new:
        found.append(Change(path, shown_old, shown_new))


# --- 1. environment files --------------------------------------------------------------------


@dataclass(frozen=True)
class FieldDifference:
    field: str
    old: Any
    new: Any
    expected: bool  # a per-environment value, not a configuration difference
    why: str


def compare_environments(
    source: WorkloadEnvironment, target: WorkloadEnvironment
) -> list[FieldDifference]:
    """Field-by-field differences of two validated environments (defaults included)."""
    source_values = source.model_dump(mode="json")
    target_values = target.model_dump(mode="json")
    source_normalizer, target_normalizer = Normalizer(source), Normalizer(target)
    differences: list[FieldDifference] = []
    for change in changes(source_values, target_values):
        present_on_both = change.old is not ABSENT and change.new is not ABSENT
        reason = EXPECTED_PER_ENVIRONMENT.get(change.path)
        same_length = not (
            isinstance(change.old, list)
            and isinstance(change.new, list)
            and len(change.old) != len(change.new)
        )
        if reason is not None and present_on_both and same_length:
            differences.append(FieldDifference(change.path, change.old, change.new, True, reason))
            continue
        old_normalized = source_normalizer.value(change.old)
        new_normalized = target_normalizer.value(change.new)
        if present_on_both and old_normalized == new_normalized:
            named = set(re.findall(r"\{[a-z_0-9]+\}", json.dumps(new_normalized)))
            used = [
                placeholder
                for placeholder in sorted(named)
                if source_normalizer.placeholders.get(placeholder)
                != target_normalizer.placeholders.get(placeholder)
            ]
            why = f"differs only in {', '.join(used) or 'per-environment values'}"
            differences.append(FieldDifference(change.path, change.old, change.new, True, why))
            continue
        why = "a per-environment field present on one side only" if reason else ""
        if reason and present_on_both:
            why = "a different number of entries"
        differences.append(FieldDifference(change.path, change.old, change.new, False, why))
    return differences


# --- 2. synthesized stacks -------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceChange:
    address: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class StackDifference:
    layer: str
    from_stack: str | None  # None: the stack exists only in TO
    to_stack: str | None  # None: the stack exists only in FROM
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[ResourceChange, ...]
    unchanged: int

    @property
    def is_unchanged(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True)
class SynthesizedStack:
    name: str
    layer: str
    configuration: dict[str, Any]


def _strip_metadata(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_metadata(v) for k, v in value.items() if k != "//"}
    if isinstance(value, list):
        return [_strip_metadata(item) for item in value]
    return value


def _block_entries(block: str, content: Any) -> Iterator[tuple[str, Any]]:
    """(Terraform address, body) of one top-level block of a stack's JSON."""
    if block in ("resource", "data"):
        prefix = "data." if block == "data" else ""
        for type_, named in content.items():
            for name, body in named.items():
                yield f"{prefix}{type_}.{name}", body
    elif block == "provider":
        for name, settings in content.items():
            for setting in settings:
                alias = setting.get("alias")
                yield f"provider.{name}" + (f".{alias}" if alias else ""), setting
    elif block == "terraform":
        settings = json.loads(json.dumps(content))
        for backend in settings.get("backend", {}).values():
            backend.pop("key", None)  # the state file's own name differs by design
        yield "terraform", settings
    elif isinstance(content, dict):  # output, variable, locals, module
        for name, body in content.items():
            yield f"{block}.{name}", body
    else:
        yield block, content


def stack_entries(configuration: Mapping[str, Any], normalizer: Normalizer) -> dict[str, Any]:
    """Every resource, data source, output and setting of a stack by its normalized Terraform
    address (remote state sources are named for the stack they read), without cdktf metadata
    and without the backend's state key."""
    return {
        normalizer.text(address): _strip_metadata(body)
        for block, content in configuration.items()
        if block != "//"
        for address, body in _block_entries(block, content)
    }


def compare_stacks(
    source: Mapping[str, SynthesizedStack],
    target: Mapping[str, SynthesizedStack],
    source_normalizer: Normalizer,
    target_normalizer: Normalizer,
) -> list[StackDifference]:
    """Stack by stack (by layer): addresses added, removed, and changed with their changes."""
    differences: list[StackDifference] = []
    for layer in sorted(source.keys() | target.keys()):
        old_stack, new_stack = source.get(layer), target.get(layer)
        old = stack_entries(old_stack.configuration, source_normalizer) if old_stack else {}
        new = stack_entries(new_stack.configuration, target_normalizer) if new_stack else {}
        found = {
            address: changes(
                old[address],
                new[address],
                normalize_old=source_normalizer.value,
                normalize_new=target_normalizer.value,
            )
            for address in sorted(old.keys() & new.keys())
        }
        changed = tuple(ResourceChange(a, tuple(c)) for a, c in found.items() if c)
        differences.append(
            StackDifference(
                layer=layer,
                from_stack=old_stack.name if old_stack else None,
                to_stack=new_stack.name if new_stack else None,
                added=tuple(sorted(new.keys() - old.keys())),
                removed=tuple(sorted(old.keys() - new.keys())),
                changed=changed,
                unchanged=len(old.keys() & new.keys()) - len(changed),
            )
        )
    return differences


def environment_stacks(synth_dir: Path, environment: str) -> dict[str, SynthesizedStack]:
    """The stacks of one environment in a synthesized directory, by layer. A stack belongs to
    the environment its provider tags name (a name prefix alone would take `staging-copy-data`
    for a `staging` layer)."""
    stacks_dir = synth_dir / "stacks"
    if not stacks_dir.is_dir():
        raise DiffInputError(f"{synth_dir}: no synthesized stacks (run `make synth` first)")
    found: dict[str, SynthesizedStack] = {}
    for stack_file in sorted(stacks_dir.glob("*/cdk.tf.json")):
        name = stack_file.parent.name
        if not name.startswith(f"{environment}-"):
            continue
        configuration = json.loads(stack_file.read_text(encoding="utf-8"))
        providers = configuration.get("provider", {}).get("aws", [])
        tags = [
            tag_set.get("tags", {}).get("environment")
            for provider in providers
            for tag_set in provider.get("default_tags", [])
        ]
        if environment in tags:
            layer = name.removeprefix(f"{environment}-")
            found[layer] = SynthesizedStack(name, layer, configuration)
    if not found:
        raise DiffInputError(
            f"{synth_dir}: no stacks of environment '{environment}' "
            f"(synthesize it: python main.py --out {synth_dir} {environment})"
        )
    return found


# --- 3. controls -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckDifference:
    check_id: str
    layer: str
    resource: str  # normalized Terraform address
    from_status: str
    to_status: str


@dataclass(frozen=True)
class ControlDifference:
    control: str
    from_status: str
    to_status: str
    checks: tuple[CheckDifference, ...]  # the checks and resources whose status differs


def _worst(statuses: Sequence[str]) -> str:
    return max(statuses, key=lambda status: _STATUS_SEVERITY.get(status, 0), default=NOT_EVALUATED)


def _statuses_by_control(
    findings: Findings, stacks: Mapping[str, SynthesizedStack], normalizer: Normalizer
) -> dict[str, dict[tuple[str, str, str], str]]:
    """control -> (check, layer, resource) -> status, for the findings of these stacks."""
    layer_of = {stack.name: stack.layer for stack in stacks.values()}
    controls: dict[str, dict[tuple[str, str, str], str]] = {}
    for finding in findings.findings:
        if finding.stack not in layer_of:
            continue
        key = (finding.check_id, layer_of[finding.stack], normalizer.text(finding.resource))
        for control in finding.controls:
            checks = controls.setdefault(control, {})
            checks[key] = _worst([checks.get(key, NOT_EVALUATED), finding.status.value])
    return controls


def compare_controls(
    findings: Findings,
    source: Mapping[str, SynthesizedStack],
    target: Mapping[str, SynthesizedStack],
    source_normalizer: Normalizer,
    target_normalizer: Normalizer,
) -> list[ControlDifference]:
    """Controls whose status (the worst of their findings) differs between the two sides."""
    old = _statuses_by_control(findings, source, source_normalizer)
    new = _statuses_by_control(findings, target, target_normalizer)
    differences: list[ControlDifference] = []
    for control in sorted(old.keys() | new.keys()):
        old_checks, new_checks = old.get(control, {}), new.get(control, {})
        old_status, new_status = (
            _worst(list(old_checks.values())),
            _worst(list(new_checks.values())),
        )
        if old_status == new_status:
            continue
        responsible = tuple(
            CheckDifference(
                check,
                layer,
                resource,
                old_checks.get((check, layer, resource), NOT_EVALUATED),
                new_checks.get((check, layer, resource), NOT_EVALUATED),
            )
            for check, layer, resource in sorted(old_checks.keys() | new_checks.keys())
            if old_checks.get((check, layer, resource)) != new_checks.get((check, layer, resource))
        )
        differences.append(ControlDifference(control, old_status, new_status, responsible))
    return differences


def copy_stacks(synth_dir: Path, stack_names: Sequence[str], destination: Path) -> Path:
    """A synthesized directory holding only the named stacks, so the scan spends checkov's time
    on the two environments compared and not on the organization's stacks."""
    manifest_file = synth_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["stacks"] = {
        name: entry for name, entry in manifest.get("stacks", {}).items() if name in stack_names
    }
    for name in stack_names:
        shutil.copytree(synth_dir / "stacks" / name, destination / "stacks" / name)
    (destination / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return destination


def scan_controls(synth_dir: Path, stack_names: Sequence[str]) -> Findings:
    """The gate's static scan (checkov, our checks, exemptions applied) of the named stacks."""
    # Imported only when scanning: reading the gate's catalog and exemptions is its business.
    from policies.catalog import CatalogError  # noqa: PLC0415
    from policies.exemptions import ExemptionsError  # noqa: PLC0415
    from policies.gate import GateError, run_gate  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="phi-diff-scan-") as scratch:
        scan_dir = copy_stacks(synth_dir, stack_names, Path(scratch) / "cdktf.out")
        try:
            return run_gate(scan_dir).findings
        except (CatalogError, ExemptionsError) as error:
            raise DiffInputError(str(error)) from None
        except GateError as error:
            raise ControlScanError(str(error)) from None


# --- the whole comparison --------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionDiff:
    from_environment: str
    to_environment: str
    fields: tuple[FieldDifference, ...]
    stacks: tuple[StackDifference, ...]
    controls: tuple[ControlDifference, ...] | None  # None: not scanned
    placeholders: tuple[tuple[str, str, str], ...]  # placeholder, FROM's value, TO's value

    @property
    def configuration_differences(self) -> list[FieldDifference]:
        return [f for f in self.fields if not f.expected]

    @property
    def expected_differences(self) -> list[FieldDifference]:
        return [f for f in self.fields if f.expected]

    @property
    def changed_stacks(self) -> list[StackDifference]:
        return [s for s in self.stacks if not s.is_unchanged]


def load_pair(
    from_name: str, to_name: str, environments_dir: Path
) -> tuple[WorkloadEnvironment, WorkloadEnvironment]:
    """Both environments, validated; only workload environments can be promoted."""
    loaded = load_environments([from_name, to_name], environments_dir)
    for environment in loaded:
        if not isinstance(environment, WorkloadEnvironment):
            raise DiffInputError(
                f"'{environment.name}' is the organization environment: its stacks are shared "
                "by every environment, so diff compares two workload environments"
            )
    source, target = loaded
    assert isinstance(source, WorkloadEnvironment) and isinstance(target, WorkloadEnvironment)
    return source, target


def promotion_diff(
    source: WorkloadEnvironment,
    target: WorkloadEnvironment,
    synth_dir: Path,
    *,
    findings: Findings | None = None,
) -> PromotionDiff:
    """Compare two environments whose stacks are synthesized in `synth_dir`; controls only
    when `findings` (a static scan covering both sides' stacks) is given."""
    source_stacks = environment_stacks(synth_dir, source.name)
    target_stacks = environment_stacks(synth_dir, target.name)
    source_normalizer, target_normalizer = Normalizer(source), Normalizer(target)
    controls = None
    if findings is not None:
        controls = tuple(
            compare_controls(
                findings, source_stacks, target_stacks, source_normalizer, target_normalizer
            )
        )
    placeholders = tuple(
        (
            placeholder,
            source_normalizer.placeholders.get(placeholder, "-"),
            target_normalizer.placeholders.get(placeholder, "-"),
        )
        for placeholder in dict.fromkeys(
            [*source_normalizer.placeholders, *target_normalizer.placeholders]
        )
    )
    return PromotionDiff(
        from_environment=source.name,
        to_environment=target.name,
        fields=tuple(compare_environments(source, target)),
        stacks=tuple(
            compare_stacks(source_stacks, target_stacks, source_normalizer, target_normalizer)
        ),
        controls=controls,
        placeholders=placeholders,
    )


# --- rendering -------------------------------------------------------------------------------

TEXT_CHANGES_PER_RESOURCE: Final = 6
VALUE_WIDTH: Final = 60
# A pull-request page has room for more of each value than a terminal line.
MARKDOWN_VALUE_WIDTH: Final = 100
SHARED_PREFIX_KEPT: Final = 12


def _one_line(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return " ".join(text.split())


def show(value: Any, width: int = VALUE_WIDTH) -> str:
    """A value on one line, cut to `width` characters."""
    text = _one_line(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def show_pair(old: Any, new: Any, width: int = VALUE_WIDTH) -> tuple[str, str]:
    """Both values on one line each; two long values that start alike are shown from a little
    before where they part, so that the cut never hides the difference."""
    old_text, new_text = _one_line(old), _one_line(new)
    common = next(
        (i for i, (a, b) in enumerate(zip(old_text, new_text, strict=False)) if a != b),
        min(len(old_text), len(new_text)),
    )
    if common > SHARED_PREFIX_KEPT * 2 and max(len(old_text), len(new_text)) > width:
        cut = common - SHARED_PREFIX_KEPT
        return show("…" + old_text[cut:], width), show("…" + new_text[cut:], width)
    return show(old_text, width), show(new_text, width)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _stack_label(stack: StackDifference) -> str:
    if stack.from_stack is None:
        return f"{stack.layer} (new stack {stack.to_stack})"
    if stack.to_stack is None:
        return f"{stack.layer} (stack {stack.from_stack} has no counterpart)"
    return stack.layer


def _totals(diff: PromotionDiff) -> tuple[int, int, int]:
    return (
        sum(len(s.added) for s in diff.stacks),
        sum(len(s.changed) for s in diff.stacks),
        sum(len(s.removed) for s in diff.stacks),
    )


def summary_line(diff: PromotionDiff) -> str:
    added, changed, removed = _totals(diff)
    configuration = len(diff.configuration_differences)
    parts = [
        _count(configuration, "configuration difference"),
        f"resources: {added} added, {changed} changed, {removed} removed",
    ]
    if diff.controls is not None:
        parts.append(_count(len(diff.controls), "control") + " whose status differs")
    return "; ".join(parts)


def _text_fields(diff: PromotionDiff) -> list[str]:
    configuration, expected = diff.configuration_differences, diff.expected_differences
    lines = [
        f"environment file: {_count(len(configuration), 'configuration difference')}, "
        f"{_count(len(expected), 'expected per-environment value')}"
    ]
    width = max((len(f.field) for f in diff.fields), default=0)
    for title, group in (("configuration", configuration), ("expected per-environment", expected)):
        lines += [f"  {title}:"] if group else []
        for field in group:
            note = f"  ({field.why})" if field.why else ""
            old, new = show_pair(field.old, field.new)
            lines.append(f"    {field.field:<{width}}  {old} -> {new}{note}")
    return lines


def _text_stack(stack: StackDifference) -> list[str]:
    lines = [
        f"  {_stack_label(stack)}: {len(stack.added)} added, {len(stack.changed)} changed, "
        f"{len(stack.removed)} removed"
    ]
    lines += [f"    + {address}" for address in stack.added]
    lines += [f"    - {address}" for address in stack.removed]
    for resource in stack.changed:
        lines.append(f"    ~ {resource.address}")
        for change in resource.changes[:TEXT_CHANGES_PER_RESOURCE]:
            old, new = show_pair(change.old, change.new)
            lines.append(f"        {change.path}: {old} -> {new}")
        hidden = len(resource.changes) - TEXT_CHANGES_PER_RESOURCE
        lines += [f"        … {hidden} more"] if hidden > 0 else []
    return lines


def _text_controls(controls: Sequence[ControlDifference] | None) -> list[str]:
    if controls is None:
        return ["controls: not compared (--no-controls)"]
    lines = [f"controls whose status differs: {len(controls)}"]
    for control in controls:
        lines.append(f"  {control.control}: {control.from_status} -> {control.to_status}")
        lines += [
            f"      {check.check_id} {check.layer} {check.resource}: "
            f"{check.from_status} -> {check.to_status}"
            for check in control.checks
        ]
    return lines


def render_text(diff: PromotionDiff) -> str:
    """Compact, grouped, with counts: for the terminal."""
    source, target = diff.from_environment, diff.to_environment
    lines = [f"promotion {source} -> {target}: {summary_line(diff)}", "", *_text_fields(diff)]
    added, changed, removed = _totals(diff)
    lines += ["", f"resources: {added} added, {changed} changed, {removed} removed"]
    for stack in diff.changed_stacks:
        lines += _text_stack(stack)
    same = [stack.layer for stack in diff.stacks if stack.is_unchanged]
    lines += [f"  unchanged: {', '.join(same)}"] if same else []
    lines += ["", *_text_controls(diff.controls), ""]
    differing = [f"{p} {a}|{b}" for p, a, b in diff.placeholders if a != b]
    lines.append("normalized: " + (", ".join(differing) or "nothing differs"))
    return "\n".join(lines) + "\n"


def _code(value: str) -> str:
    """A Markdown code span safe inside a table cell."""
    text = value.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if text else ""


def _details(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def _markdown_field_table(fields: Sequence[FieldDifference], source: str, target: str) -> list[str]:
    lines = [f"| field | `{source}` | `{target}` | note |", "|---|---|---|---|"]
    for field in fields:
        old, new = show_pair(field.old, field.new, MARKDOWN_VALUE_WIDTH)
        lines.append(f"| {_code(field.field)} | {_code(old)} | {_code(new)} | {field.why} |")
    return lines


def _markdown_fields(diff: PromotionDiff) -> list[str]:
    source, target = diff.from_environment, diff.to_environment
    configuration, expected = diff.configuration_differences, diff.expected_differences
    lines = ["### Environment file", ""]
    if configuration:
        lines += [*_markdown_field_table(configuration, source, target), ""]
    else:
        lines += ["No configuration difference.", ""]
    if expected:
        table = _markdown_field_table(expected, source, target)
        lines += _details(f"Expected per-environment values ({len(expected)})", table)
    return lines


def _markdown_stacks(diff: PromotionDiff) -> list[str]:
    lines = ["### Resources", ""]
    lines += ["| stack | added | changed | removed | unchanged |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {_stack_label(stack)} | {len(stack.added)} | {len(stack.changed)} "
        f"| {len(stack.removed)} | {stack.unchanged} |"
        for stack in diff.stacks
    ]
    lines.append("")
    for stack in diff.changed_stacks:
        body = [f"- added {_code(address)}" for address in stack.added]
        body += [f"- removed {_code(address)}" for address in stack.removed]
        for resource in stack.changed:
            body.append(f"- changed {_code(resource.address)}")
            for change in resource.changes:
                old, new = show_pair(change.old, change.new, MARKDOWN_VALUE_WIDTH)
                body.append(f"  - {_code(change.path)}: {_code(old)} → {_code(new)}")
        summary = (
            f"<code>{stack.layer}</code>: {len(stack.added)} added, "
            f"{len(stack.changed)} changed, {len(stack.removed)} removed"
        )
        lines += _details(summary, body)
    return lines


def _markdown_controls(diff: PromotionDiff) -> list[str]:
    lines = ["### Controls whose status differs", ""]
    if diff.controls is None:
        return [*lines, "Not compared (`--no-controls`).", ""]
    if not diff.controls:
        return [*lines, "None.", ""]
    source, target = diff.from_environment, diff.to_environment
    lines += [f"| control | `{source}` | `{target}` | checks and resources |", "|---|---|---|---|"]
    for control in diff.controls:
        responsible = "<br>".join(
            f"{_code(c.check_id)} {c.layer} {_code(c.resource)}: {c.from_status} → {c.to_status}"
            for c in control.checks
        )
        lines.append(
            f"| {_code(control.control)} | {control.from_status} | {control.to_status} "
            f"| {responsible} |"
        )
    return [*lines, ""]


def render_markdown(diff: PromotionDiff) -> str:
    """Headings, tables, and <details> for long lists: for a pull-request description."""
    source, target = diff.from_environment, diff.to_environment
    lines = [f"## Promotion `{source}` → `{target}`", "", summary_line(diff) + ".", ""]
    lines += [*_markdown_fields(diff), *_markdown_stacks(diff), *_markdown_controls(diff)]
    legend = [f"| placeholder | `{source}` | `{target}` |", "|---|---|---|"]
    legend += [f"| {_code(p)} | {_code(a)} | {_code(b)} |" for p, a, b in diff.placeholders]
    lines += _details("Names normalized across environments", legend)
    return "\n".join(lines).rstrip() + "\n"


# --- command line ----------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.diff",
        description="What promoting FROM to TO would change: environment file, resources per "
        "stack (names normalized), and controls whose status differs.",
    )
    parser.add_argument("from_environment", metavar="FROM")
    parser.add_argument("to_environment", metavar="TO")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="SYNTH_DIR",
        help="an existing synthesized directory holding both environments (default: "
        "synthesize them into a temporary directory)",
    )
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument(
        "--environments-dir",
        type=Path,
        default=Path(os.environ.get("PHI_ENVIRONMENTS_DIR", ENVIRONMENTS_DIR)),
        help="folder of <name>/environment.yaml (default: environments/)",
    )
    controls = parser.add_mutually_exclusive_group()
    controls.add_argument(
        "--no-controls", action="store_true", help="skip the gate's static scan (checkov)"
    )
    controls.add_argument(
        "--findings",
        type=Path,
        default=None,
        help="findings.json of a gate run over SYNTH_DIR, instead of scanning again",
    )
    return parser.parse_args(argv)


def _read_findings(path: Path) -> Findings:
    try:
        return read_findings(path)
    except (OSError, ValueError, KeyError) as error:
        raise DiffInputError(
            f"{display_path(path)}: not a readable findings file ({error})"
        ) from None


def run(arguments: argparse.Namespace) -> str:
    """The rendered comparison; raises DiffInputError / EnvironmentFileError on bad input."""
    source, target = load_pair(
        arguments.from_environment, arguments.to_environment, arguments.environments_dir
    )
    findings = _read_findings(arguments.findings) if arguments.findings else None
    with tempfile.TemporaryDirectory(prefix="phi-diff-") as scratch:
        synth_dir: Path | None = arguments.out
        if synth_dir is None:
            # Imported only now: bad input answers without starting jsii.
            import main  # noqa: PLC0415

            synth_dir = Path(scratch) / "cdktf.out"
            try:
                main.synthesize(
                    sorted({source.name, target.name}), synth_dir, arguments.environments_dir
                )
            except ValueError as error:  # e.g. an unknown PHI_TARGET, as main.py reports it
                raise DiffInputError(str(error)) from None
        if findings is None and not arguments.no_controls:
            names = {
                stack.name
                for environment in (source, target)
                for stack in environment_stacks(synth_dir, environment.name).values()
            }
            findings = scan_controls(synth_dir, sorted(names))
        diff = promotion_diff(source, target, synth_dir, findings=findings)
    return render_markdown(diff) if arguments.format == "markdown" else render_text(diff)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        output = run(arguments)
    except (EnvironmentFileError, DiffInputError) as error:
        # One line per problem (a catalog error may list several).
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except ControlScanError as error:
        print(f"error: control scan: {error} (--no-controls skips it)", file=sys.stderr)
        return 1
    sys.stdout.write(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
