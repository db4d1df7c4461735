"""The mutation corpus (tools/mutants): every guarantee the README's layer table states has a
mutant, a copy of a real stack with that guarantee removed or weakened, and the gate
(`make scan`: checkov, our checks, our exemptions) kills each one: it fails the mutant's check
on exactly the resource the mutant changed, while the untouched stack passes there. The
runner's own verdicts have failing twins: a mutant the gate misses, one an exemption hides, one
that breaks more than it says and one that changes nothing are each reported as such."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import main
from policies.catalog import load_catalog
from tools.mutants import run
from tools.mutants.corpus import MUTANTS
from tools.mutants.edits import MutantError, edit_json, named, set_attribute, statements_without
from tools.mutants.model import LAYERS, Document, Mutant
from tools.mutants.table import readme_table, render_table

README = Path(__file__).resolve().parents[1] / "README.md"
BY_NAME = {mutant.name: mutant for mutant in MUTANTS}


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mutants") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize([], out)
    return out


@pytest.fixture(scope="module")
def corpus_run(synthesized: Path) -> run.CorpusRun:
    return run.run_corpus(synthesized, MUTANTS)


def test_the_untouched_stacks_pass_the_gate(corpus_run: run.CorpusRun) -> None:
    assert not corpus_run.real_failures, [(f.stack, f.check_id) for f in corpus_run.real_failures]


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_the_gate_kills_the_mutant_and_names_its_controls(
    name: str, corpus_run: run.CorpusRun
) -> None:
    verdict = next(v for v in corpus_run.verdicts if v.mutant.name == name)
    assert verdict.outcome is run.Outcome.KILLED, verdict.line
    cited = tuple(
        c.id for c in load_catalog().controls if verdict.mutant.check_id in c.static_checks
    )
    assert cited and verdict.controls == cited, "the failure names the catalog's controls"


def test_every_layer_of_the_readme_table_has_mutants() -> None:
    assert {m.layer for m in MUTANTS} == set(LAYERS)
    rows = re.findall(r"^\| (\w+) \| `modules/", README.read_text(encoding="utf-8"), re.M)
    assert set(rows) == set(LAYERS) - {"stacks"}, "LAYERS are the README's layer table rows"


def test_mutant_names_are_unique_kebab_case() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names), names


def test_the_readme_guarantee_table_is_the_corpus() -> None:
    assert readme_table(README.read_text(encoding="utf-8")) == render_table(MUTANTS)
    # Twin: a README that lost a row no longer matches.
    assert render_table(MUTANTS[1:]) != render_table(MUTANTS)


# --- the runner's verdicts, each with its failing twin ----------------------------------------

RAW_BUCKET = "storage/raw/bucket"


def _tag_raw_bucket(document: Document) -> str:
    """Changes the raw bucket, but nothing a versioning check looks at."""
    return set_attribute("aws_s3_bucket", RAW_BUCKET, "tags", {"mutant": "harmless"})(document)


def _old_tls_on_two_buckets(document: Document) -> str:
    """Lets TLS 1.0 into two buckets while naming only one."""
    for bucket in ("raw", "curated"):
        _, policy = named(document, "aws_s3_bucket_policy", f"storage/{bucket}/policy")
        edit_json(policy, "policy", statements_without("DenyTlsOlderThan12"))
    name, _ = named(document, "aws_s3_bucket", RAW_BUCKET)
    return f"aws_s3_bucket.{name}"


def fake(name: str, check_id: str, apply: object) -> Mutant:
    return Mutant(name, "storage", "test", check_id, "dev-data", "test", apply)  # type: ignore[arg-type]


def test_the_runner_reports_what_it_cannot_claim(synthesized: Path) -> None:
    verdicts = {
        v.mutant.name: v
        for v in run.run_corpus(
            synthesized,
            [
                BY_NAME["raw-bucket-allows-old-tls"],
                fake("missed-by-its-check", "CKV_AWS_21", _tag_raw_bucket),
                # CKV2_AWS_62 fails on the raw bucket, exempted: an exemption hides the failure.
                fake("hidden-by-an-exemption", "CKV2_AWS_62", _tag_raw_bucket),
                fake("breaks-two-buckets", "CKV_PHI_10", _old_tls_on_two_buckets),
            ],
        ).verdicts
    }
    assert verdicts["raw-bucket-allows-old-tls"].outcome is run.Outcome.KILLED
    assert verdicts["missed-by-its-check"].outcome is run.Outcome.SURVIVED
    assert verdicts["hidden-by-an-exemption"].outcome is run.Outcome.SURVIVED
    assert verdicts["breaks-two-buckets"].outcome is run.Outcome.IMPRECISE


def test_a_mutant_that_changes_nothing_is_an_error(synthesized: Path) -> None:
    unchanged = fake("no-op", "CKV_AWS_21", lambda document: "aws_s3_bucket.x")
    with pytest.raises(MutantError, match="no-op: changes nothing in dev-data"):
        run.run_corpus(synthesized, [unchanged])


def test_a_mutant_whose_target_is_gone_is_one_line_exit_2(
    synthesized: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = fake("lost", "CKV_AWS_21", set_attribute("aws_s3_bucket", "no/such/path", "x", 1))
    monkeypatch.setattr(run, "MUTANTS", (lost,))
    assert run.main(["--out", str(synthesized)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "mutant lost: aws_s3_bucket with 'no/such/path'" in error


def test_an_unknown_layer_or_mutant_is_refused() -> None:
    with pytest.raises(MutantError, match="no such layer or mutant: nope"):
        run.select(MUTANTS, names=["nope"])
    assert run.select(MUTANTS, layers=["keys"]) == tuple(m for m in MUTANTS if m.layer == "keys")
