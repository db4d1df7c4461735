"""SageMaker Model Registry: one model package group per model, read-only access for the
production account, and an encrypted notification whenever a person approves or rejects."""

from __future__ import annotations

import json
import re
from typing import Any

from constructs import Construct
from pydantic import Field, field_validator

from modules import aws
from modules.config import LayerConfig
from modules.iam_statements import deny_insecure_transport
from modules.keys import CustomerManagedKey
from modules.policy import Statement, policy_document, statement

# The decisions a person makes in the registry; PendingManualApproval is where the pipeline
# leaves every model, so it is not a decision and notifies nobody.
DECISIONS = ("Approved", "Rejected")
APPROVAL_EVENT_SOURCE = "aws.sagemaker"
APPROVAL_EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"

# Read-only: the production account can see what exists and what was approved, never change
# a package, its approval, or the group.
PRODUCTION_READ_GROUP_ACTIONS = ["sagemaker:DescribeModelPackageGroup"]
PRODUCTION_READ_PACKAGE_ACTIONS = ["sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages"]

NOTIFICATION_MAX_EVENT_AGE_SECONDS = 86_400
NOTIFICATION_MAX_RETRY_ATTEMPTS = 20

# Lower case only: IAM compares ARNs case-sensitively and SageMaker lower-cases some names
# inside ARNs, so `model-package/<group>/*` must be spelled exactly as AWS spells it.
_GROUP_NAME = r"^[a-z0-9](-?[a-z0-9]){0,62}$"


class RegistryConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    model_package_groups: tuple[str, ...] = Field(min_length=1)
    # The account whose deployment reads approved models; equal to account_id in prod itself.
    production_account_id: str = Field(pattern=r"^\d{12}$")

    @field_validator("model_package_groups")
    @classmethod
    def _group_names(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        bad = [g for g in groups if not re.match(_GROUP_NAME, g)]
        if bad:
            raise ValueError(
                f"{', '.join(bad)}: a model package group name is 1-63 lower-case letters, "
                "digits and single hyphens, starting and ending with a letter or digit"
            )
        duplicates = sorted({g for g in groups if groups.count(g) > 1})
        if duplicates:
            raise ValueError(f"listed twice: {', '.join(duplicates)}")
        return groups

    @property
    def cross_account(self) -> bool:
        return self.production_account_id != self.account_id


def group_arn(config: RegistryConfig, group: str) -> str:
    return f"arn:aws:sagemaker:{config.region}:{config.account_id}:model-package-group/{group}"


def package_arns(config: RegistryConfig, group: str) -> str:
    return f"arn:aws:sagemaker:{config.region}:{config.account_id}:model-package/{group}/*"


def production_read_policy(config: RegistryConfig, group: str) -> str:
    """Resource policy of one group: the production account (its root, i.e. whoever that
    account's own IAM policies allow) may describe and list the group's packages, nothing more.

    What is enforceable here and what is not: DescribeModelPackage and ListModelPackages have
    no condition key for the approval status (`sagemaker:ModelApprovalStatus` exists only on
    Create/UpdateModelPackage), so this policy cannot hide pending or rejected versions. What
    keeps an unapproved model out of production instead: the pipeline registers only as
    PendingManualApproval and its role is denied UpdateModelPackage; only a person changes the
    status; the production deployment starts from the approval event (`Registry.approval_rule`)
    and must deploy only packages whose ModelApprovalStatus is Approved. Reading the model
    artifacts also needs the artifacts bucket policy and the ML key policy to admit the
    production account: without them a described package cannot be deployed at all.
    """
    principal = {"AWS": f"arn:aws:iam::{config.production_account_id}:root"}
    return policy_document(
        statement(
            "ProductionAccountDescribesGroup",
            effect="Allow",
            principal=principal,
            actions=PRODUCTION_READ_GROUP_ACTIONS,
            resources=group_arn(config, group),
        ),
        statement(
            "ProductionAccountReadsPackages",
            effect="Allow",
            principal=principal,
            actions=PRODUCTION_READ_PACKAGE_ACTIONS,
            resources=package_arns(config, group),
        ),
    )


def approval_event_pattern(groups: tuple[str, ...]) -> dict[str, Any]:
    return {
        "source": [APPROVAL_EVENT_SOURCE],
        "detail-type": [APPROVAL_EVENT_DETAIL_TYPE],
        "detail": {
            "ModelPackageGroupName": list(groups),
            "ModelApprovalStatus": list(DECISIONS),
        },
    }


def topic_policy_statements(topic_arn: str, rule_arn: str) -> list[Statement]:
    """Only the approval rule, through EventBridge, may publish; and only over TLS."""
    return [
        statement(
            "ApprovalRulePublishes",
            effect="Allow",
            principal={"Service": "events.amazonaws.com"},
            actions="sns:Publish",
            resources=topic_arn,
            condition={"ArnEquals": {"aws:SourceArn": rule_arn}},
        ),
        deny_insecure_transport(actions="sns:Publish", resources=topic_arn),
    ]


# A message a person can read in an e-mail or chat; the transformer fills the <placeholders>.
APPROVAL_MESSAGE_PATHS = {
    "group": "$.detail.ModelPackageGroupName",
    "version": "$.detail.ModelPackageVersion",
    "status": "$.detail.ModelApprovalStatus",
    "package": "$.detail.ModelPackageArn",
    "time": "$.time",
    "account": "$.account",
}
APPROVAL_MESSAGE_TEMPLATE = (
    '"Model <group> version <version> was <status> at <time> in account <account>: <package>"'
)


class Registry(Construct):
    """Model package groups (one per model) where pipelines register candidates for a person
    to approve, readable but not changeable by the production account, with every approval or
    rejection published to a topic encrypted by the notification key.

    The approval rule (`approval_rule_name`, `approval_rule_arn`) is the hook for promotion:
    a later deployment layer attaches its target (e.g. a deployment pipeline in the production
    account) to this rule, so a deployment can only start from a person's decision. That
    target must itself check the status is Approved: the rule also matches rejections.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: RegistryConfig,
        notification_key: CustomerManagedKey,
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        self.groups: dict[str, Any] = {}
        for group in config.model_package_groups:
            resource = aws.SagemakerModelPackageGroup(
                self,
                f"group-{group}",
                model_package_group_name=group,
                model_package_group_description=(
                    f"{config.environment}: {group}; versions await a person's approval"
                ),
            )
            self.groups[group] = resource
            # In the production account itself its own IAM policies already govern access; a
            # policy naming the account's own root would add nothing but a second place to
            # audit, so the resource policy exists only for cross-account reads.
            if config.cross_account:
                aws.SagemakerModelPackageGroupPolicy(
                    self,
                    f"group-{group}-production-read",
                    model_package_group_name=resource.model_package_group_name,
                    resource_policy=production_read_policy(config, group),
                )
        # Plain names (not resource references): pipelines in other stacks name their group
        # in configuration, and a run needs the group to exist only when it registers.
        self.model_package_group_names: tuple[str, ...] = config.model_package_groups

        name = f"phi-ml-{config.environment}-model-approvals"
        self.topic = aws.SnsTopic(
            self,
            "approval-topic",
            name=name,
            display_name=f"PHI ML {config.environment} model approvals",
            kms_master_key_id=notification_key.key_arn,
        )
        self.notification_topic_arn: str = self.topic.arn

        self.approval_rule = aws.CloudwatchEventRule(
            self,
            "approval-rule",
            name=name,
            description="A person approved or rejected a model package in this registry",
            event_pattern=json.dumps(
                approval_event_pattern(config.model_package_groups), sort_keys=True
            ),
            state="ENABLED",
        )
        self.approval_rule_name: str = self.approval_rule.name
        self.approval_rule_arn: str = self.approval_rule.arn

        aws.SnsTopicPolicy(
            self,
            "approval-topic-policy",
            arn=self.topic.arn,
            policy=policy_document(
                *topic_policy_statements(self.topic.arn, self.approval_rule.arn)
            ),
        )
        aws.CloudwatchEventTarget(
            self,
            "approval-notification",
            rule=self.approval_rule.name,
            target_id="notify-approvers",
            arn=self.topic.arn,
            input_transformer=aws.CloudwatchEventTargetInputTransformer(
                input_paths=APPROVAL_MESSAGE_PATHS,
                input_template=APPROVAL_MESSAGE_TEMPLATE,
            ),
            retry_policy=aws.CloudwatchEventTargetRetryPolicy(
                maximum_event_age_in_seconds=NOTIFICATION_MAX_EVENT_AGE_SECONDS,
                maximum_retry_attempts=NOTIFICATION_MAX_RETRY_ATTEMPTS,
            ),
        )
