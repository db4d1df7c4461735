"""Quarantine function (runtime/quarantine/handler.py) against moto: a severe finding on an
instance of this account isolates it, protects it and snapshots its volumes exactly once;
anything else (low severity, another account, a malformed event, a repetition) changes
nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.ec2.models.elastic_network_interfaces import NetworkInterface

from runtime.quarantine import handler

ACCOUNT = "123456789012"  # moto's account
REGION = "eu-west-1"
OTHER_ACCOUNT = "210987654321"
GUARDDUTY_FINDING_ID = "16afba5c5c43e07c9e3e5e2e544e95df"


def guardduty_event(
    instance_id: str | None,
    *,
    severity: Any = 8.0,
    finding_id: str = GUARDDUTY_FINDING_ID,
    **detail: Any,
) -> dict[str, Any]:
    """A "GuardDuty Finding" event as EventBridge delivers it (trimmed to what matters)."""
    resource: dict[str, Any] = (
        {"resourceType": "Instance", "instanceDetails": {"instanceId": instance_id}}
        if instance_id is not None
        else {"resourceType": "S3Bucket", "s3BucketDetails": [{"name": "unit-raw"}]}
    )
    return {
        "version": "0",
        "id": "event-guardduty-1",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": ACCOUNT,
        "time": "2026-01-12T09:30:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "schemaVersion": "2.0",
            "accountId": ACCOUNT,
            "region": REGION,
            "partition": "aws",
            "id": finding_id,
            "arn": f"arn:aws:guardduty:{REGION}:{ACCOUNT}:detector/d1/finding/{finding_id}",
            "type": "Backdoor:EC2/C&CActivity.B!DNS",
            "title": "Command and control server domain name queried by an EC2 instance.",
            "resource": resource,
            "service": {"additionalInfo": {"sample": False}},
            "severity": severity,
            **detail,
        },
    }


def security_hub_event(
    instance_id: str,
    *,
    label: str = "HIGH",
    status: str = "NEW",
    record_state: str = "ACTIVE",
    product: str = "Inspector",
    account: str = ACCOUNT,
    finding_id: str = "",
) -> dict[str, Any]:
    """A "Security Hub Findings - Imported" event (ASFF, one finding per event)."""
    return {
        "version": "0",
        "id": "event-securityhub-1",
        "detail-type": "Security Hub Findings - Imported",
        "source": "aws.securityhub",
        "account": ACCOUNT,
        "time": "2026-01-12T09:31:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "findings": [
                {
                    "SchemaVersion": "2018-10-08",
                    "Id": finding_id or f"arn:aws:inspector2:{REGION}:{account}:finding/0f1e2d3c",
                    "ProductArn": f"arn:aws:securityhub:{REGION}::product/aws/inspector",
                    "ProductName": product,
                    "AwsAccountId": account,
                    "Region": REGION,
                    "Title": "CVE-2024-0001 - remote code execution in openssl",
                    "Severity": {"Label": label},
                    "Workflow": {"Status": status},
                    "RecordState": record_state,
                    "Resources": [
                        {"Type": "AwsAccount", "Id": f"AWS::::Account:{account}"},
                        {
                            "Type": "AwsEc2Instance",
                            "Id": f"arn:aws:ec2:{REGION}:{account}:instance/{instance_id}",
                            "Region": REGION,
                        },
                    ],
                }
            ]
        },
    }


@dataclass
class World:
    """A VPC with the isolation group, a workload group, and a running instance with a data
    volume and a second network interface (the interesting case for isolation)."""

    ec2: Any
    vpc_id: str
    subnet_id: str
    isolation_group: str
    workload_group: str
    instance_id: str

    def launch(self, subnet_id: str | None = None, group: str | None = None) -> str:
        return str(
            self.ec2.run_instances(
                ImageId="ami-12c6146b",
                MinCount=1,
                MaxCount=1,
                SubnetId=subnet_id or self.subnet_id,
                SecurityGroupIds=[group or self.workload_group],
                BlockDeviceMappings=[
                    {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}},
                    {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20}},
                ],
            )["Instances"][0]["InstanceId"]
        )


def real_eni_security_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 reports an attached interface's groups as the union of its own and the
    groups the instance was launched with, so replacing an interface's groups seems to add
    one. In EC2 an interface's groups are its own (the instance's are the primary
    interface's): this makes moto report them so."""
    monkeypatch.setattr(NetworkInterface, "group_set", property(lambda eni: eni._group_set))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "SEVERITY_THRESHOLD"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "ACCOUNT_ID": ACCOUNT,
    }.items():
        monkeypatch.setenv(variable, value)
    real_eni_security_groups(monkeypatch)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
        isolation = ec2.create_security_group(
            GroupName="phi-ml-unit-quarantine-isolation", Description="isolation", VpcId=vpc_id
        )["GroupId"]
        workload = ec2.create_security_group(
            GroupName="workload", Description="workload", VpcId=vpc_id
        )["GroupId"]
        monkeypatch.setenv("ISOLATION_SECURITY_GROUP_ID", isolation)
        monkeypatch.setenv("ISOLATION_VPC_ID", vpc_id)
        world = World(ec2, vpc_id, subnet_id, isolation, workload, "")
        world.instance_id = world.launch()
        second = ec2.create_network_interface(SubnetId=subnet_id, Groups=[workload])
        ec2.attach_network_interface(
            NetworkInterfaceId=second["NetworkInterface"]["NetworkInterfaceId"],
            InstanceId=world.instance_id,
            DeviceIndex=1,
        )
        yield world


def instance_of(world: World, instance_id: str | None = None) -> dict[str, Any]:
    reservations = world.ec2.describe_instances(InstanceIds=[instance_id or world.instance_id])
    return dict(reservations["Reservations"][0]["Instances"][0])


def volumes_of(world: World, instance_id: str | None = None) -> list[str]:
    return sorted(
        m["Ebs"]["VolumeId"] for m in instance_of(world, instance_id)["BlockDeviceMappings"]
    )


def snapshots_of(world: World, instance_id: str | None = None) -> list[dict[str, Any]]:
    snapshots = world.ec2.describe_snapshots(
        Filters=[{"Name": "volume-id", "Values": volumes_of(world, instance_id)}]
    )["Snapshots"]
    return sorted(snapshots, key=lambda s: str(s["VolumeId"]))


def state(world: World, instance_id: str | None = None) -> dict[str, Any]:
    """Everything the function could change on an instance."""
    instance_id = instance_id or world.instance_id
    instance = instance_of(world, instance_id)
    protection = world.ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="disableApiTermination"
    )["DisableApiTermination"]["Value"]
    return {
        "groups": {
            eni["NetworkInterfaceId"]: sorted(g["GroupId"] for g in eni["Groups"])
            for eni in instance["NetworkInterfaces"]
        },
        "tags": {t["Key"]: t["Value"] for t in instance.get("Tags", [])},
        "termination_protection": protection,
        "snapshots": sorted(s["SnapshotId"] for s in snapshots_of(world, instance_id)),
    }


def quarantine_problems(world: World, finding_id: str, instance_id: str | None = None) -> list[str]:
    """What is missing from a complete quarantine of the instance for the finding."""
    problems = []
    now = state(world, instance_id)
    if not now["groups"] or any(g != [world.isolation_group] for g in now["groups"].values()):
        problems.append(f"interfaces not isolated: {now['groups']}")
    if now["termination_protection"] is not True:
        problems.append("termination protection off")
    if now["tags"].get("phi-ml:quarantined") != "true":
        problems.append("not tagged quarantined")
    if now["tags"].get("phi-ml:finding-id") != finding_id:
        problems.append("finding not recorded on the instance")
    if not now["tags"].get("phi-ml:quarantined-at", "").endswith("Z"):
        problems.append("time not recorded")
    snapshots = snapshots_of(world, instance_id)
    if sorted(s["VolumeId"] for s in snapshots) != volumes_of(world, instance_id):
        problems.append(f"not exactly one snapshot per volume: {len(snapshots)}")
    for snapshot in snapshots:
        tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}
        if tags.get("phi-ml:finding-id") != finding_id:
            problems.append(f"snapshot {snapshot['SnapshotId']} not tagged with the finding")
    return problems


def log_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "phi_ml.quarantine"]


# --- a severe GuardDuty finding ----------------------------------------------------------------


def test_severe_guardduty_finding_quarantines_the_instance(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    before = state(world)
    assert quarantine_problems(world, GUARDDUTY_FINDING_ID) != []  # twin: the checker sees it
    caplog.set_level(logging.INFO, logger="phi_ml.quarantine")

    result = handler.handle(guardduty_event(world.instance_id, severity=8.0), None)

    assert result["status"] == "quarantined"
    assert quarantine_problems(world, GUARDDUTY_FINDING_ID) == []
    (action,) = result["actions"]
    assert action["instance"] == world.instance_id
    assert sorted(i["network_interface"] for i in action["network_interfaces"]) == sorted(
        before["groups"]
    )
    assert all(
        i["previous_security_groups"] == [world.workload_group]
        for i in action["network_interfaces"]
    )
    assert sorted(s["volume"] for s in action["snapshots"]) == volumes_of(world)
    assert all(s["created"] for s in action["snapshots"])
    (done,) = [r for r in log_records(caplog) if r["message"] == "instance quarantined"]
    assert done["instance"] == world.instance_id and done["finding"] == GUARDDUTY_FINDING_ID
    assert sorted(s["snapshot"] for s in done["snapshots"]) == state(world)["snapshots"]


def test_threshold_severity_itself_quarantines(world: World) -> None:
    result = handler.handle(guardduty_event(world.instance_id, severity=7), None)
    assert result["status"] == "quarantined"
    assert quarantine_problems(world, GUARDDUTY_FINDING_ID) == []


def test_snapshots_name_the_instance(world: World) -> None:
    handler.handle(guardduty_event(world.instance_id), None)
    for snapshot in snapshots_of(world):
        tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
        assert tags["phi-ml:quarantined-instance"] == world.instance_id
        assert world.instance_id in snapshot["Description"]


# --- findings that change nothing ----------------------------------------------------------------


def test_low_severity_finding_changes_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    before = state(world)
    caplog.set_level(logging.INFO, logger="phi_ml.quarantine")
    result = handler.handle(guardduty_event(world.instance_id, severity=6.9), None)
    assert result["status"] == "ignored"
    assert "below the threshold" in result["actions"][0]["reason"]
    assert state(world) == before
    assert any(r["message"].startswith("finding ignored") for r in log_records(caplog))


def test_threshold_comes_from_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEVERITY_THRESHOLD", "8.5")
    before = state(world)
    assert handler.handle(guardduty_event(world.instance_id, severity=8.0), None)["status"] == (
        "ignored"
    )
    assert state(world) == before
    # twin: at the configured threshold it acts
    assert handler.handle(guardduty_event(world.instance_id, severity=8.5), None)["status"] == (
        "quarantined"
    )


@pytest.mark.parametrize(
    ("event_of", "reason"),
    [
        (lambda i: guardduty_event(None), "not an EC2 instance finding"),
        (
            lambda i: guardduty_event(i, service={"additionalInfo": {"sample": True}}),
            "sample finding",
        ),
        (lambda i: guardduty_event(i, accountId=OTHER_ACCOUNT), f"account {OTHER_ACCOUNT}"),
        (lambda i: guardduty_event(i, region="us-east-1"), "region us-east-1"),
    ],
    ids=["s3-finding", "sample", "member-account", "other-region"],
)
def test_findings_not_for_this_accounts_instances_change_nothing(
    world: World, event_of: Any, reason: str
) -> None:
    before = state(world)
    result = handler.handle(event_of(world.instance_id), None)
    assert result["status"] == "ignored"
    assert reason in result["actions"][0]["reason"]
    assert state(world) == before


def test_unknown_instance_changes_nothing(world: World) -> None:
    before = state(world)
    result = handler.handle(guardduty_event("i-0123456789abcdef0"), None)
    assert result["status"] == "nothing-changed"
    assert result["actions"][0]["status"] == "unknown-instance"
    assert state(world) == before


def test_instance_outside_the_isolation_vpc_changes_nothing(world: World) -> None:
    other_vpc = world.ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    other_subnet = world.ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.43.1.0/24")
    other_group = world.ec2.create_security_group(
        GroupName="elsewhere", Description="elsewhere", VpcId=other_vpc
    )["GroupId"]
    outsider = world.launch(other_subnet["Subnet"]["SubnetId"], other_group)
    before = state(world, outsider)
    result = handler.handle(guardduty_event(outsider), None)
    assert result["actions"][0]["status"] == "not-isolatable"
    assert state(world, outsider) == before


# --- idempotency -------------------------------------------------------------------------------


def test_repeated_finding_changes_nothing_more(world: World) -> None:
    event = guardduty_event(world.instance_id)
    assert handler.handle(event, None)["status"] == "quarantined"
    after_first = state(world)
    assert len(after_first["snapshots"]) == len(volumes_of(world))

    again = handler.handle(event, None)

    assert again["status"] == "already-quarantined"
    assert state(world) == after_first  # one snapshot per volume, same tags and groups


def test_another_finding_on_a_quarantined_instance_changes_nothing_more(world: World) -> None:
    handler.handle(guardduty_event(world.instance_id), None)
    after_first = state(world)
    later = handler.handle(security_hub_event(world.instance_id, label="CRITICAL"), None)
    assert later["status"] == "already-quarantined"
    assert later["actions"][0]["quarantined_for"] == GUARDDUTY_FINDING_ID
    assert state(world) == after_first


class FailingTagsClient:
    """An EC2 client whose first CreateTags on an instance is throttled (then works)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_tags(self, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise ClientError(
                {"Error": {"Code": "RequestLimitExceeded", "Message": "emulated"}}, "CreateTags"
            )
        return self._client.create_tags(**kwargs)


def test_retry_after_a_failure_finishes_without_a_second_snapshot(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_client = boto3.client
    failing = FailingTagsClient(real_client("ec2", region_name=REGION))
    monkeypatch.setattr(boto3, "client", lambda *a, **k: failing)
    event = guardduty_event(world.instance_id)

    with pytest.raises(ClientError):  # AWS errors raise, so Lambda retries
        handler.handle(event, None)
    partial = state(world)
    assert "phi-ml:quarantined" not in partial["tags"]
    assert len(partial["snapshots"]) == len(volumes_of(world))

    retried = handler.handle(event, None)

    assert retried["status"] == "quarantined"
    assert quarantine_problems(world, GUARDDUTY_FINDING_ID) == []
    assert state(world)["snapshots"] == partial["snapshots"]
    assert not any(s["created"] for s in retried["actions"][0]["snapshots"])


# --- malformed events ------------------------------------------------------------------------


def malformed_events(instance_id: str) -> dict[str, Any]:
    gd = guardduty_event(instance_id)
    sh = security_hub_event(instance_id)
    return {
        "not-an-object": ["aws.guardduty"],
        "no-detail": {k: v for k, v in gd.items() if k != "detail"},
        "unknown-source": {**gd, "source": "custom.app"},
        "no-finding-id": {**gd, "detail": {**gd["detail"], "id": ""}},
        "severity-missing": {
            **gd,
            "detail": {k: v for k, v in gd["detail"].items() if k != "severity"},
        },
        "severity-text": guardduty_event(instance_id, severity="8"),
        "severity-bool": guardduty_event(instance_id, severity=True),
        "bad-instance-id": guardduty_event("i-; rm -rf"),
        "findings-not-a-list": {**sh, "detail": {"findings": {"Id": "x"}}},
        "no-findings": {**sh, "detail": {"findings": []}},
        "finding-without-label": {
            **sh,
            "detail": {"findings": [{**sh["detail"]["findings"][0], "Severity": {}}]},
        },
        "instance-not-an-arn": {
            **sh,
            "detail": {
                "findings": [
                    {
                        **sh["detail"]["findings"][0],
                        "Resources": [{"Type": "AwsEc2Instance", "Id": instance_id}],
                    }
                ]
            },
        },
    }


@pytest.mark.parametrize("case", list(malformed_events("i-00000000").keys()))
def test_malformed_event_changes_nothing_and_is_logged(
    world: World, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    event = malformed_events(world.instance_id)[case]
    before = state(world)
    caplog.set_level(logging.INFO, logger="phi_ml.quarantine")

    result = handler.handle(event, None)  # no exception: nothing to retry

    assert result["status"] == "rejected" and result["reason"]
    assert state(world) == before
    (record,) = [r for r in log_records(caplog) if r["level"] == "ERROR"]
    assert record["message"] == "malformed event: nothing changed"
    assert record["reason"] == result["reason"]


def test_the_malformed_cases_are_each_well_formed_but_for_their_flaw(world: World) -> None:
    """Twin of the malformed cases: the events they are made from are accepted."""
    for event in (guardduty_event(world.instance_id), security_hub_event(world.instance_id)):
        assert isinstance(handler.parse_findings(event, 7.0), list)


def test_missing_configuration_raises_so_events_are_kept(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ISOLATION_SECURITY_GROUP_ID")
    with pytest.raises(handler.ConfigurationError, match="ISOLATION_SECURITY_GROUP_ID"):
        handler.handle(guardduty_event(world.instance_id), None)
    monkeypatch.setenv("ISOLATION_SECURITY_GROUP_ID", world.isolation_group)
    monkeypatch.setenv("SEVERITY_THRESHOLD", "9.5")
    with pytest.raises(handler.ConfigurationError, match="outside"):
        handler.handle(guardduty_event(world.instance_id), None)


# --- Security Hub findings -----------------------------------------------------------------------


def test_security_hub_high_finding_quarantines_the_instance(world: World) -> None:
    event = security_hub_event(world.instance_id, label="HIGH")
    finding_id = event["detail"]["findings"][0]["Id"]
    result = handler.handle(event, None)
    assert result["status"] == "quarantined"
    assert quarantine_problems(world, finding_id) == []


@pytest.mark.parametrize(
    "variant",
    [
        {"label": "MEDIUM"},
        {"label": "LOW"},
        {"status": "NOTIFIED"},
        {"record_state": "ARCHIVED"},
        {"account": OTHER_ACCOUNT},
    ],
    ids=["medium", "low", "notified", "archived", "member-account"],
)
def test_other_security_hub_findings_change_nothing(world: World, variant: dict[str, str]) -> None:
    before = state(world)
    result = handler.handle(security_hub_event(world.instance_id, **variant), None)
    assert result["status"] == "ignored"
    assert state(world) == before


def test_long_security_hub_ids_are_recorded_by_digest(world: World) -> None:
    finding_id = "arn:aws:securityhub:eu-west-1:123456789012:finding/" + "a" * 300
    handler.handle(security_hub_event(world.instance_id, finding_id=finding_id), None)
    recorded = state(world)["tags"]["phi-ml:finding-id"]
    assert recorded == handler.finding_tag_value(finding_id) and recorded.startswith("sha256:")
    assert len(recorded) <= 256
    assert handler.finding_tag_value("short-id") == "short-id"  # twin: short ids verbatim
