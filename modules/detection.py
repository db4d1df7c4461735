"""Threat detection and first response: GuardDuty and Security Hub findings that matter reach
the on-call and isolate the compromised instance within minutes, without a human."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from constructs import Construct
from pydantic import Field, field_validator

from modules import aws
from modules.config import LayerConfig
from modules.functions import (
    EVENT_MAX_AGE_SECONDS,
    EVENT_RETRY_ATTEMPTS,
    RUNTIME_SOURCES,
    HardenedFunction,
    check_log_retention,
)
from modules.iam_statements import deny_insecure_transport
from modules.inference import NAME_PART
from modules.keys import CustomerManagedKey
from modules.policy import Statement, policy_document, statement
from modules.security_alarms import alarm_name_prefix

QUARANTINE_SOURCE = RUNTIME_SOURCES / "quarantine"

# GuardDuty protection plans turned on in every account (and, from the security account, for
# every member): S3 data events (object-level access to the PHI buckets) and the agentless
# malware scan of EBS volumes of instances with findings.
DETECTOR_FEATURES = ("S3_DATA_EVENTS", "EBS_MALWARE_PROTECTION")
FINDING_PUBLISHING_FREQUENCY = "FIFTEEN_MINUTES"

# Security Hub findings that page the on-call and isolate instances. Fixed in code: which
# severities matter is a security decision, not an environment's setting.
SECURITY_HUB_SEVERITIES = ("CRITICAL", "HIGH")


def standards_arns(region: str) -> dict[str, str]:
    """The Security Hub standards every account subscribes to, in the current (regional)
    standards ARN format."""
    return {
        "aws-foundational-security-best-practices": (
            f"arn:aws:securityhub:{region}::standards/"
            "aws-foundational-security-best-practices/v/1.0.0"
        ),
        "cis-aws-foundations-benchmark": (
            f"arn:aws:securityhub:{region}::standards/cis-aws-foundations-benchmark/v/3.0.0"
        ),
        "nist-800-53": f"arn:aws:securityhub:{region}::standards/nist-800-53/v/5.0.0",
    }


def guardduty_finding_pattern(threshold: float) -> dict[str, Any]:
    """GuardDuty findings of at least `threshold` severity (GuardDuty's 1.0-10.0 scale)."""
    return {
        "source": ["aws.guardduty"],
        "detail-type": ["GuardDuty Finding"],
        "detail": {"severity": [{"numeric": [">=", threshold]}]},
    }


def security_hub_finding_pattern() -> dict[str, Any]:
    """New, active Security Hub findings labelled CRITICAL or HIGH.

    GuardDuty's own findings are imported into Security Hub too; they are left to the
    GuardDuty rule, so the configured GuardDuty threshold is the only one that applies to them
    (a 7.0 finding is HIGH in Security Hub whatever the threshold says)."""
    return {
        "source": ["aws.securityhub"],
        "detail-type": ["Security Hub Findings - Imported"],
        "detail": {
            "findings": {
                "Severity": {"Label": list(SECURITY_HUB_SEVERITIES)},
                "Workflow": {"Status": ["NEW"]},
                "RecordState": ["ACTIVE"],
                "ProductName": [{"anything-but": "GuardDuty"}],
            }
        },
    }


# What the on-call reads (e-mail, chat): the transformer fills the <placeholders>.
GUARDDUTY_MESSAGE_PATHS = {
    "severity": "$.detail.severity",
    "type": "$.detail.type",
    "title": "$.detail.title",
    "finding": "$.detail.id",
    "account": "$.detail.accountId",
    "region": "$.detail.region",
    "instance": "$.detail.resource.instanceDetails.instanceId",
    "time": "$.time",
}
GUARDDUTY_MESSAGE_TEMPLATE = (
    '"GuardDuty finding, severity <severity>: <title> (<type>). Account <account>, region '
    "<region>, instance <instance>, at <time>. Finding id <finding>. EC2 instances of this "
    'account at or above the threshold are being quarantined automatically."'
)
# Security Hub sends one finding per event.
SECURITY_HUB_MESSAGE_PATHS = {
    "severity": "$.detail.findings[0].Severity.Label",
    "title": "$.detail.findings[0].Title",
    "product": "$.detail.findings[0].ProductName",
    "finding": "$.detail.findings[0].Id",
    "account": "$.detail.findings[0].AwsAccountId",
    "region": "$.detail.findings[0].Region",
    "resource": "$.detail.findings[0].Resources[0].Id",
    "time": "$.time",
}
SECURITY_HUB_MESSAGE_TEMPLATE = (
    '"Security Hub <severity> finding from <product>: <title>. Account <account>, region '
    "<region>, resource <resource>, at <time>. Finding id <finding>. EC2 instances of this "
    'account named in it are being quarantined automatically."'
)

# Findings arrive in bursts (one incident, many findings); isolating one instance at a time
# keeps check-then-act idempotency exact (no two runs snapshot the same volume at once), and
# throttled events wait in Lambda's asynchronous queue rather than being dropped.
QUARANTINE_CONCURRENCY = 1
QUARANTINE_TIMEOUT_SECONDS = 120
QUARANTINE_TAG_KEYS = ("phi-ml:quarantined", "phi-ml:finding-id", "phi-ml:quarantined-at")
SNAPSHOT_FINDING_TAG = "phi-ml:finding-id"


class DetectionConfig(LayerConfig):
    environment: str = Field(pattern=NAME_PART)
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
    # GuardDuty severities run 1.0-8.9 (LOW, MEDIUM, HIGH; 9.0-10.0 CRITICAL for attack
    # sequences): the threshold must leave at least the HIGH band routed.
    finding_severity_threshold: float = Field(default=7.0, ge=1.0, le=8.9)
    # Only the security-tooling account (the delegated administrator) aggregates findings
    # across regions and enables GuardDuty and Security Hub in every member account.
    is_security_account: bool
    vpc_cidr: str
    log_retention_days: int

    @field_validator("vpc_cidr")
    @classmethod
    def _ipv4_network(cls, value: str) -> str:
        ipaddress.IPv4Network(value)
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _six_years_or_more(cls, value: int) -> int:
        return check_log_retention(value)

    @property
    def name(self) -> str:
        return f"phi-ml-{self.environment}"

    @property
    def quarantine_name(self) -> str:
        """The isolation function's name, shared by its role and dead-letter queue (fixed, so
        the alerts key's policy can admit the role before it exists)."""
        return f"{self.name}-quarantine"

    @property
    def quarantine_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.quarantine_name}"


class AlertsTopic(Construct):
    """An SNS topic for the on-call, encrypted with the alerts key, to which only the given
    EventBridge rules and this environment's security alarms may publish, over TLS."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        display_name: str,
        alerts_key: CustomerManagedKey,
        account_id: str,
        region: str,
        alarm_prefix: str,
        rule_arns: list[str],
    ) -> None:
        super().__init__(scope, id_)
        self.topic = aws.SnsTopic(
            self,
            "topic",
            name=name,
            display_name=display_name,
            kms_master_key_id=alerts_key.key_arn,
        )
        self.topic_arn: str = self.topic.arn
        aws.SnsTopicPolicy(
            self,
            "policy",
            arn=self.topic.arn,
            policy=policy_document(
                *alerts_topic_statements(
                    self.topic.arn,
                    rule_arns=rule_arns,
                    account_id=account_id,
                    region=region,
                    alarm_prefix=alarm_prefix,
                )
            ),
        )


class Detection(Construct):
    """GuardDuty (S3 data events, EBS malware scans) and Security Hub (AWS Foundational
    Security Best Practices, CIS AWS Foundations, NIST SP 800-53 Rev. 5) in this account; in
    the security account also for every member of the organization, with findings of all
    regions aggregated. GuardDuty findings at or above the threshold and new CRITICAL/HIGH
    Security Hub findings go, with retries and an encrypted dead-letter queue, to a
    CMK-encrypted topic for the on-call and to a hardened function that cuts the named EC2
    instances of this account off the network (an isolation security group with no rules),
    protects them from termination and snapshots their volumes for forensics."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DetectionConfig,
        alerts_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        self._guardduty(config)
        self._security_hub(config)
        self._routing(
            config, alerts_key=alerts_key, logs_key=logs_key, vpc_id=vpc_id, subnet_ids=subnet_ids
        )

    def _guardduty(self, config: DetectionConfig) -> None:
        detector = aws.GuarddutyDetector(
            self,
            "guardduty",
            enable=True,
            finding_publishing_frequency=FINDING_PUBLISHING_FREQUENCY,
        )
        self.detector_id: str = detector.id
        for feature in DETECTOR_FEATURES:
            aws.GuarddutyDetectorFeature(
                self,
                f"guardduty-{feature.lower()}",
                detector_id=detector.id,
                name=feature,
                status="ENABLED",
            )
        if not config.is_security_account:
            return
        organization = aws.GuarddutyOrganizationConfiguration(
            self,
            "guardduty-organization",
            detector_id=detector.id,
            auto_enable_organization_members="ALL",
        )
        for feature in DETECTOR_FEATURES:
            aws.GuarddutyOrganizationConfigurationFeature(
                self,
                f"guardduty-organization-{feature.lower()}",
                detector_id=detector.id,
                name=feature,
                auto_enable="ALL",
                depends_on=[organization],
            )

    def _security_hub(self, config: DetectionConfig) -> None:
        hub = aws.SecurityhubAccount(
            self,
            "security-hub",
            # Subscriptions are explicit below: the defaults include the retired CIS v1.2.0.
            enable_default_standards=False,
            control_finding_generator="SECURITY_CONTROL",
            auto_enable_controls=True,
        )
        self.standards_subscription_arns: dict[str, str] = {}
        for standard, arn in standards_arns(config.region).items():
            subscription = aws.SecurityhubStandardsSubscription(
                self, f"standard-{standard}", standards_arn=arn, depends_on=[hub]
            )
            self.standards_subscription_arns[standard] = subscription.id
        if not config.is_security_account:
            return
        aws.SecurityhubFindingAggregator(
            self, "finding-aggregator", linking_mode="ALL_REGIONS", depends_on=[hub]
        )
        aws.SecurityhubOrganizationConfiguration(
            self,
            "security-hub-organization",
            auto_enable=True,
            # Members subscribe to the three standards through their own detection layer;
            # the service defaults would add the retired CIS v1.2.0 beside them.
            auto_enable_standards="NONE",
            organization_configuration=(
                aws.SecurityhubOrganizationConfigurationOrganizationConfiguration(
                    configuration_type="LOCAL"
                )
            ),
            depends_on=[hub],
        )

    def _routing(
        self,
        config: DetectionConfig,
        *,
        alerts_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        self.guardduty_rule = aws.CloudwatchEventRule(
            self,
            "guardduty-findings",
            name=f"{config.name}-guardduty-findings",
            description=(
                f"GuardDuty findings of severity {config.finding_severity_threshold} or more"
            ),
            event_pattern=json.dumps(
                guardduty_finding_pattern(config.finding_severity_threshold), sort_keys=True
            ),
            state="ENABLED",
        )
        self.security_hub_rule = aws.CloudwatchEventRule(
            self,
            "security-hub-findings",
            name=f"{config.name}-security-hub-findings",
            description="New, active CRITICAL or HIGH Security Hub findings (GuardDuty excluded)",
            event_pattern=json.dumps(security_hub_finding_pattern(), sort_keys=True),
            state="ENABLED",
        )
        rules = {"guardduty": self.guardduty_rule, "security-hub": self.security_hub_rule}

        self.topic = AlertsTopic(
            self,
            "alerts",
            name=f"{config.name}-security-alerts",
            display_name=f"PHI ML {config.environment} security alerts",
            alerts_key=alerts_key,
            account_id=config.account_id,
            region=config.region,
            alarm_prefix=alarm_name_prefix(config.environment),
            rule_arns=[rule.arn for rule in rules.values()],
        ).topic
        self.alerts_topic_arn: str = self.topic.arn

        self.isolation_security_group = aws.SecurityGroup(
            self,
            "isolation-security-group",
            name=f"{config.name}-quarantine-isolation",
            description="Quarantined instances: no traffic in or out",
            vpc_id=vpc_id,
            ingress=[],
            egress=[],
            revoke_rules_on_delete=True,
            tags={"Name": f"{config.name}-quarantine-isolation"},
        )
        self.isolation_security_group_id: str = self.isolation_security_group.id
        self.quarantine = HardenedFunction(
            self,
            "quarantine",
            name=config.quarantine_name,
            description="Isolates EC2 instances named in severe GuardDuty/Security Hub findings",
            source=QUARANTINE_SOURCE,
            account_id=config.account_id,
            region=config.region,
            environment={
                "ACCOUNT_ID": config.account_id,
                "ISOLATION_SECURITY_GROUP_ID": self.isolation_security_group.id,
                "ISOLATION_VPC_ID": vpc_id,
                "SEVERITY_THRESHOLD": str(config.finding_severity_threshold),
            },
            permissions=quarantine_statements(
                account_id=config.account_id,
                region=config.region,
                vpc_id=vpc_id,
                isolation_security_group_id=self.isolation_security_group.id,
            ),
            environment_key=alerts_key,
            logs_key=logs_key,
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
            subnet_ids=subnet_ids,
            log_retention_days=config.log_retention_days,
            reserved_concurrency=QUARANTINE_CONCURRENCY,
            invoked_by={rule_id: rule.arn for rule_id, rule in rules.items()},
            timeout_seconds=QUARANTINE_TIMEOUT_SECONDS,
        )

        retry = aws.CloudwatchEventTargetRetryPolicy(
            maximum_retry_attempts=EVENT_RETRY_ATTEMPTS,
            maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
        )
        messages = {
            "guardduty": (GUARDDUTY_MESSAGE_PATHS, GUARDDUTY_MESSAGE_TEMPLATE),
            "security-hub": (SECURITY_HUB_MESSAGE_PATHS, SECURITY_HUB_MESSAGE_TEMPLATE),
        }
        for rule_id, rule in rules.items():
            aws.CloudwatchEventTarget(
                self,
                f"{rule_id}-to-quarantine",
                rule=rule.name,
                target_id="quarantine",
                arn=self.quarantine.function_arn,
                retry_policy=retry,
                dead_letter_config=aws.CloudwatchEventTargetDeadLetterConfig(
                    arn=self.quarantine.dead_letter_queue_arn
                ),
            )
            paths, template = messages[rule_id]
            aws.CloudwatchEventTarget(
                self,
                f"{rule_id}-to-on-call",
                rule=rule.name,
                target_id="on-call",
                arn=self.topic.arn,
                input_transformer=aws.CloudwatchEventTargetInputTransformer(
                    input_paths=paths, input_template=template
                ),
                retry_policy=retry,
                dead_letter_config=aws.CloudwatchEventTargetDeadLetterConfig(
                    arn=self.quarantine.dead_letter_queue_arn
                ),
            )


def alerts_topic_statements(
    topic_arn: str,
    *,
    rule_arns: list[str],
    account_id: str,
    region: str,
    alarm_prefix: str,
) -> list[Statement]:
    """Only the two finding rules (through EventBridge) and this environment's security
    alarms (through CloudWatch) may publish, from this account, and only over TLS."""
    alarms = f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{alarm_prefix}*"
    rules = [
        statement(
            "FindingRulesPublish",
            effect="Allow",
            principal={"Service": "events.amazonaws.com"},
            actions="sns:Publish",
            resources=topic_arn,
            condition={
                "ArnEquals": {"aws:SourceArn": rule_arns},
                "StringEquals": {"aws:SourceAccount": account_id},
            },
        )
    ]
    return [
        *(rules if rule_arns else []),
        statement(
            "SecurityAlarmsPublish",
            effect="Allow",
            principal={"Service": "cloudwatch.amazonaws.com"},
            actions="sns:Publish",
            resources=topic_arn,
            condition={
                "ArnLike": {"aws:SourceArn": alarms},
                "StringEquals": {"aws:SourceAccount": account_id},
            },
        ),
        deny_insecure_transport(actions="sns:Publish", resources=topic_arn),
    ]


def quarantine_statements(
    *, account_id: str, region: str, vpc_id: str, isolation_security_group_id: str
) -> list[Statement]:
    """What isolating an instance takes, and no more: read instances and volumes; put this
    account's and region's network interfaces into the isolation group (no other group can be
    attached); protect instances from termination; snapshot volumes (every snapshot tagged
    with its finding at creation); tag instances with the three quarantine tags only."""
    ec2 = f"arn:aws:ec2:{region}:{account_id}"
    here = {"aws:ResourceAccount": account_id, "ec2:Region": region}
    return [
        statement(
            "DescribeHasNoResourceLevelPermissions",
            effect="Allow",
            actions=["ec2:DescribeInstances", "ec2:DescribeSnapshots", "ec2:DescribeVolumes"],
            resources="*",
        ),
        statement(
            # Replacing an interface's groups is authorized on the interface, its instance,
            # the groups attached and their VPC: only the isolation group, only this VPC.
            "MoveInterfacesIntoTheIsolationGroupOnly",
            effect="Allow",
            actions="ec2:ModifyNetworkInterfaceAttribute",
            resources=[
                f"{ec2}:network-interface/*",
                f"{ec2}:instance/*",
                f"{ec2}:security-group/{isolation_security_group_id}",
                f"{ec2}:vpc/{vpc_id}",
            ],
            condition={"StringEquals": here},
        ),
        statement(
            "ProtectInstancesFromTermination",
            effect="Allow",
            actions="ec2:ModifyInstanceAttribute",
            resources=f"{ec2}:instance/*",
            condition={"StringEquals": here},
        ),
        statement(
            "SnapshotVolumesOfThisAccount",
            effect="Allow",
            actions="ec2:CreateSnapshot",
            resources=f"{ec2}:volume/*",
            condition={"StringEquals": here},
        ),
        statement(
            # Snapshot ARNs carry no account; the request must tag the snapshot's finding.
            "CreateOnlySnapshotsTaggedWithTheirFinding",
            effect="Allow",
            actions="ec2:CreateSnapshot",
            resources=f"arn:aws:ec2:{region}::snapshot/*",
            condition={"Null": {f"aws:RequestTag/{SNAPSHOT_FINDING_TAG}": "false"}},
        ),
        statement(
            "TagSnapshotsOnlyWhenCreatingThem",
            effect="Allow",
            actions="ec2:CreateTags",
            resources=f"arn:aws:ec2:{region}::snapshot/*",
            condition={"StringEquals": {"ec2:CreateAction": "CreateSnapshot"}},
        ),
        statement(
            "TagInstancesWithQuarantineTagsOnly",
            effect="Allow",
            actions="ec2:CreateTags",
            resources=f"{ec2}:instance/*",
            condition={
                "StringEquals": here,
                "ForAllValues:StringEquals": {"aws:TagKeys": list(QUARANTINE_TAG_KEYS)},
            },
        ),
    ]
