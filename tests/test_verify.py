"""`python -m policies.verify ENV`: real-account verification, exercised against moto (the
organization environment deployed correctly, then with its trail stopped) and with no, expired
or foreign credentials. Nothing here reaches AWS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from policies import verify
from policies.findings import Source, Status, read_findings
from tests.test_runtime_checks import MAPPING, Deployment, org_expected

REPO_ROOT = Path(__file__).resolve().parent.parent


def run(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = verify.main(arguments)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A process with no AWS settings at all: no variables, profiles, or instance metadata."""
    for name in [n for n in os.environ if n.startswith("AWS_") or n.startswith("MOTO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_missing_credentials_give_one_clear_line_and_exit_2(
    no_credentials: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["dev"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: no AWS credentials found")
    assert "aws sso login" in err


def test_the_command_line_itself_exits_2_without_credentials(tmp_path: Path) -> None:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    done = subprocess.run(
        [sys.executable, "-m", "policies.verify", "dev", "--results", str(tmp_path)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: no AWS credentials found")
    assert not (tmp_path / verify.FINDINGS_FILE).exists()


def test_expired_credentials_exit_2(
    no_credentials: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_credentials.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    no_credentials.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    no_credentials.setenv("AWS_SESSION_TOKEN", "expired")

    def expired(**_: Any) -> None:
        # What STS answers for a session token past its expiry; raised before anything is sent.
        raise ClientError(
            {
                "Error": {
                    "Code": "ExpiredToken",
                    "Message": "The security token included in the request is expired",
                }
            },
            "GetCallerIdentity",
        )

    real_session = boto3.Session

    def session(**arguments: Any) -> boto3.Session:
        created = real_session(**arguments)
        created.events.register("before-call.sts.GetCallerIdentity", expired)
        return created

    no_credentials.setattr(boto3, "Session", session)
    code, _, err = run(["dev"], capsys)
    assert code == 2
    assert "expired or not valid (ExpiredToken" in err


def test_an_unknown_profile_exits_2(
    no_credentials: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["dev", "--profile", "nobody"], capsys)
    assert code == 2 and "nobody" in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nowhere"], "no environment 'nowhere'"),
        (["dev", "--region", "eu-west-1"], "outside dev's allowed_regions"),
    ],
)
def test_bad_arguments_exit_2_before_any_call(
    no_credentials: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    code, _, err = run(arguments, capsys)
    assert code == 2 and message in err


@pytest.fixture
def moto_org(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """The organization environment deployed correctly in moto, in its own account."""
    for name in [n for n in os.environ if n.startswith("AWS_") or n.startswith("MOTO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    with mock_aws():
        yield Deployment(monkeypatch, org_expected()).deploy()


def test_credentials_of_another_account_are_refused(
    moto_org: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The caller is in the organization's account; dev is 111111111111.
    code, out, err = run(["dev", "--results", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert "credentials are for account 999999999999" in err
    assert "dev is account 111111111111" in err
    assert not (tmp_path / verify.FINDINGS_FILE).exists()


def test_a_compliant_account_exits_0_with_a_table_and_findings(
    moto_org: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(["org", "--results", str(tmp_path)], capsys)
    assert code == 0, out
    header, *rows = out.splitlines()[:-1]
    assert header.split() == ["STATUS", "CONTROL", "CHECK", "RESOURCE"]
    assert rows and all(row.startswith("PASS ") for row in rows)
    assert any("RT_PHI_CLOUDTRAIL_LOG_VALIDATION" in row for row in rows)
    findings = read_findings(tmp_path / verify.FINDINGS_FILE)
    assert findings.source is Source.RUNTIME and findings.target == "999999999999/us-east-1"
    assert {f.status for f in findings.findings} == {Status.PASSED}
    assert len(findings.findings) == len(rows)
    assert out.splitlines()[-1].endswith(f"findings written to {tmp_path / 'findings.json'}")


def test_a_failing_control_exits_1_and_is_listed_first_with_its_reason(
    moto_org: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    moto_org.client("cloudtrail").stop_logging(Name=moto_org.expected.trail.arn)
    code, out, _ = run(["org", "--results", str(tmp_path)], capsys)
    assert code == 1
    lines = out.splitlines()
    first, *others = MAPPING["RT_PHI_CLOUDTRAIL_LOG_VALIDATION"]
    assert lines[1].split()[:3] == ["FAIL", first, f"+{len(others)}"]
    assert "RT_PHI_CLOUDTRAIL_LOG_VALIDATION" in lines[1]
    assert lines[2].strip() == "it is not logging"
    findings = read_findings(tmp_path / verify.FINDINGS_FILE)
    (failed,) = findings.failed()
    assert failed.check_id == "RT_PHI_CLOUDTRAIL_LOG_VALIDATION"
    assert failed.resource == moto_org.expected.trail.arn
