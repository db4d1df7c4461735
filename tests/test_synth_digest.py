"""tools.synth_digest: the digest that ties a promotion to the output that passed below, and
the per-stack comparison that decides which stacks a pull request plans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import main
from tools import synth_digest
from tools.synth_digest import DigestError, compare, plan_matrix, record


def synthesize(destination: Path) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev"], destination)
    return destination


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("digest") / "out")


def copy_of(outdir: Path, destination: Path) -> Path:
    return Path(shutil.copytree(outdir, destination))


def edit_stack(outdir: Path, stack: str, edit: str = "changed") -> None:
    path = outdir / "stacks" / stack / "cdk.tf.json"
    configuration = json.loads(path.read_text())
    configuration.setdefault("locals", {})["edit"] = edit
    path.write_text(json.dumps(configuration, indent=2))


def test_synthesis_is_deterministic(synthesized: Path, tmp_path: Path) -> None:
    # Promotion compares a fresh synthesis with the digest recorded below: it must be stable.
    again = synthesize(tmp_path / "again")
    assert record(again).digest == record(synthesized).digest
    assert record(again).stacks == record(synthesized).stacks


def test_a_change_to_one_stack_changes_that_stack_and_the_digest(
    synthesized: Path, tmp_path: Path
) -> None:
    changed = copy_of(synthesized, tmp_path / "changed")
    edit_stack(changed, "dev-ml")
    before, after = record(synthesized), record(changed)
    assert after.digest != before.digest
    differing = {n for n in before.stacks if before.stacks[n].digest != after.stacks[n].digest}
    assert differing == {"dev-ml"}
    assert compare(before.stacks, after.stacks).to_plan == ("dev-ml",)


def test_an_asset_change_is_a_stack_change(synthesized: Path, tmp_path: Path) -> None:
    changed = copy_of(synthesized, tmp_path / "changed")
    bundle = sorted((changed / "stacks" / "dev-ml").rglob("*.zip"))[0]
    bundle.write_bytes(bundle.read_bytes() + b"\0")
    assert compare(record(synthesized).stacks, record(changed).stacks).changed == ("dev-ml",)


def test_terraform_working_files_are_not_output(synthesized: Path, tmp_path: Path) -> None:
    worked_in = copy_of(synthesized, tmp_path / "worked-in")
    stack = worked_in / "stacks" / "dev-data"
    (stack / ".terraform" / "providers").mkdir(parents=True)
    (stack / ".terraform.lock.hcl").write_text("lock")
    (stack / "deploy.tfplan").write_bytes(b"plan")
    (stack / "terraform.tfstate").write_text("{}")
    assert record(worked_in).digest == record(synthesized).digest
    (stack / "extra.json").write_text("{}")  # its twin: any other file is output
    assert record(worked_in).digest != record(synthesized).digest


def test_records_environment_account_region_and_dependencies(synthesized: Path) -> None:
    stacks = record(synthesized).stacks
    assert stacks["dev-ml"].environment == "dev"
    assert stacks["dev-ml"].account_id == "111111111111"
    assert stacks["dev-ml"].region == "us-east-1"
    assert set(stacks["dev-ml"].dependencies) >= {"dev-data", "dev-network"}
    assert stacks["org-audit"].environment == "org"


def test_added_and_removed_stacks(synthesized: Path, tmp_path: Path) -> None:
    head = record(synthesized).stacks
    base = {n: s for n, s in head.items() if n != "dev-fhir"}
    base["old-stack"] = head["dev-fhir"]
    changes = compare(base, head)
    assert (changes.added, changes.changed, changes.removed) == (("dev-fhir",), (), ("old-stack",))
    assert compare(head, head).to_plan == ()


def test_matrix_groups_changed_stacks_by_environment(synthesized: Path) -> None:
    head = record(synthesized).stacks
    matrix = plan_matrix(head, ["dev-ml", "dev-data", "org-audit"])
    assert matrix == {
        "include": [
            {
                "environment": "dev",
                "variable_suffix": "DEV",
                "region": "us-east-1",
                "stacks": "dev-data dev-ml",
            },
            {
                "environment": "org",
                "variable_suffix": "ORG",
                "region": "us-east-1",
                "stacks": "org-audit",
            },
        ]
    }
    assert synth_digest.variable_suffix("eu-research") == "EU_RESEARCH"


def test_changed_cli_with_a_base_that_did_not_synthesize(synthesized: Path, tmp_path: Path) -> None:
    github_output = tmp_path / "github-output"
    changes_file = tmp_path / "changes.json"
    status = synth_digest.main(
        [
            "changed",
            "--base",
            str(tmp_path / "missing"),
            "--head",
            str(synthesized),
            "--output",
            str(changes_file),
            "--github-output",
            str(github_output),
        ]
    )
    assert status == 0
    assert json.loads(changes_file.read_text())["added"] == sorted(record(synthesized).stacks)
    outputs = dict(line.split("=", 1) for line in github_output.read_text().splitlines())
    assert outputs["any"] == "true"
    environments = {e["environment"] for e in json.loads(outputs["matrix"])["include"]}
    assert environments == {"dev", "org"}


def test_unchanged_head_plans_nothing(synthesized: Path, tmp_path: Path) -> None:
    github_output = tmp_path / "github-output"
    arguments = ["changed", "--base", str(synthesized), "--head", str(synthesized)]
    assert synth_digest.main([*arguments, "--github-output", str(github_output)]) == 0
    outputs = dict(line.split("=", 1) for line in github_output.read_text().splitlines())
    assert outputs == {"matrix": '{"include": []}', "any": "false"}


def test_verify_passes_on_the_recorded_digest_and_fails_on_another(
    synthesized: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = record(synthesized).digest
    assert synth_digest.main(["verify", "--out", str(synthesized), "--expected", digest]) == 0
    changed = copy_of(synthesized, tmp_path / "changed")
    edit_stack(changed, "dev-network")
    assert synth_digest.main(["verify", "--out", str(changed), "--expected", digest]) == 1
    assert "is not the output that was verified" in capsys.readouterr().err


def test_record_cli_writes_the_record_and_the_github_output(
    synthesized: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output, github_output = tmp_path / "digest.json", tmp_path / "github-output"
    arguments = ["record", "--out", str(synthesized), "--output", str(output)]
    assert synth_digest.main([*arguments, "--github-output", str(github_output)]) == 0
    digest = record(synthesized).digest
    assert capsys.readouterr().out.strip() == digest
    assert json.loads(output.read_text())["digest"] == digest
    assert github_output.read_text() == f"digest={digest}\n"


def test_unreadable_output_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert synth_digest.main(["record", "--out", str(tmp_path)]) == 2
    assert f"{tmp_path / 'manifest.json'}: missing" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text('{"stacks": {"a": {"workingDirectory": "stacks/a"}}}')
    with pytest.raises(DigestError, match=r"stacks/a/cdk.tf.json: missing"):
        record(tmp_path)
