"""Mutants of the monitoring layer (modules/monitoring.py)."""

from __future__ import annotations

from tools.mutants.edits import (
    address,
    delete_attribute,
    delete_resource,
    edit_json,
    named,
    set_attribute,
)
from tools.mutants.model import Document, Mutant, RuntimeTwin

ROLLBACK = "monitoring/rollback"
MONITOR_POLICY = "monitoring/monitor-policy"


def monitor_reads_any_object(document: Document) -> str:
    """The monitor's read of baselines and this endpoint's captures widened to every object."""
    name, conf = named(document, "aws_iam_role_policy", MONITOR_POLICY)

    def widen(policy: Document) -> None:
        for statement in policy["Statement"]:
            if statement.get("Sid") == "ReadBaselineAndThisEndpointsCaptures":
                statement["Resource"] = "*"

    edit_json(conf, "policy", widen)
    return address("aws_iam_role_policy", name)


def monitor_job_egress_anywhere(document: Document) -> str:
    """The all-traffic egress block of the Terraform documentation added to the monitor jobs'
    security group (beside its HTTPS-only rules)."""
    name, conf = named(document, "aws_security_group", "monitoring/job-security-group")
    conf["egress"] = [
        {
            "description": "all traffic",
            "from_port": 0,
            "to_port": 0,
            "protocol": "-1",
            "cidr_blocks": ["0.0.0.0/0"],
        }
    ]
    return address("aws_security_group", name)


def rule_of_target(document: Document, target_path: str) -> str:
    """Delete an EventBridge target; returns the address of the rule it was attached to."""
    _, target = named(document, "aws_cloudwatch_event_target", target_path)
    rule = target["rule"].removeprefix("${aws_cloudwatch_event_rule.").split(".")[0]
    delete_resource(document, "aws_cloudwatch_event_target", target_path)
    return address("aws_cloudwatch_event_rule", rule)


def violations_not_rolled_back(document: Document) -> str:
    return rule_of_target(document, "monitoring/violations-to-rollback")


def failed_runs_unpublished(document: Document) -> str:
    return rule_of_target(document, "monitoring/failed-to-people")


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="monitoring-monitor-reads-any-object",
        layer="monitoring",
        guarantee="the monitor's role",
        check_id="CKV_PHI_41",
        stack="dev-ml",
        change="the monitor role reads every object (Resource *), not baselines and captures",
        apply=monitor_reads_any_object,
    ),
    Mutant(
        name="monitoring-job-egress-anywhere",
        layer="monitoring",
        guarantee="the monitor's security group",
        check_id="CKV_AWS_382",
        stack="staging-ml",
        change="the monitor jobs' security group gets an all-traffic egress rule to 0.0.0.0/0",
        apply=monitor_job_egress_anywhere,
    ),
    Mutant(
        name="monitoring-violations-not-rolled-back",
        layer="monitoring",
        guarantee="runs that complete with violations go through EventBridge to the rollback "
        "function",
        check_id="CKV_PHI_37",
        stack="dev-ml",
        change="the violations rule's target invoking the rollback function deleted",
        apply=violations_not_rolled_back,
    ),
    Mutant(
        name="monitoring-rollback-outside-vpc",
        layer="monitoring",
        guarantee="rollback function: VPC",
        check_id="CKV_AWS_117",
        stack="prod-ml",
        change="the rollback function without vpc_config",
        apply=delete_attribute("aws_lambda_function", ROLLBACK, "vpc_config"),
        runtime=RuntimeTwin("RT_PHI_LAMBDA_IN_VPC", "function outside the VPC"),
    ),
    Mutant(
        name="monitoring-rollback-without-dead-letters",
        layer="monitoring",
        guarantee="rollback function: DLQ",
        check_id="CKV_AWS_116",
        stack="eu-research-ml",
        change="the rollback function without a dead-letter queue",
        apply=delete_attribute("aws_lambda_function", ROLLBACK, "dead_letter_config"),
        runtime=RuntimeTwin(
            "RT_PHI_LAMBDA_DEAD_LETTER_QUEUE", "test_functions_without_a_dead_letter_queue_fail"
        ),
    ),
    Mutant(
        name="monitoring-rollback-concurrency-10",
        layer="monitoring",
        guarantee="rollback function: reserved concurrency 1",
        check_id="CKV_PHI_39",
        stack="dev-ml",
        change="the rollback function's reserved concurrency raised to 10",
        apply=set_attribute("aws_lambda_function", ROLLBACK, "reserved_concurrent_executions", 10),
    ),
    Mutant(
        name="monitoring-rollback-untraced",
        layer="monitoring",
        guarantee="rollback function: X-Ray",
        check_id="CKV_AWS_50",
        stack="staging-ml",
        change="the rollback function without X-Ray tracing",
        apply=delete_attribute("aws_lambda_function", ROLLBACK, "tracing_config"),
    ),
    Mutant(
        name="monitoring-rollback-environment-unencrypted",
        layer="monitoring",
        guarantee="rollback function: CMK-encrypted environment",
        check_id="CKV_AWS_173",
        stack="dev-ml",
        change="the rollback function's environment without the ML key (AWS managed key)",
        apply=delete_attribute("aws_lambda_function", ROLLBACK, "kms_key_arn"),
    ),
    Mutant(
        name="monitoring-failed-runs-unpublished",
        layer="monitoring",
        guarantee="failed or stopped runs and every violation are published to a topic for a "
        "person",
        check_id="CKV_PHI_38",
        stack="prod-ml",
        change="the failed-runs rule's target publishing to the alerts topic deleted",
        apply=failed_runs_unpublished,
    ),
    Mutant(
        name="monitoring-alerts-topic-unencrypted",
        layer="monitoring",
        guarantee="published to an encrypted topic",
        check_id="CKV_AWS_26",
        stack="eu-research-ml",
        change="the monitoring alerts topic without a KMS key",
        apply=delete_attribute("aws_sns_topic", "monitoring/alerts-topic", "kms_master_key_id"),
    ),
)
