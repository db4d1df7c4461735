"""make preflight as a command (policies/preflight/run.py): every family over the real stacks,
exit 0 with findings written; a stack real AWS would refuse, exit 1 naming the rule; bad input
or an unreadable source, exit 2 with one line and nothing written; and the evidence report's
deployability section, rule by rule with each rule's source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from policies.catalog import load_catalog
from policies.deployability import deployability_section
from policies.findings import Finding, Findings, Source, Status, read_findings
from policies.preflight import run
from policies.preflight.base import PreflightSourceError, Rule
from policies.report import build_evidence, render_html, render_markdown
from tests.preflight.conftest import first, stack_configuration

# Rules for what the platform's stacks do not declare today (their mutants hold them).
JUDGE_NOTHING_ON_THE_PLATFORM = {
    "PF_SIZE_MANAGED_POLICY": "no stack declares an aws_iam_policy: every policy is inline",
}


def preflight(out: Path, results: Path, *, jobs: int = 1) -> int:
    """`make preflight` in this process (jobs=1, so monkeypatched sources are the ones used)."""
    return run.main(["--out", str(out), "--results", str(results), "--jobs", str(jobs)])


def test_families_shared_over_processes_find_what_one_process_finds(
    synthesized: Path, tmp_path: Path
) -> None:
    assert preflight(synthesized, tmp_path / "one", jobs=1) == 0
    assert preflight(synthesized, tmp_path / "two", jobs=2) == 0
    one, two = (read_findings(tmp_path / name / "findings.json") for name in ("one", "two"))
    assert one.findings == two.findings and len(one.findings) > 1000


def test_the_platforms_stacks_pass_and_every_rule_judged_something(
    synthesized: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert preflight(synthesized, tmp_path / "results") == 0
    findings = read_findings(tmp_path / "results" / "findings.json")
    assert findings.source is Source.DEPLOYABILITY
    assert findings.failed() == []
    judged = {f.check_id for f in findings.findings}
    assert sorted(set(run.RULES_BY_ID) - judged) == sorted(JUDGE_NOTHING_ON_THE_PLATFORM)
    assert "0 failed" in capsys.readouterr().out.splitlines()[-1]


def long_function_name(configuration: dict[str, Any]) -> None:
    first(configuration, "aws_lambda_function")["function_name"] = "f" * 65


def test_a_stack_aws_would_refuse_fails_naming_rule_stack_and_resource(
    synthesized: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copied = tmp_path / "cdktf.out"
    shutil.copytree(synthesized, copied)
    stack = "dev-ml"
    configuration = stack_configuration(synthesized, stack)
    long_function_name(configuration)
    (copied / "stacks" / stack / "cdk.tf.json").write_text(json.dumps(configuration))
    assert preflight(copied, tmp_path / "results") == 1
    failures = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1
    assert (
        failures[0].startswith("FAIL PF_NAMES_") and f" {stack} aws_lambda_function." in failures[0]
    )


@pytest.mark.parametrize(
    ("arrange", "named"),
    [
        (lambda out: shutil.rmtree(out / "stacks"), "stacks: no such directory"),
        (lambda out: (out / "stacks" / "stray").mkdir(), "stray: not a synthesized stack"),
        (
            lambda out: (out / "stacks" / "dev-ml" / "cdk.tf.json").write_text("{"),
            "dev-ml/cdk.tf.json: not readable Terraform JSON",
        ),
        (
            lambda out: (out / "stacks" / "dev-ml" / "cdk.tf.json").write_text("[]"),
            "dev-ml/cdk.tf.json: not a Terraform JSON configuration",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    synthesized: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arrange: Any,
    named: str,
) -> None:
    copied = tmp_path / "cdktf.out"
    shutil.copytree(synthesized, copied)
    arrange(copied)
    assert preflight(copied, tmp_path / "results") == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and named in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "results").exists()


def test_an_unreadable_source_is_exit_2_never_a_pass(
    synthesized: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def unreadable(stacks: object) -> list[Finding]:
        raise PreflightSourceError("botocore's lambda model has no CreateFunction")

    monkeypatch.setattr(run.FAMILIES[0], "check", unreadable)
    assert preflight(synthesized, tmp_path / "results") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: names: botocore's lambda model has no CreateFunction")
    assert not (tmp_path / "results").exists()


# --- the evidence report's deployability section -----------------------------------------------

RULE = Rule("PF_NAMES_EXAMPLE", "names", "Example names are valid", "botocore 0.0 example model")


def preflight_findings(*statuses: Status) -> Findings:
    return Findings(
        Source.DEPLOYABILITY,
        "cdktf.out",
        tuple(
            Finding(
                check_id=RULE.id,
                check_name=RULE.title,
                status=status,
                source=Source.DEPLOYABILITY,
                stack="dev-ml",
                resource=f"aws_lambda_function.f{index}",
                detail="function_name 'x' is longer than 64" if status is Status.FAILED else "",
            )
            for index, status in enumerate(statuses)
        ),
    )


def report(findings: Findings | None) -> tuple[str, str]:
    section = (
        None
        if findings is None
        else deployability_section(
            findings, Path("reports/preflight/findings.json"), {RULE.id: RULE}
        )
    )
    evidence = build_evidence(load_catalog(), static=None, runtime=None, deployability=section)
    return render_markdown(evidence), render_html(evidence)


def test_the_report_shows_each_rule_with_its_source_and_what_failed() -> None:
    markdown, html = report(preflight_findings(Status.PASSED, Status.FAILED))
    assert "| Deployability (preflight) | ❌ **FAIL** |" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| `PF_NAMES_EXAMPLE` |"))
    assert "botocore 0.0 example model" in row and row.endswith("| 1 | 1 |")
    assert "| `aws_lambda_function.f1` | function\\_name 'x' is longer than 64 |" in markdown
    assert 'id="deployability"' in html and "botocore 0.0 example model" in html


def test_the_twin_only_passes_shows_pass_and_not_run_shows_not_run() -> None:
    markdown, html = report(preflight_findings(Status.PASSED))
    assert "| Deployability (preflight) | ✅ **PASS** |" in markdown
    assert "Nothing real AWS would refuse was found." in html
    markdown, _ = report(None)
    assert "| Deployability (preflight) | **NOT RUN** |" in markdown
    assert "run `make preflight`" in markdown


def refusing_mutants() -> dict[str, int]:
    """Per family, how many of its tests mutate a real stack into one real AWS refuses (each
    table entry is one parametrized test; twins, which must pass, are not counted)."""
    from tests.preflight import (  # noqa: PLC0415 - the family tests' own tables
        test_cloudformation,
        test_conformance,
        test_events,
        test_iam,
        test_names,
        test_pipelines,
        test_regions,
        test_sizes,
    )

    return {
        "names": len(test_names.REFUSED),
        "regions": len(test_regions.REFUSED),
        "iam": len(test_iam.CASES),
        "sizes": sum(1 for case in test_sizes.CASES if case.values[1] is not None),
        "cloudformation": len(test_cloudformation.MUTANTS),
        "pipelines": len(test_pipelines.MUTANTS),
        "events": len(test_events.MUTANTS),
        "conformance": len(test_conformance.MUTANTS),
    }


def test_every_family_has_mutants_of_real_stacks_and_there_are_at_least_thirty() -> None:
    counted = refusing_mutants()
    assert set(counted) == {family.__name__.rsplit(".", 1)[-1] for family in run.FAMILIES}
    assert all(n >= 1 for n in counted.values()), counted
    assert sum(counted.values()) >= 30, counted
