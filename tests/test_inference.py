"""Inference layer: Terraform creates what models run as (role, security group), never a model,
endpoint configuration or endpoint (the deployer does, on approval); the enclave hosts' launch
template is hardened, and only Graviton types host enclaves."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformStack
from pydantic import ValidationError

from modules import aws
from modules.iam_statements import ecr_repository_arn
from modules.inference import (
    Inference,
    InferenceConfig,
    graviton_enclave_instance_type,
)
from modules.keys import CustomerManagedKey, CustomerManagedKeyConfig, KeyPurpose
from modules.storage import HardenedBucket, HardenedBucketConfig
from tests.synth import only, ref, resources, role_policy_named, statement_by_sid, synth_stack
from tests.terraform_check import terraform_validate

ACCOUNT = "123456789012"
REGION = "eu-west-1"
VPC_CIDR = "10.42.0.0/16"
BUCKET = "unit-ml-artifacts"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/phi-ml/sepsis-risk:1.4.0"
RUNS_PREFIX = "pipelines/unit-sepsis-risk/"
SAMPLING = 25
CAPTURE_PREFIX = "data-capture/"
ENCLAVE_TYPE = "c7g.xlarge"

SETTINGS: dict[str, Any] = {
    "environment": "unit",
    "account_id": ACCOUNT,
    "region": REGION,
    "model_name": "sepsis-risk",
    "inference_image": IMAGE,
    "model_archive_prefix": RUNS_PREFIX,
    "endpoint_instance_type": "ml.m6g.xlarge",
    "endpoint_instance_count": 2,
    "data_capture_sampling_percent": SAMPLING,
    "capture_prefix": CAPTURE_PREFIX,
    "enclave_instance_type": ENCLAVE_TYPE,
    "enclave_min_size": 1,
    "enclave_max_size": 4,
    "enclave_desired_capacity": 2,
    "enclave_target_cpu_percent": 60,
    "vpc_cidr": VPC_CIDR,
    "production": False,
}


def key(stack: TerraformStack, purpose: KeyPurpose) -> CustomerManagedKey:
    return CustomerManagedKey(
        stack,
        f"{purpose.value}-key",
        config=CustomerManagedKeyConfig(
            purpose=purpose,
            alias=f"alias/unit/{purpose.value}",
            account_id=ACCOUNT,
            region=REGION,
            administrators=(f"arn:aws:iam::{ACCOUNT}:role/key-admin",),
            users=(f"arn:aws:iam::{ACCOUNT}:role/ml-engineer",),
        ),
    )


def network(stack: TerraformStack) -> tuple[str, list[str]]:
    vpc = aws.Vpc(stack, "vpc", cidr_block=VPC_CIDR)
    subnets = [
        aws.Subnet(stack, f"subnet-{i}", vpc_id=vpc.id, cidr_block=f"10.42.{i}.0/24").id
        for i in range(2)
    ]
    return vpc.id, subnets


def build_inference(stack: TerraformStack, **overrides: Any) -> Inference:
    ml_key = key(stack, KeyPurpose.ML_ARTIFACTS)
    bucket = HardenedBucket(
        stack,
        "artifacts",
        config=HardenedBucketConfig(name=BUCKET, account_id=ACCOUNT, noncurrent_version_days=30),
        kms_key=ml_key,
        access_logs=None,
    )
    vpc_id, subnet_ids = network(stack)
    return Inference(
        stack,
        "inference",
        config=InferenceConfig(**{**SETTINGS, **overrides}),
        ml_key=ml_key,
        capture_bucket=bucket,
        model_bucket_arn=bucket.bucket_arn,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
    )


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    return synth_stack(build_inference)


def ml_key_arn(synthesized: dict[str, Any]) -> str:
    return ref(synthesized, "aws_kms_key", "arn", named="ml-artifacts")


# --- what serves is the deployer's -----------------------------------------------------------

SERVING_TYPES = (
    "aws_sagemaker_model",
    "aws_sagemaker_endpoint_configuration",
    "aws_sagemaker_endpoint",
)


def serving_resources(synthesized: dict[str, Any]) -> list[str]:
    return [t for t in SERVING_TYPES if resources(synthesized, t)]


def test_terraform_creates_no_model_configuration_or_endpoint(synth: dict[str, Any]) -> None:
    """The first apply needs no model, and Terraform never replaces (destroys) the versions a
    rollback returns to: the deployer creates them per approved version."""
    assert serving_resources(synth) == []


def test_the_twin_a_terraform_endpoint_would_be_seen() -> None:
    def with_a_model(stack: TerraformStack) -> None:
        inference = build_inference(stack)
        aws.SagemakerModel(stack, "model", execution_role_arn=inference.model_execution_role_arn)

    assert serving_resources(synth_stack(with_a_model)) == ["aws_sagemaker_model"]


def test_the_layer_names_the_endpoint_the_deployer_creates(synth: dict[str, Any]) -> None:
    config = InferenceConfig(**SETTINGS)
    assert config.name == "phi-ml-unit-sepsis-risk"
    assert config.endpoint_arn == (
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/phi-ml-unit-sepsis-risk"
    )
    assert config.deployer_name == "phi-ml-unit-sepsis-risk-deployer"


def egress_rules(synth: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [
        r
        for r in resources(synth, "aws_vpc_security_group_egress_rule").values()
        if r["security_group_id"] == group
    ]


def inline_rules(security_group: dict[str, Any]) -> list[str]:
    """Inline rule lists on a group whose rules are separate resources: Terraform would make
    each apply remove the separate rules and the next one add them back."""
    return [kind for kind in ("ingress", "egress") if kind in security_group]


def test_model_security_group_allows_only_https_out_to_the_vpc_and_s3(
    synth: dict[str, Any],
) -> None:
    group = ref(synth, "aws_security_group", "id", named="model-security-group")
    security_group = resources(synth, "aws_security_group")
    (definition,) = [g for n, g in security_group.items() if "model-security-group" in n]
    assert inline_rules(definition) == []
    assert inline_rules({**definition, "egress": []}) == ["egress"]  # twin: it would fight
    rules = egress_rules(synth, group)
    assert {(r["ip_protocol"], r["from_port"], r["to_port"]) for r in rules} == {("tcp", 443, 443)}
    assert sorted(r.get("cidr_ipv4", "prefix-list") for r in rules) == [VPC_CIDR, "prefix-list"]
    assert resources(synth, "aws_vpc_security_group_ingress_rule") == {}


# --- model execution role -------------------------------------------------------------------


def execution_policy(synth: dict[str, Any]) -> str:
    return role_policy_named(synth, "serve-this-model-only")


def test_execution_role_reads_only_model_archives_of_pipeline_runs(synth: dict[str, Any]) -> None:
    policy = execution_policy(synth)
    archives = f"{RUNS_PREFIX}*/model.tar.gz"
    read = statement_by_sid(policy, "ReadOnlyModelArchivesThePipelineWrote")
    assert read["Action"] == "s3:GetObject"
    assert read["Resource"] == f"{ref(synth, 'aws_s3_bucket', 'arn')}/{archives}"
    s3_grants = [
        (action, s["Resource"])
        for s in json.loads(policy)["Statement"]
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if action.startswith("s3:")
    ]
    bucket = ref(synth, "aws_s3_bucket", "arn")
    assert s3_grants == [
        ("s3:GetObject", f"{bucket}/{archives}"),
        ("s3:PutObject", f"{bucket}/{CAPTURE_PREFIX}*"),
    ]


def test_execution_role_pulls_only_its_own_repository(synth: dict[str, Any]) -> None:
    policy = execution_policy(synth)
    pull = statement_by_sid(policy, "PullOnlyThisRepository")
    assert pull["Resource"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/phi-ml/sepsis-risk"
    token = statement_by_sid(policy, "EcrAuthorizationTokenHasNoResourceLevelPermissions")
    assert token["Action"] == "ecr:GetAuthorizationToken" and token["Resource"] == "*"


def test_only_describe_and_token_calls_use_a_wildcard_resource(synth: dict[str, Any]) -> None:
    wildcard = [
        s["Sid"] for s in json.loads(execution_policy(synth))["Statement"] if s["Resource"] == "*"
    ]
    assert wildcard == [
        "EcrAuthorizationTokenHasNoResourceLevelPermissions",
        "DescribeNetworkHasNoResourceLevelPermissions",
    ]


def test_execution_role_trusts_sagemaker_for_this_account_only(synth: dict[str, Any]) -> None:
    (role,) = [r for r in resources(synth, "aws_iam_role").values() if r["name"].endswith("-model")]
    trust = json.loads(role["assume_role_policy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


@pytest.mark.parametrize(
    ("uri", "arn"),
    [
        (IMAGE, f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/phi-ml/sepsis-risk"),
        (
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/m@sha256:{'a' * 64}",
            f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/m",
        ),
    ],
)
def test_repository_arn_from_image_uri(uri: str, arn: str) -> None:
    assert ecr_repository_arn(uri) == arn


# --- launch template -------------------------------------------------------------------------


def launch_template_problems(template: dict[str, Any], *, key_arn: str) -> list[str]:
    """What in a launch template breaks the enclave host guarantees."""
    problems = []
    if (template.get("enclave_options") or {}).get("enabled") is not True:
        problems.append("Nitro Enclaves not enabled")
    metadata = template.get("metadata_options") or {}
    if metadata.get("http_tokens") != "required":
        problems.append("IMDSv1 allowed")
    if metadata.get("http_put_response_hop_limit") != 1:
        problems.append("metadata reachable beyond the instance (hop limit)")
    mappings = template.get("block_device_mappings") or []
    if not mappings or any(
        (m.get("ebs") or {}).get("encrypted") != "true"
        or (m.get("ebs") or {}).get("kms_key_id") != key_arn
        for m in mappings
    ):
        problems.append("EBS not encrypted with the CMK")
    interfaces = template.get("network_interfaces") or []
    if not interfaces or any(i.get("associate_public_ip_address") != "false" for i in interfaces):
        problems.append("public IP possible")
    try:
        graviton_enclave_instance_type(template.get("instance_type", ""))
    except ValueError:
        problems.append("not a Graviton enclave host type")
    return problems


def test_launch_template_is_a_hardened_graviton_enclave_host(synth: dict[str, Any]) -> None:
    template = only(synth, "aws_launch_template")
    assert launch_template_problems(template, key_arn=ml_key_arn(synth)) == []
    assert template["instance_type"] == ENCLAVE_TYPE
    assert template["metadata_options"]["http_endpoint"] == "enabled"
    assert template["monitoring"] == {"enabled": True}
    assert template["update_default_version"] is True


LAUNCH_TEMPLATE_FLAWS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "enclave-off": (lambda t: t["enclave_options"].update(enabled=False), "Enclaves"),
    "imdsv1": (lambda t: t["metadata_options"].update(http_tokens="optional"), "IMDSv1"),
    "hop-limit-2": (
        lambda t: t["metadata_options"].update(http_put_response_hop_limit=2),
        "hop limit",
    ),
    "unencrypted": (
        lambda t: t["block_device_mappings"][0]["ebs"].update(encrypted="false"),
        "EBS",
    ),
    "aws-managed-key": (lambda t: t["block_device_mappings"][0]["ebs"].pop("kms_key_id"), "EBS"),
    "public-ip": (
        lambda t: t["network_interfaces"][0].update(associate_public_ip_address="true"),
        "public IP",
    ),
    "x86": (lambda t: t.update(instance_type="m5.xlarge"), "Graviton"),
    "graviton2": (lambda t: t.update(instance_type="c6g.xlarge"), "Graviton"),
}


@pytest.mark.parametrize("flaw", LAUNCH_TEMPLATE_FLAWS.values(), ids=LAUNCH_TEMPLATE_FLAWS.keys())
def test_launch_template_checker_catches_each_flaw(
    synth: dict[str, Any], flaw: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    """Twins: each guarantee flipped in a copy of the synthesized template is reported."""
    template = copy.deepcopy(only(synth, "aws_launch_template"))
    mutate, expected = flaw
    mutate(template)
    problems = launch_template_problems(template, key_arn=ml_key_arn(synth))
    assert len(problems) == 1 and expected in problems[0], problems


def test_enclave_hosts_scale_on_cpu_in_the_private_subnets(synth: dict[str, Any]) -> None:
    group = only(synth, "aws_autoscaling_group")
    assert group["vpc_zone_identifier"] == [
        f"${{aws_subnet.{n}.id}}" for n in resources(synth, "aws_subnet")
    ]
    assert (group["min_size"], group["desired_capacity"], group["max_size"]) == (1, 2, 4)
    assert group["launch_template"] == {
        "id": ref(synth, "aws_launch_template", "id"),
        "version": ref(synth, "aws_launch_template", "latest_version"),
    }
    policy = only(synth, "aws_autoscaling_policy")
    assert policy["policy_type"] == "TargetTrackingScaling"
    assert policy["target_tracking_configuration"] == {
        "target_value": 60,
        "predefined_metric_specification": {"predefined_metric_type": "ASGAverageCPUUtilization"},
    }


def group_tag_problems(group: dict[str, Any], template_tags: dict[str, str]) -> list[str]:
    tags = group.get("tag", [])
    problems = []
    if {tag["key"]: tag["value"] for tag in tags} != template_tags:
        problems.append(f"group tags {tags} differ from the launch template's {template_tags}")
    if any(tag["propagate_at_launch"] for tag in tags):
        problems.append("a group tag propagates at launch (the template already tags)")
    return problems


def test_enclave_host_group_is_tagged_like_its_instances(synth: dict[str, Any]) -> None:
    """Default tags of the provider do not reach an Auto Scaling group's own tag list; the
    group carries the launch template's tags itself (not propagated: the template tags)."""
    group = only(synth, "aws_autoscaling_group")
    template_tags = only(synth, "aws_launch_template")["tags"]
    assert group_tag_problems(group, template_tags) == []
    untagged = {key: value for key, value in group.items() if key != "tag"}
    assert group_tag_problems(untagged, template_tags)  # twin: an untagged group is reported


def test_enclave_host_image_is_al2023_arm64_from_ssm(synth: dict[str, Any]) -> None:
    (parameter,) = synth["data"]["aws_ssm_parameter"].values()
    assert parameter["name"] == (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    )
    assert only(synth, "aws_launch_template")["image_id"].startswith("${data.aws_ssm_parameter.")


def test_enclave_host_role_has_only_ssm_session_access(synth: dict[str, Any]) -> None:
    attachment = only(synth, "aws_iam_role_policy_attachment")
    assert attachment["policy_arn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    (role,) = [r for n, r in resources(synth, "aws_iam_role").items() if "enclave" in n]
    assert json.loads(role["assume_role_policy"])["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    assert all(p["name"] != role["name"] for p in resources(synth, "aws_iam_role_policy").values())


# --- the Graviton rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "instance_type", ["c7g.xlarge", "m7g.2xlarge", "r8g.4xlarge", "c8g.48xlarge", "m7g.16xlarge"]
)
def test_graviton_enclave_types_are_accepted(instance_type: str) -> None:
    assert graviton_enclave_instance_type(instance_type) == instance_type


@pytest.mark.parametrize(
    ("instance_type", "message"),
    [
        ("m5.xlarge", "not a Graviton"),
        ("c7i.xlarge", "not a Graviton"),
        ("t4g.xlarge", "not a Graviton c/m/r"),
        ("c6g.xlarge", "Graviton generation 6"),
        ("a1.xlarge", "not a Graviton"),
        ("c7gn.xlarge", "variant of c7g"),
        ("m7gd.2xlarge", "variant of m7g"),
        ("c7g.large", "fewer than 4 vCPUs"),
        ("c7g.medium", "fewer than 4 vCPUs"),
        ("c7g.metal", "bare metal"),
        ("c7g", "not an EC2 instance type name"),
        ("C7G.XLARGE", "not an EC2 instance type name"),
        ("", "empty"),
    ],
)
def test_other_types_are_refused_with_a_clear_message(instance_type: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        graviton_enclave_instance_type(instance_type)
    assert "c7g, m7g, r7g" in str(refused.value) or "e.g. c7g.xlarge" in str(refused.value)


def test_inference_config_applies_the_graviton_rule() -> None:
    with pytest.raises(ValidationError, match="Graviton generation 6"):
        InferenceConfig(**{**SETTINGS, "enclave_instance_type": "c6g.xlarge"})
    assert InferenceConfig(**SETTINGS).enclave_instance_type == ENCLAVE_TYPE  # twin


# --- configuration rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"enclave_desired_capacity": 5}, "min <= desired <= max"),
        ({"enclave_min_size": 3, "enclave_desired_capacity": 2}, "min <= desired <= max"),
        ({"enclave_target_cpu_percent": 95}, "less than or equal to 90"),
        ({"data_capture_sampling_percent": 0}, "greater than or equal to 1"),
        ({"endpoint_instance_type": "m5.xlarge"}, "should match pattern"),
        ({"endpoint_instance_count": 0}, "greater than or equal to 1"),
        ({"capture_prefix": "capture"}, "should match pattern"),
        ({"model_archive_prefix": "pipelines/runs"}, "should match pattern"),
        ({"retained_versions": 1}, "greater than or equal to 2"),
        ({"inference_image": "docker.io/library/python:3"}, "not an ECR image URI"),
        ({"production": True}, "pinned by @sha256"),
        ({"enclave_ami_ssm_parameter": "/aws/service/ami-x86_64"}, "should match pattern"),
        ({"model_name": "a-very-long-model-name-that-cannot-fit-in-63"}, "exceed 44"),
    ],
)
def test_config_rejects_bad_values(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InferenceConfig(**{**SETTINGS, **override})


def test_production_accepts_a_digest_pinned_image() -> None:
    """Twin of the production pin rule."""
    pinned = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/phi-ml/sepsis-risk@sha256:{'0' * 64}"
    assert InferenceConfig(**{**SETTINGS, "production": True, "inference_image": pinned})


# --- terraform validate ----------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_inference_layer(tmp_path: Path) -> None:
    terraform_validate(tmp_path, build_inference, region=REGION)
