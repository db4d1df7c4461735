"""Cut an EC2 instance named in a severe security finding off the network, keep it from being
terminated, and snapshot its volumes for forensics; record what was done on the instance,
the snapshots and the log.

Triggers (EventBridge):
- "GuardDuty Finding" events: detail.id, detail.severity (1.0-10.0), detail.accountId,
  detail.region, detail.resource.instanceDetails.instanceId for EC2 findings. Findings below
  SEVERITY_THRESHOLD, sample findings and findings without an instance are ignored.
- "Security Hub Findings - Imported" events: each of detail.findings[] with Severity.Label
  CRITICAL or HIGH, Workflow.Status NEW and RecordState ACTIVE; its Resources[] of Type
  AwsEc2Instance (Id is the instance ARN) are quarantined.
Only instances of this account (ACCOUNT_ID) and this region (AWS_REGION) are touched: the
security account's rules also see its members' and other regions' findings, which those
accounts' own functions handle.

Quarantine, for one instance:
1. every network interface gets the isolation security group (no rules: nothing in, nothing
   out) in place of its groups; the previous groups are logged, to restore them later;
2. termination protection on (DisableApiTermination), to keep memory and disks as evidence;
3. one snapshot per attached EBS volume, tagged phi-ml:finding-id and the instance;
4. the instance is tagged phi-ml:quarantined=true, phi-ml:finding-id, phi-ml:quarantined-at.
The tags come last: they mark a finished quarantine.

Idempotency: an instance tagged phi-ml:quarantined=true is left as it is, whatever the finding
(a repeated event, the same finding via another route, a later finding): no second snapshot.
A retry after a partial run finishes it: interfaces already isolated are not touched again,
and a volume that already has a snapshot tagged with the finding is not snapshotted again.

Errors: a malformed event is logged and answered with status "rejected", without an
exception, so Lambda does not retry what cannot succeed. An unknown or terminated instance,
or one outside the isolation group's VPC, is logged and changes nothing. AWS errors (e.g.
throttling) and a missing or invalid configuration raise: Lambda retries, then keeps the
event in the dead-letter queue for replay.

Settings (environment): ISOLATION_SECURITY_GROUP_ID, ISOLATION_VPC_ID, ACCOUNT_ID,
SEVERITY_THRESHOLD (GuardDuty severity, default 7); the region is Lambda's own (AWS_REGION).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

LOGGER = logging.getLogger("phi_ml.quarantine")
LOGGER.setLevel(logging.INFO)

GUARDDUTY_SOURCE = "aws.guardduty"
GUARDDUTY_DETAIL_TYPE = "GuardDuty Finding"
SECURITY_HUB_SOURCE = "aws.securityhub"
SECURITY_HUB_DETAIL_TYPE = "Security Hub Findings - Imported"
SECURITY_HUB_LABELS = ("CRITICAL", "HIGH")
DEFAULT_THRESHOLD = 7.0

TAG_QUARANTINED = "phi-ml:quarantined"
TAG_FINDING = "phi-ml:finding-id"
TAG_QUARANTINED_AT = "phi-ml:quarantined-at"
TAG_INSTANCE = "phi-ml:quarantined-instance"
MAX_TAG_VALUE = 256

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
INSTANCE_ARN = re.compile(
    r"^arn:aws[a-z-]*:ec2:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"instance/(?P<instance>i-[0-9a-f]{8,17})$"
)
NOT_FOUND = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}


class ConfigurationError(RuntimeError):
    """The function's settings are missing or invalid: raise, so events are kept (DLQ)."""


class MalformedEventError(ValueError):
    """Why an event is not a usable finding event."""


@dataclass(frozen=True)
class Settings:
    isolation_group_id: str
    vpc_id: str
    account_id: str
    region: str
    threshold: float

    @classmethod
    def from_environment(cls) -> Settings:
        values = {
            name: os.environ.get(name, "")
            for name in ("ISOLATION_SECURITY_GROUP_ID", "ISOLATION_VPC_ID", "ACCOUNT_ID")
        }
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "")
        missing = sorted(name for name, value in values.items() if not value)
        if not region:
            missing.append("AWS_REGION")
        if missing:
            raise ConfigurationError(f"missing settings: {', '.join(missing)}")
        raw_threshold = os.environ.get("SEVERITY_THRESHOLD") or str(DEFAULT_THRESHOLD)
        try:
            threshold = float(raw_threshold)
        except ValueError:
            raise ConfigurationError(
                f"SEVERITY_THRESHOLD {raw_threshold!r} is not a number"
            ) from None
        if not 1.0 <= threshold <= 8.9:
            raise ConfigurationError(f"SEVERITY_THRESHOLD {threshold} is outside 1.0-8.9")
        return cls(
            isolation_group_id=values["ISOLATION_SECURITY_GROUP_ID"],
            vpc_id=values["ISOLATION_VPC_ID"],
            account_id=values["ACCOUNT_ID"],
            region=region,
            threshold=threshold,
        )


@dataclass(frozen=True)
class Target:
    """An instance a finding names, with the account and region the finding places it in."""

    instance_id: str
    account_id: str | None
    region: str | None


@dataclass(frozen=True)
class Finding:
    finding_id: str
    source: str
    severity: str
    # Why the finding does not call for quarantine; None when it does.
    ignore_reason: str | None
    targets: tuple[Target, ...]


def log(level: int, message: str, **fields: Any) -> None:
    """One JSON object per line, so log queries can filter on any field."""
    record = {"level": logging.getLevelName(level), "message": message, **fields}
    LOGGER.log(level, json.dumps(record, sort_keys=True, default=str))


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise MalformedEventError(reason)


def parse_findings(event: Any, threshold: float) -> list[Finding] | str:
    """The findings an event reports, or why it is not a usable finding event."""
    try:
        require(isinstance(event, dict), "event is not a JSON object")
        source, detail_type = event.get("source"), event.get("detail-type")
        detail = event.get("detail")
        require(isinstance(detail, dict), "detail is missing or not an object")
        if (source, detail_type) == (GUARDDUTY_SOURCE, GUARDDUTY_DETAIL_TYPE):
            return [guardduty_finding(detail, threshold)]
        if (source, detail_type) == (SECURITY_HUB_SOURCE, SECURITY_HUB_DETAIL_TYPE):
            return security_hub_findings(detail)
        raise MalformedEventError(
            f"source {source!r} / detail-type {detail_type!r} is neither a GuardDuty finding "
            "nor an imported Security Hub finding"
        )
    except MalformedEventError as malformed:
        return str(malformed)


def guardduty_finding(detail: dict[str, Any], threshold: float) -> Finding:
    finding_id, raw_severity = detail.get("id"), detail.get("severity")
    require(isinstance(finding_id, str) and finding_id != "", "detail.id is missing")
    require(
        isinstance(raw_severity, int | float) and not isinstance(raw_severity, bool),
        "detail.severity is missing or not a number",
    )
    severity = float(raw_severity)  # type: ignore[arg-type]  # a number: required above
    resource = detail.get("resource")
    require(resource is None or isinstance(resource, dict), "detail.resource is not an object")
    instance_details = (resource or {}).get("instanceDetails")
    instance_id = instance_details.get("instanceId") if isinstance(instance_details, dict) else None
    require(
        instance_id is None
        or (isinstance(instance_id, str) and bool(INSTANCE_ID.match(instance_id))),
        "detail.resource.instanceDetails.instanceId is not an instance id",
    )
    service = detail.get("service")
    additional = service.get("additionalInfo") if isinstance(service, dict) else None
    sample = isinstance(additional, dict) and additional.get("sample") is True
    ignore_reason = None
    if severity < threshold:
        ignore_reason = f"severity {severity} is below the threshold {threshold}"
    elif sample:
        ignore_reason = "sample finding"
    elif instance_id is None:
        ignore_reason = "not an EC2 instance finding"
    account, region = detail.get("accountId"), detail.get("region")
    targets = (
        (
            Target(
                instance_id=str(instance_id),
                account_id=account if isinstance(account, str) else None,
                region=region if isinstance(region, str) else None,
            ),
        )
        if instance_id
        else ()
    )
    return Finding(
        finding_id=str(finding_id),
        source="guardduty",
        severity=str(severity),
        ignore_reason=ignore_reason,
        targets=targets,
    )


def security_hub_findings(detail: dict[str, Any]) -> list[Finding]:
    findings = detail.get("findings")
    require(
        isinstance(findings, list) and len(findings) > 0,
        "detail.findings is missing, empty or not a list",
    )
    assert isinstance(findings, list)  # for the type checker: required above
    return [security_hub_finding(finding, index) for index, finding in enumerate(findings)]


def security_hub_finding(finding: Any, index: int) -> Finding:
    where = f"detail.findings[{index}]"
    require(isinstance(finding, dict), f"{where} is not an object")
    finding_id = finding.get("Id")
    require(isinstance(finding_id, str) and finding_id != "", f"{where}.Id is missing")
    severity = finding.get("Severity")
    label = severity.get("Label") if isinstance(severity, dict) else None
    require(isinstance(label, str), f"{where}.Severity.Label is missing")
    resources = finding.get("Resources")
    require(isinstance(resources, list), f"{where}.Resources is missing or not a list")
    workflow = finding.get("Workflow")
    status = workflow.get("Status") if isinstance(workflow, dict) else None
    targets: list[Target] = []
    for number, resource in enumerate(resources):
        require(isinstance(resource, dict), f"{where}.Resources[{number}] is not an object")
        if resource.get("Type") != "AwsEc2Instance":
            continue
        arn = resource.get("Id")
        match = INSTANCE_ARN.match(arn) if isinstance(arn, str) else None
        require(match is not None, f"{where}.Resources[{number}].Id is not an instance ARN")
        assert match is not None  # for the type checker: required above
        targets.append(Target(match["instance"], match["account"], match["region"]))
    ignore_reason = None
    if label not in SECURITY_HUB_LABELS:
        ignore_reason = f"severity {label} is not {' or '.join(SECURITY_HUB_LABELS)}"
    elif finding.get("RecordState") != "ACTIVE":
        ignore_reason = f"record state {finding.get('RecordState')!r} is not ACTIVE"
    elif status != "NEW":
        ignore_reason = f"workflow status {status!r} is not NEW"
    elif not targets:
        ignore_reason = "no EC2 instance among the finding's resources"
    return Finding(
        finding_id=str(finding_id),
        source="security-hub",
        severity=str(label),
        ignore_reason=ignore_reason,
        targets=tuple(targets),
    )


def finding_tag_value(finding_id: str) -> str:
    """A tag value naming the finding (Security Hub ids are ARNs and may exceed 256 chars)."""
    if len(finding_id) <= MAX_TAG_VALUE:
        return finding_id
    return f"sha256:{hashlib.sha256(finding_id.encode()).hexdigest()}"


def handle(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    settings = Settings.from_environment()
    event_id = event.get("id") if isinstance(event, dict) else None
    findings = parse_findings(event, settings.threshold)
    if isinstance(findings, str):
        log(logging.ERROR, "malformed event: nothing changed", reason=findings, event_id=event_id)
        return {"status": "rejected", "reason": findings, "event_id": event_id, "actions": []}
    ec2 = boto3.client("ec2", region_name=settings.region)
    actions: list[dict[str, Any]] = []
    for finding in findings:
        fields = {"finding": finding.finding_id, "source": finding.source, "event_id": event_id}
        if finding.ignore_reason is not None:
            log(
                logging.INFO,
                "finding ignored: nothing changed",
                reason=finding.ignore_reason,
                **fields,
            )
            actions.append({"status": "ignored", "reason": finding.ignore_reason, **fields})
            continue
        for target in finding.targets:
            elsewhere = where_else(target, settings)
            if elsewhere is not None:
                log(
                    logging.INFO,
                    "instance of another account or region: nothing changed",
                    instance=target.instance_id,
                    reason=elsewhere,
                    **fields,
                )
                actions.append(
                    {
                        "status": "ignored",
                        "reason": elsewhere,
                        "instance": target.instance_id,
                        **fields,
                    }
                )
                continue
            outcome = quarantine(ec2, settings, target.instance_id, finding.finding_id)
            actions.append({**outcome, **fields})
    statuses = {action["status"] for action in actions}
    status = next(
        (s for s in ("quarantined", "already-quarantined") if s in statuses),
        "ignored" if statuses <= {"ignored"} else "nothing-changed",
    )
    return {"status": status, "event_id": event_id, "actions": actions}


def where_else(target: Target, settings: Settings) -> str | None:
    if target.account_id is not None and target.account_id != settings.account_id:
        return f"account {target.account_id}, not {settings.account_id}"
    if target.region is not None and target.region != settings.region:
        return f"region {target.region}, not {settings.region}"
    return None


def quarantine(ec2: Any, settings: Settings, instance_id: str, finding_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"instance": instance_id}
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in NOT_FOUND:
            log(logging.ERROR, "unknown instance: nothing changed", finding=finding_id, **fields)
            return {"status": "unknown-instance", **fields}
        raise
    instances = [i for r in reservations for i in r["Instances"]]
    if not instances:
        log(logging.ERROR, "unknown instance: nothing changed", finding=finding_id, **fields)
        return {"status": "unknown-instance", **fields}
    instance = instances[0]
    tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
    if tags.get(TAG_QUARANTINED) == "true":
        log(
            logging.INFO,
            "instance already quarantined: nothing changed",
            finding=finding_id,
            quarantined_for=tags.get(TAG_FINDING),
            quarantined_at=tags.get(TAG_QUARANTINED_AT),
            **fields,
        )
        return {"status": "already-quarantined", "quarantined_for": tags.get(TAG_FINDING), **fields}
    state = instance.get("State", {}).get("Name")
    if state in ("shutting-down", "terminated"):
        log(
            logging.ERROR,
            "instance is gone: nothing changed",
            state=state,
            finding=finding_id,
            **fields,
        )
        return {"status": "terminated", "state": state, **fields}
    interfaces = instance.get("NetworkInterfaces", [])
    vpcs = {interface.get("VpcId") for interface in interfaces} | {instance.get("VpcId")}
    if vpcs != {settings.vpc_id}:
        # A security group applies only in its own VPC; isolating some interfaces and not
        # others would look done and not be. A person must isolate this one.
        log(
            logging.ERROR,
            "instance outside the isolation group's VPC: nothing changed, needs a person",
            vpcs=sorted(str(v) for v in vpcs),
            isolation_vpc=settings.vpc_id,
            finding=finding_id,
            **fields,
        )
        return {"status": "not-isolatable", "vpcs": sorted(str(v) for v in vpcs), **fields}

    isolated = isolate_interfaces(ec2, settings, interfaces, finding_id, fields)
    ec2.modify_instance_attribute(InstanceId=instance_id, DisableApiTermination={"Value": True})
    snapshots = snapshot_volumes(ec2, instance, finding_id)
    quarantined_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ec2.create_tags(
        Resources=[instance_id],
        Tags=[
            {"Key": TAG_QUARANTINED, "Value": "true"},
            {"Key": TAG_FINDING, "Value": finding_tag_value(finding_id)},
            {"Key": TAG_QUARANTINED_AT, "Value": quarantined_at},
        ],
    )
    log(
        logging.WARNING,
        "instance quarantined",
        finding=finding_id,
        isolation_security_group=settings.isolation_group_id,
        network_interfaces=isolated,
        termination_protection=True,
        snapshots=snapshots,
        quarantined_at=quarantined_at,
        **fields,
    )
    return {
        "status": "quarantined",
        "isolation_security_group": settings.isolation_group_id,
        "network_interfaces": isolated,
        "snapshots": snapshots,
        "quarantined_at": quarantined_at,
        **fields,
    }


def isolate_interfaces(
    ec2: Any,
    settings: Settings,
    interfaces: list[dict[str, Any]],
    finding_id: str,
    fields: dict[str, Any],
) -> list[dict[str, Any]]:
    isolated = []
    for interface in interfaces:
        interface_id = interface["NetworkInterfaceId"]
        previous = sorted(group["GroupId"] for group in interface.get("Groups", []))
        changed = previous != [settings.isolation_group_id]
        if changed:
            ec2.modify_network_interface_attribute(
                NetworkInterfaceId=interface_id, Groups=[settings.isolation_group_id]
            )
            # Logged at once: if a later step fails, the retry sees the isolation group only.
            log(
                logging.WARNING,
                "network interface isolated",
                network_interface=interface_id,
                previous_security_groups=previous,
                finding=finding_id,
                **fields,
            )
        isolated.append(
            {
                "network_interface": interface_id,
                "previous_security_groups": previous,
                "changed": changed,
            }
        )
    return isolated


def snapshot_volumes(ec2: Any, instance: dict[str, Any], finding_id: str) -> list[dict[str, Any]]:
    instance_id = instance["InstanceId"]
    finding_tag = finding_tag_value(finding_id)
    snapshots = []
    for mapping in instance.get("BlockDeviceMappings", []):
        volume_id = mapping.get("Ebs", {}).get("VolumeId")
        if not volume_id:
            continue
        existing = ec2.describe_snapshots(
            OwnerIds=["self"],
            Filters=[
                {"Name": "volume-id", "Values": [volume_id]},
                {"Name": f"tag:{TAG_FINDING}", "Values": [finding_tag]},
            ],
        )["Snapshots"]
        if existing:
            snapshots.append(
                {"volume": volume_id, "snapshot": existing[0]["SnapshotId"], "created": False}
            )
            continue
        created = ec2.create_snapshot(
            VolumeId=volume_id,
            Description=f"Forensic copy of {volume_id} of quarantined {instance_id}"[:255],
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": [
                        {"Key": TAG_FINDING, "Value": finding_tag},
                        {"Key": TAG_INSTANCE, "Value": instance_id},
                        {"Key": "Name", "Value": f"quarantine-{instance_id}-{volume_id}"},
                    ],
                }
            ],
        )
        snapshots.append(
            {
                "volume": volume_id,
                "device": mapping.get("DeviceName"),
                "snapshot": created["SnapshotId"],
                "created": True,
            }
        )
    return snapshots
