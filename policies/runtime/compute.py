"""Compute: launch templates start Nitro Enclave hosts with IMDSv2 only; Lambda functions run
inside the VPC and keep failed events in a dead-letter queue.

Both are found by the `environment` tag (every platform resource carries it) and by the names
the environment file implies; an expected one that is missing fails. For launch templates the
default and the latest version are judged: the Auto Scaling group launches the latest, and
anyone launching by hand gets the default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from policies.runtime.clients import pages
from policies.runtime.expected import ENVIRONMENT_TAG
from policies.runtime.model import (
    CheckContext,
    Outcome,
    RuntimeCheck,
    failed,
    not_emulated,
    passed,
)

JUDGED_VERSIONS = ("$Default", "$Latest")


def _each_launch_template(
    context: CheckContext, evaluate: Callable[[list[dict[str, Any]], str], Outcome]
) -> Iterator[Outcome]:
    ec2 = context.client("ec2")
    environment = context.expected.environment
    placeholder = context.arn("ec2", f"launch-template/{ENVIRONMENT_TAG}={environment}")
    tagged = [{"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [environment]}]
    templates = context.discover(
        placeholder,
        lambda: list(pages(ec2, "describe_launch_templates", "LaunchTemplates", Filters=tagged)),
    )
    if isinstance(templates, Outcome):
        yield templates
        return
    names = {str(t["LaunchTemplateName"]) for t in templates}
    for expected in context.expected.launch_templates:
        if expected not in names:
            arn = context.arn("ec2", f"launch-template/{expected}")
            yield failed(
                arn, f"no launch template {expected} tagged {ENVIRONMENT_TAG}={environment}"
            )
    for template_id in sorted(str(t["LaunchTemplateId"]) for t in templates):
        arn = context.arn("ec2", f"launch-template/{template_id}")

        def described(template_id: str = template_id, arn: str = arn) -> Outcome:
            versions = ec2.describe_launch_template_versions(
                LaunchTemplateId=template_id, Versions=list(JUDGED_VERSIONS)
            )["LaunchTemplateVersions"]
            return evaluate(versions, arn)

        yield context.judge(arn, described)


def _versions_failing(
    versions: list[dict[str, Any]], fault: Callable[[dict[str, Any]], str | None]
) -> list[str]:
    faults = []
    for version in versions:
        problem = fault(version.get("LaunchTemplateData", {}))
        if problem:
            faults.append(f"version {version.get('VersionNumber')}: {problem}")
    return sorted(set(faults))


def nitro_enclave(context: CheckContext) -> Iterator[Outcome]:
    def fault(data: dict[str, Any]) -> str | None:
        if not data.get("EnclaveOptions", {}).get("Enabled"):
            return "Nitro Enclaves not enabled"
        return None

    def evaluate(versions: list[dict[str, Any]], arn: str) -> Outcome:
        faults = _versions_failing(versions, fault)
        if faults:
            return failed(arn, "; ".join(faults))
        return passed(arn, "default and latest versions enable Nitro Enclaves")

    return _each_launch_template(context, evaluate)


def imdsv2(context: CheckContext) -> Iterator[Outcome]:
    def fault(data: dict[str, Any]) -> str | None:
        metadata = data.get("MetadataOptions", {})
        if metadata.get("HttpEndpoint") == "disabled":
            return None  # no instance metadata service at all: nothing to steal from
        tokens = metadata.get("HttpTokens", "optional (the default)")
        if tokens != "required":
            return f"IMDSv1 allowed (HttpTokens {tokens})"
        return None

    def evaluate(versions: list[dict[str, Any]], arn: str) -> Outcome:
        faults = _versions_failing(versions, fault)
        if faults:
            return failed(arn, "; ".join(faults))
        return passed(arn, "default and latest versions require IMDSv2 tokens")

    return _each_launch_template(context, evaluate)


def _each_function(
    context: CheckContext, evaluate: Callable[[dict[str, Any], str], Outcome]
) -> Iterator[Outcome]:
    client = context.client("lambda")
    environment = context.expected.environment
    placeholder = context.arn("lambda", f"function:{ENVIRONMENT_TAG}={environment}")

    def of_environment() -> list[dict[str, Any]]:
        return [
            function
            for function in pages(client, "list_functions", "Functions")
            if client.list_tags(Resource=function["FunctionArn"])
            .get("Tags", {})
            .get(ENVIRONMENT_TAG)
            == environment
        ]

    functions = context.discover(placeholder, of_environment)
    if isinstance(functions, Outcome):
        yield functions
        return
    names = {str(f["FunctionName"]) for f in functions}
    for expected in context.expected.functions:
        if expected not in names:
            arn = context.arn("lambda", f"function:{expected}")
            yield failed(arn, f"no function {expected} tagged {ENVIRONMENT_TAG}={environment}")
    for function in sorted(functions, key=lambda f: str(f["FunctionName"])):
        arn = str(function["FunctionArn"])
        yield context.judge(arn, partial(evaluate, function, arn))


def in_vpc(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(function: dict[str, Any], arn: str) -> Outcome:
        vpc = function.get("VpcConfig") or {}
        subnets = vpc.get("SubnetIds", [])
        if not subnets or not vpc.get("SecurityGroupIds"):
            return failed(arn, "the function runs outside any VPC")
        return passed(arn, f"runs in {vpc.get('VpcId', 'the VPC')}, subnets {', '.join(subnets)}")

    return _each_function(context, evaluate)


def dead_letter_queue(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(function: dict[str, Any], arn: str) -> Outcome:
        target = (function.get("DeadLetterConfig") or {}).get("TargetArn")
        if target:
            return passed(arn, f"failed asynchronous events go to {target}")
        if context.emulated and "DeadLetterConfig" not in function:
            return not_emulated(arn, "moto does not store a function's dead-letter configuration")
        return failed(arn, "the function has no dead-letter queue")

    return _each_function(context, evaluate)


CHECKS = (
    RuntimeCheck(
        "RT_PHI_LAUNCH_TEMPLATE_NITRO_ENCLAVE",
        "Launch template enables Nitro Enclaves",
        nitro_enclave,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_LAUNCH_TEMPLATE_IMDSV2",
        "Launch template requires IMDSv2",
        imdsv2,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_LAMBDA_IN_VPC",
        "Lambda function runs inside the VPC",
        in_vpc,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_LAMBDA_DEAD_LETTER_QUEUE",
        "Lambda function has a dead-letter queue",
        dead_letter_queue,
        workload_only=True,
    ),
)
