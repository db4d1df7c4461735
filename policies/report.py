"""The auditor's evidence report: control by control, which checks prove it, on which resources,
with what result, and why anything is exempt.

    python -m policies.report [--out SYNTH_DIR] [--static reports/scan/findings.json]
                              [--runtime reports/e2e/findings.json] [--report-dir reports]
                              [--diagram FILE] [--text-diagram] [--catalog FILE]
                              [--exemptions FILE]

Reads the control catalog (policies/controls.yaml), the static findings of the gate (checkov over
the synthesized Terraform), the runtime findings of the emulator or account checks, the
exemptions (policies/exemptions.yaml, through policies.exemptions), the synthesized stacks (the
inventory) and the Mermaid architecture diagram (--diagram, else SYNTH_DIR/diagram.mmd, else
REPORT_DIR/architecture.mmd as tools.diagram writes it), and renders with jinja2:

- REPORT_DIR/evidence.html: one self-contained page (inline CSS; no script, font, image or
  stylesheet from anywhere), readable on screen and on paper;
- REPORT_DIR/evidence.md: GitHub-flavoured Markdown (the diagram as a ```mermaid block).

The HTML draws the diagram as inline SVG when Mermaid's browser bundle is installed
(node_modules/mermaid, or PHI_MERMAID_JS=FILE) and Chromium is there to run it, offline;
otherwise, or with --text-diagram, it shows the Mermaid source.

A findings file left at its default path that does not exist is shown as "not run"; a path given
on the command line that does not exist, or any file that cannot be read, is an error. Exit
status: 0 when the report was written, whatever the verdict (the gate decides pass or fail; the
report shows it), 2 for bad input (one message naming the file and the problem).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from html import escape as html_escape
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from policies.catalog import DEFAULT_CATALOG, Catalog, CatalogError, Control, load_catalog
from policies.deployability import DeployabilitySection, deployability_section
from policies.exemptions import ExemptionsError, load_exemptions
from policies.findings import Finding, Findings, Source, Status, read_findings
from policies.preflight.run import RULES_BY_ID
from tools.screenshot import ScreenshotError, dump_dom

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = Path(__file__).with_name("templates")
DEFAULT_SYNTH_DIR = Path("cdktf.out")
DEFAULT_STATIC_FINDINGS = Path("reports/scan/findings.json")
DEFAULT_DEPLOYABILITY_FINDINGS = Path("reports/preflight/findings.json")
DEFAULT_RUNTIME_FINDINGS = Path("reports/e2e/findings.json")
DEFAULT_REPORT_DIR = Path("reports")
DEFAULT_EXEMPTIONS = Path(__file__).with_name("exemptions.yaml")
CUSTOM_CHECKS_DIR = Path(__file__).with_name("checks")
DIAGRAM_FILE = "diagram.mmd"
ARCHITECTURE_FILE = "architecture.mmd"  # tools.diagram's default output, in REPORT_DIR
HTML_REPORT = "evidence.html"
MARKDOWN_REPORT = "evidence.md"
GIT_TIMEOUT_SECONDS = 10
# Mermaid's browser bundle (npm package `mermaid`), to draw the diagram offline.
MERMAID_VARIABLE = "PHI_MERMAID_JS"
DEFAULT_MERMAID_JS = REPO_ROOT / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
DIAGRAM_SVG_ID = "architecture-diagram"


class ReportInputError(ValueError):
    """An input of the report is missing or malformed; the message names the file and why."""


class Result(StrEnum):
    """The result of a check, or of a control on one side (static or runtime), worst first."""

    FAILED = "fail"
    ERROR = "error"  # the check could not run: as bad as a failure for an auditor
    EXEMPT = "exempt"
    UNKNOWN_CHECK = "unknown check"  # the catalog names a check the tool does not have
    NOT_EMULATED = "not emulated"
    # Every check passed, but what the control claims the ML loop does was not shown: the
    # control's demonstrating checks (catalog `demonstrated_by`) did not pass. Never a pass.
    NOT_DEMONSTRATED = "configured, not demonstrated"
    PASSED = "pass"
    NO_RESOURCES = "no resources"  # the check ran, but nothing it applies to exists
    NOT_RUN = "not run"  # no findings of this side were given to the report
    NO_CHECK = "no check"  # the control has no check on this side


_SEVERITY = {result: rank for rank, result in enumerate(Result)}
_FROM_STATUS = {
    Status.FAILED: Result.FAILED,
    Status.ERROR: Result.ERROR,
    Status.EXEMPT: Result.EXEMPT,
    Status.NOT_EMULATED: Result.NOT_EMULATED,
    Status.NOT_DEMONSTRATED: Result.NOT_DEMONSTRATED,
    Status.PASSED: Result.PASSED,
}
FAILING = frozenset({Result.FAILED, Result.ERROR})


def worst(results: Iterable[Result], empty: Result) -> Result:
    return min(results, key=_SEVERITY.__getitem__, default=empty)


class Coverage(StrEnum):
    """How a control is evidenced (the catalog's classification, Control.evidence)."""

    AUTOMATED = "automated"  # a static check, a runtime check or an AWS Config rule
    MANUAL = "manual only"  # only process records an auditor asks for
    INHERITED = "inherited from AWS"  # AWS operates it; its attestations are the evidence
    UNMAPPED = "unmapped"  # nothing evidences it yet, and the catalog says why


_CATALOG_EVIDENCE = {
    "automated": Coverage.AUTOMATED,
    "manual-only": Coverage.MANUAL,
    "inherited": Coverage.INHERITED,
    "unmapped": Coverage.UNMAPPED,
}


@dataclass(frozen=True)
class ExemptionRecord:
    """One accepted failure: a check on a stack and Terraform address (fnmatch globs allowed,
    as in policies/exemptions.yaml), with reason, owner and expiry."""

    check_id: str
    stack: str
    resource: str
    reason: str
    owner: str
    expires: str  # ISO date as written
    why_several: str = ""  # why one decision fits every resource a glob matches
    covers: int = 0  # failed or exempt findings it matches; 0 means it matches nothing
    usage_known: bool = True  # False when there were no static findings to match against

    @property
    def expiry_date(self) -> date | None:
        try:
            return date.fromisoformat(self.expires)
        except ValueError:
            return None

    def expired(self, today: date) -> bool:
        """Holds through its expiry date, as the gate applies it."""
        expiry = self.expiry_date
        return expiry is not None and expiry < today

    def matches(self, finding: Finding) -> bool:
        return (
            finding.check_id == self.check_id
            and fnmatchcase(finding.stack, self.stack or "*")
            and fnmatchcase(finding.resource, self.resource)
        )

    def flags(self, today: date) -> tuple[str, ...]:
        found = []
        if self.expiry_date is None:
            found.append("no valid expiry date")
        elif self.expired(today):
            found.append("expired")
        if self.usage_known and self.covers == 0:
            found.append("unused")
        return tuple(found)


@dataclass(frozen=True)
class CheckResult:
    """One check as evidence for one control: its findings on every resource it judged."""

    check_id: str
    name: str
    source: Source
    findings: tuple[Finding, ...]
    ran: bool  # findings of this side were given to the report
    known: bool = True  # False: no finding, and the tool's list of checks lacks this id

    @property
    def result(self) -> Result:
        if not self.ran:
            return Result.NOT_RUN
        if not self.known:
            return Result.UNKNOWN_CHECK
        return worst((_FROM_STATUS[f.status] for f in self.findings), Result.NO_RESOURCES)

    def count(self, result: Result) -> int:
        return sum(1 for f in self.findings if _FROM_STATUS[f.status] is result)

    @property
    def counts(self) -> dict[str, int]:
        """Results with at least one finding, worst first: {'fail': 1, 'pass': 12}."""
        tally = Counter(_FROM_STATUS[f.status] for f in self.findings)
        return {result.value: tally[result] for result in Result if tally[result]}

    @property
    def attention(self) -> tuple[Finding, ...]:
        """What an auditor reads first: failures, errors and exemptions, worst first."""
        return tuple(
            sorted(
                (f for f in self.findings if _FROM_STATUS[f.status] in FAILING | {Result.EXEMPT}),
                key=lambda f: (_SEVERITY[_FROM_STATUS[f.status]], f.stack, f.resource),
            )
        )

    @property
    def passed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status is Status.PASSED)

    @property
    def not_emulated(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status is Status.NOT_EMULATED)


@dataclass(frozen=True)
class ControlReport:
    id: str
    anchor: str
    framework: str
    title: str
    citation: str
    responsibility: str
    applies_to: str  # "US environments (dev, prod, staging)"
    coverage: Coverage
    inherited_from_aws: str  # what AWS operates and the attestation that proves it
    unmapped: str  # why nothing evidences the control yet
    static_checks: tuple[CheckResult, ...]
    runtime_checks: tuple[CheckResult, ...]
    config_rules: tuple[str, ...]
    manual: tuple[str, ...]
    static_ran: bool
    runtime_ran: bool
    # Runtime checks that show the loop did what the control claims (catalog demonstrated_by).
    demonstrated_by: tuple[str, ...] = ()

    @property
    def static_result(self) -> Result:
        if not self.static_checks:
            return Result.NO_CHECK
        return worst((c.result for c in self.static_checks), Result.NO_CHECK)

    @property
    def runtime_result(self) -> Result:
        if not self.runtime_checks:
            return Result.NO_CHECK
        return worst((c.result for c in self.runtime_checks), Result.NO_CHECK)

    @property
    def demonstrated(self) -> bool:
        """Every demonstrating check ran here and passed (vacuously true without any)."""
        results = {c.check_id: c.result for c in self.runtime_checks}
        return all(results.get(check) is Result.PASSED for check in self.demonstrated_by)

    @property
    def result(self) -> Result:
        """The control's badge: the worse of its static and runtime results, and never better
        than "configured, not demonstrated" while a demonstrating check has not passed."""
        measured = worst((self.static_result, self.runtime_result), Result.NO_CHECK)
        if self.demonstrated:
            return measured
        return worst((measured, Result.NOT_DEMONSTRATED), Result.NOT_DEMONSTRATED)

    @property
    def failing(self) -> bool:
        return self.result in FAILING

    @property
    def headline(self) -> str:
        """The control's badge: its result when checks here evidence it, otherwise how it is
        evidenced (manual only, inherited from AWS, unmapped, AWS Config only)."""
        if self.coverage is not Coverage.AUTOMATED:
            return self.coverage.value
        if not self.checks:
            return "AWS Config only"
        return self.result.value

    @property
    def sides(self) -> str:
        """'static: pass, runtime: pass', naming only the sides the control has checks on."""
        parts = []
        if self.static_checks:
            parts.append(f"static: {self.static_result.value}")
        if self.runtime_checks:
            parts.append(f"runtime: {self.runtime_result.value}")
        return ", ".join(parts)

    @property
    def checks(self) -> tuple[CheckResult, ...]:
        return self.static_checks + self.runtime_checks


@dataclass(frozen=True)
class CoverageRow:
    """Controls per evidence class (automated, manual, inherited, unmapped partition them) and,
    overlapping, which tools the automated ones rely on."""

    framework: str
    anchor: str
    controls: int
    automated: int
    static: int  # automated controls with static (checkov) checks
    runtime: int  # ... with runtime (boto3) checks
    config: int  # ... with AWS Config rules
    manual: int
    inherited: int
    unmapped: int
    failing: int


@dataclass(frozen=True)
class FrameworkReport:
    name: str
    title: str  # "HIPAA Security Rule (45 CFR Part 164, Subpart C)"
    anchor: str
    controls: tuple[ControlReport, ...]
    coverage: CoverageRow


@dataclass(frozen=True)
class StackInventory:
    name: str
    anchor: str
    resource_types: tuple[tuple[str, int], ...]  # (type, count), most numerous first
    data_sources: int

    @property
    def resources(self) -> int:
        return sum(count for _, count in self.resource_types)


@dataclass(frozen=True)
class FindingsSummary:
    """Where one side's findings came from and how many of each status."""

    source: Source
    path: str
    target: str
    counts: dict[str, int]
    total: int


@dataclass(frozen=True)
class FailureGroup:
    """The unexempted failures of one check."""

    source: Source
    check_id: str
    check_name: str
    controls: tuple[str, ...]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Evidence:
    """Everything the templates render, already joined and sorted."""

    generated_at: str
    synth_dir: str
    stacks: tuple[StackInventory, ...]
    git_commit: str
    checkov_version: str
    catalog_version: str
    static: FindingsSummary | None
    runtime: FindingsSummary | None
    frameworks: tuple[FrameworkReport, ...]
    failures: tuple[Finding, ...]
    exemptions: tuple[ExemptionRecord, ...]
    exemptions_note: str
    never_exemptable: tuple[tuple[str, str], ...]  # (check id, why), sorted
    not_emulated: tuple[str, ...]
    diagram: str  # Mermaid source
    diagram_svg: str  # the same, rendered offline (validated: no script, handler or link)
    diagram_note: str  # why it was not rendered, when it was not
    notes: tuple[str, ...]
    today: date
    control_anchors: dict[str, str] = field(default_factory=dict)
    # make preflight's findings, rule by rule (None: not run)
    deployability: DeployabilitySection | None = None

    @property
    def deployability_verdict(self) -> Result:
        if self.deployability is None:
            return Result.NOT_RUN
        return Result.FAILED if self.deployability.failed else Result.PASSED

    @property
    def gate(self) -> Result:
        """The gate's verdict on the static findings: fail on any unexempted failure."""
        if self.static is None:
            return Result.NOT_RUN
        failing = (Status.FAILED, Status.ERROR)
        any_failed = any(self.static.counts.get(status.value, 0) for status in failing)
        return Result.FAILED if any_failed else Result.PASSED

    @property
    def runtime_verdict(self) -> Result:
        if self.runtime is None:
            return Result.NOT_RUN
        failing = (Status.FAILED, Status.ERROR)
        any_failed = any(self.runtime.counts.get(status.value, 0) for status in failing)
        return Result.FAILED if any_failed else Result.PASSED

    @property
    def controls(self) -> tuple[ControlReport, ...]:
        return tuple(c for framework in self.frameworks for c in framework.controls)

    @property
    def failure_groups(self) -> tuple[FailureGroup, ...]:
        """The failures by check, in the order of `failures` (source, check id)."""
        grouped: dict[tuple[Source, str], list[Finding]] = {}
        for finding in self.failures:
            grouped.setdefault((finding.source, finding.check_id), []).append(finding)
        return tuple(
            FailureGroup(
                source=source,
                check_id=check_id,
                check_name=next((f.check_name for f in findings if f.check_name), ""),
                controls=tuple(dict.fromkeys(c for f in findings for c in f.controls)),
                findings=tuple(findings),
            )
            for (source, check_id), findings in grouped.items()
        )

    @property
    def coverage_total(self) -> CoverageRow:
        rows = [framework.coverage for framework in self.frameworks]
        return CoverageRow(
            framework="All frameworks",
            anchor="frameworks",
            controls=sum(r.controls for r in rows),
            automated=sum(r.automated for r in rows),
            static=sum(r.static for r in rows),
            runtime=sum(r.runtime for r in rows),
            config=sum(r.config for r in rows),
            manual=sum(r.manual for r in rows),
            inherited=sum(r.inherited for r in rows),
            unmapped=sum(r.unmapped for r in rows),
            failing=sum(r.failing for r in rows),
        )

    @property
    def expired_exemptions(self) -> tuple[ExemptionRecord, ...]:
        return tuple(e for e in self.exemptions if e.expired(self.today))

    @property
    def unused_exemptions(self) -> tuple[ExemptionRecord, ...]:
        return tuple(e for e in self.exemptions if "unused" in e.flags(self.today))

    @property
    def resource_total(self) -> int:
        return sum(stack.resources for stack in self.stacks)

    @property
    def resource_type_totals(self) -> tuple[tuple[str, int, int], ...]:
        """(type, resources, stacks holding it), most numerous first."""
        resources: Counter[str] = Counter()
        stacks: Counter[str] = Counter()
        for stack in self.stacks:
            for resource_type, count in stack.resource_types:
                resources[resource_type] += count
                stacks[resource_type] += 1
        return tuple(
            (resource_type, resources[resource_type], stacks[resource_type])
            for resource_type in sorted(resources, key=lambda t: (-resources[t], t))
        )


# --- joining findings to the catalog -------------------------------------------------------------


def anchor_for(prefix: str, text: str) -> str:
    """A stable, URL-safe anchor: ('control', 'HIPAA-164.312(a)(2)(iv)') ->
    'control-hipaa-164-312-a-2-iv'."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return f"{prefix}-{slug}" if slug else prefix


def _unique_anchors(prefix: str, texts: Sequence[str]) -> dict[str, str]:
    anchors: dict[str, str] = {}
    used: set[str] = set()
    for text in texts:
        candidate = base = anchor_for(prefix, text)
        suffix = 2
        while candidate in used:
            candidate = f"{base}-{suffix}"
            suffix += 1
        used.add(candidate)
        anchors[text] = candidate
    return anchors


def _strings(value: object) -> tuple[str, ...]:
    """A catalog field that may be absent, a string, or a sequence, as strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(str(getattr(item, "value", item)) for item in value)
    return (str(value),)


def catalog_runtime_checks(control: Control) -> tuple[str, ...]:
    """The runtime (boto3) check ids the catalog names for a control. The field is being added
    to the catalog; until it exists, the runtime findings alone say which checks evidence it."""
    for holder in (control, control.runtime_evidence):
        for name in ("runtime_checks", "checks"):
            value = getattr(holder, name, None)
            if value is not None:
                return _strings(value)
    return ()


def catalog_applies_to(
    control: Control, environments: Mapping[str, Sequence[str]] | None = None
) -> str:
    """Where the control applies, with the environments of that jurisdiction when known:
    'US environments (dev, prod, staging)', 'all environments'."""
    scope = _strings(getattr(control, "applies_to", None))
    if not scope:
        return "all environments (the catalog names no narrower scope)"
    described = []
    for jurisdiction in scope:
        if jurisdiction.lower() == "all":
            described.append("all environments")
            continue
        names = sorted((environments or {}).get(jurisdiction, ()))
        suffix = f" ({', '.join(names)})" if names else ""
        described.append(f"{jurisdiction} environments{suffix}")
    return "; ".join(described)


def _coverage(control: Control) -> Coverage:
    """The catalog's own classification when it has one (Control.evidence); the same rule
    otherwise, so the report and the catalog's coverage never disagree."""
    evidence = getattr(control, "evidence", None)
    if evidence is not None:
        return _CATALOG_EVIDENCE[str(getattr(evidence, "value", evidence))]
    if control.responsibility.value == "aws":
        return Coverage.INHERITED
    if (
        control.static_checks
        or control.runtime_evidence.config_rules
        or catalog_runtime_checks(control)
    ):
        return Coverage.AUTOMATED
    return Coverage.MANUAL if control.runtime_evidence.manual else Coverage.UNMAPPED


def _sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (f.stack, f.resource, f.construct_path)))


def _check_results(
    source: Source,
    catalog_ids: Sequence[str],
    findings_by_check: Mapping[str, list[Finding]],
    ran: bool,
    names: Mapping[str, str],
) -> tuple[CheckResult, ...]:
    """The catalog's checks in catalog order, then checks that only the findings tie to the
    control (the gate may map more than the catalog lists)."""
    ids = list(dict.fromkeys([*catalog_ids, *sorted(findings_by_check)]))
    results = []
    for check_id in ids:
        findings = findings_by_check.get(check_id, [])
        name = next((f.check_name for f in findings if f.check_name), names.get(check_id, ""))
        results.append(
            CheckResult(
                check_id=check_id,
                name=name,
                source=source,
                findings=_sort_findings(findings),
                ran=ran,
                # Only a list of the tool's checks can tell "judged nothing" from "does not
                # exist"; without one (names empty) every silent check counts as judged nothing.
                known=bool(findings) or not names or check_id in names,
            )
        )
    return tuple(results)


def _findings_for(
    control: Control, catalog_ids: Sequence[str], findings: Findings | None
) -> dict[str, list[Finding]]:
    """Findings evidencing a control: those naming it, and those of a check the catalog lists
    for it (a finding of a listed check is evidence even if the producer left `controls` out)."""
    grouped: dict[str, list[Finding]] = {}
    if findings is None:
        return grouped
    listed = set(catalog_ids)
    for finding in findings.findings:
        if control.id in finding.controls or finding.check_id in listed:
            grouped.setdefault(finding.check_id, []).append(finding)
    return grouped


def _control_report(
    control: Control,
    *,
    anchor: str,
    static: Findings | None,
    runtime: Findings | None,
    static_names: Mapping[str, str],
    runtime_names: Mapping[str, str],
    environments: Mapping[str, Sequence[str]],
) -> ControlReport:
    runtime_ids = catalog_runtime_checks(control)
    static_checks = _check_results(
        Source.STATIC,
        control.static_checks,
        _findings_for(control, control.static_checks, static),
        static is not None,
        static_names,
    )
    runtime_checks = _check_results(
        Source.RUNTIME,
        runtime_ids,
        _findings_for(control, runtime_ids, runtime),
        runtime is not None,
        runtime_names,
    )
    return ControlReport(
        id=control.id,
        anchor=anchor,
        framework=control.framework.value,
        title=control.title,
        citation=control.citation,
        responsibility=control.responsibility.value,
        applies_to=catalog_applies_to(control, environments),
        inherited_from_aws=str(getattr(control, "inherited_from_aws", None) or ""),
        unmapped=str(getattr(control, "unmapped", None) or ""),
        coverage=_coverage(control),
        static_checks=static_checks,
        runtime_checks=runtime_checks,
        config_rules=tuple(control.runtime_evidence.config_rules),
        manual=tuple(control.runtime_evidence.manual),
        static_ran=static is not None,
        runtime_ran=runtime is not None,
        demonstrated_by=tuple(getattr(control.runtime_evidence, "demonstrated_by", ())),
    )


def _coverage_row(name: str, anchor: str, controls: Sequence[ControlReport]) -> CoverageRow:
    automated = [c for c in controls if c.coverage is Coverage.AUTOMATED]
    return CoverageRow(
        framework=name,
        anchor=anchor,
        controls=len(controls),
        automated=len(automated),
        static=sum(1 for c in automated if c.static_checks),
        runtime=sum(1 for c in automated if c.runtime_checks),
        config=sum(1 for c in automated if c.config_rules),
        manual=sum(1 for c in controls if c.coverage is Coverage.MANUAL),
        inherited=sum(1 for c in controls if c.coverage is Coverage.INHERITED),
        unmapped=sum(1 for c in controls if c.coverage is Coverage.UNMAPPED),
        failing=sum(1 for c in controls if c.failing),
    )


def _summary(findings: Findings | None, path: Path | None) -> FindingsSummary | None:
    if findings is None:
        return None
    counts = Counter(f.status.value for f in findings.findings)
    return FindingsSummary(
        source=findings.source,
        path=str(path) if path else "",
        target=findings.target,
        counts={status.value: counts[status.value] for status in Status},
        total=len(findings.findings),
    )


def _exemption_usage(
    declared: Sequence[ExemptionRecord], static: Findings | None, runtime: Findings | None
) -> tuple[ExemptionRecord, ...]:
    """Declared exemptions with how many failing or exempt findings each matches (an expired
    one still matches the failure it used to excuse); exemptions the findings carry that no
    declared entry matches (no exemptions file read) are listed from the findings."""
    candidates = [
        f
        for findings in (static, runtime)
        if findings is not None
        for f in findings.findings
        if f.status in {Status.EXEMPT, Status.FAILED}
    ]
    records = [
        _replace(
            record,
            covers=sum(1 for f in candidates if record.matches(f)),
            usage_known=static is not None,
        )
        for record in declared
    ]
    carried: Counter[tuple[str, str, str, str, str, str]] = Counter()
    for finding in candidates:
        if finding.status is not Status.EXEMPT or any(r.matches(finding) for r in declared):
            continue
        exemption = finding.exemption
        carried[
            (
                finding.check_id,
                finding.stack,
                finding.resource,
                exemption.reason if exemption else "(no reason recorded in the findings)",
                exemption.owner if exemption else "",
                exemption.expires if exemption else "",
            )
        ] += 1
    for (check_id, stack, resource, reason, owner, expires), covers in carried.items():
        records.append(
            ExemptionRecord(
                check_id=check_id,
                stack=stack,
                resource=resource,
                reason=reason,
                owner=owner,
                expires=expires,
                covers=covers,
            )
        )
    return tuple(sorted(records, key=lambda r: (r.expires, r.check_id, r.stack, r.resource)))


def _replace(record: ExemptionRecord, **changes: Any) -> ExemptionRecord:
    values = {name: getattr(record, name) for name in record.__dataclass_fields__}
    values.update(changes)
    return ExemptionRecord(**values)


def _not_emulated(runtime: Findings | None) -> tuple[str, ...]:
    if runtime is None:
        return ()
    entries = list(runtime.not_emulated)
    for finding in runtime.findings:
        if finding.status is Status.NOT_EMULATED:
            where = finding.construct_path or finding.resource
            entry = f"{finding.stack}: {finding.resource} ({finding.check_id}, {where})"
            entries.append(entry + (f": {finding.detail}" if finding.detail else ""))
    return tuple(dict.fromkeys(entries))


def build_evidence(
    catalog: Catalog,
    *,
    static: Findings | None,
    runtime: Findings | None,
    static_path: Path | None = None,
    runtime_path: Path | None = None,
    synth_dir: Path | None = None,
    stacks: Sequence[StackInventory] = (),
    exemptions: Sequence[ExemptionRecord] = (),
    exemptions_note: str = "",
    never_exemptable: Mapping[str, str] | None = None,
    static_check_names: Mapping[str, str] | None = None,
    runtime_check_names: Mapping[str, str] | None = None,
    environments: Mapping[str, Sequence[str]] | None = None,
    diagram: str = "",
    diagram_svg: str = "",
    diagram_note: str = "",
    git_commit: str = "",
    checkov_version: str = "",
    generated_at: datetime | None = None,
    notes: Sequence[str] = (),
    deployability: DeployabilitySection | None = None,
) -> Evidence:
    """Join the catalog, the findings and the exemptions into what the report shows.

    static_check_names / runtime_check_names map every check the tools have (checkov's and
    ours; policies/runtime) to its name: a catalog check with no finding is then shown as
    judging nothing when the map has it, and as an unknown check when it does not. Empty maps
    (the tool's list unavailable) make every silent check "no resources".
    """
    moment = (generated_at or datetime.now(UTC)).astimezone(UTC)
    jurisdictions = {key: tuple(value) for key, value in (environments or {}).items()}
    control_anchors = _unique_anchors("control", [c.id for c in catalog.controls])
    framework_order = list(dict.fromkeys(c.framework for c in catalog.controls))
    framework_anchors = _unique_anchors("framework", [f.value for f in framework_order])
    frameworks = []
    for framework in framework_order:
        controls = tuple(
            _control_report(
                control,
                anchor=control_anchors[control.id],
                static=static,
                runtime=runtime,
                static_names=static_check_names or {},
                runtime_names=runtime_check_names or {},
                environments=jurisdictions,
            )
            for control in catalog.controls
            if control.framework is framework
        )
        anchor = framework_anchors[framework.value]
        frameworks.append(
            FrameworkReport(
                name=framework.value,
                title=str(getattr(framework, "title", "") or framework.value),
                anchor=anchor,
                controls=controls,
                coverage=_coverage_row(framework.value, anchor, controls),
            )
        )
    failures = [
        f
        for findings in (static, runtime)
        if findings is not None
        for f in findings.findings
        if f.status in {Status.FAILED, Status.ERROR}
    ]
    all_notes = list(notes)
    if static is None:
        all_notes.append(
            "No static findings were given: checkov results are shown as 'not run'. "
            "Run 'make scan' (the gate) first to include them."
        )
    if deployability is None:
        all_notes.append(
            "No preflight findings were given: deployability is shown as 'not run'. "
            "Run 'make preflight' first to include it."
        )
    if runtime is None:
        all_notes.append(
            "No runtime findings were given: runtime checks are shown as 'not run'. "
            "Run 'make e2e' (emulator) or 'make verify' (real account) to include them."
        )
    return Evidence(
        generated_at=moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
        synth_dir=str(synth_dir) if synth_dir else "",
        stacks=tuple(stacks),
        git_commit=git_commit,
        checkov_version=checkov_version,
        catalog_version=str(catalog.catalog_version),
        static=_summary(static, static_path),
        runtime=_summary(runtime, runtime_path),
        frameworks=tuple(frameworks),
        failures=tuple(
            sorted(
                failures,
                key=lambda f: (f.source.value, f.check_id, f.stack, f.resource),
            )
        ),
        exemptions=_exemption_usage(exemptions, static, runtime),
        exemptions_note=exemptions_note,
        never_exemptable=tuple(sorted((never_exemptable or {}).items())),
        not_emulated=_not_emulated(runtime),
        diagram=diagram,
        diagram_svg=diagram_svg,
        diagram_note=diagram_note,
        notes=tuple(all_notes),
        today=moment.date(),
        control_anchors=control_anchors,
        deployability=deployability,
    )


# --- reading inputs ------------------------------------------------------------------------------


def read_inventory(synth_dir: Path) -> tuple[StackInventory, ...]:
    """Each synthesized stack with its resource counts by type (SYNTH_DIR/stacks/*/cdk.tf.json)."""
    stack_files = sorted((synth_dir / "stacks").glob("*/cdk.tf.json"))
    names = [path.parent.name for path in stack_files]
    anchors = _unique_anchors("stack", names)
    stacks = []
    for path in stack_files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ReportInputError(f"{path}: not readable Terraform JSON ({error})") from None
        resources = document.get("resource", {}) if isinstance(document, dict) else {}
        data = document.get("data", {}) if isinstance(document, dict) else {}
        if not isinstance(resources, dict) or not isinstance(data, dict):
            raise ReportInputError(f"{path}: 'resource' and 'data' must be objects")
        counts = {
            resource_type: len(blocks)
            for resource_type, blocks in resources.items()
            if isinstance(blocks, dict)
        }
        stacks.append(
            StackInventory(
                name=path.parent.name,
                anchor=anchors[path.parent.name],
                resource_types=tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
                data_sources=sum(len(b) for b in data.values() if isinstance(b, dict)),
            )
        )
    return tuple(stacks)


def read_findings_file(path: Path, expected: Source) -> Findings:
    try:
        findings = read_findings(path)
    except FileNotFoundError:
        raise ReportInputError(f"{path}: no such findings file") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReportInputError(
            f"{path}: not a findings file ({type(error).__name__}: {error})"
        ) from None
    if findings.source is not expected:
        raise ReportInputError(
            f"{path}: source is {findings.source.value!r}, expected {expected.value!r}"
        )
    return findings


def read_exemptions(
    path: Path, today: date | None = None
) -> tuple[tuple[ExemptionRecord, ...], dict[str, str], str]:
    """The declared exemptions and never-exemptable checks (validated by policies.exemptions,
    which owns the format), and a note for the report when there is no file."""
    if not path.exists():
        return (
            (),
            {},
            f"No exemptions file at {path}: only exemptions the findings carry are listed.",
        )
    try:
        loaded = load_exemptions(path, today=today)
    except ExemptionsError as error:
        raise ReportInputError(str(error)) from None
    records = tuple(
        ExemptionRecord(
            check_id=entry.check,
            stack=entry.stack,
            resource=entry.resource,
            reason=entry.reason,
            owner=entry.owner,
            expires=entry.expires.isoformat(),
            why_several=entry.why_several or "",
        )
        for entry in loaded.entries
    )
    return records, dict(loaded.never_exemptable), ""


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD's commit, marked when the working tree differs from it; '' outside a git tree."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head} (with uncommitted changes)" if status else head


def environments_by_jurisdiction() -> dict[str, tuple[str, ...]]:
    """{'US': ('dev', 'prod', 'staging'), 'EU': ('eu-research',)} from the environment files, to
    name where a control applies; empty when they cannot be read (the report names only the
    jurisdiction then; synthesis is where a bad environment file is reported)."""
    try:
        from environments.loader import load_environments  # noqa: PLC0415

        loaded = load_environments(None)
    except Exception:
        return {}
    grouped: dict[str, list[str]] = {}
    for environment in loaded:
        jurisdiction = getattr(environment, "jurisdiction", None)
        if jurisdiction is not None:
            grouped.setdefault(str(getattr(jurisdiction, "value", jurisdiction)), []).append(
                environment.name
            )
    return {key: tuple(sorted(names)) for key, names in grouped.items()}


def checkov_version() -> str:
    try:
        return importlib.metadata.version("checkov")
    except importlib.metadata.PackageNotFoundError:
        return ""


def checkov_check_names(custom_checks: Path = CUSTOM_CHECKS_DIR) -> dict[str, str]:
    """Names of checkov's Terraform checks and ours, for catalog checks no finding names (a
    check that judged no resource). Best effort: without checkov, ids are shown alone."""
    names: dict[str, str] = {}
    try:
        from checkov.common.checks_infra.registry import (  # noqa: PLC0415 (slow import)
            get_graph_checks_registry,
        )
        from checkov.terraform.checks.data.registry import data_registry  # noqa: PLC0415
        from checkov.terraform.checks.module.registry import module_registry  # noqa: PLC0415
        from checkov.terraform.checks.provider.registry import provider_registry  # noqa: PLC0415
        from checkov.terraform.checks.resource.registry import resource_registry  # noqa: PLC0415
    except ImportError:
        return names
    registries = (resource_registry, data_registry, provider_registry, module_registry)
    if custom_checks.is_dir():
        # Loading registers each custom check in the registry of its kind (resource, provider).
        resource_registry.load_external_checks(str(custom_checks))
    for registry in registries:
        for checks in registry.checks.values():
            for check in checks:
                names.setdefault(check.id, check.name)
    graph = get_graph_checks_registry("terraform")
    graph.load_checks()
    for graph_check in graph.checks:
        names.setdefault(graph_check.id, graph_check.name)
    return names


def runtime_check_names() -> dict[str, str]:
    """Names of the runtime checks (each policies/runtime module's CHECKS), for catalog runtime
    checks no finding names (the runtime checks did not run)."""
    names: dict[str, str] = {}
    try:
        package = importlib.import_module("policies.runtime")
    except ImportError:
        return names
    for module_info in pkgutil.iter_modules(package.__path__, "policies.runtime."):
        try:
            module = importlib.import_module(module_info.name)
        except ImportError:
            continue
        for check in getattr(module, "CHECKS", ()):
            check_id, name = getattr(check, "id", None), getattr(check, "name", None)
            if isinstance(check_id, str) and isinstance(name, str):
                names.setdefault(check_id, name)
    return names


def mermaid_bundle() -> Path | None:
    """PHI_MERMAID_JS if set, else node_modules/mermaid/dist/mermaid.min.js if installed."""
    configured = os.environ.get(MERMAID_VARIABLE)
    if configured:
        return Path(configured)
    return DEFAULT_MERMAID_JS if DEFAULT_MERMAID_JS.is_file() else None


_UNSAFE_SVG = re.compile(
    r"<script|<foreignObject|<iframe|<object|<embed|\son[a-z]+\s*=|(?:href|src)\s*=\s*[\"']?"
    r"(?!#)[a-z][a-z0-9+.-]*:|url\(\s*[\"']?(?!#)[a-z][a-z0-9+.-]*:|@import",
    re.IGNORECASE,
)


def render_mermaid(source: str, bundle: Path, chromium: Path | None = None) -> str:
    """The diagram as inline SVG, drawn by Mermaid's own bundle in headless Chromium from a local
    file (no CDN, no network). Text labels only (no HTML inside the SVG), Mermaid's strict
    security level, and the result refused if it holds a script, an event handler or a link
    to anything outside the page. Raises ReportInputError saying why it could not."""
    if not bundle.is_file():
        raise ReportInputError(f"{bundle}: no Mermaid bundle")
    configuration = {
        "startOnLoad": False,
        "securityLevel": "strict",
        "theme": "neutral",
        "maxTextSize": 1_000_000,
        "maxEdges": 10_000,
        "htmlLabels": False,
        "flowchart": {"htmlLabels": False, "useMaxWidth": True},
    }
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="{bundle.resolve().as_uri()}"></script></head><body>
<pre id="source">{html_escape(source)}</pre><div id="output"></div><div id="failure"></div>
<script>
mermaid.initialize({json.dumps(configuration)});
mermaid.render("{DIAGRAM_SVG_ID}", document.getElementById("source").textContent)
  .then((result) => {{ document.getElementById("output").innerHTML = result.svg; }})
  .catch((error) => {{ document.getElementById("failure").textContent = String(error); }});
</script></body></html>"""
    with tempfile.TemporaryDirectory(prefix="phi-mermaid-") as scratch:
        page_path = Path(scratch) / "diagram.html"
        page_path.write_text(page, encoding="utf-8")
        try:
            dom = dump_dom(page_path, chromium=chromium)
        except (FileNotFoundError, ScreenshotError) as error:
            raise ReportInputError(str(error)) from None
    failure = re.search(r'<div id="failure">(.*?)</div>', dom, re.DOTALL)
    if failure and failure.group(1).strip():
        raise ReportInputError(f"Mermaid could not draw the diagram: {failure.group(1)[:500]}")
    output = re.search(r'<div id="output">(<svg\b.*</svg>)</div>', dom, re.DOTALL)
    if output is None:
        raise ReportInputError("Mermaid produced no SVG (is the bundle a Mermaid browser build?)")
    return inline_svg(output.group(1))


def inline_svg(svg: str) -> str:
    """An SVG fit to inline in the report: refused (ReportInputError) if it holds a script, an
    event handler, embedded HTML or a reference to anything outside the page."""
    unsafe = _UNSAFE_SVG.search(svg)
    if unsafe:
        raise ReportInputError(f"the rendered diagram holds {unsafe.group(0)!r}: not inlined")
    # Mermaid scales the drawing to the page and caps it at its natural width; the report's
    # "full size" switch (CSS only) needs that width, so it is kept as a custom property.
    return re.sub(
        r'(<svg\b[^>]*?style="max-width:\s*)([0-9.]+)px;',
        r"\g<1>\g<2>px; --natural-width: \g<2>px;",
        svg,
        count=1,
    )


# --- rendering -----------------------------------------------------------------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


class MarkdownText(str):
    """Text already made safe for Markdown; the Markdown template does not escape it again."""

    __slots__ = ()


def markdown_escape(value: object) -> MarkdownText:
    """Plain text for a Markdown paragraph or table cell: Markdown and HTML characters escaped,
    line breaks folded (a table row is one line)."""
    if isinstance(value, MarkdownText):
        return value
    text = _LINE_BREAKS.sub(" ", str(value))
    return MarkdownText(_MARKDOWN_SPECIAL.sub(r"\\\1", text))


def markdown_code(value: object) -> MarkdownText:
    """An inline code span that survives backticks and pipes (GFM tables split on '|' even in
    code spans unless it is escaped)."""
    text = " ".join(str(value).split())
    if not text:
        return MarkdownText("")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return MarkdownText(f"{fence}{padding}{text.replace('|', chr(92) + '|')}{padding}{fence}")


def markdown_anchor(value: object) -> MarkdownText:
    return MarkdownText(re.sub(r"[^a-z0-9-]", "", str(value)))


_STATUS_MARKS = {
    "pass": "✅ ",
    "fail": "❌ ",
    "error": "❌ ",
    "expired": "❌ ",
    "exempt": "⚠️ ",
    Result.NOT_DEMONSTRATED.value: "⚠️ ",
}


def markdown_status(value: object) -> MarkdownText:
    """A result as Markdown: '✅ **PASS**'; a mark for the results an eye should catch."""
    text = str(getattr(value, "value", value))
    mark = _STATUS_MARKS.get(text, "⚠️ " if text == "unused" else "")
    return MarkdownText(f"{mark}**{markdown_escape(text.upper())}**")


def markdown_fenced(value: object, language: str = "") -> MarkdownText:
    """A fenced code block whose fence is longer than any backtick run inside it, so the text
    cannot close it early."""
    text = str(value).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return MarkdownText(f"{fence}{language}\n{text}\n{fence}")


@jinja2.pass_context
def markdown_control_link(context: jinja2.runtime.Context, control_id: object) -> MarkdownText:
    anchors: Mapping[str, str] = context["e"].control_anchors
    text = markdown_escape(control_id)
    anchor = anchors.get(str(control_id))
    return MarkdownText(f"[{text}](#{anchor})") if anchor else text


def _markdown_finalize(value: object) -> object:
    # Escape by default, like autoescape in HTML: only values that a filter already made safe
    # (MarkdownText) and numbers pass through as they are.
    if value is None:
        return ""
    if isinstance(value, MarkdownText | int | float):
        return value
    return markdown_escape(value)


def _status_class(value: object) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(getattr(value, "value", value)).lower()).strip("-")


def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    loader = jinja2.FileSystemLoader(TEMPLATES_DIR)
    common: dict[str, Any] = {
        "loader": loader,
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
    }
    html = jinja2.Environment(autoescape=True, **common)
    html.filters["status_class"] = _status_class
    # HTML escaping would be wrong for Markdown (it leaves |, * and ` live); _markdown_finalize
    # escapes every value for Markdown instead.
    markdown = jinja2.Environment(autoescape=False, finalize=_markdown_finalize, **common)  # noqa: S701
    markdown.filters.update(
        md=markdown_escape,
        code=markdown_code,
        anchor=markdown_anchor,
        status=markdown_status,
        fenced=markdown_fenced,
        control_link=markdown_control_link,
    )
    return html, markdown


def _css() -> Markup:
    # The stylesheet is ours and static; it is inlined so the report is one file.
    return Markup((TEMPLATES_DIR / "evidence.css").read_text(encoding="utf-8"))  # noqa: S704


def _context(evidence: Evidence) -> dict[str, Any]:
    return {
        "e": evidence,
        "Result": Result,
        "Coverage": Coverage,
        "Source": Source,
        "Status": Status,
        "FAILING": FAILING,
    }


def render_html(evidence: Evidence) -> str:
    html, _ = _environments()
    return html.get_template("evidence.html.j2").render(css=_css(), **_context(evidence))


def render_markdown(evidence: Evidence) -> str:
    _, markdown = _environments()
    return markdown.get_template("evidence.md.j2").render(**_context(evidence))


def write_report(evidence: Evidence, report_dir: Path) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    html_path = report_dir / HTML_REPORT
    markdown_path = report_dir / MARKDOWN_REPORT
    html_path.write_text(render_html(evidence), encoding="utf-8")
    markdown_path.write_text(render_markdown(evidence), encoding="utf-8")
    return html_path, markdown_path


# --- command line --------------------------------------------------------------------------------


def _optional_findings(
    given: Path | None, default: Path, source: Source
) -> tuple[Findings | None, Path | None]:
    """A path given on the command line must exist; the default may be absent (not run)."""
    path = given if given is not None else default
    if given is None and not path.exists():
        return None, None
    return read_findings_file(path, source), path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m policies.report",
        description="Render the auditor's evidence report (HTML and Markdown).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"synthesized directory for the inventory (default {DEFAULT_SYNTH_DIR})",
    )
    parser.add_argument(
        "--static",
        type=Path,
        default=None,
        help=f"static findings of the gate (default {DEFAULT_STATIC_FINDINGS}, if present)",
    )
    parser.add_argument(
        "--deployability",
        type=Path,
        default=None,
        help=f"preflight findings (default {DEFAULT_DEPLOYABILITY_FINDINGS}, if present)",
    )
    parser.add_argument(
        "--runtime",
        type=Path,
        default=None,
        help=f"runtime findings (default {DEFAULT_RUNTIME_FINDINGS}, if present)",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORT_DIR,
        help=f"where evidence.html and evidence.md go (default {DEFAULT_REPORT_DIR})",
    )
    parser.add_argument(
        "--diagram",
        type=Path,
        default=None,
        help=f"Mermaid architecture diagram (default SYNTH_DIR/{DIAGRAM_FILE}, if present)",
    )
    parser.add_argument(
        "--text-diagram",
        action="store_true",
        help="show the diagram as Mermaid source, without drawing it (Chromium + Mermaid)",
    )
    parser.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="control catalog")
    parser.add_argument(
        "--exemptions", type=Path, default=DEFAULT_EXEMPTIONS, help="exemptions file"
    )
    return parser


def _diagram(given: Path | None, synth_dir: Path, report_dir: Path) -> str:
    """The Mermaid diagram: --diagram (must exist), else SYNTH_DIR/diagram.mmd, else the file
    tools.diagram writes by default (REPORT_DIR/architecture.mmd), else none."""
    candidates = (
        [given] if given is not None else [synth_dir / DIAGRAM_FILE, report_dir / ARCHITECTURE_FILE]
    )
    for path in candidates:
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise ReportInputError(f"{path}: cannot be read ({error})") from None
    if given is not None:
        raise ReportInputError(f"{given}: no such diagram file")
    return ""


def _drawn(diagram: str, *, text_only: bool) -> tuple[str, str]:
    """(svg, note): the diagram drawn offline when Mermaid's bundle and Chromium are here, or
    the reason it is shown as source instead."""
    if not diagram or text_only:
        return "", ""
    bundle = mermaid_bundle()
    if bundle is None:
        return "", (
            f"Shown as Mermaid source: no local Mermaid bundle to draw it offline (npm package "
            f"mermaid in node_modules, or {MERMAID_VARIABLE}=PATH/mermaid.min.js)."
        )
    try:
        return render_mermaid(diagram, bundle), ""
    except ReportInputError as error:
        return "", f"Shown as Mermaid source: it could not be drawn offline ({error})."


def _run(args: argparse.Namespace) -> Evidence:
    catalog = load_catalog(args.catalog)
    synth_dir: Path = args.out if args.out is not None else DEFAULT_SYNTH_DIR
    notes = []
    if synth_dir.is_dir():
        stacks = read_inventory(synth_dir)
    elif args.out is not None:
        raise ReportInputError(f"{synth_dir}: no such synthesized directory")
    else:
        stacks = ()
        notes.append(f"No synthesized directory at {synth_dir}: the inventory is empty.")
    static, static_path = _optional_findings(args.static, DEFAULT_STATIC_FINDINGS, Source.STATIC)
    runtime, runtime_path = _optional_findings(
        args.runtime, DEFAULT_RUNTIME_FINDINGS, Source.RUNTIME
    )
    preflight, preflight_path = _optional_findings(
        args.deployability, DEFAULT_DEPLOYABILITY_FINDINGS, Source.DEPLOYABILITY
    )
    deployability = (
        deployability_section(preflight, preflight_path, RULES_BY_ID)
        if preflight is not None and preflight_path is not None
        else None
    )
    diagram = _diagram(args.diagram, synth_dir, args.report_dir)
    diagram_svg, diagram_note = _drawn(diagram, text_only=args.text_diagram)
    exemptions, never_exemptable, exemptions_note = read_exemptions(args.exemptions)
    return build_evidence(
        catalog,
        static=static,
        runtime=runtime,
        static_path=static_path,
        runtime_path=runtime_path,
        synth_dir=synth_dir,
        stacks=stacks,
        exemptions=exemptions,
        exemptions_note=exemptions_note,
        never_exemptable=never_exemptable,
        static_check_names=checkov_check_names(),
        runtime_check_names=runtime_check_names(),
        environments=environments_by_jurisdiction(),
        diagram=diagram,
        diagram_svg=diagram_svg,
        diagram_note=diagram_note,
        git_commit=git_commit(),
        checkov_version=checkov_version(),
        notes=notes,
        deployability=deployability,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        evidence = _run(args)
    except (ReportInputError, CatalogError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    html_path, markdown_path = write_report(evidence, args.report_dir)
    total = evidence.coverage_total
    print(
        f"evidence report: {html_path} and {markdown_path}\n"
        f"  gate (static): {evidence.gate.value}; runtime: {evidence.runtime_verdict.value}; "
        f"{len(evidence.failures)} unexempted failure(s); "
        f"{total.controls} controls: {total.automated} automated, {total.manual} manual only, "
        f"{total.inherited} inherited from AWS, {total.unmapped} unmapped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
