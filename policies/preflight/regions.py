"""Every AWS service the stacks use, offered in the region each resource is created in.

Three rules, each one finding per judged value:

- a VPC endpoint's `service_name` (`com.amazonaws.<region>.<service>`) names its own region
  and a PrivateLink service whose botocore service has an endpoint there;
- every resource and data source type's service (by its type's prefix) has an endpoint in the
  region, or is global in the region's partition (IAM, Organizations);
- every resource type inside an `aws_cloudformation_stack` template (the HealthLake datastore)
  is in CloudFormation's registry for the region.

Endpoint availability is botocore's partition endpoint data (`endpoints.json`). CloudFormation
resource types are judged on the per-region registry lists cfn-lint ships instead: the stack
is created by CloudFormation, so the registry is the exact fact, and it is the fresher source
(botocore 1.35.99's endpoint data predates HealthLake's eu-west-1 and ca-central-1 launches,
which the registry lists and the AWS General Reference confirms). A service name, resource
type or region the tables or the data do not know is a FAILED finding, never a pass; a table
naming a botocore service that does not exist, or data that changed shape, is a
PreflightSourceError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any, Final

import botocore
import botocore.session

from policies.findings import Finding
from policies.preflight.base import (
    BOTOCORE,
    CFN_LINT_VERSION,
    PreflightSourceError,
    Resource,
    Rule,
    Stack,
    SynthesizedStacks,
    has_token,
    literal,
    package_data,
    verdict,
)
from policies.preflight.names import service_model

FAMILY: Final = "regions"
ENDPOINT_SERVICE: Final = re.compile(r"com\.amazonaws\.(?P<region>[a-z0-9-]+)\.(?P<name>.+)")

# PrivateLink service name (after com.amazonaws.<region>.) -> the botocore service whose
# endpoints it fronts. The names are AWS's, from "AWS services that integrate with AWS
# PrivateLink" (https://docs.aws.amazon.com/vpc/latest/privatelink/aws-services-privatelink-support.html);
# several differ from botocore's service names.
PRIVATELINK_SERVICES: Final[dict[str, str]] = {
    "dynamodb": "dynamodb",
    "ec2": "ec2",
    # The Systems Manager agent's channels (Session Manager, Run Command) have no API model of
    # their own; they are offered wherever Systems Manager is.
    "ec2messages": "ssm",
    "ssmmessages": "ssm",
    "ssm": "ssm",
    "ecr.api": "ecr",
    "ecr.dkr": "ecr",
    "events": "events",
    "execute-api": "apigateway",
    "healthlake": "healthlake",
    "kms": "kms",
    "lambda": "lambda",
    "logs": "logs",
    "monitoring": "cloudwatch",
    "s3": "s3",
    "sagemaker.api": "sagemaker",
    "sagemaker.runtime": "sagemaker-runtime",
    # botocore has no endpoint data for the Feature Store runtime (its endpoint is resolved by
    # rules for any region); it is part of SageMaker and offered in SageMaker's regions.
    "sagemaker.featurestore-runtime": "sagemaker",
    "secretsmanager": "secretsmanager",
    "sns": "sns",
    "sqs": "sqs",
    "sts": "sts",
    "xray": "xray",
}

# Terraform resource or data source type prefix -> the botocore service it calls (the longest
# matching prefix wins). A type no prefix matches is a FAILED finding: extend the table.
RESOURCE_SERVICES: Final[dict[str, str]] = {
    "aws_autoscaling_": "autoscaling",
    "aws_availability_zones": "ec2",
    "aws_cloudformation_": "cloudformation",
    "aws_cloudtrail": "cloudtrail",
    "aws_cloudwatch_event_": "events",
    "aws_cloudwatch_log_": "logs",
    "aws_cloudwatch_metric_alarm": "cloudwatch",
    "aws_config_": "config",
    "aws_controltower_": "controltower",
    "aws_customer_gateway": "ec2",
    "aws_default_": "ec2",
    "aws_dx_": "directconnect",
    "aws_ecr_": "ecr",
    "aws_flow_log": "ec2",
    "aws_glue_": "glue",
    "aws_guardduty_": "guardduty",
    "aws_iam_": "iam",
    "aws_kms_": "kms",
    "aws_lambda_": "lambda",
    "aws_launch_template": "ec2",
    "aws_organizations_": "organizations",
    "aws_prefix_list": "ec2",
    "aws_route_table": "ec2",
    "aws_s3_": "s3",
    "aws_sagemaker_": "sagemaker",
    "aws_security_group": "ec2",
    "aws_securityhub_": "securityhub",
    "aws_sns_": "sns",
    "aws_sqs_": "sqs",
    "aws_ssm_": "ssm",
    "aws_subnet": "ec2",
    "aws_vpc": "ec2",
    "aws_vpn_": "ec2",
}

CFN_STACK: Final = "aws_cloudformation_stack"
# How many regions a finding lists where a service has endpoints before it counts them.
SHOWN_REGIONS: Final = 8
REGISTRY_FOLDER: Final = ("cfnlint", "data", "schemas", "providers")

ENDPOINT_DATA: Final = f"{BOTOCORE} endpoints.json (partition endpoint data)"
VPC_ENDPOINT_SERVICE: Final = Rule(
    id="PF_REGIONS_VPC_ENDPOINT_SERVICE",
    family=FAMILY,
    title="VPC endpoints name a PrivateLink service offered in their own region",
    source=f"{ENDPOINT_DATA}, through the PrivateLink service-name table "
    "(https://docs.aws.amazon.com/vpc/latest/privatelink/aws-services-privatelink-support.html)",
)
RESOURCE_SERVICE: Final = Rule(
    id="PF_REGIONS_RESOURCE_SERVICE",
    family=FAMILY,
    title="Every resource's AWS service is offered in the region it is created in",
    source=f"{ENDPOINT_DATA}, through the resource-type prefix table",
)
CFN_RESOURCE_TYPE: Final = Rule(
    id="PF_REGIONS_CLOUDFORMATION_RESOURCE_TYPE",
    family=FAMILY,
    title="CloudFormation templates use resource types (HealthLake) their region registers",
    source=f"cfn-lint {CFN_LINT_VERSION} CloudFormation registry per region "
    "(data/schemas/providers/<region>.json)",
)
RULES: Final[tuple[Rule, ...]] = (VPC_ENDPOINT_SERVICE, RESOURCE_SERVICE, CFN_RESOURCE_TYPE)


def check(stacks: SynthesizedStacks) -> list[Finding]:
    findings: list[Finding] = []
    for stack in stacks.stacks:
        for resource in placed(stack):
            findings += _service_findings(resource)
            if resource.type == "aws_vpc_endpoint":
                findings += _endpoint_findings(resource)
            if resource.type == CFN_STACK:
                findings += _template_findings(resource)
    return findings


def placed(stack: Stack) -> Iterator[Resource]:
    """The stack's AWS resources and data sources, each with the region of its provider."""
    providers = stack.configuration.get("provider", {}).get("aws", [])
    regions = {
        f"aws.{p['alias']}": str(p.get("region", ""))
        for p in (providers if isinstance(providers, list) else [providers])
        if isinstance(p, dict) and "alias" in p
    }
    for mode, prefix in (("resource", ""), ("data", "data.")):
        for type_, blocks in sorted(stack.configuration.get(mode, {}).items()):
            if not type_.startswith("aws_") or not isinstance(blocks, dict):
                continue  # terraform_remote_state and other providers' types call no AWS API
            for name, block in sorted(blocks.items()):
                region = regions.get(str(block.get("provider", "")), stack.region)
                yield Resource(stack.name, stack.file, prefix + type_, name, block, region)


def _service_findings(resource: Resource) -> list[Finding]:
    if has_token(resource.region):
        return []  # a region chosen at plan time is judged nowhere here
    type_ = resource.type.removeprefix("data.")
    prefixes = [p for p in RESOURCE_SERVICES if type_.startswith(p)]
    if not prefixes:
        problem: str | None = f"{type_} maps to no AWS service in regions.RESOURCE_SERVICES"
        return [verdict(RESOURCE_SERVICE, resource, problem)]
    service = RESOURCE_SERVICES[max(prefixes, key=len)]
    problem = offered(service, resource.region)
    judged = f"{type_} -> {service} in {resource.region}"
    return [verdict(RESOURCE_SERVICE, resource, problem, judged=judged)]


def _endpoint_findings(resource: Resource) -> list[Finding]:
    service_name = literal(resource.block.get("service_name"))
    if service_name is None or has_token(resource.region):
        return []  # a referenced service name is another resource's (a provider's endpoint)
    region = literal(resource.block.get("service_region")) or resource.region
    judged = f"service_name {service_name!r} in {region}"
    matched = ENDPOINT_SERVICE.fullmatch(service_name)
    problem: str | None
    if matched is None:
        problem = f"service_name {service_name!r} is not com.amazonaws.<region>.<service>"
    elif matched["region"] != region:
        problem = f"service_name {service_name!r} names {matched['region']}, not {region}"
    elif matched["name"] not in PRIVATELINK_SERVICES:
        problem = (
            f"service_name {service_name!r}: {matched['name']!r} is no PrivateLink service "
            "regions.PRIVATELINK_SERVICES knows"
        )
    else:
        service = PRIVATELINK_SERVICES[matched["name"]]
        unavailable = offered(service, region)
        problem = None if unavailable is None else f"service_name {service_name!r}: {unavailable}"
    return [verdict(VPC_ENDPOINT_SERVICE, resource, problem, judged=judged)]


def _template_findings(resource: Resource) -> list[Finding]:
    body = resource.block.get("template_body")
    if not isinstance(body, str) or has_token(resource.region):
        return []
    try:
        template = json.loads(body)
    except ValueError:
        return []  # YAML or not a template: the cloudformation family lints the body itself
    declared = template.get("Resources") if isinstance(template, dict) else None
    findings = []
    for logical_id, declaration in sorted((declared or {}).items()):
        type_ = declaration.get("Type") if isinstance(declaration, dict) else None
        # Custom resources are the template author's Lambda functions, not registry types.
        if not isinstance(type_, str) or type_.startswith("Custom::"):
            continue
        region = resource.region
        registry = _registry(region) if region else None
        if registry is None:
            problem: str | None = f"cfn-lint has no CloudFormation registry for {region!r}"
        elif type_ not in registry:
            problem = f"{logical_id}: {type_} is not in CloudFormation's registry for {region}"
        else:
            problem = None
        judged = f"{logical_id} {type_} in {region}"
        findings.append(verdict(CFN_RESOURCE_TYPE, resource, problem, judged=judged))
    return findings


# --- the sources ----------------------------------------------------------------------------


@cache
def endpoint_data() -> dict[str, Any]:
    data = botocore.session.get_session().get_component("data_loader").load_data("endpoints")
    partitions = data.get("partitions") if isinstance(data, dict) else None
    if not isinstance(partitions, list) or not all(
        isinstance(p, dict) and {"partition", "regions", "services"} <= set(p) for p in partitions
    ):
        raise PreflightSourceError(f"{ENDPOINT_DATA}: no partitions with regions and services")
    return dict(data)


def _partition(region: str) -> dict[str, Any] | None:
    partitions: list[dict[str, Any]] = endpoint_data()["partitions"]
    return next((p for p in partitions if region in p["regions"]), None)


def endpoint_prefix(service: str) -> str:
    """The endpoint data's name for a botocore service (cloudwatch: monitoring)."""
    prefix = service_model(service).metadata.get("endpointPrefix")
    if not isinstance(prefix, str):
        raise PreflightSourceError(f"{BOTOCORE}: the {service} model has no endpointPrefix")
    return prefix


def offered(service: str, region: str) -> str | None:
    """None when `service` has an endpoint in `region` (or is global in its partition),
    else what the endpoint data says instead."""
    if not region:
        return "its aws provider sets no region, so what it may use there cannot be judged"
    partition = _partition(region)
    if partition is None:
        return f"{region!r} is a region of no partition in {ENDPOINT_DATA}"
    prefix = endpoint_prefix(service)
    entry = partition["services"].get(prefix)
    if not isinstance(entry, dict):
        return f"{service} ({prefix}) has no endpoint data in partition {partition['partition']}"
    if entry.get("isRegionalized") is False:
        return None  # one endpoint for the whole partition (IAM, Organizations)
    endpoints = entry.get("endpoints", {})
    if region in endpoints and not endpoints[region].get("deprecated"):
        return None
    listed = sorted(r for r in endpoints if r in partition["regions"])
    shown = ", ".join(listed) if len(listed) <= SHOWN_REGIONS else f"{len(listed)} regions"
    return f"{service} ({prefix}) has no endpoint in {region}; it has {shown}"


@cache
def _registry(region: str) -> frozenset[str] | None:
    """The resource types CloudFormation registers in `region` (cfn-lint's copy), None for a
    region cfn-lint has no list for; PreflightSourceError when cfn-lint's data is unreadable."""
    try:
        providers = package_data(*REGISTRY_FOLDER)
        if not providers.joinpath("us-east-1.json").is_file():
            raise PreflightSourceError(f"cfn-lint {CFN_LINT_VERSION}: no registry lists")
        listed = providers.joinpath(f"{region}.json")
        if not listed.is_file():
            return None
        types = json.loads(listed.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, OSError, ValueError) as error:
        raise PreflightSourceError(f"cfn-lint's registry lists unreadable ({error})") from None
    if not isinstance(types, dict):
        raise PreflightSourceError(f"cfn-lint's registry list for {region}: not type -> schema")
    return frozenset(types)
