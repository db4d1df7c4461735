"""CKV_PHI_31 "Ensure a pipeline registers models into a model package group of its stack whose
approvals reach an encrypted SNS topic".

Every model trained on patient data is registered in its own model package group, where a
person approves or rejects each version, and every decision is published to the people
responsible: FDA's predetermined change control plan expectations (each change traceable and
reviewed), EU AI Act Art. 12 and 14 (record-keeping, human oversight), HIPAA 45 CFR
164.308(a)(1)(ii)(D) (information system activity review). The notification carries model
names and accounts, so its topic is KMS-encrypted (HIPAA 164.312(a)(2)(iv)).

Judged, with the stack in view: every `aws_sagemaker_pipeline` with a RegisterModel step
(Condition branches included; a definition that cannot be read fails). For each step's
`ModelPackageGroupName` (a literal; a pipeline parameter fails: the group could be any), the
stack must declare an `aws_sagemaker_model_package_group` of that name, and an enabled
`aws_cloudwatch_event_rule` of the stack must match that group's approvals (`source`
`aws.sagemaker`, `detail-type` `SageMaker Model Package State Change`, `detail.
ModelPackageGroupName` absent or naming the group, `detail.ModelApprovalStatus` absent or
including `Approved`) with an `aws_cloudwatch_event_target` whose `arn` is an `aws_sns_topic`
of the stack that sets `kms_master_key_id`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import is_set, json_document
from policies.checks._documents import as_list, get_path, pipeline_steps
from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    refers_to,
    register,
)

# Written out here, not imported from the module that builds the rule: a check never imports
# the code it judges.
APPROVAL_SOURCE = "aws.sagemaker"
APPROVAL_DETAIL_TYPE = "SageMaker Model Package State Change"
APPROVED = "Approved"
REGISTER_MODEL = "RegisterModel"


def _groups_registered(definition: dict[str, Any] | None) -> list[Any] | None:
    if definition is None:
        return None
    return [
        get_path(step, "Arguments", "ModelPackageGroupName")
        for step in pipeline_steps(definition)
        if step.get("Type") == REGISTER_MODEL
    ]


def _rule_matches_approvals(rule: dict[str, Any], group: str) -> bool:
    if str(rule.get("state", "ENABLED")).upper() != "ENABLED" or rule.get("is_enabled") is False:
        return False
    pattern = json_document(rule.get("event_pattern"))
    if pattern is None:
        return False
    groups = get_path(pattern, "detail", "ModelPackageGroupName")
    statuses = get_path(pattern, "detail", "ModelApprovalStatus")
    return (
        APPROVAL_SOURCE in as_list(pattern.get("source"))
        and APPROVAL_DETAIL_TYPE in as_list(pattern.get("detail-type"))
        and (groups is None or group in as_list(groups))
        and (statuses is None or APPROVED in as_list(statuses))
    )


def _encrypted_topics(stack: Stack) -> set[str]:
    return {
        name
        for name, conf in stack.resources("aws_sns_topic").items()
        if is_set(conf.get("kms_master_key_id"))
    }


def _group_problem(stack: Stack, group: Any) -> str | None:
    if not isinstance(group, str) or not group:
        return f"it registers into {group!r}, not a named group"
    declared = {
        conf.get("model_package_group_name")
        for conf in stack.resources("aws_sagemaker_model_package_group").values()
    }
    if group not in declared:
        return f"no model package group {group!r} in its stack"
    rules = [
        name
        for name, rule in stack.resources("aws_cloudwatch_event_rule").items()
        if _rule_matches_approvals(rule, group)
    ]
    topics = _encrypted_topics(stack)
    for target in stack.resources("aws_cloudwatch_event_target").values():
        if any(refers_to(target.get("rule"), "aws_cloudwatch_event_rule", r) for r in rules) and (
            referenced_names(target.get("arn"), "aws_sns_topic") & topics
        ):
            return None
    if not rules:
        return f"no enabled rule matches {group!r} approvals"
    return f"no rule on {group!r} approvals targets an encrypted SNS topic of its stack"


class RegisteredModelsGroupApprovalsNotifyEncryptedTopic(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a pipeline registers models into a model package group of its stack "
                "whose approvals reach an encrypted SNS topic"
            ),
            id="CKV_PHI_31",
            category=CheckCategories.AI_AND_ML,
            judged_types=["aws_sagemaker_pipeline"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for name, pipeline in stack.resources("aws_sagemaker_pipeline").items():
            groups = _groups_registered(json_document(pipeline.get("pipeline_definition")))
            if groups == []:
                continue
            if groups is None:
                problems = ["no JSON pipeline_definition: registrations cannot be verified"]
            else:
                problems = [p for p in (_group_problem(stack, g) for g in groups) if p]
            yield Verdict(
                address("aws_sagemaker_pipeline", name), not problems, "; ".join(problems)
            )


check = register(RegisteredModelsGroupApprovalsNotifyEncryptedTopic())
