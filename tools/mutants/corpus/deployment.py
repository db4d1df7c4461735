"""Mutants of the deployment layer (modules/deployment.py)."""

from __future__ import annotations

from tools.mutants.edits import address, delete_attribute, delete_resource, named, set_attribute
from tools.mutants.model import Document, Mutant, RuntimeTwin

DEPLOYER = "deployment/deployer"
DEPLOYER_FUNCTION = "deployment/deployer/function"


def capture_without_key(document: Document) -> str:
    name, conf = named(document, "aws_lambda_function", DEPLOYER)
    del conf["environment"]["variables"]["KMS_KEY_ARN"]
    return address("aws_lambda_function", name)


def endpoint_without_capture(document: Document) -> str:
    name, conf = named(document, "aws_lambda_function", DEPLOYER)
    conf["environment"]["variables"]["CAPTURE_SAMPLING_PERCENT"] = "0"
    return address("aws_lambda_function", name)


def approval_not_deploying(document: Document) -> str:
    """The approval rule's target invoking the deployer deleted; returns the rule's address."""
    _, target = named(document, "aws_cloudwatch_event_target", "deployment/approval-to-deployer")
    rule = target["rule"].removeprefix("${aws_cloudwatch_event_rule.").split(".")[0]
    delete_resource(document, "aws_cloudwatch_event_target", "deployment/approval-to-deployer")
    return address("aws_cloudwatch_event_rule", rule)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="capture-without-key",
        layer="deployment",
        guarantee="the endpoints it creates capture data encrypted with the ML key",
        check_id="CKV_PHI_6",
        stack="dev-ml",
        change="the deployer creates endpoints without a KMS key",
        apply=capture_without_key,
        runtime=RuntimeTwin(
            "RT_PHI_SAGEMAKER_DATA_CAPTURE", "captured data not encrypted with the ML key"
        ),
    ),
    Mutant(
        name="endpoint-without-capture",
        layer="deployment",
        guarantee="the endpoints it creates capture requests and responses",
        check_id="CKV_PHI_6",
        stack="eu-research-ml",
        change="the deployer's capture sampling set to 0 percent",
        apply=endpoint_without_capture,
        runtime=RuntimeTwin("RT_PHI_SAGEMAKER_DATA_CAPTURE", "data capture off"),
    ),
    Mutant(
        name="deployment-deployer-outside-vpc",
        layer="deployment",
        guarantee="the deployer, a hardened VPC function",
        check_id="CKV_AWS_117",
        stack="dev-ml",
        change="the deployer function without vpc_config",
        apply=delete_attribute("aws_lambda_function", DEPLOYER_FUNCTION, "vpc_config"),
    ),
    Mutant(
        name="deployment-deployer-without-dead-letters",
        layer="deployment",
        guarantee="the deployer, a hardened function (dead-letter queue)",
        check_id="CKV_AWS_116",
        stack="prod-ml",
        change="the deployer function without a dead-letter queue",
        apply=delete_attribute("aws_lambda_function", DEPLOYER_FUNCTION, "dead_letter_config"),
    ),
    Mutant(
        name="deployment-deployer-untraced",
        layer="deployment",
        guarantee="the deployer, a hardened function (X-Ray)",
        check_id="CKV_AWS_50",
        stack="eu-research-ml",
        change="the deployer function without X-Ray tracing",
        apply=delete_attribute("aws_lambda_function", DEPLOYER_FUNCTION, "tracing_config"),
    ),
    Mutant(
        name="deployment-deployer-environment-unencrypted",
        layer="deployment",
        guarantee="the deployer, a hardened function (CMK-encrypted environment)",
        check_id="CKV_AWS_173",
        stack="staging-ml",
        change="the deployer's environment without the ML key (AWS managed key)",
        apply=delete_attribute("aws_lambda_function", DEPLOYER_FUNCTION, "kms_key_arn"),
    ),
    Mutant(
        name="deployment-deployer-concurrency-5",
        layer="deployment",
        guarantee="the deployer, concurrency 1",
        check_id="CKV_PHI_39",
        stack="prod-ml",
        change="the deployer's reserved concurrency raised to 5 (approvals could race)",
        apply=set_attribute(
            "aws_lambda_function", DEPLOYER_FUNCTION, "reserved_concurrent_executions", 5
        ),
    ),
    Mutant(
        name="deployment-approval-not-deploying",
        layer="deployment",
        guarantee="started by the registry's approval rule",
        check_id="CKV_PHI_40",
        stack="dev-ml",
        change="the approval rule's target invoking the deployer deleted",
        apply=approval_not_deploying,
    ),
)
