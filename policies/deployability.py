"""The evidence report's deployability section: `make preflight`'s findings, rule by rule, each
with the source its facts come from, so an auditor sees what was judged against which of AWS's
published limits, and what would have been refused at apply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from policies.findings import Finding, Findings, Status
from policies.preflight.base import Rule


@dataclass(frozen=True)
class DeployabilityRule:
    rule: Rule
    passed: int
    failed: tuple[Finding, ...]

    @property
    def judged(self) -> int:
        return self.passed + len(self.failed)


@dataclass(frozen=True)
class DeployabilitySection:
    path: str
    target: str
    rules: tuple[DeployabilityRule, ...]
    # Findings under rule ids the current rules do not declare (an older findings file).
    unknown: tuple[Finding, ...]

    @property
    def failed(self) -> tuple[Finding, ...]:
        return tuple(f for rule in self.rules for f in rule.failed) + tuple(
            f for f in self.unknown if f.status in {Status.FAILED, Status.ERROR}
        )

    @property
    def passed(self) -> int:
        return sum(rule.passed for rule in self.rules)


def deployability_section(
    findings: Findings, path: Path, rules: Mapping[str, Rule]
) -> DeployabilitySection:
    by_rule: dict[str, list[Finding]] = {rule_id: [] for rule_id in rules}
    unknown: list[Finding] = []
    for finding in findings.findings:
        by_rule.get(finding.check_id, unknown).append(finding)
    return DeployabilitySection(
        path=str(path),
        target=findings.target,
        rules=tuple(
            DeployabilityRule(
                rule=rules[rule_id],
                passed=sum(1 for f in judged if f.status is Status.PASSED),
                failed=tuple(f for f in judged if f.status in {Status.FAILED, Status.ERROR}),
            )
            for rule_id, judged in sorted(
                by_rule.items(), key=lambda item: (rules[item[0]].family, item[0])
            )
        ),
        unknown=tuple(unknown),
    )
