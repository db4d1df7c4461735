"""The custom checkov checks (policies/checks), run the way the gate runs them: real checkov,
`--framework terraform_json`, offline.

- Every check file found in policies/checks (not `_*.py` helpers) must have fixtures under
  tests/fixtures/checks/<file stem>/<case>/cdk.tf.json. Each fixture lists, in its top-level
  `"//": {"expect": [...]}` (a comment key Terraform and checkov skip), exactly which resources
  the check passes and fails there; a check needs at least one of each. A new check without
  fixtures fails `test_check_passes_and_fails_its_fixtures`.
- The real synthesized dev, eu-research and prod environments (with the organization stacks)
  pass every check, and each check passes on at least one of their resources.
- For every check, a copy of a real stack with the guarded property switched off fails that
  check on exactly the resource that lost it, while the untouched stack passes it there.

checkov runs twice (fixtures; real + mutated stacks), in a subprocess whose sockets refuse to
connect, so a check or checkov itself reaching for the network is a test failure.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import main
from policies.catalog import load_catalog

REPO = Path(__file__).resolve().parents[1]
CHECKS_DIR = REPO / "policies" / "checks"
FIXTURES_DIR = REPO / "tests" / "fixtures" / "checks"
CHECK_FILES = sorted(p for p in CHECKS_DIR.glob("*.py") if not p.name.startswith("_"))
PASSED, FAILED = "PASSED", "FAILED"
NETWORK_MARKER = "CHECKOV-NETWORK-ATTEMPT"

# Runs checkov's console entry point with every socket connection and name lookup refused.
OFFLINE_CHECKOV = f"""
import socket, sys
def refuse(*args, **kwargs):
    print("{NETWORK_MARKER}", args[1:3], file=sys.stderr, flush=True)
    raise OSError("checkov must not use the network")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from checkov.main import Checkov
sys.argv = ["checkov", *sys.argv[1:]]
sys.exit(Checkov().run())
"""


# --- running checkov ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    check_id: str
    stack: str  # the stack directory, relative to the scanned root
    resource: str  # `aws_vpc.<name>`, `provider.aws`
    result: str


@dataclass(frozen=True)
class Scan:
    results: list[Result]
    stderr: str

    def of(self, check_id: str, stack_prefix: str = "") -> set[tuple[str, str, str]]:
        return {
            (r.stack, r.resource, r.result)
            for r in self.results
            if r.check_id == check_id and r.stack.startswith(stack_prefix)
        }


def checkov_environment() -> dict[str, str]:
    """No platform key, no update check (it asks PyPI), no mapping download."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_"))
    }
    environment.update(CKV_SKIP_PACKAGE_UPDATE_CHECK="true", BC_SKIP_MAPPING="TRUE")
    return environment


def resource_address(root: Path, file_path: str, resource: str) -> str:
    """checkov names a Python resource check's resource `resource.<name>` under terraform_json
    (it drops the type); the name is unique in a stack, so the file gives the type back."""
    if not resource.startswith("resource."):
        return resource
    name = resource.removeprefix("resource.")
    document = json.loads((root / file_path.lstrip("/")).read_text())
    types = [t for t, named in document["resource"].items() if name in named]
    assert len(types) == 1, f"{name} in {file_path}: types {types}"
    return f"{types[0]}.{name}"


def run_checkov(root: Path) -> Scan:
    command = [
        sys.executable,
        "-c",
        OFFLINE_CHECKOV,
        "--directory",
        str(root),
        "--framework",
        "terraform_json",
        "--external-checks-dir",
        str(CHECKS_DIR),
        "--check",
        "CKV_PHI_*",
        "--skip-download",
        "--output",
        "json",
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=checkov_environment(),
        cwd=REPO,
        timeout=900,
        check=False,
    )
    # checkov exits 1 when a check fails (the fixtures and mutations make sure some do).
    assert completed.returncode in (0, 1), completed.stderr[-4000:]
    report = json.loads(completed.stdout)
    results = []
    for key, status in (("passed_checks", PASSED), ("failed_checks", FAILED)):
        for record in report.get("results", {}).get(key, []):
            results.append(
                Result(
                    check_id=record["check_id"],
                    stack=str(Path(record["file_path"].lstrip("/")).parent),
                    resource=resource_address(root, record["file_path"], record["resource"]),
                    result=status,
                )
            )
    return Scan(results, completed.stderr)


@cache
def check_of(check_file: Path) -> Any:
    return importlib.import_module(f"policies.checks.{check_file.stem}").check


def expectations(fixture: Path) -> list[dict[str, str]]:
    return list(json.loads(fixture.read_text())["//"]["expect"])


@pytest.fixture(scope="module")
def fixture_scan() -> Scan:
    return run_checkov(FIXTURES_DIR)


# --- the checks themselves ------------------------------------------------------------------


@pytest.mark.parametrize("check_file", CHECK_FILES, ids=lambda p: p.stem)
def test_check_file_defines_one_documented_phi_check(check_file: Path) -> None:
    module = importlib.import_module(f"policies.checks.{check_file.stem}")
    check = module.check
    assert re.fullmatch(r"CKV_PHI_[1-9][0-9]*", check.id)
    assert check.name.startswith("Ensure ")
    docstring = " ".join((module.__doc__ or "").split())
    assert docstring.startswith(f'{check.id} "{check.name}"'), (
        f"{check_file.name}: the docstring must open with the id and name checkov prints"
    )


def test_check_ids_are_unique_and_are_the_catalogs() -> None:
    ids = [check_of(p).id for p in CHECK_FILES]
    assert len(ids) == len(set(ids)), ids
    cited = {
        check_id
        for control in load_catalog().controls
        for check_id in control.static_checks
        if check_id.startswith("CKV_PHI_")
    }
    assert cited == set(ids), (
        f"cited by policies/controls.yaml but not implemented: {sorted(cited - set(ids))}; "
        f"implemented but cited by no control: {sorted(set(ids) - cited)}"
    )


def test_required_endpoints_are_the_network_layers() -> None:
    """One definition (modules/endpoints.py) for the layer that creates and the check that
    judges: the check must not carry a copy of its own."""
    from modules import network  # noqa: PLC0415 (loads cdktf: only this test needs it)
    from policies.checks import vpc_required_privatelink_endpoints as endpoints  # noqa: PLC0415

    assert endpoints.REQUIRED_INTERFACE_ENDPOINTS is network.REQUIRED_INTERFACE_ENDPOINTS
    assert endpoints.GATEWAY_ENDPOINTS is network.GATEWAY_ENDPOINTS


@pytest.mark.parametrize("check_file", CHECK_FILES, ids=lambda p: p.stem)
def test_check_passes_and_fails_its_fixtures(check_file: Path, fixture_scan: Scan) -> None:
    check_id = check_of(check_file).id
    fixtures = sorted((FIXTURES_DIR / check_file.stem).glob("*/cdk.tf.json"))
    assert fixtures, f"no fixtures: add tests/fixtures/checks/{check_file.stem}/<case>/cdk.tf.json"
    expected = set()
    for fixture in fixtures:
        stack = str(fixture.parent.relative_to(FIXTURES_DIR))
        for expectation in expectations(fixture):
            assert expectation["check"] == check_id, f"{stack}: expects {expectation['check']}"
            expected.add((stack, expectation["resource"], expectation["result"]))
    assert {PASSED, FAILED} <= {result for _, _, result in expected}, (
        f"{check_file.stem}: fixtures need a passing and a failing case"
    )
    assert fixture_scan.of(check_id, f"{check_file.stem}/") == expected


def test_checkov_stays_offline_and_no_check_crashes(fixture_scan: Scan) -> None:
    assert NETWORK_MARKER not in fixture_scan.stderr
    assert "Traceback" not in fixture_scan.stderr, fixture_scan.stderr[-4000:]


# --- real synthesized stacks and their mutations ---------------------------------------------


Document = dict[str, Any]


@dataclass(frozen=True)
class Mutation:
    """Switch off what `check_id` guards in a copy of `stack`; `apply` returns the address of
    the resource that must now fail."""

    name: str
    check_id: str
    stack: str
    apply: Callable[[Document], str]


def named(document: Document, resource_type: str, path_part: str) -> tuple[str, Document]:
    """The one resource of `resource_type` whose construct path contains `path_part`."""
    found = [
        (name, conf)
        for name, conf in document["resource"].get(resource_type, {}).items()
        if path_part in conf["//"]["metadata"]["path"]
    ]
    assert len(found) == 1, f"{resource_type} *{path_part}*: {[n for n, _ in found]}"
    return found[0]


def edit_json(conf: Document, key: str, change: Callable[[Any], None]) -> None:
    """Change a JSON document held in a string attribute."""
    document = json.loads(conf[key])
    change(document)
    conf[key] = json.dumps(document)


def pipeline_step(definition: Document, step_name: str) -> Document:
    steps = list(definition["Steps"])
    while steps:
        step: Document = steps.pop(0)
        if step["Name"] == step_name:
            return step
        steps += step.get("Arguments", {}).get("IfSteps", [])
    raise AssertionError(f"no step {step_name}")


def healthlake_aws_owned_key(document: Document) -> str:
    name, conf = named(document, "aws_cloudformation_stack", "fhir/datastore-stack")

    def change(template: Document) -> None:
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::HealthLake::FHIRDatastore":
                sse = resource["Properties"]["SseConfiguration"]
                sse["KmsEncryptionConfig"] = {"CmkType": "AWS_OWNED_KMS_KEY"}

    edit_json(conf, "template_body", change)
    return f"aws_cloudformation_stack.{name}"


def online_store_without_key(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-patient-vitals")
    del conf["online_store_config"]["security_config"]
    return f"aws_sagemaker_feature_group.{name}"


def offline_store_without_key(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_feature_group", "group-encounters")
    del conf["offline_store_config"]["s3_storage_config"]["kms_key_id"]
    return f"aws_sagemaker_feature_group.{name}"


def training_not_isolated(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_pipeline", "pipelines/pipeline")
    edit_json(
        conf,
        "pipeline_definition",
        lambda d: pipeline_step(d, "Train")["Arguments"].update(EnableNetworkIsolation=False),
    )
    return f"aws_sagemaker_pipeline.{name}"


def evaluation_volume_unencrypted(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_pipeline", "pipelines/pipeline")
    edit_json(
        conf,
        "pipeline_definition",
        lambda d: pipeline_step(d, "Evaluate")["Arguments"]["ProcessingResources"][
            "ClusterConfig"
        ].pop("VolumeKmsKeyId"),
    )
    return f"aws_sagemaker_pipeline.{name}"


def feature_build_offline_output_unencrypted(document: Document) -> str:
    """The features pipeline is judged like the training pipeline: its Build job writing the
    offline store without a KMS key fails CKV_PHI_3 there."""
    name, conf = named(document, "aws_sagemaker_pipeline", "feature-build/pipeline")
    edit_json(
        conf,
        "pipeline_definition",
        lambda d: pipeline_step(d, "Build")["Arguments"]["ProcessingOutputConfig"].pop("KmsKeyId"),
    )
    return f"aws_sagemaker_pipeline.{name}"


def registers_approved(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_pipeline", "pipelines/pipeline")
    edit_json(
        conf,
        "pipeline_definition",
        lambda d: pipeline_step(d, "Register")["Arguments"].update(ModelApprovalStatus="Approved"),
    )
    return f"aws_sagemaker_pipeline.{name}"


def package_group_public(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_model_package_group_policy", "registry/group-")
    edit_json(conf, "resource_policy", lambda p: p["Statement"][0].update(Principal={"AWS": "*"}))
    return f"aws_sagemaker_model_package_group_policy.{name}"


def capture_without_key(document: Document) -> str:
    name, conf = named(document, "aws_lambda_function", "deployment/deployer")
    del conf["environment"]["variables"]["KMS_KEY_ARN"]
    return f"aws_lambda_function.{name}"


def endpoint_without_capture(document: Document) -> str:
    name, conf = named(document, "aws_lambda_function", "deployment/deployer")
    conf["environment"]["variables"]["CAPTURE_SAMPLING_PERCENT"] = "0"
    return f"aws_lambda_function.{name}"


def launch_template_imdsv1(document: Document) -> str:
    name, conf = named(document, "aws_launch_template", "enclave-launch-template")
    conf["metadata_options"]["http_tokens"] = "optional"
    return f"aws_launch_template.{name}"


def launch_template_x86(document: Document) -> str:
    name, conf = named(document, "aws_launch_template", "enclave-launch-template")
    conf["instance_type"] = "c7i.xlarge"
    return f"aws_launch_template.{name}"


def vpc_name(document: Document) -> str:
    name, _ = named(document, "aws_vpc", "network/vpc")
    return name


def without_kms_endpoint(document: Document) -> str:
    name, _ = named(document, "aws_vpc_endpoint", "interface-endpoint-kms")
    del document["resource"]["aws_vpc_endpoint"][name]
    return f"aws_vpc.{vpc_name(document)}"


def sts_endpoint_full_access(document: Document) -> str:
    _, conf = named(document, "aws_vpc_endpoint", "interface-endpoint-sts")
    statement = {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}
    conf["policy"] = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    return f"aws_vpc.{vpc_name(document)}"


def with_internet_gateway(document: Document) -> str:
    vpc = vpc_name(document)
    document["resource"]["aws_internet_gateway"] = {
        "igw": {"//": {"metadata": {"path": "mutation/igw"}}, "vpc_id": f"${{aws_vpc.{vpc}.id}}"}
    }
    return f"aws_vpc.{vpc}"


def with_nat_gateway(document: Document) -> str:
    subnet, _ = named(document, "aws_subnet", "workload-subnet-0")
    document["resource"]["aws_nat_gateway"] = {
        "nat": {
            "//": {"metadata": {"path": "mutation/nat"}},
            "subnet_id": f"${{aws_subnet.{subnet}.id}}",
            "connectivity_type": "public",
        }
    }
    return f"aws_vpc.{vpc_name(document)}"


def drop_statement(document: Document, bucket_path: str, sid: str) -> str:
    bucket, _ = named(document, "aws_s3_bucket", bucket_path)
    _, policy = named(document, "aws_s3_bucket_policy", bucket_path.removesuffix("/bucket"))

    def change(p: Document) -> None:
        p["Statement"] = [s for s in p["Statement"] if s.get("Sid") != sid]

    edit_json(policy, "policy", change)
    return f"aws_s3_bucket.{bucket}"


def provider_in_us_east_1(document: Document) -> str:
    document["provider"]["aws"][0]["region"] = "us-east-1"
    return "provider.aws"


def flow_logs_one_year(document: Document) -> str:
    name, conf = named(document, "aws_cloudwatch_log_group", "network/flow-log-group")
    conf["retention_in_days"] = 365
    return f"aws_cloudwatch_log_group.{name}"


def config_history_one_year(document: Document) -> str:
    name, conf = named(document, "aws_config_retention_configuration", "config-retention")
    conf["retention_period_in_days"] = 365
    return f"aws_config_retention_configuration.{name}"


def unprotect(resource_type: str, path_part: str) -> Callable[[Document], str]:
    def apply(document: Document) -> str:
        name, conf = named(document, resource_type, path_part)
        del conf["lifecycle"]
        return f"{resource_type}.{name}"

    return apply


def provider_without_owner(document: Document) -> str:
    del document["provider"]["aws"][0]["default_tags"][0]["tags"]["owner"]
    return "provider.aws"


def trigger_without_as_of(document: Document) -> str:
    pipeline, _ = named(document, "aws_sagemaker_pipeline", "pipelines/pipeline")
    _, target = named(document, "aws_cloudwatch_event_target", "pipelines/trigger-target")
    parameters = target["sagemaker_pipeline_target"]["pipeline_parameter_list"]
    target["sagemaker_pipeline_target"]["pipeline_parameter_list"] = [
        p for p in parameters if p["value"] != "$.detail.executionEndTime"
    ]
    return f"aws_sagemaker_pipeline.{pipeline}"


def trigger_on_any_status(document: Document) -> str:
    pipeline, _ = named(document, "aws_sagemaker_pipeline", "pipelines/pipeline")
    _, rule = named(document, "aws_cloudwatch_event_rule", "pipelines/trigger-rule")
    pattern = json.loads(rule["event_pattern"])
    del pattern["detail"]["currentPipelineExecutionStatus"]
    rule["event_pattern"] = json.dumps(pattern)
    return f"aws_sagemaker_pipeline.{pipeline}"


def vpn_setting(key: str, value: list[Any]) -> Callable[[Document], str]:
    def apply(document: Document) -> str:
        name, conf = named(document, "aws_vpn_connection", "ingest/vpn-connection")
        conf[key] = value
        return f"aws_vpn_connection.{name}"

    return apply


MUTATIONS = [
    Mutation("healthlake-aws-owned-key", "CKV_PHI_1", "dev-fhir", healthlake_aws_owned_key),
    Mutation("online-store-without-key", "CKV_PHI_2", "dev-data", online_store_without_key),
    Mutation(
        "offline-store-without-key", "CKV_PHI_2", "eu-research-data", offline_store_without_key
    ),
    Mutation("training-not-isolated", "CKV_PHI_3", "dev-ml", training_not_isolated),
    Mutation(
        "evaluation-volume-unencrypted",
        "CKV_PHI_3",
        "eu-research-ml",
        evaluation_volume_unencrypted,
    ),
    Mutation(
        "feature-build-output-unencrypted",
        "CKV_PHI_3",
        "prod-ml",
        feature_build_offline_output_unencrypted,
    ),
    Mutation("registers-approved", "CKV_PHI_4", "dev-ml", registers_approved),
    Mutation("package-group-public", "CKV_PHI_5", "dev-ml", package_group_public),
    Mutation("capture-without-key", "CKV_PHI_6", "dev-ml", capture_without_key),
    Mutation("endpoint-without-capture", "CKV_PHI_6", "eu-research-ml", endpoint_without_capture),
    Mutation("launch-template-imdsv1", "CKV_PHI_7", "dev-ml", launch_template_imdsv1),
    Mutation("launch-template-x86", "CKV_PHI_7", "eu-research-ml", launch_template_x86),
    Mutation("without-kms-endpoint", "CKV_PHI_8", "dev-network", without_kms_endpoint),
    Mutation(
        "sts-endpoint-full-access", "CKV_PHI_8", "eu-research-network", sts_endpoint_full_access
    ),
    Mutation("internet-gateway", "CKV_PHI_9", "dev-network", with_internet_gateway),
    Mutation("nat-gateway", "CKV_PHI_9", "eu-research-network", with_nat_gateway),
    Mutation(
        "raw-bucket-allows-old-tls",
        "CKV_PHI_10",
        "dev-data",
        lambda d: drop_statement(d, "storage/raw/bucket", "DenyTlsOlderThan12"),
    ),
    Mutation(
        "audit-archive-allows-http",
        "CKV_PHI_10",
        "org-audit",
        lambda d: drop_statement(d, "audit/archive/bucket", "DenyInsecureTransport"),
    ),
    Mutation("eu-research-in-us-east-1", "CKV_PHI_11", "eu-research-data", provider_in_us_east_1),
    # eu-research's datastore stack runs in eu-west-1, not the environment's region: it is
    # judged like every EU stack, and its own bucket and datastore like the others.
    Mutation(
        "eu-research-fhir-in-us-east-1", "CKV_PHI_11", "eu-research-fhir", provider_in_us_east_1
    ),
    Mutation(
        "eu-fhir-bucket-allows-http",
        "CKV_PHI_10",
        "eu-research-fhir",
        lambda d: drop_statement(d, "region-storage/fhir/bucket", "DenyInsecureTransport"),
    ),
    Mutation(
        "eu-healthlake-aws-owned-key", "CKV_PHI_1", "eu-research-fhir", healthlake_aws_owned_key
    ),
    Mutation("flow-logs-one-year", "CKV_PHI_12", "dev-network", flow_logs_one_year),
    Mutation("config-history-one-year", "CKV_PHI_12", "org-audit", config_history_one_year),
    Mutation(
        "prod-phi-key-destroyable",
        "CKV_PHI_13",
        "prod-data",
        unprotect("aws_kms_key", "keys/phi-data/key"),
    ),
    Mutation(
        "prod-feature-group-destroyable",
        "CKV_PHI_13",
        "prod-data",
        unprotect("aws_sagemaker_feature_group", "group-encounters"),
    ),
    Mutation(
        "prod-fhir-destroyable",
        "CKV_PHI_13",
        "prod-fhir",
        unprotect("aws_cloudformation_stack", "fhir/datastore-stack"),
    ),
    Mutation("provider-without-owner", "CKV_PHI_14", "dev-ml", provider_without_owner),
    Mutation("trigger-without-as-of", "CKV_PHI_15", "dev-ml", trigger_without_as_of),
    Mutation("trigger-on-any-status", "CKV_PHI_15", "dev-ml", trigger_on_any_status),
    Mutation(
        "vpn-ikev1",
        "CKV_PHI_16",
        "dev-network",
        vpn_setting("tunnel1_ike_versions", ["ikev1", "ikev2"]),
    ),
    Mutation(
        "vpn-dh-group-2",
        "CKV_PHI_16",
        "eu-research-network",
        vpn_setting("tunnel2_phase1_dh_group_numbers", [2, 14]),
    ),
]


@dataclass(frozen=True)
class SynthScan:
    scan: Scan
    expected_failures: dict[str, str]  # mutation name -> the address that must fail
    root: Path  # real/<stack>/ and mutated/<mutation>/<stack>/


@pytest.fixture(scope="module")
def synth_scan(tmp_path_factory: pytest.TempPathFactory) -> SynthScan:
    """dev, eu-research and prod synthesized (bootstrap and the organization's stacks come
    along), copied to real/, each mutation applied to a copy in mutated/<name>/; one checkov
    run over both."""
    out = tmp_path_factory.mktemp("synth") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev", "eu-research", "prod"], out)
    root = tmp_path_factory.mktemp("scan")
    shutil.copytree(out / "stacks", root / "real")
    expected_failures = {}
    for mutation in MUTATIONS:
        document = json.loads((out / "stacks" / mutation.stack / "cdk.tf.json").read_text())
        expected_failures[mutation.name] = mutation.apply(document)
        destination = root / "mutated" / mutation.name / mutation.stack
        destination.mkdir(parents=True)
        (destination / "cdk.tf.json").write_text(json.dumps(document, indent=2))
    return SynthScan(run_checkov(root), expected_failures, root)


def test_real_stacks_pass_every_check(synth_scan: SynthScan) -> None:
    real = [r for r in synth_scan.scan.results if r.stack.startswith("real/")]
    failures = [r for r in real if r.result == FAILED]
    assert not failures
    passed_ids = {r.check_id for r in real if r.result == PASSED}
    assert passed_ids == {check_of(p).id for p in CHECK_FILES}, "a check judged nothing"
    assert NETWORK_MARKER not in synth_scan.scan.stderr
    assert "Traceback" not in synth_scan.scan.stderr, synth_scan.scan.stderr[-4000:]


def test_every_check_has_a_mutation() -> None:
    assert {m.check_id for m in MUTATIONS} == {check_of(p).id for p in CHECK_FILES}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: f"{m.check_id}-{m.name}")
def test_mutation_fails_the_check_on_the_resource(
    mutation: Mutation, synth_scan: SynthScan
) -> None:
    address = synth_scan.expected_failures[mutation.name]
    mutated = f"mutated/{mutation.name}/{mutation.stack}"
    failed = {
        resource
        for stack, resource, result in synth_scan.scan.of(mutation.check_id, mutated)
        if result == FAILED
    }
    assert failed == {address}
    # The twin: the same resource of the untouched stack passes.
    assert (f"real/{mutation.stack}", address, PASSED) in synth_scan.scan.of(mutation.check_id)


@pytest.fixture(scope="module")
def gate_over_mutations(synth_scan: SynthScan, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The gate itself (not bare checkov), once, over every mutated stack, each under the
    mutation's name as its stack name so every result says which mutation it came from."""
    from policies import gate  # noqa: PLC0415

    outdir = tmp_path_factory.mktemp("gate")
    for mutation in MUTATIONS:
        destination = outdir / "stacks" / mutation.name
        destination.mkdir(parents=True)
        shutil.copy(
            synth_scan.root / "mutated" / mutation.name / mutation.stack / "cdk.tf.json",
            destination,
        )
    return gate.run_gate(outdir)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: f"{m.check_id}-{m.name}")
def test_the_gate_fails_a_mutation_and_names_its_controls(
    mutation: Mutation, synth_scan: SynthScan, gate_over_mutations: Any
) -> None:
    """Issue 5's bar: switching off what a custom check guards makes the gate fail, and the
    failure names the regulatory controls the check evidences (from the catalog)."""
    from policies import gate  # noqa: PLC0415

    address = synth_scan.expected_failures[mutation.name]
    failed = [
        finding
        for finding in gate_over_mutations.unexempted
        if finding.stack == mutation.name and finding.check_id == mutation.check_id
    ]
    assert [finding.resource for finding in failed] == [address]
    cited = tuple(c.id for c in load_catalog().controls if mutation.check_id in c.static_checks)
    assert cited and failed[0].controls == cited
    assert gate_over_mutations.exit_code == 1
    table = gate.render_table(gate_over_mutations)
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("FAIL")
        and address in line
        and f" {mutation.check_id} " in line
        and f" {mutation.name} " in line
    ]
    assert len(rows) == 1 and cited[0] in rows[0], rows
