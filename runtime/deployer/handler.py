"""Deploy a model version to the endpoint when a person approves it in the Model Registry, and
point the Model Monitor schedule at that version's own baseline.

Trigger: EventBridge "SageMaker Model Package State Change" events of the registry group
(modules/registry.py's approval rule). The event's detail is the package as DescribeModelPackage
shows it (ModelPackageArn, ModelPackageGroupName, ModelPackageVersion, ModelApprovalStatus,
InferenceSpecification, ...); only the ARN, group and version are taken from it, everything
else is read again from the registry.

What it does, for a version whose status read again is Approved (the event may be stale, or a
rejection) and whose package passes the checks below:
1. a model `<endpoint>-v<version>` from the package's one container, network-isolated in the
   private subnets;
2. an endpoint configuration of the same name: storage encrypted with the ML key, requests and
   responses captured (at the configured rate) under the capture prefix, encrypted likewise;
3. a data-quality job definition `<endpoint>-dq-v<version>` with the version's own baseline
   (its DriftCheckBaselines), network-isolated in the VPC, volume and reports encrypted;
4. the endpoint created, or switched to the new configuration (UpdateEndpoint keeps serving
   the old one until the new one is in service);
5. the monitoring schedule created, or pointed at the new job definition;
6. of this endpoint's versions, the newest RETAINED_VERSIONS kept (what rollback returns to)
   and older models, configurations and job definitions deleted, never the one serving before
   nor the one just deployed.
Model, configuration and job definition are tagged `phi-ml:model-package-arn` with the
package's ARN, so lineage and rollback know which registry version each one is.

Refused, with nothing changed and an ERROR log line: a version that is not Approved; a package
with other than one container, an image not pinned by @sha256 digest or from another
repository than the serving one, a model archive or baseline outside the artifacts bucket, or
no data-quality baseline; names longer than SageMaker's 63 characters; a model, configuration
or job definition of the version's name that another package (or a person) created.

Idempotency: names derive from the version and what this package already created is reused.
Before switching, the endpoint is tagged with the package it is switched to and the
configuration it leaves; an event delivered again for a version already serving changes
nothing, and a retry after a deployment interrupted once the endpoint switched finishes it
(schedule, retention) with the configuration it left still kept.

Errors: an event that is malformed, of another group or about an unknown package is logged
(one JSON object per line) and answered with a status; no exception, so Lambda does not retry
what cannot succeed. Only an endpoint that is not InService (being created or updated, say)
raises EndpointBusyError, so that Lambda's bounded asynchronous retries try again and then the
dead-letter queue keeps the event.

Settings (environment, all required; see Settings): ENDPOINT_NAME, MODEL_PACKAGE_GROUP,
MODEL_EXECUTION_ROLE_ARN, MODEL_SUBNET_IDS, MODEL_SECURITY_GROUP_IDS, KMS_KEY_ARN,
ARTIFACTS_BUCKET, SERVING_REPOSITORY, CAPTURE_S3_URI, CAPTURE_SAMPLING_PERCENT, INSTANCE_TYPE,
INSTANCE_COUNT, RETAINED_VERSIONS, MONITORING_SCHEDULE_NAME, MONITORING_SCHEDULE_EXPRESSION,
MONITOR_ROLE_ARN, MONITOR_IMAGE, MONITOR_INSTANCE_TYPE, MONITOR_VOLUME_SIZE_GB,
MONITOR_MAX_RUNTIME_SECONDS, MONITOR_REPORTS_S3_URI, MONITOR_SUBNET_IDS,
MONITOR_SECURITY_GROUP_IDS; the region is Lambda's own (AWS_REGION).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOGGER = logging.getLogger("phi_ml.deployer")
LOGGER.setLevel(logging.INFO)

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"
APPROVED = "Approved"
IN_SERVICE = "InService"
TAG_MODEL_PACKAGE = "phi-ml:model-package-arn"
TAG_DEPLOYING = "phi-ml:deploying-model-package-arn"
TAG_DEPLOYED_FROM = "phi-ml:deployed-from"
MAX_NAME = 63  # SageMaker model, endpoint configuration and job definition names
PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:model-package/"
    r"(?P<group>[A-Za-z0-9-]+)/(?P<version>[0-9]+)$"
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S*$")
CSV_CONTENT_TYPES = ["text/csv"]
JSON_CONTENT_TYPES = ["application/json", "application/jsonlines"]
ENDPOINT_INPUT_PATH = "/opt/ml/processing/input/endpoint"
MONITORING_OUTPUT_PATH = "/opt/ml/processing/output"


class EndpointBusyError(RuntimeError):
    """The endpoint is not InService (being created or updated): try again later (Lambda
    retries, then DLQ)."""


class RefusedError(ValueError):
    """Why this package version must not serve."""


class MalformedEventError(ValueError):
    """Why an event is not a usable model package state change."""


# --- settings --------------------------------------------------------------------------------


def text(raw: str) -> str:
    return raw


def identifiers(raw: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in raw.split(","))
    if not all(parts):
        raise ValueError("is not a comma-separated list of ids")
    return parts


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"from {low} to {high}"
            raise ValueError(f"is not {bounds}")
        return value

    return parse


def arn_of(service: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not re.match(rf"^arn:aws[a-z-]*:{service}:", raw):
            raise ValueError(f"is not an {service} ARN")
        return raw

    return parse


def bucket_name(raw: str) -> str:
    if not BUCKET.match(raw):
        raise ValueError("is not an S3 bucket name")
    return raw


def s3_prefix(raw: str) -> str:
    if not S3_URI.match(raw):
        raise ValueError("is not an s3://bucket/prefix URI")
    return raw


def repository(raw: str) -> str:
    if "@" in raw or ":" in raw.rsplit("/", 1)[-1] or "/" not in raw:
        raise ValueError("is not <registry>/<repository> (no tag, no digest)")
    return raw


def parsed_by(parse: Callable[[str], Any]) -> Any:
    return field(metadata={"parse": parse})


@dataclass(frozen=True)
class Settings:
    """The function's configuration; each field is the environment variable of its name in
    upper case."""

    endpoint_name: str = parsed_by(text)
    model_package_group: str = parsed_by(text)
    model_execution_role_arn: str = parsed_by(arn_of("iam"))
    model_subnet_ids: tuple[str, ...] = parsed_by(identifiers)
    model_security_group_ids: tuple[str, ...] = parsed_by(identifiers)
    # Encrypts the endpoint's storage, the captured data, the monitor's reports and volumes.
    kms_key_arn: str = parsed_by(arn_of("kms"))
    # Model archives and baselines must be in it: what the model role may read.
    artifacts_bucket: str = parsed_by(bucket_name)
    # The only repository a served image may come from (the model role pulls only it).
    serving_repository: str = parsed_by(repository)
    capture_s3_uri: str = parsed_by(s3_prefix)
    capture_sampling_percent: int = parsed_by(whole(1, 100))
    instance_type: str = parsed_by(text)
    instance_count: int = parsed_by(whole(1))
    # At least the version deployed and one to roll back to.
    retained_versions: int = parsed_by(whole(2))
    monitoring_schedule_name: str = parsed_by(text)
    monitoring_schedule_expression: str = parsed_by(text)
    monitor_role_arn: str = parsed_by(arn_of("iam"))
    monitor_image: str = parsed_by(text)
    monitor_instance_type: str = parsed_by(text)
    monitor_volume_size_gb: int = parsed_by(whole(1))
    monitor_max_runtime_seconds: int = parsed_by(whole(1))
    monitor_reports_s3_uri: str = parsed_by(s3_prefix)
    monitor_subnet_ids: tuple[str, ...] = parsed_by(identifiers)
    monitor_security_group_ids: tuple[str, ...] = parsed_by(identifiers)

    @classmethod
    def variables(cls) -> list[str]:
        return [setting.name.upper() for setting in fields(cls)]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings | list[str]:
        """The settings, or every variable that is missing or malformed (all of them at once)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for setting in fields(cls):
            variable = setting.name.upper()
            raw = environ.get(variable, "").strip()
            if not raw:
                problems.append(f"{variable} is not set")
                continue
            try:
                values[setting.name] = setting.metadata["parse"](raw)
            except ValueError as malformed:
                problems.append(f"{variable}={raw!r} {malformed}")
        return problems or cls(**values)


# --- the event -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """What an event names: a version of a group. Its status is read again, never trusted."""

    package_arn: str
    group: str
    version: int


def log(level: int, message: str, **details: Any) -> None:
    """One JSON object per line, so log queries can filter on any field."""
    record = {"level": logging.getLevelName(level), "message": message, **details}
    LOGGER.log(level, json.dumps(record, sort_keys=True, default=str))


def result(status: str, **details: Any) -> dict[str, Any]:
    return {"status": status, **details}


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise MalformedEventError(reason)


def parse_approval(event: Any) -> Approval | str:
    """The version an event is about, or why it is not a usable event."""
    try:
        return approval_of(event)
    except MalformedEventError as malformed:
        return str(malformed)


def approval_of(event: Any) -> Approval:
    require(isinstance(event, dict), "event is not a JSON object")
    source, detail_type = event.get("source"), event.get("detail-type")
    require(source == EVENT_SOURCE, f"source is {source!r}, expected {EVENT_SOURCE!r}")
    require(
        detail_type == EVENT_DETAIL_TYPE,
        f"detail-type is {detail_type!r}, expected {EVENT_DETAIL_TYPE!r}",
    )
    detail = event.get("detail")
    require(isinstance(detail, dict), "detail is missing or not an object")
    arn = detail.get("ModelPackageArn")
    matched = PACKAGE_ARN.match(arn) if isinstance(arn, str) else None
    require(matched is not None, "detail.ModelPackageArn is missing or not a model package version")
    group, version = detail.get("ModelPackageGroupName"), detail.get("ModelPackageVersion")
    require(isinstance(group, str) and bool(group), "detail.ModelPackageGroupName is missing")
    require(
        isinstance(version, int) and not isinstance(version, bool) and version >= 1,
        "detail.ModelPackageVersion is missing or not a version number",
    )
    require(
        isinstance(detail.get("ModelApprovalStatus"), str),
        "detail.ModelApprovalStatus is missing",
    )
    assert matched is not None  # for the type checker: required above
    # SageMaker writes the group in lower case in the ARN.
    require(
        matched["group"] == str(group).lower() and int(matched["version"]) == version,
        "detail.ModelPackageArn does not name detail.ModelPackageGroupName's version "
        "detail.ModelPackageVersion",
    )
    return Approval(package_arn=str(arn), group=str(group), version=int(version))


def handle(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    settings = Settings.from_environment()
    if isinstance(settings, list):
        log(logging.ERROR, "function is not configured: nothing changed", problems=settings)
        return result("misconfigured", problems=settings)
    event_id = event.get("id") if isinstance(event, dict) else None
    approval = parse_approval(event)
    if isinstance(approval, str):
        log(logging.ERROR, "malformed event: nothing changed", reason=approval, event_id=event_id)
        return result("rejected", reason=approval)
    if approval.group != settings.model_package_group:
        log(
            logging.ERROR,
            "event of another model package group: nothing changed",
            group=approval.group,
            model_package=approval.package_arn,
        )
        return result(
            "ignored", reason="another model package group", model_package=approval.package_arn
        )
    return deploy(boto3.client("sagemaker"), settings, approval)


# --- the deployment --------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """What a version's resources are called: the rollback function finds the endpoint
    configurations by the `<endpoint>-` prefix, retention by `-v<n>` / `-dq-v<n>`."""

    model: str
    endpoint_config: str
    job_definition: str

    @classmethod
    def of(cls, endpoint_name: str, version: int) -> Names:
        return cls(
            model=f"{endpoint_name}-v{version}",
            endpoint_config=f"{endpoint_name}-v{version}",
            job_definition=f"{endpoint_name}-dq-v{version}",
        )

    def too_long(self) -> list[str]:
        return sorted(
            {
                name
                for name in (self.model, self.endpoint_config, self.job_definition)
                if len(name) > MAX_NAME
            }
        )


def deploy(sagemaker: Any, settings: Settings, approval: Approval) -> dict[str, Any]:
    details: dict[str, Any] = {
        "endpoint": settings.endpoint_name,
        "model_package": approval.package_arn,
        "version": approval.version,
    }
    try:
        package = sagemaker.describe_model_package(ModelPackageName=approval.package_arn)
    except ClientError as error:
        if not_found(error):
            log(logging.ERROR, "unknown model package: nothing changed", **details)
            return result("rejected", reason="unknown model package", **details)
        raise
    status = package.get("ModelApprovalStatus")
    if status != APPROVED:
        log(logging.ERROR, "not approved: refused, endpoint unchanged", approval=status, **details)
        return result("refused", reason=f"approval status is {status}", **details)
    names = Names.of(settings.endpoint_name, approval.version)
    details["endpoint_config"] = names.endpoint_config
    try:
        container, baseline = checked_package(settings, approval, package)
        if names.too_long():
            raise RefusedError(
                f"names longer than SageMaker's {MAX_NAME} characters: "
                f"{', '.join(names.too_long())}"
            )
        existing = existing_resources(sagemaker, names, approval.package_arn)
    except RefusedError as refused:
        log(logging.ERROR, "refused, endpoint unchanged", reason=str(refused), **details)
        return result("refused", reason=str(refused), **details)

    endpoint = described_endpoint(sagemaker, settings.endpoint_name)
    if endpoint is not None and endpoint["EndpointStatus"] != IN_SERVICE:
        log(
            logging.WARNING,
            "endpoint busy: retry later",
            state=endpoint["EndpointStatus"],
            **details,
        )
        raise EndpointBusyError(
            f"endpoint {settings.endpoint_name} is {endpoint['EndpointStatus']}"
        )
    serving = endpoint["EndpointConfigName"] if endpoint is not None else None
    if endpoint is not None and serving == names.endpoint_config:
        return finish_or_nothing(
            sagemaker, settings, names=names, endpoint=endpoint, baseline=baseline, details=details
        )

    tags = [{"Key": TAG_MODEL_PACKAGE, "Value": approval.package_arn}]
    if "model" not in existing:
        create_model(sagemaker, settings, names, container, tags)
    if "endpoint_config" not in existing:
        create_endpoint_config(sagemaker, settings, names, tags)
    if "job_definition" not in existing:
        create_job_definition(sagemaker, settings, names, baseline, tags)
    if endpoint is None:
        sagemaker.create_endpoint(
            EndpointName=settings.endpoint_name,
            EndpointConfigName=names.endpoint_config,
            Tags=[{"Key": TAG_DEPLOYING, "Value": approval.package_arn}],
        )
    else:
        # Recorded first, so a retry after the switch still keeps the configuration it left.
        sagemaker.add_tags(
            ResourceArn=endpoint["EndpointArn"],
            Tags=[
                {"Key": TAG_DEPLOYING, "Value": approval.package_arn},
                {"Key": TAG_DEPLOYED_FROM, "Value": serving},
            ],
        )
        sagemaker.update_endpoint(
            EndpointName=settings.endpoint_name, EndpointConfigName=names.endpoint_config
        )
    schedule_monitor(sagemaker, settings, names.job_definition)
    deleted = prune(sagemaker, settings, keep={names.endpoint_config, serving or ""})
    log(logging.INFO, "deployed", previous_endpoint_config=serving, deleted=deleted, **details)
    return result("deployed", previous_endpoint_config=serving, deleted=deleted, **details)


def finish_or_nothing(
    sagemaker: Any,
    settings: Settings,
    *,
    names: Names,
    endpoint: dict[str, Any],
    baseline: dict[str, Any],
    details: dict[str, Any],
) -> dict[str, Any]:
    """The endpoint serves this version already: nothing to do if the schedule watches it too;
    otherwise an earlier attempt stopped after the switch, and this finishes it."""
    schedule = described_schedule(sagemaker, settings.monitoring_schedule_name)
    watching = (schedule or {}).get("MonitoringScheduleConfig", {})
    if watching.get("MonitoringJobDefinitionName") == names.job_definition:
        log(logging.INFO, "version already deployed: nothing changed", **details)
        return result("already-deployed", **details)
    tags = tags_of(sagemaker, endpoint["EndpointArn"])
    left = (
        tags.get(TAG_DEPLOYED_FROM) if tags.get(TAG_DEPLOYING) == details["model_package"] else None
    )
    job = described(
        sagemaker.describe_data_quality_job_definition, JobDefinitionName=names.job_definition
    )
    if job is None:
        package_tag = [{"Key": TAG_MODEL_PACKAGE, "Value": details["model_package"]}]
        create_job_definition(sagemaker, settings, names, baseline, package_tag)
    schedule_monitor(sagemaker, settings, names.job_definition)
    deleted = prune(sagemaker, settings, keep={names.endpoint_config, left or ""})
    log(
        logging.WARNING,
        "finished an interrupted deployment",
        previous_endpoint_config=left,
        deleted=deleted,
        **details,
    )
    return result("deployed", previous_endpoint_config=left, deleted=deleted, **details)


def in_bucket(uri: Any, bucket: str) -> bool:
    return isinstance(uri, str) and uri.startswith(f"s3://{bucket}/") and len(uri) > len(bucket) + 6


def image_repository(image: str) -> str | None:
    """<registry>/<repository> of an image pinned by digest (a tag beside it is dropped), or
    None if it is not pinned by digest."""
    named, at, digest = image.rpartition("@")
    if not at or not DIGEST.match(digest):
        return None
    registry_and_path, _, last = named.rpartition("/")
    return f"{registry_and_path}/{last.split(':', 1)[0]}" if registry_and_path else None


def checked_package(
    settings: Settings, approval: Approval, package: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the one container, the data-quality baseline), or RefusedError naming the reason."""
    if (
        package.get("ModelPackageGroupName") != approval.group
        or package.get("ModelPackageVersion") != approval.version
    ):
        raise RefusedError("the registry's package is not the group's version the event names")
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    if len(containers) != 1:
        raise RefusedError(f"the package has {len(containers)} containers, not exactly one")
    container = dict(containers[0])
    image = str(container.get("Image", ""))
    repository_of_image = image_repository(image)
    if repository_of_image is None:
        raise RefusedError(f"image {image!r} is not pinned by @sha256: digest")
    if repository_of_image != settings.serving_repository:
        raise RefusedError(f"image {image!r} is not from {settings.serving_repository}")
    archive = container.get("ModelDataUrl")
    if not in_bucket(archive, settings.artifacts_bucket):
        raise RefusedError(f"model archive {archive!r} is not in {settings.artifacts_bucket}")
    quality = (package.get("DriftCheckBaselines") or {}).get("ModelDataQuality") or {}
    for part in ("Constraints", "Statistics"):
        uri = (quality.get(part) or {}).get("S3Uri")
        if not in_bucket(uri, settings.artifacts_bucket):
            raise RefusedError(
                f"DriftCheckBaselines.ModelDataQuality.{part}.S3Uri {uri!r} is missing or not "
                f"in {settings.artifacts_bucket}: the monitor would have nothing to compare with"
            )
    return container, dict(quality)


# --- SageMaker -------------------------------------------------------------------------------


def not_found(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in ("ValidationException", "ResourceNotFound")


def described(describe: Callable[..., Any], **name: str) -> dict[str, Any] | None:
    """The description, or None when there is no such resource."""
    try:
        return dict(describe(**name))
    except ClientError as error:
        if not_found(error):
            return None
        raise


def described_endpoint(sagemaker: Any, name: str) -> dict[str, Any] | None:
    return described(sagemaker.describe_endpoint, EndpointName=name)


def described_schedule(sagemaker: Any, name: str) -> dict[str, Any] | None:
    return described(sagemaker.describe_monitoring_schedule, MonitoringScheduleName=name)


def tags_of(sagemaker: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
        tags.update({tag["Key"]: tag["Value"] for tag in page["Tags"]})
    return tags


def existing_resources(sagemaker: Any, names: Names, package_arn: str) -> set[str]:
    """Which of the version's resources exist already (an earlier attempt made them); each must
    be this package's, or a resource someone else named like the version would serve."""
    found = {
        "model": (sagemaker.describe_model, {"ModelName": names.model}, "ModelArn"),
        "endpoint_config": (
            sagemaker.describe_endpoint_config,
            {"EndpointConfigName": names.endpoint_config},
            "EndpointConfigArn",
        ),
        "job_definition": (
            sagemaker.describe_data_quality_job_definition,
            {"JobDefinitionName": names.job_definition},
            "JobDefinitionArn",
        ),
    }
    existing: set[str] = set()
    for kind, (describe, name, arn_key) in found.items():
        description = described(describe, **name)
        if description is None:
            continue
        owner = tags_of(sagemaker, description[arn_key]).get(TAG_MODEL_PACKAGE)
        if owner != package_arn:
            raise RefusedError(
                f"{kind.replace('_', ' ')} {next(iter(name.values()))} exists and is not this "
                f"package's (tagged {TAG_MODEL_PACKAGE}={owner!r})"
            )
        existing.add(kind)
    return existing


def create_model(
    sagemaker: Any,
    settings: Settings,
    names: Names,
    container: dict[str, Any],
    tags: list[dict[str, str]],
) -> None:
    primary: dict[str, Any] = {
        "Image": container["Image"],
        "ModelDataUrl": container["ModelDataUrl"],
        "Mode": "SingleModel",
    }
    if container.get("Environment"):
        primary["Environment"] = dict(container["Environment"])
    sagemaker.create_model(
        ModelName=names.model,
        PrimaryContainer=primary,
        ExecutionRoleArn=settings.model_execution_role_arn,
        VpcConfig={
            "Subnets": list(settings.model_subnet_ids),
            "SecurityGroupIds": list(settings.model_security_group_ids),
        },
        EnableNetworkIsolation=True,
        Tags=tags,
    )


def create_endpoint_config(
    sagemaker: Any, settings: Settings, names: Names, tags: list[dict[str, str]]
) -> None:
    sagemaker.create_endpoint_config(
        EndpointConfigName=names.endpoint_config,
        KmsKeyId=settings.kms_key_arn,
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": names.model,
                "InstanceType": settings.instance_type,
                "InitialInstanceCount": settings.instance_count,
                "InitialVariantWeight": 1.0,
            }
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": settings.capture_sampling_percent,
            "DestinationS3Uri": settings.capture_s3_uri,
            "KmsKeyId": settings.kms_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": CSV_CONTENT_TYPES,
                "JsonContentTypes": JSON_CONTENT_TYPES,
            },
        },
        Tags=tags,
    )


def create_job_definition(
    sagemaker: Any,
    settings: Settings,
    names: Names,
    baseline: dict[str, Any],
    tags: list[dict[str, str]],
) -> None:
    sagemaker.create_data_quality_job_definition(
        JobDefinitionName=names.job_definition,
        DataQualityBaselineConfig={
            "ConstraintsResource": {"S3Uri": baseline["Constraints"]["S3Uri"]},
            "StatisticsResource": {"S3Uri": baseline["Statistics"]["S3Uri"]},
        },
        DataQualityAppSpecification={"ImageUri": settings.monitor_image},
        DataQualityJobInput={
            "EndpointInput": {
                "EndpointName": settings.endpoint_name,
                "LocalPath": ENDPOINT_INPUT_PATH,
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        DataQualityJobOutputConfig={
            "MonitoringOutputs": [
                {
                    "S3Output": {
                        "S3Uri": settings.monitor_reports_s3_uri,
                        "LocalPath": MONITORING_OUTPUT_PATH,
                        "S3UploadMode": "EndOfJob",
                    }
                }
            ],
            "KmsKeyId": settings.kms_key_arn,
        },
        JobResources={
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": settings.monitor_instance_type,
                "VolumeSizeInGB": settings.monitor_volume_size_gb,
                "VolumeKmsKeyId": settings.kms_key_arn,
            }
        },
        NetworkConfig={
            "EnableInterContainerTrafficEncryption": True,
            "EnableNetworkIsolation": True,
            "VpcConfig": {
                "Subnets": list(settings.monitor_subnet_ids),
                "SecurityGroupIds": list(settings.monitor_security_group_ids),
            },
        },
        RoleArn=settings.monitor_role_arn,
        StoppingCondition={"MaxRuntimeInSeconds": settings.monitor_max_runtime_seconds},
        Tags=tags,
    )


def schedule_monitor(sagemaker: Any, settings: Settings, job_definition: str) -> None:
    config = {
        "ScheduleConfig": {"ScheduleExpression": settings.monitoring_schedule_expression},
        "MonitoringJobDefinitionName": job_definition,
        "MonitoringType": "DataQuality",
    }
    name = settings.monitoring_schedule_name
    if described_schedule(sagemaker, name) is None:
        sagemaker.create_monitoring_schedule(
            MonitoringScheduleName=name, MonitoringScheduleConfig=config
        )
    else:
        sagemaker.update_monitoring_schedule(
            MonitoringScheduleName=name, MonitoringScheduleConfig=config
        )


# --- retention -------------------------------------------------------------------------------


def versions_named(names: list[str], prefix: str) -> dict[int, str]:
    """{version: name} of the names that are `<prefix><version>` exactly."""
    pattern = re.compile(re.escape(prefix) + r"(?P<version>[1-9][0-9]*)")
    return {
        int(matched["version"]): name
        for name in names
        if (matched := pattern.fullmatch(name)) is not None
    }


def listed(sagemaker: Any, operation: str, key: str, name_key: str, contains: str) -> list[str]:
    names: list[str] = []
    for page in sagemaker.get_paginator(operation).paginate(NameContains=contains):
        names += [str(item[name_key]) for item in page[key]]
    return names


def prune(sagemaker: Any, settings: Settings, *, keep: set[str]) -> list[str]:
    """Delete this endpoint's versions older than the newest RETAINED_VERSIONS, except those
    whose configuration is in `keep` (the one deployed now and the one serving before it).
    Returns what was deleted, as `<resource type>/<name>`."""
    base = settings.endpoint_name
    configs = versions_named(
        listed(sagemaker, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", base),
        f"{base}-v",
    )
    models = versions_named(
        listed(sagemaker, "list_models", "Models", "ModelName", base), f"{base}-v"
    )
    jobs = versions_named(
        listed(
            sagemaker,
            "list_data_quality_job_definitions",
            "JobDefinitionSummaries",
            "MonitoringJobDefinitionName",
            base,
        ),
        f"{base}-dq-v",
    )
    every = set(configs) | set(models) | set(jobs)
    retained = set(sorted(every)[-settings.retained_versions :])
    kept = retained | {version for version, name in configs.items() if name in keep}
    deleted: list[str] = []
    for version in sorted(every - kept):
        if version in configs:
            sagemaker.delete_endpoint_config(EndpointConfigName=configs[version])
            deleted.append(f"endpoint-config/{configs[version]}")
        if version in models:
            sagemaker.delete_model(ModelName=models[version])
            deleted.append(f"model/{models[version]}")
        if version in jobs:
            sagemaker.delete_data_quality_job_definition(JobDefinitionName=jobs[version])
            deleted.append(f"data-quality-job-definition/{jobs[version]}")
    if deleted:
        log(logging.INFO, "deleted versions beyond retention", deleted=deleted, endpoint=base)
    return deleted
