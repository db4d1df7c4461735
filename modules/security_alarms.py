"""CIS-style alarms on the CloudTrail log group: the account changes an attacker makes first."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct
from pydantic import Field

from modules import aws
from modules.config import LayerConfig
from modules.inference import NAME_PART

# One namespace per environment keeps the metrics of dev and prod apart in a shared account.
METRICS_NAMESPACE_PREFIX = "PhiMl/SecurityAlarms"


@dataclass(frozen=True)
class SecurityAlarm:
    """One metric filter and its alarm: what CloudTrail records that someone must look at."""

    slug: str
    description: str
    # The CloudWatch Logs filter pattern over CloudTrail's JSON records.
    pattern: str
    # Which CIS AWS Foundations Benchmark recommendation (section 4, Monitoring) and Security
    # Hub control this satisfies, so an auditor can map alarm to control.
    control: str


# The filter patterns are the CIS AWS Foundations Benchmark section 4 patterns (the ones AWS
# documents for Security Hub's CloudWatch.* controls), spaced for reading; where the benchmark
# text leaves && / || precedence implicit, the grouping it intends is written out.
ROOT_ACCOUNT_USAGE = SecurityAlarm(
    slug="root-account-usage",
    description="The root user signed in or called an API (not an AWS service acting for it)",
    pattern=(
        '{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS '
        '&& $.eventType != "AwsServiceEvent" }'
    ),
    control="CIS v1.4.0/v3.0.0 4.3 / Security Hub CloudWatch.1",
)
UNAUTHORIZED_API_CALLS = SecurityAlarm(
    slug="unauthorized-api-calls",
    description="API calls denied for lack of permission (probing with stolen credentials)",
    # Since v1.4.0 the benchmark excludes log delivery and HeadBucket, denied routinely; its text
    # writes `A || B && C && D` and means `(A || B) && C && D`, as written here.
    pattern=(
        '{ (($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*")) '
        '&& ($.sourceIPAddress != "delivery.logs.amazonaws.com") '
        '&& ($.eventName != "HeadBucket") }'
    ),
    control="CIS v1.4.0/v3.0.0 4.1 / Security Hub CloudWatch.2",
)
SECURITY_GROUP_CHANGES = SecurityAlarm(
    slug="security-group-changes",
    description="A security group was created, deleted, or its rules changed",
    pattern=(
        "{ ($.eventName = AuthorizeSecurityGroupIngress) "
        "|| ($.eventName = AuthorizeSecurityGroupEgress) "
        "|| ($.eventName = RevokeSecurityGroupIngress) "
        "|| ($.eventName = RevokeSecurityGroupEgress) "
        "|| ($.eventName = CreateSecurityGroup) "
        "|| ($.eventName = DeleteSecurityGroup) "
        # Beyond CIS: the newer API edits rules in place and would otherwise go unseen.
        "|| ($.eventName = ModifySecurityGroupRules) }"
    ),
    control="CIS v1.4.0/v3.0.0 4.10 / Security Hub CloudWatch.10",
)
NACL_CHANGES = SecurityAlarm(
    slug="network-acl-changes",
    description="A network ACL, one of its entries or an association was changed",
    pattern=(
        "{ ($.eventName = CreateNetworkAcl) "
        "|| ($.eventName = CreateNetworkAclEntry) "
        "|| ($.eventName = DeleteNetworkAcl) "
        "|| ($.eventName = DeleteNetworkAclEntry) "
        "|| ($.eventName = ReplaceNetworkAclEntry) "
        "|| ($.eventName = ReplaceNetworkAclAssociation) }"
    ),
    control="CIS v1.4.0/v3.0.0 4.11 / Security Hub CloudWatch.11",
)
CLOUDTRAIL_CHANGES = SecurityAlarm(
    slug="cloudtrail-changes",
    description="A trail was created, changed, deleted, started or stopped",
    pattern=(
        "{ ($.eventName = CreateTrail) "
        "|| ($.eventName = UpdateTrail) "
        "|| ($.eventName = DeleteTrail) "
        "|| ($.eventName = StartLogging) "
        "|| ($.eventName = StopLogging) }"
    ),
    control="CIS v1.4.0/v3.0.0 4.5 / Security Hub CloudWatch.5",
)
KMS_KEY_DISABLED_OR_DELETED = SecurityAlarm(
    slug="kms-key-disabled-or-scheduled-deletion",
    description="A customer managed KMS key was disabled or scheduled for deletion",
    pattern=(
        "{ ($.eventSource = kms.amazonaws.com) "
        "&& (($.eventName = DisableKey) || ($.eventName = ScheduleKeyDeletion)) }"
    ),
    control="CIS v1.4.0/v3.0.0 4.7 / Security Hub CloudWatch.7",
)
SECURITY_ALARMS = (
    ROOT_ACCOUNT_USAGE,
    UNAUTHORIZED_API_CALLS,
    SECURITY_GROUP_CHANGES,
    NACL_CHANGES,
    CLOUDTRAIL_CHANGES,
    KMS_KEY_DISABLED_OR_DELETED,
)


def alarm_name_prefix(environment: str) -> str:
    """Every security alarm's name starts with this; the alerts topic admits exactly these."""
    return f"phi-ml-{environment}-security-"


class SecurityAlarmsConfig(LayerConfig):
    environment: str = Field(pattern=NAME_PART)
    # CIS asks for an alarm on the first occurrence; a higher threshold for denied calls is a
    # value (noise), capped so it cannot silence the alarm.
    unauthorized_api_calls_threshold: int = Field(default=1, ge=1, le=50)
    period_seconds: int = Field(default=300, ge=60, le=3600)

    @property
    def namespace(self) -> str:
        return f"{METRICS_NAMESPACE_PREFIX}/{self.environment}"


class SecurityAlarms(Construct):
    """For each CIS monitoring recommendation (root use, denied API calls, security group,
    network ACL and CloudTrail changes, KMS keys disabled or scheduled for deletion): a metric
    filter on the CloudTrail log group and an alarm that notifies the alerts topic at the
    first occurrence in a period. Missing data (no such event) is not a breach; the alarms
    cannot be switched off (actions always enabled)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: SecurityAlarmsConfig,
        trail_log_group_name: str,
        alerts_topic_arn: str,
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        prefix = alarm_name_prefix(config.environment)
        self.alarm_names: dict[str, str] = {}
        for alarm in SECURITY_ALARMS:
            metric_name = alarm.slug
            aws.CloudwatchLogMetricFilter(
                self,
                f"{alarm.slug}-filter",
                name=f"{prefix}{alarm.slug}",
                log_group_name=trail_log_group_name,
                pattern=alarm.pattern,
                metric_transformation=aws.CloudwatchLogMetricFilterMetricTransformation(
                    name=metric_name,
                    namespace=config.namespace,
                    value="1",
                    unit="Count",
                ),
            )
            threshold = (
                config.unauthorized_api_calls_threshold if alarm is UNAUTHORIZED_API_CALLS else 1
            )
            resource = aws.CloudwatchMetricAlarm(
                self,
                f"{alarm.slug}-alarm",
                alarm_name=f"{prefix}{alarm.slug}",
                alarm_description=f"{alarm.description} ({alarm.control})",
                namespace=config.namespace,
                metric_name=metric_name,
                statistic="Sum",
                period=config.period_seconds,
                evaluation_periods=1,
                threshold=threshold,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                actions_enabled=True,
                alarm_actions=[alerts_topic_arn],
            )
            self.alarm_names[alarm.slug] = resource.alarm_name
