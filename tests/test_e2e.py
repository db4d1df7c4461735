"""`python -m tools.e2e`: deploy an environment to the emulator, check it, destroy it, sweep.

The full run of a platform environment (`make e2e`, about eight minutes for dev) is not
repeated here; these tests drive the same code over a tiny synthesized environment whose
stacks have the platform's shape: bootstrap creating the state bucket that holds its own state,
a stack other stacks read through remote state, S3 backends with native locking on the
emulator, provider roles in the environment's account, a resource the emulator lacks, a
resource with prevent_destroy. The runtime checks are the one part injected: policies.runtime
checks only environments that exist in environments/, and has its own tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policies.findings import Finding, Findings, Source, Status, read_findings
from policies.runtime import RuntimeChecksError
from tools import e2e
from tools import terraform as runner
from tools.cli import UsageError
from tools.emulator import LOOPBACK, Emulator, running_emulator

requires_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not on PATH"
)
TINY = "tiny"
ACCOUNT = "111111111111"
ORG_ACCOUNT = "999999999999"
STATE_BUCKET = "tiny-terraform-state"
REGION = "us-east-1"
HARNESS_TIMEOUT_SECONDS = 600
READS_TINY_DATA = f"{runner.REMOTE_STATE_PREFIX}tiny-data"


# --- a tiny synthesized output ------------------------------------------------------------


def provider(account: str, environment: str) -> dict[str, Any]:
    return {
        "aws": [
            {
                "region": REGION,
                "s3_use_path_style": True,
                "allowed_account_ids": [account],
                "assume_role": [{"role_arn": f"arn:aws:iam::{account}:role/deploy"}],
                "default_tags": [{"tags": {"environment": environment}}],
            }
        ]
    }


def s3_backend(stack: str) -> dict[str, Any]:
    return {
        "bucket": STATE_BUCKET,
        "key": f"{TINY}/{stack}.tfstate",
        "region": REGION,
        "encrypt": True,
        "use_lockfile": True,
        "use_path_style": True,
    }


def log_delivery_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }


def tiny_stacks() -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """name -> (dependencies, cdk.tf.json) of an environment shaped like the platform's."""
    bootstrap = {
        # Its own state in the bucket it creates, as the platform's (first apply: local, then
        # pushed into the bucket; tools.terraform.deploy_bootstrap).
        "terraform": {"backend": {"s3": s3_backend("bootstrap")}},
        "provider": provider(ORG_ACCOUNT, "org"),
        "resource": {
            "aws_s3_bucket": {
                "state": {"bucket": STATE_BUCKET, "lifecycle": {"prevent_destroy": True}}
            },
            "aws_s3_bucket_versioning": {
                "state": {
                    "bucket": "${aws_s3_bucket.state.id}",
                    "versioning_configuration": {"status": "Enabled"},
                }
            },
        },
    }
    data = {
        "terraform": {"backend": {"s3": s3_backend("tiny-data")}},
        "provider": provider(ACCOUNT, TINY),
        "resource": {
            # A bucket whose server access logs the emulator delivers into another, as S3
            # does: destroy meets a non-empty log bucket.
            "aws_s3_bucket": {
                "raw": {"bucket": "tiny-raw"},
                "access_logs": {"bucket": "tiny-access-logs"},
            },
            "aws_s3_bucket_policy": {
                "access_logs": {
                    "bucket": "${aws_s3_bucket.access_logs.id}",
                    "policy": json.dumps(log_delivery_policy("tiny-access-logs")),
                }
            },
            "aws_s3_bucket_logging": {
                "raw": {
                    "bucket": "${aws_s3_bucket.raw.id}",
                    "target_bucket": "${aws_s3_bucket.access_logs.id}",
                    "target_prefix": "raw/",
                    "depends_on": ["aws_s3_bucket_policy.access_logs"],
                }
            },
            "aws_sns_topic": {"alerts": {"name": "tiny-alerts"}},
            # Kept by destroy, with what it refers to; never swept as a leftover.
            "aws_ssm_parameter": {
                "retained": {
                    "name": "/tiny/retained",
                    "type": "String",
                    "value": "${aws_sns_topic.alerts.arn}",
                    "lifecycle": {"prevent_destroy": True},
                },
                # Destroyed around the protected ones (a targeted destroy).
                "scratch": {"name": "/tiny/scratch", "type": "String", "value": "temporary"},
            },
        },
        "output": {"arn": {"value": "${aws_sns_topic.alerts.arn}"}},
    }
    app = {
        "terraform": {"backend": {"s3": s3_backend("tiny-app")}},
        "provider": provider(ACCOUNT, TINY),
        "data": {
            # Named as cdktf names a cross-stack reference: the runner reads dependencies from it.
            "terraform_remote_state": {
                READS_TINY_DATA: {"backend": "s3", "config": s3_backend("tiny-data")}
            }
        },
        "resource": {
            "aws_ssm_parameter": {
                "alerts": {
                    "name": "/tiny/alerts-topic",
                    "type": "String",
                    "value": f"${{data.terraform_remote_state.{READS_TINY_DATA}.outputs.arn}}",
                },
                "dx": {
                    "name": "/tiny/dx-gateway",
                    "type": "String",
                    "value": "${aws_dx_gateway.sites.id}",
                },
            },
            "aws_dx_gateway": {"sites": {"name": "tiny-sites", "amazon_side_asn": "64512"}},
            # Egress managed twice (inline `egress = []` and a rule resource): every apply
            # removes the rule and adds it back, so a plan right after never shows no changes.
            "aws_security_group": {"fought_over": {"name": "tiny-fought-over", "egress": []}},
            "aws_vpc_security_group_egress_rule": {
                "https": {
                    "security_group_id": "${aws_security_group.fought_over.id}",
                    "cidr_ipv4": "10.0.0.0/8",
                    "ip_protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                }
            },
        },
    }
    return {
        "bootstrap": ((), bootstrap),
        "tiny-data": ((), data),
        "tiny-app": (("tiny-data",), app),
    }


def write_output(outdir: Path, *, local: bool = True) -> Path:
    manifest: dict[str, Any] = {"version": "0.21.0", "stacks": {}}
    for name, (dependencies, configuration) in tiny_stacks().items():
        if not local:
            for block in configuration["provider"]["aws"]:
                block.pop("s3_use_path_style")
        (outdir / "stacks" / name).mkdir(parents=True)
        (outdir / "stacks" / name / "cdk.tf.json").write_text(json.dumps(configuration))
        manifest["stacks"][name] = {
            "workingDirectory": f"stacks/{name}",
            "dependencies": list(dependencies),
        }
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    return outdir


def passing_checks(environment: str, endpoint_url: str) -> Findings:
    """Stands in for policies.runtime, which knows only the environments in environments/."""
    identity = e2e.Identity(f"arn:aws:iam::{ORG_ACCOUNT}:role/deploy", REGION)
    session = e2e.emulator_session(endpoint_url, identity, "tests")
    s3 = e2e.emulator_client(session, "s3", endpoint_url)
    found = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    status = Status.PASSED if STATE_BUCKET in found else Status.FAILED
    finding = Finding(
        check_id="RT_TINY_STATE_BUCKET",
        check_name="the state bucket exists",
        status=status,
        source=Source.RUNTIME,
        stack=environment,
        resource=STATE_BUCKET,
    )
    return Findings(Source.RUNTIME, environment, (finding,))


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((LOOPBACK, port)) == 0


# --- choosing stacks and deciding what destroy keeps (no terraform) ------------------------


def test_an_environment_runs_with_bootstrap_and_what_it_reads(tmp_path: Path) -> None:
    stacks = runner.load_stacks(write_output(tmp_path / "out"))
    assert [s.name for s in e2e.environment_stacks(stacks, TINY)] == [
        "bootstrap",
        "tiny-app",
        "tiny-data",
    ]
    assert [s.name for s in e2e.environment_stacks(stacks, "org")] == ["bootstrap"]
    with pytest.raises(UsageError, match=r"no stack of environment 'prod' .*org, tiny"):
        e2e.environment_stacks(stacks, "prod")


def test_destroy_keeps_protected_resources_and_what_they_use(tmp_path: Path) -> None:
    stacks = runner.load_stacks(write_output(tmp_path / "out"))
    assert e2e.protected_addresses(stacks["tiny-data"]) == {
        "aws_ssm_parameter.retained",
        "aws_sns_topic.alerts",
    }
    assert e2e.protected_addresses(stacks["tiny-app"]) == set()
    assert e2e.protected_addresses(stacks["bootstrap"]) == {"aws_s3_bucket.state"}


def test_stacks_are_destroyed_after_the_stacks_that_read_them(tmp_path: Path) -> None:
    stacks = runner.load_stacks(write_output(tmp_path / "out"))
    assert e2e.reverse_dependencies([stacks["tiny-data"], stacks["tiny-app"]]) == {
        "tiny-data": {"tiny-app"},
        "tiny-app": set(),
    }


def result_with(
    *,
    status: Status = Status.PASSED,
    leftovers: tuple[str, ...] = (),
    sweep_errors: tuple[str, ...] = (),
    destroy: runner.Outcome | None = runner.Outcome.DESTROYED,
    kept: bool = False,
) -> e2e.E2EResult:
    finding = Finding("RT_X", "x", status, Source.RUNTIME, TINY, "r")
    row = e2e.StackRow(
        "tiny-data",
        runner.StackResult("tiny-data", runner.Outcome.APPLIED, resources=2),
        None if destroy is None else runner.StackResult("tiny-data", destroy),
        {},
    )
    return e2e.E2EResult(
        environment=TINY,
        endpoint_url="http://127.0.0.1:1",
        rows=(row,),
        findings=Findings(Source.RUNTIME, TINY, (finding,)),
        sweep=None if kept else e2e.Sweep(leftovers, sweep_errors),
        seconds=1.0,
        findings_path=Path("findings.json"),
        emulator_log=Path("emulator.log"),
        kept=kept,
    )


def test_a_run_succeeds_only_if_checks_pass_and_nothing_is_left() -> None:
    assert result_with().succeeded
    assert result_with(destroy=runner.Outcome.KEPT).succeeded
    assert not result_with(status=Status.FAILED).succeeded
    assert not result_with(status=Status.ERROR).succeeded
    assert not result_with(leftovers=("111111111111/us-east-1 ec2 vpc: vpc-1",)).succeeded
    assert not result_with(destroy=runner.Outcome.FAILED).succeeded
    assert not result_with(sweep_errors=("111111111111/us-east-1 glue: refused",)).succeeded


def test_a_kept_run_that_applied_and_passed_is_reported_passed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--keep then Ctrl-C: nothing destroyed, as asked, is no failure; a failed check still is."""
    kept = result_with(destroy=None, kept=True)
    assert kept.succeeded
    e2e.print_summary(kept)
    assert "passed (kept deployed until Ctrl-C" in capsys.readouterr().out
    failed = result_with(destroy=None, kept=True, status=Status.FAILED)
    assert not failed.succeeded
    e2e.print_summary(failed)
    assert "FAILED (kept deployed" in capsys.readouterr().out
    # Without --keep, a run that destroyed nothing is not torn down: a failure.
    assert not result_with(destroy=None).succeeded


def test_runtime_checks_that_cannot_run_are_an_error_finding() -> None:
    def unreachable(environment: str, endpoint_url: str) -> Findings:
        raise RuntimeChecksError("sts:GetCallerIdentity failed")

    findings = e2e.runtime_findings(unreachable, TINY, "http://127.0.0.1:1")
    assert [(f.check_id, f.status) for f in findings.findings] == [
        (e2e.RUNTIME_CHECKS_ID, Status.ERROR)
    ]
    assert "sts:GetCallerIdentity failed" in findings.findings[0].detail
    assert findings.failed()


def test_an_unknown_environment_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert e2e.main(["nowhere", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "synthesis of nowhere failed" in error
    assert "no such environment" in error


def test_an_output_synthesized_for_aws_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = write_output(tmp_path / "out", local=False)
    assert e2e.main([TINY, "--out", str(outdir), "--results", str(tmp_path / "r")]) == 2
    assert "synthesized for AWS, not for the emulator" in capsys.readouterr().err


# --- the sweep -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with running_emulator() as running:
        yield running


@pytest.mark.emulator
def test_the_sweep_finds_what_is_left_and_spares_what_is_kept(emulator: Emulator) -> None:
    identity = e2e.Identity(f"arn:aws:iam::{ACCOUNT}:role/deploy", REGION)
    session = e2e.emulator_session(emulator.endpoint_url, identity, "tests")

    def aws(service: str) -> Any:
        return e2e.emulator_client(session, service, emulator.endpoint_url)

    assert e2e.sweep(emulator.endpoint_url, [identity], set()).leftovers == ()

    vpc = aws("ec2").create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    aws("s3").create_bucket(Bucket="kept-on-purpose")
    doomed_key = aws("kms").create_key()["KeyMetadata"]["KeyId"]
    live_key = aws("kms").create_key()["KeyMetadata"]["KeyId"]
    aws("kms").schedule_key_deletion(KeyId=doomed_key, PendingWindowInDays=7)
    topic = aws("sns").create_topic(Name="stray")["TopicArn"]

    swept = e2e.sweep(emulator.endpoint_url, [identity], {"kept-on-purpose"})
    where = f"{ACCOUNT}/{REGION}"
    assert set(swept.leftovers) == {
        f"{where} ec2 vpc: {vpc}",
        f"{where} kms key: {live_key}",
        f"{where} sns topic: {topic}",
    }
    assert swept.errors == ()

    aws("ec2").delete_vpc(VpcId=vpc)
    aws("sns").delete_topic(TopicArn=topic)
    aws("kms").schedule_key_deletion(KeyId=live_key, PendingWindowInDays=7)
    assert e2e.sweep(emulator.endpoint_url, [identity], {"kept-on-purpose"}).leftovers == ()


# --- the whole run, with the real terraform ---------------------------------------------------


@requires_terraform
@pytest.mark.terraform
@pytest.mark.emulator
def test_e2e_applies_checks_destroys_and_sweeps_an_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = write_output(tmp_path / "out")
    before = sorted(p.relative_to(outdir) for p in outdir.rglob("*"))
    results = tmp_path / "reports"

    result = e2e.run_e2e(
        outdir,
        TINY,
        results=results,
        jobs=2,
        keep=False,
        base_environment=os.environ,
        checks=passing_checks,
    )
    e2e.print_summary(result)
    captured = capsys.readouterr()

    assert result.succeeded, captured.out
    rows = {row.stack: row for row in result.rows}
    assert {name: row.deploy.outcome for name, row in rows.items()} == dict.fromkeys(
        ("bootstrap", "tiny-app", "tiny-data"), runner.Outcome.APPLIED
    )
    # Resources in state after apply; the Direct Connect gateway and what uses it left out.
    assert (rows["tiny-data"].deploy.resources, rows["tiny-app"].deploy.resources) == (7, 3)
    assert rows["tiny-app"].not_emulated == {
        "aws_dx_gateway.sites": "moto 5.2.5 has no Direct Connect gateways",
        "aws_ssm_parameter.dx": "refers to aws_dx_gateway.sites",
    }
    # Converged, except the security group whose egress is managed twice.
    assert {name: row.pending for name, row in rows.items()} == {
        "bootstrap": (),
        "tiny-data": (),
        "tiny-app": ("update aws_security_group.fought_over (egress)",),
    }
    assert rows["tiny-app"].destroy is not None
    assert rows["tiny-app"].destroy.outcome is runner.Outcome.DESTROYED
    assert rows["tiny-data"].destroy is not None
    assert rows["tiny-data"].destroy.outcome is runner.Outcome.KEPT
    assert rows["tiny-data"].destroy.resources == 2
    assert rows["tiny-data"].destroy.note.startswith(
        "kept by prevent_destroy (and what it uses): "
        "aws_sns_topic.alerts, aws_ssm_parameter.retained; emptied before destroy: "
    )
    # Terraform's own requests to the logged bucket left access logs in the log bucket.
    emptied = re.search(
        r"emptied before destroy: (\d+) object versions from (.*)$", rows["tiny-data"].destroy.note
    )
    assert emptied and int(emptied.group(1)) > 0
    assert emptied.group(2).split(", ") == ["tiny-access-logs", "tiny-raw"]
    assert result.sweep == e2e.Sweep((), ())

    # Order: applied after what it reads, destroyed before it.
    err = captured.err
    assert err.index("tiny-data: apply") < err.index("tiny-app: init")
    assert err.index("tiny-app: destroy (-3)") < err.index("tiny-data: destroy (-5)")

    # The report: findings with the not-emulated resources named, and the summary table.
    findings = read_findings(results / e2e.FINDINGS_FILE)
    assert [f.status for f in findings.findings] == [Status.PASSED]
    assert findings.not_emulated == (
        "tiny-app: aws_dx_gateway.sites (moto 5.2.5 has no Direct Connect gateways)",
        "tiny-app: aws_ssm_parameter.dx (refers to aws_dx_gateway.sites)",
    )
    summary = json.loads((results / e2e.SUMMARY_FILE).read_text())
    assert summary["succeeded"] is True
    assert summary["leftovers"] == []
    table = captured.out.split("\n\n")[0].splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "stack",
        "resources",
        "not emulated",
        "plan",
        "apply",
        "plan again",
        "destroy",
        "seconds",
    ]
    assert re.search(
        r"^tiny-app\s+3\s+2\s+\+5 ~0 -0\s+applied\s+1 change\s+destroyed\s+\d",
        captured.out,
        re.M,
    )
    assert "not emulated (planned, not applied" in captured.out
    assert "  tiny-app: update aws_security_group.fought_over (egress)" in captured.out
    assert "sweep: nothing left behind after destroy" in captured.out

    assert not port_is_open(int(result.endpoint_url.rsplit(":", 1)[1]))
    assert sorted(p.relative_to(outdir) for p in outdir.rglob("*")) == before


@requires_terraform
@pytest.mark.terraform
@pytest.mark.emulator
def test_keep_leaves_everything_deployed_until_interrupted(tmp_path: Path) -> None:
    """The command line, with the real runtime checks: they know no environment `tiny`, so
    the run reports that as an error and exits 1 once interrupted."""
    outdir = write_output(tmp_path / "out")
    results = tmp_path / "reports"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tools.e2e", TINY, "--keep"),
            *("--out", str(outdir), "--results", str(results)),
        ],
        cwd=runner.REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    endpoint = ""
    try:
        for line in process.stderr:
            if line.startswith("--keep:"):
                endpoint = re.findall(r"http://127\.0\.0\.1:\d+", line)[0]
                break
        assert endpoint, "the run ended without keeping anything"
        identity = e2e.Identity(f"arn:aws:iam::{ACCOUNT}:role/deploy", REGION)
        session = e2e.emulator_session(endpoint, identity, "tests")
        ssm = e2e.emulator_client(session, "ssm", endpoint)
        parameters = ssm.describe_parameters()["Parameters"]
        assert {p["Name"] for p in parameters} == {
            "/tiny/retained",
            "/tiny/scratch",
            "/tiny/alerts-topic",
        }
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=HARNESS_TIMEOUT_SECONDS)
    assert process.returncode == 1
    assert "ERROR E2E_RUNTIME_CHECKS tiny" in stdout
    assert "no environment 'tiny'" in stdout
    row = r"^tiny-app\s+3\s+2\s+\+5 ~0 -0\s+applied\s+1 change\s+-\s"
    assert re.search(row, stdout, re.M), stdout
    assert not port_is_open(int(endpoint.rsplit(":", 1)[1]))
