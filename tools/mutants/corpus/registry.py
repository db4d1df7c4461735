"""Mutants of the registry layer (modules/registry.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.mutants.edits import MutantError, address, delete_resource, edit_json, named
from tools.mutants.model import Apply, Document, Mutant, RuntimeTwin


def package_group_public(document: Document) -> str:
    name, conf = named(document, "aws_sagemaker_model_package_group_policy", "registry/group-")
    edit_json(conf, "resource_policy", lambda p: p["Statement"][0].update(Principal={"AWS": "*"}))
    return address("aws_sagemaker_model_package_group_policy", name)


def package_group_policy_changed(sid: str, change: Callable[[Document], None]) -> Apply:
    def apply(document: Document) -> str:
        name, conf = named(document, "aws_sagemaker_model_package_group_policy", "registry/group-")

        def edit(policy: Any) -> None:
            found = [s for s in policy["Statement"] if s.get("Sid") == sid]
            if len(found) != 1:
                raise MutantError(f"no statement {sid!r} in the package group policy")
            change(found[0])

        edit_json(conf, "resource_policy", edit)
        return address("aws_sagemaker_model_package_group_policy", name)

    return apply


def may_update_packages(statement: Document) -> None:
    statement["Action"] = [*statement["Action"], "sagemaker:UpdateModelPackage"]


def second_account(statement: Document) -> None:
    statement["Principal"] = {
        "AWS": [statement["Principal"]["AWS"], "arn:aws:iam::111111111111:root"]
    }


def pipeline_of(document: Document) -> str:
    name, _ = named(document, "aws_sagemaker_pipeline", "pipelines/pipeline")
    return address("aws_sagemaker_pipeline", name)


def without_package_group(document: Document) -> str:
    delete_resource(document, "aws_sagemaker_model_package_group", "registry/group-")
    return pipeline_of(document)


def approvals_not_notified(document: Document) -> str:
    delete_resource(document, "aws_cloudwatch_event_target", "registry/approval-notification")
    return pipeline_of(document)


def approval_topic_unencrypted(document: Document) -> str:
    name, conf = named(document, "aws_sns_topic", "registry/approval-topic")
    del conf["kms_master_key_id"]
    return address("aws_sns_topic", name)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="package-group-public",
        layer="registry",
        guarantee="read-only cross-account access for the production account only",
        check_id="CKV_PHI_5",
        stack="dev-ml",
        change="the model package group readable by any principal",
        apply=package_group_public,
        runtime=RuntimeTwin(
            "RT_PHI_MODEL_PACKAGE_GROUP_NOT_PUBLIC",
            "test_a_public_or_foreign_model_package_group_policy_fails",
        ),
    ),
    Mutant(
        name="registry-production-may-update-packages",
        layer="registry",
        guarantee="read-only cross-account access",
        check_id="CKV_PHI_30",
        stack="dev-ml",
        change="the production account also granted sagemaker:UpdateModelPackage",
        apply=package_group_policy_changed("ProductionAccountReadsPackages", may_update_packages),
    ),
    Mutant(
        name="registry-shared-with-second-account",
        layer="registry",
        guarantee="for the production account only",
        check_id="CKV_PHI_30",
        stack="staging-ml",
        change="the model packages also readable by the dev account",
        apply=package_group_policy_changed("ProductionAccountReadsPackages", second_account),
    ),
    Mutant(
        name="registry-without-package-group",
        layer="registry",
        guarantee="a Model Package Group per model",
        check_id="CKV_PHI_31",
        stack="eu-research-ml",
        change="the model package group the pipeline registers into removed",
        apply=without_package_group,
    ),
    Mutant(
        name="registry-approvals-not-notified",
        layer="registry",
        guarantee="approval events to an encrypted SNS topic",
        check_id="CKV_PHI_31",
        stack="dev-ml",
        change="the approval rule's SNS target removed",
        apply=approvals_not_notified,
    ),
    Mutant(
        name="registry-approval-topic-unencrypted",
        layer="registry",
        guarantee="approval events to an encrypted SNS topic",
        check_id="CKV_AWS_26",
        stack="prod-ml",
        change="the approval topic without a KMS key",
        apply=approval_topic_unencrypted,
    ),
)
