"""The terraform runner (`python -m tools.terraform`) and the moto emulator behind its plan.

The tests marked `terraform` run the real terraform binary; they are skipped only when terraform
is not on PATH. Offline, terraform finds hashicorp/aws through the filesystem mirror named by
PHI_PROVIDER_MIRROR, read from the environment exactly as the tool reads it: `make test` sets
it (to /opt/tf-plugins on the build machines); running pytest by hand offline, set it yourself,
e.g. `PHI_PROVIDER_MIRROR=/opt/tf-plugins .venv/bin/pytest tests/test_terraform.py`. Without it
terraform tries the registry, and these tests fail with terraform's `init failed` message.

The tests marked `emulator` start moto on loopback. The end-to-end plan of the dev environment
applies bootstrap and every dev stack another one reads, and plans the rest; it takes three to
four minutes, most of it the AWS provider's own waits for S3 lifecycle and KMS key
propagation (about a minute per stack with buckets).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import main
from environments.loader import ENVIRONMENTS_DIR
from tools import terraform as runner
from tools.emulator import LOOPBACK, Emulator, running_emulator

requires_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not on PATH"
)
ENVIRONMENT_NAMES = sorted(p.parent.name for p in ENVIRONMENTS_DIR.glob("*/environment.yaml"))
ORGANIZATION = "org"


# --- helpers and fixtures -----------------------------------------------------------------


def synthesize(destination: Path, environments: list[str], *, target: str) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", target)
        main.synthesize(environments, destination)
    return destination


def stack_environment(stack_dir: Path) -> str:
    """The environment a stack belongs to, from the default tags of its provider."""
    configuration = json.loads((stack_dir / "cdk.tf.json").read_text())
    return str(configuration["provider"]["aws"][0]["default_tags"][0]["tags"]["environment"])


def copy_stacks(outdir: Path, destination: Path, names: list[str]) -> Path:
    """A synthesized directory holding only `names` (their manifest entries and JSON)."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    manifest["stacks"] = {name: manifest["stacks"][name] for name in names}
    for name in names:
        (destination / "stacks" / name).mkdir(parents=True)
        shutil.copy(outdir / "stacks" / name / "cdk.tf.json", destination / "stacks" / name)
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """The summary table printed on stdout, by stack name."""
    lines = stdout.strip().split("\n\n")[0].splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines[2:]}


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((LOOPBACK, port)) == 0


def failure_hint(results: list[runner.StackResult]) -> str:
    problems = "\n".join(f"{r.stack}: {r.outcome}\n{r.problem}" for r in results if r.problem)
    mirror = os.environ.get(runner.MIRROR_VARIABLE) or "unset (registry downloads)"
    return f"{problems}\n({runner.MIRROR_VARIABLE} is {mirror})"


@pytest.fixture(scope="module")
def aws_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every environment synthesized for real AWS accounts."""
    return synthesize(tmp_path_factory.mktemp("aws") / "cdktf.out", [], target="aws")


@pytest.fixture(scope="module")
def validated(aws_output: Path) -> dict[str, runner.StackResult]:
    """`validate` of every stack of aws_output, run once for the module."""
    results = runner.validate(
        aws_output, [], jobs=runner.default_jobs(), environment=dict(os.environ)
    )
    return {result.stack: result for result in results}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with running_emulator() as running:
        yield running


def client(emulator: Emulator, service: str, account: str | None = None) -> Any:
    """A boto3 client on the emulator, as the default account or as a role in `account`."""
    settings: dict[str, Any] = {
        "endpoint_url": emulator.endpoint_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    if account is not None:
        credentials = boto3.client("sts", **settings).assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/phi-ml-terraform", RoleSessionName="tests"
        )["Credentials"]
        settings |= {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        }
    return boto3.client(service, config=Config(s3={"addressing_style": "path"}), **settings)


# --- settings and environment (no terraform needed) ----------------------------------------


def test_cli_config_installs_mirrored_providers_only_from_the_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64").mkdir(parents=True)
    text = runner.cli_config_text(mirror, tmp_path / "plugins")
    # No shared cache beside a mirror: concurrent inits rewrite a cache under running stacks.
    assert "plugin_cache_dir" not in text
    assert f'path    = "{mirror}"' in text
    assert 'include = ["registry.terraform.io/hashicorp/aws"]' in text
    assert 'exclude = ["registry.terraform.io/hashicorp/aws"]' in text


def test_cli_config_without_a_mirror_keeps_registry_downloads(tmp_path: Path) -> None:
    text = runner.cli_config_text(None, tmp_path / "plugins")
    assert "plugin_cache_dir" in text
    assert "provider_installation" not in text


def test_a_mirror_without_providers_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(runner.UsageError, match="holds no providers"):
        runner.cli_config_text(tmp_path, tmp_path / "plugins")


def test_terraform_environment_replaces_the_machine_cli_config(tmp_path: Path) -> None:
    caller = {"TF_CLI_CONFIG_FILE": "/root/.terraformrc", "PATH": "/usr/bin"}
    environment = runner.terraform_environment(caller, tmp_path / "rc")
    assert environment["TF_CLI_CONFIG_FILE"] == str(tmp_path / "rc")
    assert environment["TF_IN_AUTOMATION"] == "1"
    assert environment["CHECKPOINT_DISABLE"] == "1"
    assert environment["PATH"] == "/usr/bin"
    assert caller["TF_CLI_CONFIG_FILE"] == "/root/.terraformrc", "the caller's mapping changed"


def test_emulator_environment_sends_everything_to_loopback_with_fake_credentials() -> None:
    caller = {
        "AWS_PROFILE": "prod-admin",
        "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
        "AWS_SESSION_TOKEN": "real",
        "AWS_ENDPOINT_URL_S3": "https://s3.example",
        "AWS_ACCESS_KEY_ID": "AKIAREAL",
        "HOME": "/root",
    }
    environment = runner.emulator_environment(caller, "http://127.0.0.1:4566")
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert environment["AWS_ACCESS_KEY_ID"] == "testing"
    assert environment["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert environment["AWS_REGION"] == environment["AWS_DEFAULT_REGION"] == "us-east-1"
    for dropped in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        assert dropped not in environment
    assert environment["HOME"] == "/root"


def test_changes_are_counted_as_terraform_counts_them() -> None:
    plan = {
        "resource_changes": [
            {"change": {"actions": ["create"]}},
            {"change": {"actions": ["update"]}},
            {"change": {"actions": ["delete", "create"]}},
            {"change": {"actions": ["delete"]}},
            {"change": {"actions": ["no-op"]}},
            {"change": {"actions": ["read"]}},
        ]
    }
    assert runner.count_changes(plan) == runner.Changes(add=2, change=1, destroy=2)


def fake_stacks(dependencies: dict[str, tuple[str, ...]]) -> list[runner.Stack]:
    return [runner.Stack(name, Path(name), needs) for name, needs in dependencies.items()]


def test_stacks_run_after_what_they_depend_on() -> None:
    stacks = fake_stacks({"bootstrap": (), "dev-data": (), "dev-network": ("dev-data",)})
    started: list[str] = []

    def task(stack: runner.Stack) -> runner.StackResult:
        started.append(stack.name)
        return runner.StackResult(stack.name, runner.Outcome.APPLIED)

    progress = runner.Progress(stacks)
    dependencies = runner.emulator_dependencies(stacks)
    results = runner.run_in_dependency_order(stacks, dependencies, task, jobs=2, progress=progress)
    assert [r.outcome for r in results] == [runner.Outcome.APPLIED] * 3
    assert started[0] == "bootstrap"
    assert started.index("dev-data") < started.index("dev-network")


def test_a_failed_stack_skips_what_depends_on_it_but_not_its_neighbours() -> None:
    stacks = fake_stacks({"a": (), "b": ("a",), "c": ("b",), "independent": ()})

    def task(stack: runner.Stack) -> runner.StackResult:
        outcome = runner.Outcome.FAILED if stack.name == "a" else runner.Outcome.PLANNED
        return runner.StackResult(stack.name, outcome)

    dependencies = {s.name: set(s.dependencies) for s in stacks}
    results = runner.run_in_dependency_order(
        stacks, dependencies, task, jobs=2, progress=runner.Progress(stacks)
    )
    outcomes = {r.stack: r.outcome for r in results}
    assert outcomes == {
        "a": runner.Outcome.FAILED,
        "b": runner.Outcome.SKIPPED,
        "c": runner.Outcome.SKIPPED,
        "independent": runner.Outcome.PLANNED,
    }


def test_a_dependency_cycle_is_refused() -> None:
    stacks = fake_stacks({"a": ("b",), "b": ("a",)})
    with pytest.raises(runner.UsageError, match="dependency cycle"):
        runner.run_in_dependency_order(
            stacks,
            {s.name: set(s.dependencies) for s in stacks},
            lambda s: runner.StackResult(s.name, runner.Outcome.VALID),
            jobs=1,
            progress=runner.Progress(stacks),
        )


def stack_with_resources(directory: Path, resources: dict[str, dict[str, Any]]) -> runner.Stack:
    directory.mkdir()
    (directory / "cdk.tf.json").write_text(json.dumps({"resource": resources}))
    return runner.Stack(directory.name, directory, ())


def test_resources_the_emulator_lacks_are_left_out_with_what_refers_to_them(
    tmp_path: Path,
) -> None:
    stack = stack_with_resources(
        tmp_path / "prod-network",
        {
            "aws_dx_gateway": {"gw": {"name": "dx", "amazon_side_asn": "64512"}},
            "aws_dx_gateway_association": {
                "assoc": {"dx_gateway_id": "${aws_dx_gateway.gw.id}", "associated_gateway_id": "x"}
            },
            "aws_route53_record": {"after": {"depends_on": ["aws_dx_gateway_association.assoc"]}},
            "aws_vpc": {"vpc": {"cidr_block": "10.0.0.0/16"}},
            "aws_subnet": {"gw2": {"vpc_id": "${aws_vpc.vpc.id}"}},
        },
    )
    assert runner.not_emulated(stack) == [
        "aws_dx_gateway.gw",
        "aws_dx_gateway_association.assoc",
        "aws_route53_record.after",
    ]


def test_a_stack_of_emulated_resources_leaves_nothing_out(tmp_path: Path) -> None:
    stack = stack_with_resources(
        tmp_path / "dev-network",
        {
            "aws_vpc": {"vpc": {"cidr_block": "10.0.0.0/16"}},
            "aws_subnet": {"a": {"vpc_id": "${aws_vpc.vpc.id}"}},
        },
    )
    assert runner.not_emulated(stack) == []


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_an_output_without_stacks_says_to_synthesize_first(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main([command, "--out", str(tmp_path)]) == 2
    assert "run `make synth` first" in capsys.readouterr().err


def test_an_unknown_stack_name_lists_the_synthesized_ones() -> None:
    stacks = {s.name: s for s in fake_stacks({"bootstrap": (), "dev-data": ()})}
    with pytest.raises(runner.UsageError, match=r"no stack named dev-nope .*bootstrap, dev-data"):
        runner.select_stacks(stacks, ["dev-nope"])


# --- validate with the real terraform -------------------------------------------------------


@requires_terraform
@pytest.mark.terraform
@pytest.mark.parametrize("environment", ENVIRONMENT_NAMES)
def test_every_stack_of_each_environment_is_valid(
    environment: str, aws_output: Path, validated: dict[str, runner.StackResult]
) -> None:
    stacks = sorted(
        name for name in validated if stack_environment(aws_output / "stacks" / name) == environment
    )
    assert stacks, f"no synthesized stack belongs to {environment}"
    if environment == ORGANIZATION:
        assert runner.BOOTSTRAP_STACK in stacks
    results = [validated[name] for name in stacks]
    assert all(r.outcome is runner.Outcome.VALID for r in results), failure_hint(results)
    assert all(r.resources for r in results), "a valid stack without resources"


@requires_terraform
@pytest.mark.terraform
def test_a_broken_resource_fails_validate_and_names_its_stack(
    aws_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = copy_stacks(aws_output, tmp_path / "out", ["bootstrap", "dev-data"])
    stack_file = outdir / "stacks" / "dev-data" / "cdk.tf.json"
    configuration = json.loads(stack_file.read_text())
    key = next(iter(configuration["resource"]["aws_kms_key"].values()))
    key["deletion_window_in_days_typo"] = 30
    stack_file.write_text(json.dumps(configuration))

    assert runner.main(["validate", "--out", str(outdir), "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    rows = summary_rows(out)
    assert rows["dev-data"][0] == "INVALID"
    assert rows["bootstrap"][0] == "valid"
    assert "dev-data: INVALID" in out
    assert 'No argument or block type is named "deletion_window_in_days_typo"' in out


# --- plan against the emulator --------------------------------------------------------------


@requires_terraform
@pytest.mark.terraform
@pytest.mark.emulator
def test_plan_applies_upstream_stacks_and_plans_the_rest_on_moto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = synthesize(tmp_path / "cdktf.out.local", ["dev"], target="local")
    before = sorted(p.relative_to(outdir) for p in outdir.rglob("*"))

    exit_code = runner.main(["plan", "--out", str(outdir)])
    captured = capsys.readouterr()

    assert exit_code == 0, captured.out
    rows = summary_rows(captured.out)
    stacks = runner.load_stacks(outdir)
    read_by_another = {d for stack in stacks.values() for d in stack.dependencies}
    assert {name: row[0] for name, row in rows.items()} == {
        name: "applied" if name in read_by_another | {"bootstrap"} else "planned" for name in stacks
    }
    assert {"applied", "planned"} <= {row[0] for row in rows.values()}
    assert all(int(row[1]) > 0 for row in rows.values()), "a stack planned nothing to add"
    port = int(re.findall(r"emulator: http://127\.0\.0\.1:(\d+)", captured.err)[0])
    assert not port_is_open(port), "the moto server outlived the plan"
    assert sorted(p.relative_to(outdir) for p in outdir.rglob("*")) == before


def test_plan_refuses_an_output_synthesized_for_aws(
    aws_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main(["plan", "--out", str(aws_output)]) == 2
    error = capsys.readouterr().err
    assert "synthesized for AWS, not for the emulator" in error
    assert "PHI_TARGET=local" in error


# --- the emulator itself --------------------------------------------------------------------


@pytest.mark.emulator
def test_the_emulator_serves_loopback_and_is_gone_after_the_block() -> None:
    with running_emulator() as running:
        assert running.endpoint_url == f"http://127.0.0.1:{running.port}"
        identity = client(running, "sts", account="111111111111").get_caller_identity()
        assert identity["Account"] == "111111111111"
    assert not port_is_open(running.port)


@pytest.mark.emulator
def test_the_emulator_stops_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), running_emulator() as running:
        raise RuntimeError("boom")
    assert not port_is_open(running.port)


def tls_only_policy(bucket: str, *, unconditional_deny: bool = False) -> str:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "AllowS3ServerAccessLogDelivery",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        },
    ]
    if unconditional_deny:
        statements.append(
            {
                "Sid": "DenyReads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def bucket_with_policy(s3: Any, name: str, policy: str) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_policy(Bucket=name, Policy=policy)
    return name


@pytest.mark.emulator
def test_a_tls_only_bucket_serves_objects_on_the_emulator(emulator: Emulator) -> None:
    owner = client(emulator, "s3", account="999999999999")
    bucket = bucket_with_policy(owner, "tls-only-state", tls_only_policy("tls-only-state"))
    owner.put_object(Bucket=bucket, Key="state", Body=b"{}", ServerSideEncryption="aws:kms")
    # The S3 backend reads as the caller's own identity, not the bucket owner's.
    assert client(emulator, "s3").get_object(Bucket=bucket, Key="state")["Body"].read() == b"{}"


@pytest.mark.emulator
def test_an_unconditional_deny_still_denies_on_the_emulator(emulator: Emulator) -> None:
    owner = client(emulator, "s3", account="999999999999")
    policy = tls_only_policy("deny-reads", unconditional_deny=True)
    bucket = bucket_with_policy(owner, "deny-reads", policy)
    owner.put_object(Bucket=bucket, Key="state", Body=b"{}")
    with pytest.raises(ClientError, match=r"AccessDenied|403"):
        client(emulator, "s3").get_object(Bucket=bucket, Key="state")


@pytest.mark.emulator
def test_access_logging_into_a_tls_only_target_is_accepted(emulator: Emulator) -> None:
    owner = client(emulator, "s3", account="999999999999")
    target = bucket_with_policy(owner, "log-target", tls_only_policy("log-target"))
    owner.create_bucket(Bucket="logged")
    owner.put_bucket_logging(
        Bucket="logged",
        BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": "x/"}},
    )
    enabled = owner.get_bucket_logging(Bucket="logged")["LoggingEnabled"]
    assert enabled["TargetBucket"] == target


@pytest.mark.emulator
def test_access_logging_into_a_target_without_log_delivery_is_refused(
    emulator: Emulator,
) -> None:
    owner = client(emulator, "s3", account="999999999999")
    statements = json.loads(tls_only_policy("closed-target"))
    statements["Statement"] = statements["Statement"][:1]
    target = bucket_with_policy(owner, "closed-target", json.dumps(statements))
    owner.create_bucket(Bucket="logged-nowhere")
    with pytest.raises(ClientError, match="InvalidTargetBucketForLogging"):
        owner.put_bucket_logging(
            Bucket="logged-nowhere",
            BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": ""}},
        )


@pytest.mark.emulator
def test_vpn_gateway_routes_propagate_only_to_the_chosen_route_table(emulator: Emulator) -> None:
    ec2 = client(emulator, "ec2", account="111111111111")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    gateway = ec2.create_vpn_gateway(Type="ipsec.1")["VpnGateway"]["VpnGatewayId"]
    chosen, other = (ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in "ab")

    def propagating(table: str) -> list[str]:
        described = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]
        return [v["GatewayId"] for v in described.get("PropagatingVgws", [])]

    ec2.enable_vgw_route_propagation(GatewayId=gateway, RouteTableId=chosen)
    assert propagating(chosen) == [gateway]
    assert propagating(other) == []
    ec2.disable_vgw_route_propagation(GatewayId=gateway, RouteTableId=chosen)
    assert propagating(chosen) == []


@pytest.mark.emulator
def test_an_action_moto_lacks_fails_at_once_and_names_itself(emulator: Emulator) -> None:
    directconnect = client(emulator, "directconnect")
    with pytest.raises(ClientError, match="create_direct_connect_gateway") as refused:
        directconnect.create_direct_connect_gateway(
            directConnectGatewayName="clinical-sites", amazonSideAsn=64512
        )
    assert refused.value.response["Error"]["Code"] == "NotImplemented"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
