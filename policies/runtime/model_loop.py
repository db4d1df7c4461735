"""The model loop, judged by what it did rather than by how it is configured: registered model
versions traceable to their data, code and images; approvals made by a person with a comment;
monitoring runs that completed.

Each check judges artifacts the loop leaves behind. Where the loop has left none yet (no model
version registered, none approved, no monitoring run), the outcome is "not demonstrated": the
configuration may be right, but nothing shows the loop works, and the evidence report must not
turn that into a pass (a control these checks demonstrate is "configured, not demonstrated"
until they pass). An artifact that exists and lacks what it must carry is a failure.

What a version must carry is the requirement in requirements/model_lineage.py, the same one the
register step is held to; this module does not import the pipeline it judges.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, Final

from botocore.exceptions import ClientError

from policies.runtime.clients import error_code, error_message, pages
from policies.runtime.model import (
    CheckContext,
    Missing,
    Outcome,
    RuntimeCheck,
    failed,
    not_demonstrated,
    passed,
)
from requirements.model_lineage import (
    DATASET_MANIFEST_SHA256,
    IMAGE_BY_DIGEST,
    MODEL_ARCHIVE_SHA256,
    PROCESSING_IMAGE,
    REQUIRED_CUSTOMER_METADATA,
    REQUIRED_METADATA_PROPERTIES,
    SHA256_HEX,
    UNRECORDED_REVISION,
)

APPROVED: Final = "Approved"
# Model Monitor execution statuses: a run that found drift completed its job.
COMPLETED: Final = frozenset({"Completed", "CompletedWithViolations"})
RUN_FAILED: Final = frozenset({"Failed", "Stopped"})


def _versions(context: CheckContext, group: str) -> list[dict[str, Any]]:
    sagemaker = context.client("sagemaker")
    try:
        summaries = list(
            pages(
                sagemaker,
                "list_model_packages",
                "ModelPackageSummaryList",
                ModelPackageGroupName=group,
            )
        )
    except ClientError as problem:
        if error_code(problem) == "ValidationException":
            raise Missing(f"no model package group {group}: {error_message(problem)}") from None
        raise
    return [
        sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries
    ]


def _s3_uri(block: Any, *path: str) -> str | None:
    for key in path:
        block = block.get(key) if isinstance(block, dict) else None
    return block if isinstance(block, str) and block.startswith("s3://") else None


def lineage_gaps(package: dict[str, Any]) -> list[str]:
    """What a registered version lacks of the traceability requirement (empty: nothing)."""
    gaps = []
    metadata = package.get("MetadataProperties") or {}
    gaps += [f"MetadataProperties.{f}" for f in REQUIRED_METADATA_PROPERTIES if not metadata.get(f)]
    customer = package.get("CustomerMetadataProperties") or {}
    gaps += [
        f"CustomerMetadataProperties['{k}']"
        for k in REQUIRED_CUSTOMER_METADATA
        if not customer.get(k)
    ]
    gaps += [
        f"MetadataProperties.{f} is unrecorded (synthesized without PHI_SOURCE_*)"
        for f in ("CommitId", "Repository")
        if metadata.get(f) == UNRECORDED_REVISION
    ]
    for key in (DATASET_MANIFEST_SHA256, MODEL_ARCHIVE_SHA256):
        digest = customer.get(key)
        if digest and not SHA256_HEX.match(str(digest)):
            gaps.append(f"CustomerMetadataProperties['{key}'] is not a sha256 digest")
    steps_image = customer.get(PROCESSING_IMAGE)
    if steps_image and not IMAGE_BY_DIGEST.match(str(steps_image)):
        gaps.append(f"CustomerMetadataProperties['{PROCESSING_IMAGE}'] is not pinned by digest")
    metrics = package.get("ModelMetrics") or {}
    if _s3_uri(metrics, "ModelQuality", "Statistics", "S3Uri") is None:
        gaps.append("ModelMetrics.ModelQuality.Statistics (the evaluation report)")
    baselines = package.get("DriftCheckBaselines") or {}
    for part in ("Constraints", "Statistics"):
        if _s3_uri(baselines, "ModelDataQuality", part, "S3Uri") is None:
            gaps.append(f"DriftCheckBaselines.ModelDataQuality.{part} (the monitoring baseline)")
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers:
        gaps.append("InferenceSpecification.Containers")
    for index, container in enumerate(containers):
        image = str(container.get("Image", ""))
        if not IMAGE_BY_DIGEST.match(image):
            gaps.append(f"InferenceSpecification.Containers[{index}].Image is not pinned by digest")
    return gaps


def _groups(context: CheckContext) -> Iterator[tuple[str, list[dict[str, Any]] | Outcome]]:
    """Each model package group's ARN and its versions described (or the outcome of failing
    to list them)."""
    for group in context.expected.model_package_groups:
        arn = context.arn("sagemaker", f"model-package-group/{group}")
        yield arn, context.discover(arn, partial(_versions, context, group))


def version_traceable(context: CheckContext) -> Iterator[Outcome]:
    for arn, found in _groups(context):
        if isinstance(found, Outcome):
            yield found
            continue
        if not found:
            yield not_demonstrated(arn, "no model version is registered: the pipeline has not run")
            continue
        for package in found:
            gaps = lineage_gaps(package)
            package_arn = str(package.get("ModelPackageArn", arn))
            if gaps:
                yield failed(package_arn, "lacks " + "; ".join(gaps))
            else:
                metadata = package["MetadataProperties"]
                yield passed(
                    package_arn,
                    f"generated by {metadata['GeneratedBy']} at commit {metadata['CommitId']}; "
                    "dataset manifest, metrics, baseline and image digests recorded",
                )


def _approver(package: dict[str, Any]) -> str | None:
    modified = package.get("LastModifiedBy") or {}
    identity = modified.get("IamIdentity") or {}
    return modified.get("UserProfileName") or identity.get("Arn")


def approval_recorded(context: CheckContext) -> Iterator[Outcome]:
    automation = set(context.expected.automation_role_names)
    for arn, found in _groups(context):
        if isinstance(found, Outcome):
            yield found
            continue
        approved = [p for p in found if p.get("ModelApprovalStatus") == APPROVED]
        if not approved:
            yield not_demonstrated(arn, f"no model version is approved ({len(found)} registered)")
            continue
        for package in approved:
            package_arn = str(package.get("ModelPackageArn", arn))
            approver = _approver(package)
            comment = str(package.get("ApprovalDescription") or "").strip()
            problems = []
            if approver is None:
                problems.append("the approval names no identity (LastModifiedBy)")
            elif any(
                f":assumed-role/{role}/" in approver or approver.endswith(f":role/{role}")
                for role in automation
            ):
                problems.append(f"approved by an automation role ({approver}), not a person")
            if not comment:
                problems.append("the approval carries no comment (ApprovalDescription)")
            if problems:
                yield failed(package_arn, "; ".join(problems))
            else:
                yield passed(package_arn, f"approved by {approver}: {comment[:120]}")


def monitoring_ran(context: CheckContext) -> Iterator[Outcome]:
    sagemaker = context.client("sagemaker")
    for schedule in context.expected.monitoring_schedules:
        arn = context.arn("sagemaker", f"monitoring-schedule/{schedule}")

        def evaluate(schedule: str = schedule, arn: str = arn) -> Outcome:
            runs = sorted(
                pages(
                    sagemaker,
                    "list_monitoring_executions",
                    "MonitoringExecutionSummaries",
                    MonitoringScheduleName=schedule,
                ),
                key=lambda run: run.get("ScheduledTime") or run.get("CreationTime"),
            )
            if not runs:
                return not_demonstrated(arn, "no monitoring run yet (no baseline, or no traffic)")
            latest = runs[-1]
            status = str(latest.get("MonitoringExecutionStatus", ""))
            if status in RUN_FAILED:
                reason = latest.get("FailureReason") or "no reason given"
                return failed(arn, f"the latest monitoring run {status.lower()}: {reason}")
            if status in COMPLETED:
                completed = sum(1 for r in runs if r.get("MonitoringExecutionStatus") in COMPLETED)
                return passed(
                    arn, f"latest run {status}; {completed} of {len(runs)} runs completed"
                )
            return not_demonstrated(arn, f"the first monitoring run is {status or 'pending'}")

        yield context.judge(arn, evaluate)


CHECKS = (
    RuntimeCheck(
        "RT_PHI_MODEL_VERSION_TRACEABLE",
        "Every registered model version traces to its data, code, images, metrics and baseline",
        version_traceable,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_MODEL_APPROVAL_RECORDED",
        "Every approved model version was approved by a person, with a comment",
        approval_recorded,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_MODEL_MONITOR_RAN",
        "Model Monitor runs against the endpoint complete",
        monitoring_ran,
        workload_only=True,
    ),
)
