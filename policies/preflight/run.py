"""make preflight: every synthesized stack judged against what real AWS refuses at apply.

    python -m policies.preflight [--out SYNTH_DIR] [--results DIR]

Runs every rule family (names, regions, iam, sizes, cloudformation, pipelines, events,
conformance) over SYNTH_DIR/stacks/*/cdk.tf.json, prints each failure with the rule's source,
and writes DIR/findings.json (source "deployability"), which the evidence report shows in its
deployability section. Exit 0 when nothing fails, 1 on any failure, 2 when the input is
missing or malformed or a rule's source cannot be read (one line naming it; nothing written).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

from policies.findings import Finding, Findings, Source, Status, write_findings
from policies.preflight import (
    cloudformation,
    conformance,
    events,
    iam,
    names,
    pipelines,
    regions,
    sizes,
)
from policies.preflight.base import (
    PreflightInputError,
    PreflightSourceError,
    Rule,
    SynthesizedStacks,
    read_stacks,
)

DEFAULT_OUT: Final = Path("cdktf.out")
DEFAULT_RESULTS: Final = Path("reports/preflight")
FAMILIES: Final[tuple[ModuleType, ...]] = (
    names,
    regions,
    iam,
    sizes,
    cloudformation,
    pipelines,
    events,
    conformance,
)


def all_rules() -> tuple[Rule, ...]:
    rules: tuple[Rule, ...] = tuple(rule for family in FAMILIES for rule in family.RULES)
    repeated = [rule_id for rule_id, n in Counter(r.id for r in rules).items() if n > 1]
    if repeated:
        raise PreflightSourceError(f"rule ids declared twice: {', '.join(sorted(repeated))}")
    return rules


RULES_BY_ID: Final = {rule.id: rule for rule in all_rules()}
# Seconds each family took over the platform's 23 stacks on two cores (the order workers take
# them in; a family missing here runs last).
FAMILY_COST: Final = {
    cloudformation.__name__: 1.0,
    names.__name__: 0.85,
    iam.__name__: 0.7,
    conformance.__name__: 0.4,
    pipelines.__name__: 0.25,
    regions.__name__: 0.15,
}


@dataclass(frozen=True)
class Preflight:
    findings: Findings
    seconds: float

    def failed(self) -> list[Finding]:
        return self.findings.failed()


def run_family(family: ModuleType, stacks: SynthesizedStacks) -> list[Finding]:
    """One family's findings; a finding under an undeclared rule id is a defect of its family,
    reported as the family's source error (it could not say which rule judged)."""
    name = family.__name__.rsplit(".", 1)[-1]
    try:
        produced: list[Finding] = family.check(stacks)
    except PreflightSourceError as error:
        raise PreflightSourceError(f"{name}: {error}") from None
    undeclared = sorted({f.check_id for f in produced} - set(RULES_BY_ID))
    if undeclared:
        raise PreflightSourceError(f"{name}: findings under undeclared rules {undeclared}")
    return produced


def run_families(stacks: SynthesizedStacks) -> list[Finding]:
    """Every family's findings, in FAMILIES order, in this process."""
    return [finding for family in FAMILIES for finding in run_family(family, stacks)]


@functools.cache
def _stacks_of(outdir: Path) -> SynthesizedStacks:
    return read_stacks(outdir)


def _family_in_worker(family_name: str, outdir: Path) -> list[Finding]:
    return run_family(importlib.import_module(family_name), _stacks_of(outdir))


def run_families_in_parallel(outdir: Path, workers: int) -> list[Finding]:
    """Every family's findings, in FAMILIES order, the families shared out over `workers`
    fresh processes (spawned: nothing of this process's state, threads or locks is inherited).
    Each family's time is mostly loading its source (botocore's models, the IAM database,
    cfn-lint's rules), so two cores take about half as long; each worker reads the stacks once."""
    context = multiprocessing.get_context("spawn")
    # The costliest families first, so the last to start is a short one.
    order = sorted(FAMILIES, key=lambda f: FAMILY_COST.get(f.__name__, 0.0), reverse=True)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {f.__name__: pool.submit(_family_in_worker, f.__name__, outdir) for f in order}
        return [finding for f in FAMILIES for finding in futures[f.__name__].result()]


def preflight(outdir: Path, *, workers: int = 1) -> Preflight:
    started = time.perf_counter()
    stacks = read_stacks(outdir)  # malformed input stops here, before any worker starts
    findings = run_families_in_parallel(outdir, workers) if workers > 1 else run_families(stacks)
    return Preflight(
        Findings(Source.DEPLOYABILITY, str(outdir), tuple(findings)),
        time.perf_counter() - started,
    )


def report_lines(result: Preflight) -> list[str]:
    findings = result.findings.findings
    failed = result.failed()
    lines = [
        f"FAIL {f.check_id} {f.stack} {f.resource}: {f.detail}"
        for f in sorted(failed, key=lambda f: (f.check_id, f.stack, f.resource))
    ]
    judged_rules = {f.check_id for f in findings}
    passed = sum(1 for f in findings if f.status is Status.PASSED)
    lines.append(
        f"preflight: {len(RULES_BY_ID)} rules ({len(judged_rules)} judged something), "
        f"{passed} passed, {len(failed)} failed, in {result.seconds:.1f} s"
    )
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m policies.preflight", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="synthesized directory")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="findings folder")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes the families share (default: one per core; 1 runs them here)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        result = preflight(arguments.out, workers=arguments.jobs)
    except (PreflightInputError, PreflightSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    write_findings(arguments.results / "findings.json", result.findings)
    for line in report_lines(result):
        print(line)
    return 1 if result.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
