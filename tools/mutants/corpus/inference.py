"""Mutants of the inference layer (modules/inference.py)."""

from __future__ import annotations

from tools.mutants.edits import address, edit_json, named
from tools.mutants.model import Document, Mutant, RuntimeTwin

LAUNCH_TEMPLATE = "enclave-launch-template"
MODEL_POLICY = "inference/model-execution-policy"
ARCHIVE_READ = "ReadOnlyModelArchivesThePipelineWrote"


def launch_template_imdsv1(document: Document) -> str:
    name, conf = named(document, "aws_launch_template", LAUNCH_TEMPLATE)
    conf["metadata_options"]["http_tokens"] = "optional"
    return address("aws_launch_template", name)


def launch_template_x86(document: Document) -> str:
    name, conf = named(document, "aws_launch_template", LAUNCH_TEMPLATE)
    conf["instance_type"] = "c7i.xlarge"
    return address("aws_launch_template", name)


def launch_template_enclaves_disabled(document: Document) -> str:
    name, conf = named(document, "aws_launch_template", LAUNCH_TEMPLATE)
    conf["enclave_options"]["enabled"] = False
    return address("aws_launch_template", name)


def launch_template_hop_limit_two(document: Document) -> str:
    """A hop limit of 2 lets a container on the host reach the instance's credentials."""
    name, conf = named(document, "aws_launch_template", LAUNCH_TEMPLATE)
    conf["metadata_options"]["http_put_response_hop_limit"] = 2
    return address("aws_launch_template", name)


def launch_template_default_ebs_key(document: Document) -> str:
    """Still `encrypted`, but with the AWS managed aws/ebs key instead of the ML CMK."""
    name, conf = named(document, "aws_launch_template", LAUNCH_TEMPLATE)
    del conf["block_device_mappings"][0]["ebs"]["kms_key_id"]
    return address("aws_launch_template", name)


def launch_template_public_ip(document: Document) -> str:
    name, conf = named(document, "aws_launch_template", LAUNCH_TEMPLATE)
    conf["network_interfaces"][0]["associate_public_ip_address"] = "true"
    return address("aws_launch_template", name)


def model_role_reads_whole_bucket(document: Document) -> str:
    """The archive read widened to every object of the artifacts bucket (datasets too)."""
    name, conf = named(document, "aws_iam_role_policy", MODEL_POLICY)

    def widen(policy: dict[str, list[dict[str, str]]]) -> None:
        (read,) = [s for s in policy["Statement"] if s.get("Sid") == ARCHIVE_READ]
        bucket_arn, _, _ = read["Resource"].partition("}/")
        read["Resource"] = f"{bucket_arn}}}/*"

    edit_json(conf, "policy", widen)
    return address("aws_iam_role_policy", name)


def model_egress_https_anywhere(document: Document) -> str:
    """The model ENIs' HTTPS rule opened from the VPC's range to every address."""
    name, conf = named(
        document,
        "aws_vpc_security_group_egress_rule",
        "inference/model-security-group-https-to-vpc",
    )
    conf["cidr_ipv4"] = "0.0.0.0/0"
    return address("aws_vpc_security_group_egress_rule", name)


def endpoint_declared_in_terraform(document: Document) -> str:
    """A model, endpoint configuration and endpoint declared in the ml stack, serving an archive
    of the artifacts bucket directly instead of an approved registry version."""
    group, _ = named(document, "aws_sagemaker_model_package_group", "registry/group-")
    _, role = named(document, "aws_iam_role", "inference/model-execution-role")
    _, template = named(document, "aws_launch_template", LAUNCH_TEMPLATE)
    ml_key_arn = template["block_device_mappings"][0]["ebs"]["kms_key_id"]
    role_arn = "${aws_iam_role." + role["//"]["metadata"]["uniqueId"] + ".arn}"
    stack = role["//"]["metadata"]["path"].split("/")[0]

    def metadata(part: str) -> dict[str, dict[str, str]]:
        unique = f"inference_{part}_0A1B2C3D"
        return {"metadata": {"path": f"{stack}/inference/{part}", "uniqueId": unique}}

    resources = document["resource"]
    resources["aws_sagemaker_model"] = {
        "inference_model_0A1B2C3D": {
            "//": metadata("model"),
            "name": "readmission-manual",
            "execution_role_arn": role_arn,
            "enable_network_isolation": True,
            "primary_container": {
                "image": "111111111111.dkr.ecr.us-east-1.amazonaws.com/readmission:latest",
                "model_data_url": "s3://phi-ml-dev-artifacts/pipelines/manual/model.tar.gz",
            },
        }
    }
    resources["aws_sagemaker_endpoint_configuration"] = {
        "inference_endpoint-configuration_0A1B2C3D": {
            "//": metadata("endpoint-configuration"),
            "name": "readmission-manual",
            "kms_key_arn": ml_key_arn,
            "production_variants": [
                {
                    "variant_name": "primary",
                    "model_name": "${aws_sagemaker_model.inference_model_0A1B2C3D.name}",
                    "instance_type": "ml.c7g.xlarge",
                    "initial_instance_count": 1,
                }
            ],
        }
    }
    resources["aws_sagemaker_endpoint"] = {
        "inference_endpoint_0A1B2C3D": {
            "//": metadata("endpoint"),
            "name": "readmission-manual",
            "endpoint_config_name": (
                "${aws_sagemaker_endpoint_configuration."
                "inference_endpoint-configuration_0A1B2C3D.name}"
            ),
        }
    }
    return address("aws_sagemaker_model_package_group", group)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="launch-template-imdsv1",
        layer="inference",
        guarantee="IMDSv2",
        check_id="CKV_PHI_7",
        stack="dev-ml",
        change="the enclave hosts' launch template allows IMDSv1",
        apply=launch_template_imdsv1,
        runtime=RuntimeTwin("RT_PHI_LAUNCH_TEMPLATE_IMDSV2", "launch template allowing IMDSv1"),
    ),
    Mutant(
        name="launch-template-x86",
        layer="inference",
        guarantee="Graviton (c7g/m7g/r7g and later)",
        check_id="CKV_PHI_7",
        stack="eu-research-ml",
        change="the enclave hosts on an x86 instance type (c7i)",
        apply=launch_template_x86,
    ),
    Mutant(
        name="launch-template-enclaves-disabled",
        layer="inference",
        guarantee="launch template enables Nitro Enclaves",
        check_id="CKV_PHI_7",
        stack="prod-ml",
        change="the enclave hosts' launch template with enclave_options.enabled false",
        apply=launch_template_enclaves_disabled,
        runtime=RuntimeTwin(
            "RT_PHI_LAUNCH_TEMPLATE_NITRO_ENCLAVE", "launch template without Nitro Enclaves"
        ),
    ),
    Mutant(
        name="launch-template-hop-limit-2",
        layer="inference",
        guarantee="IMDSv2 (hop limit 1)",
        check_id="CKV_AWS_341",
        stack="staging-ml",
        change="the launch template's metadata response hop limit raised to 2",
        apply=launch_template_hop_limit_two,
    ),
    Mutant(
        name="launch-template-ebs-default-key",
        layer="inference",
        guarantee="CMK-encrypted EBS",
        check_id="CKV_PHI_7",
        stack="dev-ml",
        change="the root volume encrypted with the AWS managed key (no kms_key_id)",
        apply=launch_template_default_ebs_key,
    ),
    Mutant(
        name="launch-template-public-ip",
        layer="inference",
        guarantee="no public IP",
        check_id="CKV_AWS_88",
        stack="eu-research-ml",
        change="the enclave hosts' network interface associates a public IP address",
        apply=launch_template_public_ip,
    ),
    Mutant(
        name="inference-model-role-reads-whole-bucket",
        layer="inference",
        guarantee="an execution role reading only model archives of pipeline runs",
        check_id="CKV_PHI_35",
        stack="dev-ml",
        change="the model execution role may read every object of the artifacts bucket",
        apply=model_role_reads_whole_bucket,
    ),
    Mutant(
        name="inference-model-egress-https-anywhere",
        layer="inference",
        guarantee="a security group (HTTPS to the VPC's endpoints and S3)",
        check_id="CKV_PHI_34",
        stack="prod-ml",
        change="the model security group's HTTPS egress opened to 0.0.0.0/0",
        apply=model_egress_https_anywhere,
    ),
    Mutant(
        name="inference-endpoint-declared-in-terraform",
        layer="inference",
        guarantee="no model, endpoint configuration or endpoint (the deployer creates them)",
        check_id="CKV_PHI_36",
        stack="dev-ml",
        change="a model, endpoint configuration and endpoint declared in the ml stack",
        apply=endpoint_declared_in_terraform,
    ),
)
