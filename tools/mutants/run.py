"""Run the mutation corpus through the gate: every mutant must be killed.

    python -m tools.mutants [--out SYNTH_DIR] [--layer LAYER ...] [--mutant NAME ...]
    python -m tools.mutants --table     # the README's guarantee table, from the corpus

Copies each mutant's real stack from SYNTH_DIR (the `make synth` output) into a scratch
directory twice, untouched and mutated, and runs the gate once over all of them: checkov with
policies/checks, then policies/exemptions.yaml judged as if each mutated stack were its real
stack (an exemption never hides a mutant it was not written for, nor one it was). A mutant is
KILLED when the gate fails its check, unexempted, on exactly the resource it changed and the
untouched copy passes that check there. Exit 0 when every selected mutant is killed, 1 when one
is not, 2 when the corpus or the stacks cannot be read (one line naming what).
"""

from __future__ import annotations

import argparse
import copy
import enum
import json
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from policies.catalog import load_catalog
from policies.exemptions import load_exemptions
from policies.findings import Finding, Status
from policies.gate import STACK_FILE, GateError, judge, scan
from tools.mutants.corpus import MUTANTS
from tools.mutants.edits import MutantError
from tools.mutants.model import LAYERS, Document, Mutant
from tools.mutants.table import render_table

DEFAULT_OUT = Path("cdktf.out")
# Mutated copies sit beside the untouched ones under a name no stack can have.
MUTANT_PREFIX = "mutant--"


class Outcome(enum.Enum):
    KILLED = "killed"
    SURVIVED = "survived"  # the gate does not fail the check on the changed resource
    IMPRECISE = "imprecise"  # it does, and on other resources the mutant did not change too
    TWIN_FAILS = "twin fails"  # the untouched stack does not pass the check there either


@dataclass(frozen=True)
class Verdict:
    mutant: Mutant
    address: str
    outcome: Outcome
    failed: tuple[str, ...]  # resources failing the check in the mutated stack
    controls: tuple[str, ...]  # the catalog controls the failure names

    @property
    def line(self) -> str:
        detail = (
            ""
            if self.outcome is Outcome.KILLED
            else f" (failed: {', '.join(self.failed) or 'none'})"
        )
        return (
            f"{self.outcome.value.upper():10} {self.mutant.check_id:12} {self.mutant.stack:22} "
            f"{self.mutant.name}: {self.address}{detail}"
        )


@dataclass(frozen=True)
class CorpusRun:
    verdicts: tuple[Verdict, ...]
    real_failures: tuple[Finding, ...]  # unexempted failures of the untouched stacks

    @property
    def exit_code(self) -> int:
        clean = not self.real_failures
        return 0 if clean and all(v.outcome is Outcome.KILLED for v in self.verdicts) else 1


def select(
    mutants: Sequence[Mutant], *, layers: Iterable[str] = (), names: Iterable[str] = ()
) -> tuple[Mutant, ...]:
    wanted_layers, wanted_names = set(layers), set(names)
    unknown = (wanted_layers - set(LAYERS)) | (wanted_names - {m.name for m in mutants})
    if unknown:
        raise MutantError(f"no such layer or mutant: {', '.join(sorted(unknown))}")
    return tuple(
        m
        for m in mutants
        if (not wanted_layers or m.layer in wanted_layers)
        and (not wanted_names or m.name in wanted_names)
    )


def read_stack(out: Path, stack: str) -> Document:
    file = out / "stacks" / stack / STACK_FILE
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MutantError(f"{file}: no such stack (synthesize first: make synth)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise MutantError(f"{file}: not readable Terraform JSON ({error})") from None
    if not isinstance(document, dict):
        raise MutantError(f"{file}: not a Terraform JSON configuration")
    return document


def write_stack(root: Path, name: str, document: Document) -> None:
    directory = root / "stacks" / name
    directory.mkdir(parents=True)
    (directory / STACK_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")


def build(out: Path, root: Path, mutants: Sequence[Mutant]) -> dict[str, str]:
    """The untouched stacks and each mutant under root/stacks; mutant name -> the address that
    must now fail."""
    real = {m.stack: read_stack(out, m.stack) for m in mutants}
    for stack, document in real.items():
        write_stack(root, stack, document)
    addresses: dict[str, str] = {}
    for mutant in mutants:
        document = copy.deepcopy(real[mutant.stack])
        try:
            addresses[mutant.name] = mutant.apply(document)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise MutantError(
                f"mutant {mutant.name}: cannot apply to {mutant.stack} ({error!r})"
            ) from None
        except MutantError as error:
            raise MutantError(f"mutant {mutant.name}: {error}") from None
        if document == real[mutant.stack]:
            raise MutantError(f"mutant {mutant.name}: changes nothing in {mutant.stack}")
        write_stack(root, MUTANT_PREFIX + mutant.name, document)
    return addresses


def run_corpus(out: Path, mutants: Sequence[Mutant]) -> CorpusRun:
    if not mutants:
        raise MutantError("no mutant selected")
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise MutantError("mutant names repeat: each names its own stack directory")
    catalog = load_catalog()
    exemptions = load_exemptions()
    with tempfile.TemporaryDirectory(prefix="phi-mutants-") as scratch:
        root = Path(scratch)
        addresses = build(out, root, mutants)
        scanned = scan(root, catalog=catalog)
    source = {MUTANT_PREFIX + m.name: m.stack for m in mutants}
    origins = [finding.stack for finding in scanned.findings]
    as_real = replace(
        scanned,
        findings=tuple(replace(f, stack=source.get(f.stack, f.stack)) for f in scanned.findings),
    )
    judged = list(zip(origins, judge(as_real, exemptions).findings.findings, strict=True))
    verdicts = tuple(verdict(m, addresses[m.name], judged) for m in mutants)
    real_failures = tuple(
        f for origin, f in judged if origin not in source and f.status is Status.FAILED
    )
    return CorpusRun(verdicts, real_failures)


def verdict(mutant: Mutant, address: str, judged: Sequence[tuple[str, Finding]]) -> Verdict:
    of_check = [(origin, f) for origin, f in judged if f.check_id == mutant.check_id]
    failing = [
        f
        for origin, f in of_check
        if origin == MUTANT_PREFIX + mutant.name and f.status is Status.FAILED
    ]
    failed = tuple(sorted({f.resource for f in failing}))
    twin_passes = any(
        origin == mutant.stack and f.resource == address and f.status is Status.PASSED
        for origin, f in of_check
    )
    if address not in failed:
        outcome = Outcome.SURVIVED
    elif not twin_passes:
        outcome = Outcome.TWIN_FAILS
    elif failed != (address,):
        outcome = Outcome.IMPRECISE
    else:
        outcome = Outcome.KILLED
    controls = next((f.controls for f in failing if f.resource == address), ())
    return Verdict(mutant, address, outcome, failed, controls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.mutants", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="synthesized output (default cdktf.out)"
    )
    parser.add_argument(
        "--layer", action="append", default=[], choices=LAYERS, help="only this layer's mutants"
    )
    parser.add_argument(
        "--mutant", action="append", default=[], metavar="NAME", help="only this mutant"
    )
    parser.add_argument(
        "--table", action="store_true", help="print the README's guarantee table and stop"
    )
    args = parser.parse_args(argv)
    if args.table:
        print(render_table(MUTANTS))
        return 0
    try:
        run = run_corpus(args.out, select(MUTANTS, layers=args.layer, names=args.mutant))
    except (MutantError, GateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in (v.line for v in run.verdicts):
        print(line)
    for finding in run.real_failures:
        print(
            f"error: the untouched {finding.stack} fails {finding.check_id} on {finding.resource}"
        )
    killed = sum(v.outcome is Outcome.KILLED for v in run.verdicts)
    print(f"mutants: {killed} of {len(run.verdicts)} killed by the gate")
    return run.exit_code
