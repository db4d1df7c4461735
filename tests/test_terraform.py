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

import io
import json
import os
import re
import shutil
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import main
from environments.loader import ENVIRONMENTS_DIR
from tests.emulated import service_trust
from tools import terraform as runner
from tools.cli import UsageError, default_jobs
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
    results = runner.validate(aws_output, [], jobs=default_jobs(), environment=dict(os.environ))
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
    with pytest.raises(UsageError, match="holds no providers"):
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
    with pytest.raises(UsageError, match="dependency cycle"):
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
    with pytest.raises(UsageError, match=r"no stack named dev-nope .*bootstrap, dev-data"):
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


@pytest.mark.emulator
def test_aws_managed_policies_attach_on_the_emulator(emulator: Emulator) -> None:
    iam = client(emulator, "iam", account="111111111111")
    trust = service_trust("ec2.amazonaws.com")
    iam.create_role(RoleName="enclave-host", AssumeRolePolicyDocument=json.dumps(trust))
    managed = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    iam.attach_role_policy(RoleName="enclave-host", PolicyArn=managed)
    attached = iam.list_attached_role_policies(RoleName="enclave-host")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [managed]
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.attach_role_policy(
            RoleName="enclave-host", PolicyArn="arn:aws:iam::aws:policy/NoSuchManagedPolicy"
        )


def endpoint_config(sagemaker: Any, name: str, instance_type: str) -> Any:
    return sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": "readmission",
                "InstanceType": instance_type,
                "InitialInstanceCount": 1,
            }
        ],
    )


@pytest.mark.emulator
def test_graviton_endpoint_instance_types_are_accepted_as_aws_accepts_them(
    emulator: Emulator,
) -> None:
    sagemaker = client(emulator, "sagemaker", account="111111111111")
    sagemaker.create_model(
        ModelName="readmission",
        PrimaryContainer={"Image": "111111111111.dkr.ecr.us-east-1.amazonaws.com/serve:1"},
        ExecutionRoleArn="arn:aws:iam::111111111111:role/endpoint",
    )
    endpoint_config(sagemaker, "graviton", "ml.c7g.xlarge")
    described = sagemaker.describe_endpoint_config(EndpointConfigName="graviton")
    assert described["ProductionVariants"][0]["InstanceType"] == "ml.c7g.xlarge"
    with pytest.raises(ClientError, match=r"ml\.c7g\.enormous.*failed to satisfy constraint"):
        endpoint_config(sagemaker, "invented", "ml.c7g.enormous")


@pytest.mark.emulator
def test_model_package_group_policies_round_trip_on_the_emulator(emulator: Emulator) -> None:
    sagemaker = client(emulator, "sagemaker", account="111111111111")
    sagemaker.create_model_package_group(ModelPackageGroupName="readmission-risk")
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
                    "Action": "sagemaker:DescribeModelPackage",
                    "Resource": "*",
                }
            ],
        }
    )
    put = sagemaker.put_model_package_group_policy(
        ModelPackageGroupName="readmission-risk", ResourcePolicy=policy
    )
    assert put["ModelPackageGroupArn"].endswith(":model-package-group/readmission-risk")
    read = sagemaker.get_model_package_group_policy(ModelPackageGroupName="readmission-risk")
    assert json.loads(read["ResourcePolicy"]) == json.loads(policy)

    sagemaker.delete_model_package_group_policy(ModelPackageGroupName="readmission-risk")
    with pytest.raises(ClientError, match="Cannot find resource policy for: arn:aws:sagemaker"):
        sagemaker.get_model_package_group_policy(ModelPackageGroupName="readmission-risk")
    with pytest.raises(ClientError, match=r"Cannot find Model Package Group: arn:.*/no-such-group"):
        sagemaker.put_model_package_group_policy(
            ModelPackageGroupName="no-such-group", ResourcePolicy=policy
        )

    sagemaker.delete_model_package_group(ModelPackageGroupName="readmission-risk")
    assert sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"] == []


@pytest.mark.emulator
def test_a_model_package_group_with_versions_is_not_deleted(emulator: Emulator) -> None:
    sagemaker = client(emulator, "sagemaker", account="222222222222")
    sagemaker.create_model_package_group(ModelPackageGroupName="sepsis")
    sagemaker.create_model_package(
        ModelPackageGroupName="sepsis",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "222222222222.dkr.ecr.us-east-1.amazonaws.com/serve:1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )
    with pytest.raises(ClientError, match="ConflictException"):
        sagemaker.delete_model_package_group(ModelPackageGroupName="sepsis")
    groups = sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert [g["ModelPackageGroupName"] for g in groups] == ["sepsis"]


@pytest.mark.emulator
def test_guardduty_feature_updates_change_only_the_features_named(emulator: Emulator) -> None:
    guardduty = client(emulator, "guardduty", account="111111111111")
    detector = guardduty.create_detector(Enable=True)["DetectorId"]

    def features() -> dict[str, str]:
        listed = guardduty.get_detector(DetectorId=detector).get("Features", [])
        return {feature["Name"]: feature["Status"] for feature in listed}

    for name in ("S3_DATA_EVENTS", "EBS_MALWARE_PROTECTION"):
        guardduty.update_detector(
            DetectorId=detector, Features=[{"Name": name, "Status": "ENABLED"}]
        )
    assert features() == {"S3_DATA_EVENTS": "ENABLED", "EBS_MALWARE_PROTECTION": "ENABLED"}
    guardduty.update_detector(
        DetectorId=detector, Features=[{"Name": "S3_DATA_EVENTS", "Status": "DISABLED"}]
    )
    assert features() == {"S3_DATA_EVENTS": "DISABLED", "EBS_MALWARE_PROTECTION": "ENABLED"}


@pytest.mark.emulator
def test_security_hub_configuration_and_standards_on_the_emulator(emulator: Emulator) -> None:
    securityhub = client(emulator, "securityhub", account="222222222222")
    standard = "arn:aws:securityhub:us-east-1::standards/cis-aws-foundations-benchmark/v/3.0.0"
    with pytest.raises(ClientError, match="not subscribed to AWS Security Hub"):
        securityhub.batch_enable_standards(
            StandardsSubscriptionRequests=[{"StandardsArn": standard}]
        )
    securityhub.enable_security_hub(EnableDefaultStandards=False)
    securityhub.update_security_hub_configuration(
        AutoEnableControls=False, ControlFindingGenerator="STANDARD_CONTROL"
    )
    hub = securityhub.describe_hub()
    assert (hub["AutoEnableControls"], hub["ControlFindingGenerator"]) == (
        False,
        "STANDARD_CONTROL",
    )

    enabled = securityhub.batch_enable_standards(
        StandardsSubscriptionRequests=[{"StandardsArn": standard}]
    )["StandardsSubscriptions"]
    subscription = (
        "arn:aws:securityhub:us-east-1:222222222222:subscription/"
        "cis-aws-foundations-benchmark/v/3.0.0"
    )
    assert [s["StandardsSubscriptionArn"] for s in enabled] == [subscription]
    listed = securityhub.get_enabled_standards(StandardsSubscriptionArns=[subscription])
    assert [
        (s["StandardsArn"], s["StandardsStatus"]) for s in listed["StandardsSubscriptions"]
    ] == [(standard, "READY")]
    securityhub.batch_disable_standards(StandardsSubscriptionArns=[subscription])
    assert securityhub.get_enabled_standards()["StandardsSubscriptions"] == []


@pytest.mark.emulator
def test_monitoring_schedules_live_and_die_on_the_emulator(emulator: Emulator) -> None:
    sagemaker = client(emulator, "sagemaker", account="111111111111")
    sagemaker.create_data_quality_job_definition(
        JobDefinitionName="readmission-data-quality",
        DataQualityAppSpecification={"ImageUri": "156813124566.dkr.ecr.us-east-1.amazonaws.com/m"},
        DataQualityJobInput={
            "EndpointInput": {"EndpointName": "readmission", "LocalPath": "/opt/ml/processing"}
        },
        DataQualityJobOutputConfig={
            "MonitoringOutputs": [
                {
                    "S3Output": {
                        "S3Uri": "s3://captures/reports",
                        "LocalPath": "/opt/ml/processing/output",
                    }
                }
            ]
        },
        JobResources={
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 20,
            }
        },
        RoleArn="arn:aws:iam::111111111111:role/monitor",
    )
    config = {
        "MonitoringJobDefinitionName": "readmission-data-quality",
        "MonitoringType": "DataQuality",
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
    }
    arn = sagemaker.create_monitoring_schedule(
        MonitoringScheduleName="hourly",
        MonitoringScheduleConfig=config,
        Tags=[{"Key": "environment", "Value": "dev"}],
    )["MonitoringScheduleArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:111111111111:monitoring-schedule/hourly"

    described = sagemaker.describe_monitoring_schedule(MonitoringScheduleName="hourly")
    assert described["MonitoringScheduleStatus"] == "Scheduled"
    assert described["MonitoringScheduleConfig"] == config
    assert described["EndpointName"] == "readmission"
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "environment", "Value": "dev"}]
    listed = sagemaker.list_monitoring_schedules()["MonitoringScheduleSummaries"]
    assert [s["MonitoringScheduleName"] for s in listed] == ["hourly"]

    sagemaker.delete_monitoring_schedule(MonitoringScheduleName="hourly")
    with pytest.raises(ClientError, match="ResourceNotFound"):
        sagemaker.describe_monitoring_schedule(MonitoringScheduleName="hourly")
    with pytest.raises(ClientError, match="ResourceNotFound"):
        sagemaker.create_monitoring_schedule(
            MonitoringScheduleName="orphan",
            MonitoringScheduleConfig={**config, "MonitoringJobDefinitionName": "no-such-job"},
        )


def create_feature_group(sagemaker: Any, name: str, **stores: Any) -> str:
    created = sagemaker.create_feature_group(
        FeatureGroupName=name,
        RecordIdentifierFeatureName="patient_id",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=[
            {"FeatureName": "patient_id", "FeatureType": "String"},
            {"FeatureName": "event_time", "FeatureType": "String"},
        ],
        OnlineStoreConfig=stores.get("online", {"EnableOnlineStore": True}),
        OfflineStoreConfig=stores.get(
            "offline", {"S3StorageConfig": {"S3Uri": "s3://features/offline"}}
        ),
        RoleArn="arn:aws:iam::444444444444:role/features",
    )
    return str(created["FeatureGroupArn"])


@pytest.mark.emulator
def test_feature_groups_keep_their_online_store_key_and_glue_table(emulator: Emulator) -> None:
    sagemaker = client(emulator, "sagemaker", account="444444444444")
    key = "arn:aws:kms:us-east-1:444444444444:key/feature-store"
    catalog = {"Catalog": "AwsDataCatalog", "Database": "phi_features", "TableName": "vitals"}
    create_feature_group(
        sagemaker,
        "kept-config",
        online={"EnableOnlineStore": True, "SecurityConfig": {"KmsKeyId": key}},
        offline={
            "S3StorageConfig": {"S3Uri": "s3://features/offline", "KmsKeyId": key},
            "DataCatalogConfig": catalog,
            "DisableGlueTableCreation": True,
        },
    )
    described = sagemaker.describe_feature_group(FeatureGroupName="kept-config")
    assert described["OnlineStoreConfig"]["SecurityConfig"]["KmsKeyId"] == key
    assert described["OfflineStoreConfig"]["DataCatalogConfig"] == catalog

    # Without a catalog of its own, the group gets one generated, as in AWS.
    create_feature_group(sagemaker, "generated-catalog")
    generated = sagemaker.describe_feature_group(FeatureGroupName="generated-catalog")
    assert generated["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"].startswith(
        "generated_catalog_"
    )
    sagemaker.delete_feature_group(FeatureGroupName="kept-config")
    sagemaker.delete_feature_group(FeatureGroupName="generated-catalog")


@pytest.mark.emulator
def test_lambda_functions_report_their_dead_letter_queue(emulator: Emulator) -> None:
    functions = client(emulator, "lambda", account="111111111111")
    trust = service_trust("lambda.amazonaws.com")
    client(emulator, "iam", account="111111111111").create_role(
        RoleName="rollback", AssumeRolePolicyDocument=json.dumps(trust)
    )
    queue = "arn:aws:sqs:us-east-1:111111111111:rollback-dead-letters"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as package:
        package.writestr("handler.py", "def handle(event, context):\n    return event\n")

    def create(name: str, **dead_letters: Any) -> dict[str, Any]:
        return dict(
            functions.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role="arn:aws:iam::111111111111:role/rollback",
                Handler="handler.handle",
                Code={"ZipFile": archive.getvalue()},
                **dead_letters,
            )
        )

    create("with-dead-letters", DeadLetterConfig={"TargetArn": queue})
    create("without-dead-letters")
    read = functions.get_function_configuration(FunctionName="with-dead-letters")
    assert read["DeadLetterConfig"] == {"TargetArn": queue}
    assert "DeadLetterConfig" not in functions.get_function_configuration(
        FunctionName="without-dead-letters"
    )
    functions.update_function_configuration(
        FunctionName="without-dead-letters", DeadLetterConfig={"TargetArn": queue}
    )
    updated = functions.get_function_configuration(FunctionName="without-dead-letters")
    assert updated["DeadLetterConfig"] == {"TargetArn": queue}


@pytest.mark.emulator
def test_feature_groups_are_listed_and_deleted_on_the_emulator(emulator: Emulator) -> None:
    sagemaker = client(emulator, "sagemaker", account="444444444444")
    assert sagemaker.list_feature_groups()["FeatureGroupSummaries"] == []
    arn = create_feature_group(sagemaker, "patient-vitals")
    listed = sagemaker.list_feature_groups()["FeatureGroupSummaries"]
    assert [(g["FeatureGroupName"], g["FeatureGroupArn"]) for g in listed] == [
        ("patient-vitals", arn)
    ]

    sagemaker.delete_feature_group(FeatureGroupName="patient-vitals")
    assert sagemaker.list_feature_groups()["FeatureGroupSummaries"] == []
    for unknown in (sagemaker.describe_feature_group, sagemaker.delete_feature_group):
        with pytest.raises(ClientError, match="ResourceNotFound"):
            unknown(FeatureGroupName="patient-vitals")


@pytest.mark.emulator
def test_flow_logs_to_a_log_group_given_by_arn_deliver(emulator: Emulator) -> None:
    ec2 = client(emulator, "ec2", account="111111111111")
    logs = client(emulator, "logs", account="111111111111")
    vpc = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    logs.create_log_group(logGroupName="/phi-ml/test/flow-logs")
    arn = "arn:aws:logs:us-east-1:111111111111:log-group:/phi-ml/test/flow-logs"

    def delivery(destination: str) -> tuple[str, str]:
        created = ec2.create_flow_logs(
            ResourceIds=[vpc],
            ResourceType="VPC",
            TrafficType="ALL",
            LogDestinationType="cloud-watch-logs",
            LogDestination=destination,
            DeliverLogsPermissionArn="arn:aws:iam::111111111111:role/flow-logs",
        )["FlowLogIds"][0]
        found = ec2.describe_flow_logs(FlowLogIds=[created])["FlowLogs"][0]
        return found["DeliverLogsStatus"], found.get("DeliverLogsErrorMessage", "")

    assert delivery(arn) == ("SUCCESS", "")
    assert delivery(arn.replace("flow-logs", "no-such-group")) == ("FAILED", "Access error")


@pytest.mark.emulator
def test_key_rotation_periods_are_kept_on_the_emulator(emulator: Emulator) -> None:
    kms = client(emulator, "kms", account="111111111111")
    yearly, quarterly, never = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(3))
    kms.enable_key_rotation(KeyId=yearly)
    kms.enable_key_rotation(KeyId=quarterly, RotationPeriodInDays=90)

    def period(key: str) -> tuple[bool, int | None]:
        found = kms.get_key_rotation_status(KeyId=key)
        return found["KeyRotationEnabled"], found.get("RotationPeriodInDays")

    assert period(yearly) == (True, 365)
    assert period(quarterly) == (True, 90)
    assert period(never) == (False, None)


@pytest.mark.emulator
def test_model_network_isolation_is_kept_on_the_emulator(emulator: Emulator) -> None:
    sagemaker = client(emulator, "sagemaker", account="111111111111")
    container = {"Image": "111111111111.dkr.ecr.us-east-1.amazonaws.com/serve:2"}
    role = "arn:aws:iam::111111111111:role/endpoint"
    for name, isolated in (("isolated", True), ("connected", False)):
        sagemaker.create_model(
            ModelName=name,
            PrimaryContainer=container,
            ExecutionRoleArn=role,
            EnableNetworkIsolation=isolated,
        )
        assert sagemaker.describe_model(ModelName=name)["EnableNetworkIsolation"] is isolated


@pytest.mark.emulator
def test_current_organization_service_principals_are_accepted(emulator: Emulator) -> None:
    organizations = client(emulator, "organizations", account="999999999999")
    organizations.create_organization(FeatureSet="ALL")
    member = organizations.create_account(AccountName="audit", Email="audit@example.com")
    account = member["CreateAccountStatus"]["AccountId"]
    organizations.enable_aws_service_access(
        ServicePrincipal="malware-protection.guardduty.amazonaws.com"
    )
    organizations.register_delegated_administrator(
        AccountId=account, ServicePrincipal="config.amazonaws.com"
    )
    enabled = organizations.list_aws_service_access_for_organization()
    assert [p["ServicePrincipal"] for p in enabled["EnabledServicePrincipals"]] == [
        "malware-protection.guardduty.amazonaws.com"
    ]
    with pytest.raises(ClientError, match="unrecognized service principal"):
        organizations.enable_aws_service_access(ServicePrincipal="invented.amazonaws.com")


@pytest.mark.emulator
def test_trails_are_deleted_by_arn_on_the_emulator(emulator: Emulator) -> None:
    owner = client(emulator, "s3", account="999999999999")
    owner.create_bucket(Bucket="trail-archive")
    cloudtrail = client(emulator, "cloudtrail", account="999999999999")
    arn = cloudtrail.create_trail(Name="organization-trail", S3BucketName="trail-archive")[
        "TrailARN"
    ]
    cloudtrail.delete_trail(Name=arn)
    assert cloudtrail.describe_trails()["trailList"] == []
    with pytest.raises(ClientError, match="TrailNotFoundException"):
        cloudtrail.delete_trail(Name=arn)


@pytest.mark.emulator
def test_security_hub_organization_admins_are_listed_and_disabled(emulator: Emulator) -> None:
    organizations = client(emulator, "organizations", account="888888888888")
    organizations.create_organization(FeatureSet="ALL")
    member = organizations.create_account(AccountName="security", Email="sec@example.com")
    admin = member["CreateAccountStatus"]["AccountId"]
    securityhub = client(emulator, "securityhub", account="888888888888")
    assert securityhub.list_organization_admin_accounts()["AdminAccounts"] == []
    securityhub.enable_organization_admin_account(AdminAccountId=admin)
    listed = securityhub.list_organization_admin_accounts()["AdminAccounts"]
    assert listed == [{"AccountId": admin, "Status": "ENABLED"}]
    securityhub.disable_organization_admin_account(AdminAccountId=admin)
    assert securityhub.list_organization_admin_accounts()["AdminAccounts"] == []


def test_a_stack_depends_on_the_stacks_it_reads_not_on_deployment_order(tmp_path: Path) -> None:
    """The manifest also orders `cdktf deploy` (the organization before its accounts' stacks);
    a plan or an emulator run needs only the stacks whose state is read."""

    def write(name: str, reads: list[str]) -> None:
        directory = tmp_path / "stacks" / name
        directory.mkdir(parents=True)
        remote = {f"cross-stack-reference-input-{r}": {"backend": "s3"} for r in reads}
        data = {"terraform_remote_state": remote} if remote else {}
        (directory / "cdk.tf.json").write_text(json.dumps({"data": data}))

    write("org-governance", [])
    write("x-data", [])
    write("x-ml", ["x-data"])
    manifest = {
        name: {"workingDirectory": f"stacks/{name}", "dependencies": order}
        for name, order in [
            ("org-governance", []),
            ("x-data", ["org-governance"]),
            ("x-ml", ["org-governance", "x-data"]),
        ]
    }
    (tmp_path / "manifest.json").write_text(json.dumps({"stacks": manifest}))
    stacks = runner.load_stacks(tmp_path)
    assert stacks["x-data"].dependencies == ()
    assert stacks["x-ml"].dependencies == ("x-data",)


@pytest.mark.emulator
def test_guardduty_organization_admins_are_disabled(emulator: Emulator) -> None:
    guardduty = client(emulator, "guardduty", account="777777777777")
    guardduty.enable_organization_admin_account(AdminAccountId="123412341234")
    guardduty.enable_organization_admin_account(AdminAccountId="567856785678")
    guardduty.disable_organization_admin_account(AdminAccountId="123412341234")
    listed = guardduty.list_organization_admin_accounts()["AdminAccounts"]
    assert [a["AdminAccountId"] for a in listed] == ["567856785678"]
