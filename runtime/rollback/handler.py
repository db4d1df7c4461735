"""Return a SageMaker endpoint to its previous endpoint configuration when Model Monitor finds
violations, and record what was done on the endpoint itself.

Trigger: EventBridge "SageMaker Processing Job State Change" events of the endpoint's
data-quality monitoring schedule whose job completed with violations (ProcessingJobStatus
"Completed", ExitMessage "CompletedWithViolations: ...").

Which configuration is "previous": every endpoint configuration of the endpoint is named
"<endpoint name>-<version>" (the inference layer does this). The lineage is those
configurations ordered by creation time; the target is the newest one created before the
configuration now serving that has not itself been rolled back from. A configuration that was
rolled back from is tagged `phi-ml:rolled-back-by=<violation>` and never chosen again. The
monitoring schedule is pointed at the data-quality job definition of the version returned to
(`<endpoint>-dq-v<n>`, the deployer's), so the next run judges against that version's baseline.

The registry's history shows it: the model package the left configuration served (the
deployer tags each configuration with it) is set to Rejected, with the violation and the
version returned to in its ApprovalDescription and customer metadata (`rolled-back-at`,
`rolled-back-to`, `rolled-back-endpoint`), so it is never redeployed without a new approval and
`make lineage` lists the rollback. Only ever Rejected: the function's role may set no other
status.

Idempotency: the violation's identity is its processing job ARN (EventBridge may deliver the
same state change more than once, under different event ids). Before switching, the endpoint
is tagged with the violation, the configuration it leaves and the one it returns to; a repeated
event for that violation changes nothing, and a retry after a failed switch finishes the switch
instead of rolling back one step further.

Errors: an event that is malformed, from another schedule or endpoint, or about an unknown
endpoint is logged (one JSON object per line) and answered with a status; no exception, so
Lambda does not retry what cannot succeed. Only a busy endpoint (an update already running)
raises, so that Lambda's bounded asynchronous retries try again and then the dead-letter queue
keeps the event.

Settings (environment): ENDPOINT_NAME, MONITORING_SCHEDULE_NAME; the region is Lambda's own
(AWS_REGION).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOGGER = logging.getLogger("phi_ml.rollback")
LOGGER.setLevel(logging.INFO)

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Processing Job State Change"
VIOLATIONS_PREFIX = "CompletedWithViolations"
TAG_VIOLATION = "phi-ml:rollback-violation"
TAG_ROLLED_BACK_FROM = "phi-ml:rolled-back-from"
TAG_ROLLED_BACK_TO = "phi-ml:rolled-back-to"
TAG_ROLLED_BACK_BY = "phi-ml:rolled-back-by"
# The deployer's tag naming the model package a configuration serves (runtime/deployer).
TAG_MODEL_PACKAGE = "phi-ml:model-package-arn"
REJECTED = "Rejected"
# requirements/model_lineage.py's keys: this function's package carries only its own folder,
# so they are written here and a test holds them equal.
ROLLED_BACK_AT = "rolled-back-at"
ROLLED_BACK_TO = "rolled-back-to"
ROLLED_BACK_ENDPOINT = "rolled-back-endpoint"
APPROVAL_DESCRIPTION_MAX = 1024
SCHEDULE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:monitoring-schedule/(?P<name>[A-Za-z0-9-]+)$"
)
PROCESSING_JOB_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:processing-job/[A-Za-z0-9-]+$"
)


class EndpointBusyError(RuntimeError):
    """The endpoint is being updated or created: try again later (Lambda retries, then DLQ)."""


@dataclass(frozen=True)
class Violation:
    processing_job_arn: str
    schedule_name: str
    endpoint_name: str | None
    exit_message: str


def log(level: int, message: str, **fields: Any) -> None:
    """One JSON object per line, so log queries can filter on any field."""
    record = {"level": logging.getLevelName(level), "message": message, **fields}
    LOGGER.log(level, json.dumps(record, sort_keys=True, default=str))


def result(status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, **fields}


class MalformedEventError(ValueError):
    """Why an event is not a usable violation event."""


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise MalformedEventError(reason)


def parse_violation(event: Any) -> Violation | str:
    """The violation an event reports, or why it is not a usable violation event."""
    try:
        return violation_of(event)
    except MalformedEventError as malformed:
        return str(malformed)


def violation_of(event: Any) -> Violation:
    require(isinstance(event, dict), "event is not a JSON object")
    source, detail_type = event.get("source"), event.get("detail-type")
    require(source == EVENT_SOURCE, f"source is {source!r}, expected {EVENT_SOURCE!r}")
    require(
        detail_type == EVENT_DETAIL_TYPE,
        f"detail-type is {detail_type!r}, expected {EVENT_DETAIL_TYPE!r}",
    )
    detail = event.get("detail")
    require(isinstance(detail, dict), "detail is missing or not an object")
    job_arn = detail.get("ProcessingJobArn")
    require(
        isinstance(job_arn, str) and PROCESSING_JOB_ARN.match(job_arn) is not None,
        "detail.ProcessingJobArn is missing or not a processing job ARN",
    )
    schedule_arn = detail.get("MonitoringScheduleArn")
    schedule = SCHEDULE_ARN.match(schedule_arn) if isinstance(schedule_arn, str) else None
    require(
        schedule is not None,
        "detail.MonitoringScheduleArn is missing or not a monitoring schedule ARN",
    )
    exit_message, status = detail.get("ExitMessage"), detail.get("ProcessingJobStatus")
    require(
        isinstance(status, str) and isinstance(exit_message, str),
        "detail.ProcessingJobStatus or detail.ExitMessage is missing",
    )
    environment = detail.get("Environment")
    named = environment.get("sagemaker_endpoint_name") if isinstance(environment, dict) else None
    assert schedule is not None  # for the type checker: required above
    return Violation(
        processing_job_arn=str(job_arn),
        schedule_name=schedule["name"],
        endpoint_name=named if isinstance(named, str) and named else None,
        exit_message=str(exit_message),
    )


def handle(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    endpoint_name = os.environ.get("ENDPOINT_NAME", "")
    schedule_name = os.environ.get("MONITORING_SCHEDULE_NAME", "")
    if not endpoint_name or not schedule_name:
        missing = [
            n for n in ("ENDPOINT_NAME", "MONITORING_SCHEDULE_NAME") if not os.environ.get(n)
        ]
        log(logging.ERROR, "function is not configured: nothing changed", missing=missing)
        return result("misconfigured")
    event_id = event.get("id") if isinstance(event, dict) else None
    violation = parse_violation(event)
    if isinstance(violation, str):
        log(logging.ERROR, "malformed event: nothing changed", reason=violation, event_id=event_id)
        return result("rejected", reason=violation)
    fields = {"endpoint": endpoint_name, "violation": violation.processing_job_arn}
    if violation.schedule_name.lower() != schedule_name.lower():
        log(
            logging.ERROR,
            "event of another monitoring schedule: nothing changed",
            schedule=violation.schedule_name,
            **fields,
        )
        return result("ignored", reason="another monitoring schedule", **fields)
    if violation.endpoint_name is not None and violation.endpoint_name != endpoint_name:
        log(
            logging.ERROR,
            "event for another endpoint: nothing changed",
            event_endpoint=violation.endpoint_name,
            **fields,
        )
        return result("ignored", reason="another endpoint", **fields)
    if not violation.exit_message.startswith(VIOLATIONS_PREFIX):
        log(logging.INFO, "monitoring completed without violations", **fields)
        return result("ignored", reason="no violations", **fields)
    return roll_back(
        boto3.client("sagemaker"),
        endpoint_name,
        violation.processing_job_arn,
        schedule_name=schedule_name,
    )


def roll_back(
    sagemaker: Any, endpoint_name: str, violation_id: str, *, schedule_name: str | None = None
) -> dict[str, Any]:
    fields = {"endpoint": endpoint_name, "violation": violation_id}
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ValidationException":
            log(logging.ERROR, "unknown endpoint: nothing changed", **fields)
            return result("rejected", reason="unknown endpoint", **fields)
        raise
    current = endpoint["EndpointConfigName"]
    status = endpoint["EndpointStatus"]
    tags = tags_of(sagemaker, endpoint["EndpointArn"])

    if tags.get(TAG_VIOLATION) == violation_id:
        target = tags.get(TAG_ROLLED_BACK_TO, "")
        if current == target or status != "InService" or not target:
            log(
                logging.INFO,
                "violation already handled: nothing changed",
                current=current,
                status=status,
                **fields,
            )
            return result("already-handled", current=current, **fields)
        # Recorded but the switch did not happen (an earlier attempt failed): finish it.
        log(logging.WARNING, "finishing a recorded rollback", current=current, to=target, **fields)
        sagemaker.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=target)
        repoint_monitor(sagemaker, schedule_name, endpoint_name, target, fields)
        left = tags.get(TAG_ROLLED_BACK_FROM, "")
        rejected = record_in_registry(
            sagemaker, endpoint_name, left, target, violation_id, fields=fields
        )
        return result(
            "rolled-back",
            rolled_back_from=current,
            rolled_back_to=target,
            rejected_package=rejected,
            **fields,
        )

    if status != "InService":
        log(logging.WARNING, "endpoint busy: retry later", status=status, **fields)
        raise EndpointBusyError(f"endpoint {endpoint_name} is {status}")

    previous = previous_configuration(sagemaker, endpoint_name, current)
    if previous is None:
        log(
            logging.ERROR,
            "violation but no earlier configuration to roll back to: "
            "nothing changed, needs a human",
            current=current,
            **fields,
        )
        return result("nothing-to-roll-back", current=current, **fields)

    sagemaker.add_tags(
        ResourceArn=endpoint["EndpointArn"],
        Tags=[
            {"Key": TAG_VIOLATION, "Value": violation_id},
            {"Key": TAG_ROLLED_BACK_FROM, "Value": current},
            {"Key": TAG_ROLLED_BACK_TO, "Value": previous},
        ],
    )
    sagemaker.add_tags(
        ResourceArn=sagemaker.describe_endpoint_config(EndpointConfigName=current)[
            "EndpointConfigArn"
        ],
        Tags=[{"Key": TAG_ROLLED_BACK_BY, "Value": violation_id}],
    )
    sagemaker.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=previous)
    repoint_monitor(sagemaker, schedule_name, endpoint_name, previous, fields)
    log(logging.WARNING, "rolled back", rolled_back_from=current, rolled_back_to=previous, **fields)
    rejected = record_in_registry(
        sagemaker, endpoint_name, current, previous, violation_id, fields=fields
    )
    return result(
        "rolled-back",
        rolled_back_from=current,
        rolled_back_to=previous,
        rejected_package=rejected,
        **fields,
    )


def package_of(sagemaker: Any, configuration: str) -> str | None:
    """The model package a configuration serves, as the deployer tagged it; None without."""
    if not configuration:
        return None
    arn = sagemaker.describe_endpoint_config(EndpointConfigName=configuration)["EndpointConfigArn"]
    return tags_of(sagemaker, arn).get(TAG_MODEL_PACKAGE)


def record_in_registry(
    sagemaker: Any,
    endpoint_name: str,
    left: str,
    returned_to: str,
    violation_id: str,
    *,
    fields: dict[str, Any],
) -> str | None:
    """Set the left version's package to Rejected with why and where the endpoint went; the
    package ARN, or None when the configuration names none (not the deployer's) or it is
    already recorded. After the switch: the endpoint is safe first, the record follows."""
    package = package_of(sagemaker, left)
    if package is None:
        log(
            logging.WARNING,
            "rollback not recorded in the registry: no package",
            left=left,
            **fields,
        )
        return None
    described = sagemaker.describe_model_package(ModelPackageName=package)
    metadata = dict(described.get("CustomerMetadataProperties") or {})
    if metadata.get(ROLLED_BACK_AT) and described.get("ModelApprovalStatus") == REJECTED:
        return None
    returned_package = package_of(sagemaker, returned_to) or returned_to
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    description = (
        f"Rolled back {now}: Model Monitor found violations ({violation_id}); endpoint "
        f"{endpoint_name} returned to {returned_package}. Redeploying needs a new approval."
    )
    metadata.update(
        {
            ROLLED_BACK_AT: now,
            ROLLED_BACK_TO: returned_package,
            ROLLED_BACK_ENDPOINT: endpoint_name,
        }
    )
    sagemaker.update_model_package(
        ModelPackageArn=package,
        ModelApprovalStatus=REJECTED,
        ApprovalDescription=description[:APPROVAL_DESCRIPTION_MAX],
        CustomerMetadataProperties=metadata,
    )
    log(logging.WARNING, "rolled-back version rejected in the registry", package=package, **fields)
    return str(package)


def previous_configuration(sagemaker: Any, endpoint_name: str, current: str) -> str | None:
    """The newest configuration of the endpoint's lineage created before `current` that was
    never rolled back from; None if there is none."""
    lineage: list[dict[str, Any]] = []
    for page in sagemaker.get_paginator("list_endpoint_configs").paginate(
        NameContains=endpoint_name
    ):
        lineage += [
            config
            for config in page["EndpointConfigs"]
            if config["EndpointConfigName"].startswith(f"{endpoint_name}-")
        ]
    lineage.sort(key=lambda config: (config["CreationTime"], config["EndpointConfigName"]))
    names = [config["EndpointConfigName"] for config in lineage]
    if current not in names:
        return None
    for config in reversed(lineage[: names.index(current)]):
        if TAG_ROLLED_BACK_BY not in tags_of(sagemaker, config["EndpointConfigArn"]):
            return str(config["EndpointConfigName"])
    return None


def tags_of(sagemaker: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
        tags.update({tag["Key"]: tag["Value"] for tag in page["Tags"]})
    return tags


def repoint_monitor(
    sagemaker: Any,
    schedule_name: str | None,
    endpoint_name: str,
    configuration: str,
    fields: dict[str, Any],
) -> None:
    """Point the schedule at the data-quality job definition of the version now serving
    (runtime/deployer names it <endpoint>-dq-v<n> for configuration <endpoint>-v<n>), so the
    monitor judges traffic against that version's own baseline. Best effort: without such a
    definition (a configuration the deployer did not create) the schedule is left, and said."""
    version = configuration.removeprefix(f"{endpoint_name}-v")
    if not schedule_name or not version.isdigit() or version == configuration:
        log(logging.WARNING, "monitor not repointed: not a deployer version", **fields)
        return
    definition = f"{endpoint_name}-dq-v{version}"
    try:
        sagemaker.describe_data_quality_job_definition(JobDefinitionName=definition)
        schedule = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=schedule_name)
    except ClientError as error:
        log(
            logging.WARNING,
            "monitor not repointed: job definition or schedule missing",
            job_definition=definition,
            error=error.response.get("Error", {}).get("Code"),
            **fields,
        )
        return
    config = dict(schedule["MonitoringScheduleConfig"])
    if config.get("MonitoringJobDefinitionName") == definition:
        return
    config["MonitoringJobDefinitionName"] = definition
    sagemaker.update_monitoring_schedule(
        MonitoringScheduleName=schedule_name, MonitoringScheduleConfig=config
    )
    log(logging.WARNING, "monitor repointed", job_definition=definition, **fields)
