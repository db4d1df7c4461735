"""Approval deploys: a person's approval in the Model Registry is what puts a version in service.

The registry's approval rule (approvals and rejections of the group's versions) invokes the
deployer (runtime/deployer), which re-reads the version's status and deploys only an Approved
one: a model and an endpoint configuration named `<endpoint>-v<version>`, the endpoint created
or switched to it, and the Model Monitor schedule pointed at a data-quality job definition with
that version's own baseline. Terraform creates none of those: the first apply needs no model,
and the versions the rollback function returns to (the deployer keeps the newest
`retained_versions`) are never destroyed by a Terraform replacement.

What serves is secure by construction in the deployer's code, not in a setting: the model
network-isolated in the private subnets, the endpoint's storage and its captured requests and
responses encrypted with the ML key, the monitoring job isolated and encrypted likewise.
"""

from __future__ import annotations

from constructs import Construct
from pydantic import Field

from modules import aws
from modules.config import LayerConfig
from modules.functions import (
    EVENT_MAX_AGE_SECONDS,
    EVENT_RETRY_ATTEMPTS,
    RUNTIME_SOURCES,
    HardenedFunction,
)
from modules.inference import NAME_PART, Inference
from modules.keys import CustomerManagedKey
from modules.monitoring import Monitoring
from modules.policy import Statement, statement

DEPLOYER_SOURCE = RUNTIME_SOURCES / "deployer"
# Deployments must never race: two approvals at once could leave either version serving.
DEPLOYER_CONCURRENCY = 1
DEPLOYER_TIMEOUT_SECONDS = 120


def image_repository(image: str) -> str:
    """<registry>/<repository> of an image URI, without its tag or digest."""
    without_digest = image.split("@", 1)[0]
    registry, _, path = without_digest.partition("/")
    return f"{registry}/{path.split(':', 1)[0]}"


class DeploymentConfig(LayerConfig):
    environment: str = Field(pattern=NAME_PART)
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str
    # The registry group whose approved versions this endpoint serves (the pipeline's).
    model_package_group: str = Field(pattern=r"^[a-z0-9](-?[a-z0-9]){0,62}$")
    log_retention_days: int
    vpc_cidr: str


def deployer_statements(
    config: DeploymentConfig,
    *,
    endpoint_name: str,
    schedule_name: str,
    passed_roles: list[str],
    ml_key_arn: str,
) -> list[Statement]:
    """Exactly what deploying this endpoint's versions takes, and only for its own names."""
    arn = f"arn:aws:sagemaker:{config.region}:{config.account_id}"
    models = f"{arn}:model/{endpoint_name}-v*"
    configurations = f"{arn}:endpoint-config/{endpoint_name}-v*"
    job_definitions = f"{arn}:data-quality-job-definition/{endpoint_name}-dq-v*"
    schedule = f"{arn}:monitoring-schedule/{schedule_name}"
    return [
        statement(
            "ReadVersionsOfTheGroup",
            effect="Allow",
            actions="sagemaker:DescribeModelPackage",
            resources=f"{arn}:model-package/{config.model_package_group}/*",
        ),
        statement(
            "ManageThisEndpointsModels",
            effect="Allow",
            actions=[
                "sagemaker:AddTags",
                "sagemaker:CreateModel",
                "sagemaker:DeleteModel",
                "sagemaker:DescribeModel",
                "sagemaker:ListTags",
            ],
            resources=models,
        ),
        statement(
            "ManageThisEndpointsConfigurations",
            effect="Allow",
            actions=[
                "sagemaker:AddTags",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:DeleteEndpointConfig",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:ListTags",
            ],
            resources=configurations,
        ),
        statement(
            # Create/UpdateEndpoint are authorized on the configuration they serve as well.
            "DeployThisEndpoint",
            effect="Allow",
            actions=[
                "sagemaker:AddTags",
                "sagemaker:CreateEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:ListTags",
                "sagemaker:UpdateEndpoint",
            ],
            resources=[f"{arn}:endpoint/{endpoint_name}", configurations],
        ),
        statement(
            "ManageThisEndpointsMonitoringJobs",
            effect="Allow",
            actions=[
                "sagemaker:AddTags",
                "sagemaker:CreateDataQualityJobDefinition",
                "sagemaker:DeleteDataQualityJobDefinition",
                "sagemaker:DescribeDataQualityJobDefinition",
                "sagemaker:ListTags",
            ],
            resources=job_definitions,
        ),
        statement(
            "ScheduleThisEndpointsMonitor",
            effect="Allow",
            actions=[
                "sagemaker:AddTags",
                "sagemaker:CreateMonitoringSchedule",
                "sagemaker:DescribeMonitoringSchedule",
                "sagemaker:UpdateMonitoringSchedule",
            ],
            resources=[schedule, job_definitions],
        ),
        statement(
            "ListingHasNoResourceLevelPermissions",
            effect="Allow",
            actions=[
                "sagemaker:ListDataQualityJobDefinitions",
                "sagemaker:ListEndpointConfigs",
                "sagemaker:ListModels",
            ],
            resources="*",
        ),
        statement(
            "PassOnlyTheModelAndMonitorRolesToSageMaker",
            effect="Allow",
            actions="iam:PassRole",
            resources=passed_roles,
            condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        statement(
            # SageMaker encrypts the endpoint's and the job's volumes through grants made with
            # the caller's credentials.
            "GrantSageMakerTheMlKey",
            effect="Allow",
            actions="kms:CreateGrant",
            resources=ml_key_arn,
            condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        statement(
            "DescribeTheMlKey", effect="Allow", actions="kms:DescribeKey", resources=ml_key_arn
        ),
    ]


class Deployment(Construct):
    """Only a person's approval puts a model version in service, and the previous approved
    versions stay deployable: the approval event reaches, with retries and an encrypted
    dead-letter queue, a single-concurrency VPC function that deploys Approved versions only
    (see the module docstring), with nothing beyond this endpoint's own names."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DeploymentConfig,
        inference: Inference,
        monitoring: Monitoring,
        approval_rule_name: str,
        approval_rule_arn: str,
        ml_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        artifacts_bucket_name: str,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        serving = inference.config
        watching = monitoring.config
        subnets = ",".join(subnet_ids)
        environment = {
            "ENDPOINT_NAME": inference.endpoint_name,
            "MODEL_PACKAGE_GROUP": config.model_package_group,
            "MODEL_EXECUTION_ROLE_ARN": inference.model_execution_role_arn,
            "MODEL_SUBNET_IDS": subnets,
            "MODEL_SECURITY_GROUP_IDS": inference.model_security_group.id,
            "KMS_KEY_ARN": ml_key.key_arn,
            "ARTIFACTS_BUCKET": artifacts_bucket_name,
            "SERVING_REPOSITORY": image_repository(serving.inference_image),
            "CAPTURE_S3_URI": inference.capture_s3_uri,
            "CAPTURE_SAMPLING_PERCENT": str(serving.data_capture_sampling_percent),
            "INSTANCE_TYPE": serving.endpoint_instance_type,
            "INSTANCE_COUNT": str(serving.endpoint_instance_count),
            "RETAINED_VERSIONS": str(serving.retained_versions),
            "MONITORING_SCHEDULE_NAME": monitoring.schedule_name,
            "MONITORING_SCHEDULE_EXPRESSION": watching.schedule_expression,
            "MONITOR_ROLE_ARN": monitoring.monitor_role_arn,
            "MONITOR_IMAGE": watching.monitor_image,
            "MONITOR_INSTANCE_TYPE": watching.instance_type,
            "MONITOR_VOLUME_SIZE_GB": str(watching.volume_size_gb),
            "MONITOR_MAX_RUNTIME_SECONDS": str(watching.max_runtime_seconds),
            "MONITOR_REPORTS_S3_URI": monitoring.reports_s3_uri,
            "MONITOR_SUBNET_IDS": subnets,
            "MONITOR_SECURITY_GROUP_IDS": monitoring.job_security_group.id,
        }
        self.function = HardenedFunction(
            self,
            "deployer",
            name=serving.deployer_name,
            description="Deploys a model version to the endpoint when a person approves it",
            source=DEPLOYER_SOURCE,
            account_id=config.account_id,
            region=config.region,
            environment=environment,
            permissions=deployer_statements(
                config,
                endpoint_name=inference.endpoint_name,
                schedule_name=monitoring.schedule_name,
                passed_roles=[inference.model_execution_role_arn, monitoring.monitor_role_arn],
                ml_key_arn=ml_key.key_arn,
            ),
            environment_key=ml_key,
            logs_key=logs_key,
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
            subnet_ids=subnet_ids,
            log_retention_days=config.log_retention_days,
            reserved_concurrency=DEPLOYER_CONCURRENCY,
            invoked_by={"approval": approval_rule_arn},
            timeout_seconds=DEPLOYER_TIMEOUT_SECONDS,
        )
        self.function_name: str = self.function.function_name
        aws.CloudwatchEventTarget(
            self,
            "approval-to-deployer",
            rule=approval_rule_name,
            target_id="deploy-approved",
            arn=self.function.function_arn,
            retry_policy=aws.CloudwatchEventTargetRetryPolicy(
                maximum_retry_attempts=EVENT_RETRY_ATTEMPTS,
                maximum_event_age_in_seconds=EVENT_MAX_AGE_SECONDS,
            ),
            dead_letter_config=aws.CloudwatchEventTargetDeadLetterConfig(
                arn=self.function.dead_letter_queue_arn
            ),
        )
