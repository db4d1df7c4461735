"""Model Monitor data-quality schedule; violations roll the endpoint back automatically."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from cdktf import AssetType, TerraformAsset
from constructs import Construct
from pydantic import Field, field_validator, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.functions import (
    DEAD_LETTER_RETENTION_SECONDS,
    EVENT_MAX_AGE_SECONDS,
    EVENT_RETRY_ATTEMPTS,
    LAMBDA_RUNTIME,
    RUNTIME_SOURCES,
    check_log_retention,
    lambda_package,
    runtime_statements,
)
from modules.iam_statements import (
    deny_insecure_transport,
    ecr_pull_statements,
    sagemaker_vpc_interface_statements,
)
from modules.inference import NAME_PART, EcrImage, https_only_security_group
from modules.keys import CustomerManagedKey
from modules.policy import assume_role_policy, policy_document, statement
from modules.storage import HardenedBucket

ROLLBACK_SOURCE = RUNTIME_SOURCES / "rollback"
# Rollbacks must never race: two concurrent switches could leave either configuration serving.
ROLLBACK_CONCURRENCY = 1
MONITOR_METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"

# SageMaker Model Monitor's only recurring schedules (API ScheduleConfig): hourly, daily at an
# hour, or every N hours from an hour. "NOW" (one-off) is not a monitoring schedule.
_HOURLY = re.compile(r"^cron\(0 \* \? \* \* \*\)$")
_DAILY = re.compile(r"^cron\(0 (?P<hour>[0-9]{1,2}) \? \* \* \*\)$")
_EVERY_N_HOURS = re.compile(r"^cron\(0 (?P<hour>[0-9]{1,2})/(?P<every>[0-9]{1,2}) \? \* \* \*\)$")


def schedule_interval_hours(expression: str) -> int:
    """Hours between runs of a Model Monitor cron expression; ValueError if SageMaker would
    refuse the expression."""
    if _HOURLY.match(expression):
        return 1
    daily = _DAILY.match(expression)
    if daily and 0 <= int(daily["hour"]) <= 23:
        return 24
    every = _EVERY_N_HOURS.match(expression)
    if every and 0 <= int(every["hour"]) <= 23 and 1 <= int(every["every"]) <= 24:
        return int(every["every"])
    raise ValueError(
        f"{expression!r} is not a SageMaker monitoring schedule: use cron(0 * ? * * *) (hourly), "
        f"cron(0 H ? * * *) (daily at hour H, 0-23) or cron(0 H/N ? * * *) (every N hours, 1-24)"
    )


class MonitoringConfig(LayerConfig):
    environment: str = Field(pattern=NAME_PART)
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str
    # Names the schedule, job definition, function and roles after the endpoint they watch:
    # the same model_name as the inference layer's.
    model_name: str = Field(pattern=NAME_PART)
    # The registry group whose versions the endpoint serves: a rollback rejects the drifted
    # version there (and may set no other status).
    model_package_group: str = Field(pattern=r"^[a-z0-9](-?[a-z0-9])*$", max_length=63)
    # The Model Monitor analyzer image is published per region by AWS (its account differs by
    # region), so it is configuration, never derived here.
    monitor_image: EcrImage
    instance_type: str = Field(pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    schedule_expression: str
    # Key prefix of the training pipeline's runs in the artifacts bucket: the baselines a
    # deployed version names are its Baseline step's outputs, <prefix><run>/baseline/...
    pipeline_runs_prefix: str = Field(pattern=r"^(?:[A-Za-z0-9!_.*'()-]+/)+$")
    reports_prefix: str = Field(pattern=r"^(?:[A-Za-z0-9!_.*'()-]+/)+$")
    # Where the inference layer captures requests (its capture_prefix): the job reads only
    # this endpoint's captures under it.
    capture_prefix: str = Field(pattern=r"^(?:[A-Za-z0-9!_.*'()-]+/)+$")
    max_runtime_seconds: int = Field(ge=60, le=86400)
    volume_size_gb: int = Field(default=20, ge=1, le=16384)
    vpc_cidr: str

    @field_validator("schedule_expression")
    @classmethod
    def _sagemaker_schedule(cls, value: str) -> str:
        schedule_interval_hours(value)
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _ipv4_network(cls, value: str) -> str:
        ipaddress.IPv4Network(value)
        return value

    @model_validator(mode="after")
    def _run_ends_before_the_next(self) -> MonitoringConfig:
        interval = schedule_interval_hours(self.schedule_expression) * 3600
        if self.max_runtime_seconds > interval:
            raise ValueError(
                f"max_runtime_seconds {self.max_runtime_seconds} exceeds the schedule's interval "
                f"({interval} s): a run must end before the next one starts"
            )
        return self

    @property
    def name(self) -> str:
        return f"phi-ml-{self.environment}-{self.model_name}"

    # Fixed role names, so the ML key's policy can admit the roles before they exist.
    @property
    def monitor_role_name(self) -> str:
        return f"{self.name}-monitor"

    @property
    def rollback_name(self) -> str:
        """The rollback function's name, shared by its role and dead-letter queue."""
        return f"{self.name}-rollback"

    @property
    def baseline_objects(self) -> str:
        """Every run's Baseline step outputs, and nothing else of the runs (datasets, models)."""
        return f"{self.pipeline_runs_prefix}*/baseline/*"

    @property
    def schedule_name(self) -> str:
        return f"{self.name}-data-quality"

    @property
    def schedule_arn(self) -> str:
        return (
            f"arn:aws:sagemaker:{self.region}:{self.account_id}:monitoring-schedule/"
            f"{self.schedule_name}"
        )


def violation_event_pattern(schedule_arn: str) -> dict[str, Any]:
    """The EventBridge pattern of "this schedule's monitoring run found violations".

    SageMaker has no monitoring-schedule event; each scheduled run is a processing job, and
    SageMaker sends "SageMaker Processing Job State Change" events whose detail is the job's
    DescribeProcessingJob description. A run that finds violations ends with
    ProcessingJobStatus "Completed" and an ExitMessage starting "CompletedWithViolations" (the
    analyzer writes it; the execution's status in ListMonitoringExecutions is derived from it),
    and the job carries the MonitoringScheduleArn of the schedule that started it. Matching all
    three fires exactly on this schedule's violations: a clean run ("Completed: ..."), a failed
    run and other processing jobs do not match.

    Rejected alternative: emitting CloudWatch metrics and alarming on them. The analyzer
    publishes per-feature drift metrics (feature_baseline_drift_<feature>), so an alarm needs
    the feature names up front and a threshold duplicating the baseline's constraints; the exit
    message is the analyzer's own verdict against the constraints.
    """
    return {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Processing Job State Change"],
        "detail": {
            "ProcessingJobStatus": ["Completed"],
            "ExitMessage": [{"prefix": "CompletedWithViolations"}],
            "MonitoringScheduleArn": [schedule_arn],
        },
    }


def failed_run_event_pattern(schedule_arn: str) -> dict[str, Any]:
    """This schedule's monitoring runs that failed or were stopped: a run that cannot judge
    the traffic (no captures, no baseline, a broken image) must reach a person, or drift
    would go unseen while every dashboard stays green."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Processing Job State Change"],
        "detail": {
            "ProcessingJobStatus": ["Failed", "Stopped"],
            "MonitoringScheduleArn": [schedule_arn],
        },
    }


# What a person reads (e-mail, chat) when a run fails or rolls the endpoint back.
ALERT_MESSAGE_PATHS = {
    "job": "$.detail.ProcessingJobName",
    "status": "$.detail.ProcessingJobStatus",
    "reason": "$.detail.ExitMessage",
    "time": "$.time",
    "account": "$.account",
}
FAILED_RUN_TEMPLATE = (
    '"Model Monitor run <job> <status> at <time> in account <account>: <reason>. '
    'The endpoint was not judged against its baseline."'
)
VIOLATION_TEMPLATE = (
    '"Model Monitor run <job> found drift at <time> in account <account>: <reason>. '
    'The rollback function returns the endpoint to its previous approved version."'
)


class Monitoring(Construct):
    """Drift is detected and acted on without a human in the loop, and without PHI leaving the
    VPC: an hourly-or-slower Model Monitor data-quality job compares the endpoint's captured
    traffic with the baseline, network-isolated in the private subnets, its volume and reports
    encrypted with the ML key. A run that finds violations triggers, through EventBridge (with
    retries and an encrypted dead-letter queue), a single-concurrency function that returns the
    endpoint to its previous configuration and records it on the endpoint. Runs that fail or
    stop, and every violation, are published to an encrypted topic for a person: monitoring
    never fails silently."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: MonitoringConfig,
        endpoint_name: str,
        endpoint_arn: str,
        ml_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        artifacts_bucket: HardenedBucket,
        vpc_id: str,
        subnet_ids: list[str],
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, id_)
        check_log_retention(log_retention_days)
        self.config = config
        self._schedule(
            config,
            endpoint_name=endpoint_name,
            ml_key=ml_key,
            bucket=artifacts_bucket,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
        )
        self._rollback(
            config,
            endpoint_name=endpoint_name,
            endpoint_arn=endpoint_arn,
            ml_key=ml_key,
            logs_key=logs_key,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
            log_retention_days=log_retention_days,
        )

    def _schedule(
        self,
        config: MonitoringConfig,
        *,
        endpoint_name: str,
        ml_key: CustomerManagedKey,
        bucket: HardenedBucket,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        name = config.name
        self.job_security_group = https_only_security_group(
            self,
            "job-security-group",
            name=config.monitor_role_name,
            description="Model Monitor jobs: HTTPS to the VPC endpoints and S3 only",
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
            region=config.region,
        )
        role = aws.IamRole(
            self,
            "monitor-role",
            name=f"{name}-monitor",
            assume_role_policy=assume_role_policy("sagemaker.amazonaws.com", config.account_id),
        )
        self.monitor_role_arn: str = role.arn
        self.reports_s3_uri: str = f"s3://{bucket.bucket_name}/{config.reports_prefix}"
        captures = f"{config.capture_prefix}{endpoint_name}/"
        aws.IamRolePolicy(
            self,
            "monitor-policy",
            name="monitor-this-endpoint-only",
            role=role.id,
            policy=policy_document(
                statement(
                    "ReadBaselineAndThisEndpointsCaptures",
                    effect="Allow",
                    actions="s3:GetObject",
                    resources=[
                        f"{bucket.bucket_arn}/{config.baseline_objects}",
                        f"{bucket.bucket_arn}/{captures}*",
                    ],
                ),
                statement(
                    "ListOnlyThoseKeys",
                    effect="Allow",
                    actions="s3:ListBucket",
                    resources=bucket.bucket_arn,
                    condition={
                        "StringLike": {"s3:prefix": [config.baseline_objects, f"{captures}*"]}
                    },
                ),
                statement(
                    "WriteReports",
                    effect="Allow",
                    actions="s3:PutObject",
                    resources=f"{bucket.bucket_arn}/{config.reports_prefix}*",
                ),
                statement(
                    "UseTheMlKey",
                    effect="Allow",
                    actions=["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
                    resources=sorted({ml_key.key_arn, bucket.kms_key.key_arn}),
                ),
                statement(
                    # PutMetricData has no resource type; the namespace condition confines it.
                    "PublishMonitorMetricsOnly",
                    effect="Allow",
                    actions="cloudwatch:PutMetricData",
                    resources="*",
                    condition={"StringEquals": {"cloudwatch:namespace": MONITOR_METRICS_NAMESPACE}},
                ),
                statement(
                    "WriteProcessingJobLogs",
                    effect="Allow",
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:DescribeLogStreams",
                        "logs:PutLogEvents",
                    ],
                    resources=(
                        f"arn:aws:logs:{config.region}:{config.account_id}:log-group:"
                        f"/aws/sagemaker/ProcessingJobs:*"
                    ),
                ),
                *ecr_pull_statements(config.monitor_image),
                *sagemaker_vpc_interface_statements(config.region, config.account_id, vpc_id),
            ),
        )
        # The data-quality job definition (one per deployed version, with that version's
        # baseline) and the schedule running it are the deployer's (modules/deployment.py):
        # SageMaker refuses a schedule for an endpoint that does not exist yet, and a job
        # definition's baseline cannot change. The schedule's name is fixed here, so the rules
        # below can match its runs before it exists.
        self.schedule_name = config.schedule_name
        self.schedule_arn: str = config.schedule_arn

    def _rollback(
        self,
        config: MonitoringConfig,
        *,
        endpoint_name: str,
        endpoint_arn: str,
        ml_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        vpc_id: str,
        subnet_ids: list[str],
        log_retention_days: int,
    ) -> None:
        name = config.rollback_name
        region, account = config.region, config.account_id
        self.rule = aws.CloudwatchEventRule(
            self,
            "violations",
            name=f"{config.name}-violations",
            description="This endpoint's Model Monitor runs that completed with violations",
            event_pattern=json.dumps(violation_event_pattern(self.schedule_arn)),
        )
        self.rule_arn: str = self.rule.arn
        self.failed_runs_rule = aws.CloudwatchEventRule(
            self,
            "failed-runs",
            name=f"{config.name}-monitoring-failed",
            description="This endpoint's Model Monitor runs that failed or were stopped",
            event_pattern=json.dumps(failed_run_event_pattern(config.schedule_arn)),
        )
        queue = aws.SqsQueue(
            self,
            "dead-letters",
            name=f"{name}-dead-letters",
            kms_master_key_id=ml_key.key_arn,
            kms_data_key_reuse_period_seconds=300,
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
        )
        self.dead_letter_queue_arn: str = queue.arn
        aws.SqsQueuePolicy(
            self,
            "dead-letters-policy",
            queue_url=queue.url,
            policy=policy_document(
                statement(
                    "OnlyThisEndpointsMonitoringRulesDeadLetter",
                    effect="Allow",
                    principal={"Service": "events.amazonaws.com"},
                    actions="sqs:SendMessage",
                    resources=queue.arn,
                    condition={
                        "ArnEquals": {"aws:SourceArn": [self.rule.arn, self.failed_runs_rule.arn]}
                    },
                ),
                deny_insecure_transport(actions="sqs:*", resources=queue.arn),
            ),
        )
        log_group = aws.CloudwatchLogGroup(
            self,
            "rollback-logs",
            name=f"/aws/lambda/{name}",
            retention_in_days=log_retention_days,
            kms_key_id=logs_key.key_arn,
        )
        role = aws.IamRole(
            self,
            "rollback-role",
            name=name,
            assume_role_policy=assume_role_policy("lambda.amazonaws.com", account),
        )
        config_arns = f"arn:aws:sagemaker:{region}:{account}:endpoint-config/{endpoint_name}-*"
        package_arns = (
            f"arn:aws:sagemaker:{region}:{account}:model-package/{config.model_package_group}/*"
        )
        aws.IamRolePolicy(
            self,
            "rollback-policy",
            name="roll-back-this-endpoint-only",
            role=role.id,
            policy=policy_document(
                statement(
                    "InspectAndSwitchThisEndpoint",
                    effect="Allow",
                    actions=[
                        "sagemaker:AddTags",
                        "sagemaker:DescribeEndpoint",
                        "sagemaker:ListTags",
                        "sagemaker:UpdateEndpoint",
                    ],
                    resources=endpoint_arn,
                ),
                statement(
                    # UpdateEndpoint is authorized on the configuration it switches to as well.
                    "InspectAndMarkThisEndpointsConfigurations",
                    effect="Allow",
                    actions=[
                        "sagemaker:AddTags",
                        "sagemaker:DescribeEndpointConfig",
                        "sagemaker:ListTags",
                        "sagemaker:UpdateEndpoint",
                    ],
                    resources=config_arns,
                ),
                statement(
                    # After a switch, the schedule judges against the returned-to version's
                    # baseline: its data-quality job definition (runtime/deployer's names).
                    "RepointThisEndpointsMonitor",
                    effect="Allow",
                    actions=[
                        "sagemaker:DescribeDataQualityJobDefinition",
                        "sagemaker:DescribeMonitoringSchedule",
                        "sagemaker:UpdateMonitoringSchedule",
                    ],
                    resources=[
                        config.schedule_arn,
                        f"arn:aws:sagemaker:{region}:{account}:data-quality-job-definition/"
                        f"{endpoint_name}-dq-v*",
                    ],
                ),
                statement(
                    # The registry's history of a rollback: the drifted version is Rejected,
                    # never any other status (approval stays a person's decision).
                    "RejectRolledBackVersionsOfItsGroupOnly",
                    effect="Allow",
                    actions="sagemaker:UpdateModelPackage",
                    resources=package_arns,
                    condition={"StringEquals": {"sagemaker:ModelApprovalStatus": "Rejected"}},
                ),
                statement(
                    "ReadItsGroupsVersions",
                    effect="Allow",
                    actions="sagemaker:DescribeModelPackage",
                    resources=package_arns,
                ),
                statement(
                    "ListingConfigurationsHasNoResourceLevelPermissions",
                    effect="Allow",
                    actions="sagemaker:ListEndpointConfigs",
                    resources="*",
                ),
                *runtime_statements(
                    account_id=account,
                    region=region,
                    log_group_arn=log_group.arn,
                    dead_letter_queue_arn=queue.arn,
                    environment_key_arn=ml_key.key_arn,
                    environment_key_sid="UseTheMlKey",
                ),
            ),
        )
        security_group = https_only_security_group(
            self,
            "rollback-security-group",
            name=name,
            description="Rollback function: HTTPS to the VPC endpoints (SageMaker API) only",
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
            region=region,
            s3=False,
        )
        code_path, code_sha256 = lambda_package(ROLLBACK_SOURCE, "rollback.zip")
        package = TerraformAsset(self, "rollback-code", path=code_path, type=AssetType.FILE)
        function = aws.LambdaFunction(
            self,
            "rollback",
            function_name=name,
            description="Returns the endpoint to its previous configuration on drift",
            role=role.arn,
            runtime=LAMBDA_RUNTIME,
            architectures=["arm64"],
            handler="handler.handle",
            filename=package.path,
            source_code_hash=code_sha256,
            timeout=60,
            memory_size=256,
            reserved_concurrent_executions=ROLLBACK_CONCURRENCY,
            kms_key_arn=ml_key.key_arn,
            environment=aws.LambdaFunctionEnvironment(
                variables={
                    "ENDPOINT_NAME": endpoint_name,
                    "MONITORING_SCHEDULE_NAME": self.schedule_name,
                }
            ),
            vpc_config=aws.LambdaFunctionVpcConfig(
                subnet_ids=subnet_ids, security_group_ids=[security_group.id]
            ),
            dead_letter_config=aws.LambdaFunctionDeadLetterConfig(target_arn=queue.arn),
            tracing_config=aws.LambdaFunctionTracingConfig(mode="Active"),
            logging_config=aws.LambdaFunctionLoggingConfig(
                log_format="Text", log_group=log_group.name
            ),
            # The encrypted group exists before the first invocation could create a plain one.
            depends_on=[log_group],
        )
        self.function_name: str = function.function_name
        self.function_arn: str = function.arn
        self._alerts(config, ml_key=ml_key, dead_letter_queue_arn=queue.arn)
        aws.CloudwatchEventTarget(
            self,
            "violations-to-rollback",
            rule=self.rule.name,
            target_id="rollback",
            arn=function.arn,
            retry_policy=aws.CloudwatchEventTargetRetryPolicy(
                maximum_retry_attempts=EVENT_RETRY_ATTEMPTS,
                maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
            ),
            dead_letter_config=aws.CloudwatchEventTargetDeadLetterConfig(arn=queue.arn),
        )
        aws.LambdaPermission(
            self,
            "violations-invoke-rollback",
            statement_id="OnlyTheViolationRule",
            action="lambda:InvokeFunction",
            function_name=function.function_name,
            principal="events.amazonaws.com",
            source_arn=self.rule.arn,
        )

    def _alerts(
        self, config: MonitoringConfig, *, ml_key: CustomerManagedKey, dead_letter_queue_arn: str
    ) -> None:
        self.alerts_topic = aws.SnsTopic(
            self,
            "alerts-topic",
            name=f"{config.name}-monitoring-alerts",
            display_name=f"PHI ML {config.environment} {config.model_name} monitoring",
            kms_master_key_id=ml_key.key_arn,
        )
        self.alerts_topic_arn: str = self.alerts_topic.arn
        rules = {"failed": self.failed_runs_rule, "violation": self.rule}
        aws.SnsTopicPolicy(
            self,
            "alerts-topic-policy",
            arn=self.alerts_topic.arn,
            policy=policy_document(
                statement(
                    "OnlyThisEndpointsMonitoringRulesPublish",
                    effect="Allow",
                    principal={"Service": "events.amazonaws.com"},
                    actions="sns:Publish",
                    resources=self.alerts_topic.arn,
                    condition={
                        "ArnEquals": {"aws:SourceArn": [rule.arn for rule in rules.values()]},
                        "StringEquals": {"aws:SourceAccount": config.account_id},
                    },
                ),
                deny_insecure_transport(actions="sns:Publish", resources=self.alerts_topic.arn),
            ),
        )
        templates = {"failed": FAILED_RUN_TEMPLATE, "violation": VIOLATION_TEMPLATE}
        for rule_id, rule in rules.items():
            aws.CloudwatchEventTarget(
                self,
                f"{rule_id}-to-people",
                rule=rule.name,
                target_id="notify-people",
                arn=self.alerts_topic.arn,
                input_transformer=aws.CloudwatchEventTargetInputTransformer(
                    input_paths=ALERT_MESSAGE_PATHS, input_template=templates[rule_id]
                ),
                retry_policy=aws.CloudwatchEventTargetRetryPolicy(
                    maximum_retry_attempts=EVENT_RETRY_ATTEMPTS,
                    maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
                ),
                dead_letter_config=aws.CloudwatchEventTargetDeadLetterConfig(
                    arn=dead_letter_queue_arn
                ),
            )
