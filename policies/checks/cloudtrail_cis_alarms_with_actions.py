"""CKV_PHI_51 "Ensure the trail's log group has a metric filter and an alarm with an action for
each CIS alarm: root use, unauthorized calls, security group, NACL, trail and KMS key changes".

HIPAA 45 CFR 164.308(a)(1)(ii)(D) (information system activity review), 164.308(a)(5)(ii)(C)
(log-in monitoring) and 164.308(a)(6)(ii) (identify and respond to security incidents); GDPR
Art. 33 (notice of a breach within 72 hours needs someone to learn of it). The CIS AWS
Foundations Benchmark v3.0.0 section 4 (Security Hub CloudWatch.1-14) names the events a person
must hear about; this platform alarms on six of them: 4.1 unauthorized API calls, 4.3 root use,
4.5 CloudTrail configuration changes, 4.7 customer-managed keys disabled or scheduled for
deletion, 4.10 security group changes and 4.11 network ACL changes.

Judged, with the stack in view: each `aws_cloudtrail` that delivers to an
`aws_cloudwatch_log_group` of its stack (`cloud_watch_logs_group_arn` refers to it) passes when,
for each of the six items, an `aws_cloudwatch_log_metric_filter` on that group (its
`log_group_name` refers to the group or gives its name) has a `pattern` naming every term the
item needs (below; a filter naming more events still matches these), and an
`aws_cloudwatch_metric_alarm` on the filter's metric (same `metric_name` and `namespace`) has
`actions_enabled` not false and at least one `alarm_actions` entry. A trail delivering to no log
group of its stack fails: nothing can alarm on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, scalar, scalars
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

TRAIL = "aws_cloudtrail"
LOG_GROUP = "aws_cloudwatch_log_group"
METRIC_FILTER = "aws_cloudwatch_log_metric_filter"
ALARM = "aws_cloudwatch_metric_alarm"

# CIS AWS Foundations Benchmark v3.0.0 section 4: the terms each item's filter pattern names.
CIS_ITEMS: dict[str, tuple[str, ...]] = {
    "4.1 unauthorized API calls": ("errorCode", "UnauthorizedOperation", "AccessDenied"),
    "4.3 root use": ("userIdentity.type", "Root"),
    "4.5 CloudTrail changes": (
        "CreateTrail",
        "UpdateTrail",
        "DeleteTrail",
        "StartLogging",
        "StopLogging",
    ),
    "4.7 KMS keys disabled or scheduled for deletion": (
        "kms.amazonaws.com",
        "DisableKey",
        "ScheduleKeyDeletion",
    ),
    "4.10 security group changes": (
        "AuthorizeSecurityGroupIngress",
        "AuthorizeSecurityGroupEgress",
        "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "CreateSecurityGroup",
        "DeleteSecurityGroup",
    ),
    "4.11 network ACL changes": (
        "CreateNetworkAcl",
        "CreateNetworkAclEntry",
        "DeleteNetworkAcl",
        "DeleteNetworkAclEntry",
        "ReplaceNetworkAclEntry",
        "ReplaceNetworkAclAssociation",
    ),
}


def names_term(pattern: str, term: str) -> bool:
    """The pattern names `term` as a whole word (`CreateNetworkAcl` is not `...AclEntry`)."""
    return (
        re.search(r"(?<![A-Za-z0-9_])" + re.escape(term) + r"(?![A-Za-z0-9_])", pattern) is not None
    )


def on_group(metric_filter: dict[str, Any], name: str, group: dict[str, Any]) -> bool:
    log_group = scalar(metric_filter, "log_group_name")
    return refers_to(log_group, LOG_GROUP, name) or (
        scalar(group, "name") is not None and log_group == scalar(group, "name")
    )


def alarmed(metric: tuple[Any, Any], alarms: Iterable[dict[str, Any]]) -> bool:
    for alarm in alarms:
        if (scalar(alarm, "metric_name"), scalar(alarm, "namespace")) != metric:
            continue
        enabled = scalar(alarm, "actions_enabled")
        if enabled is False or str(enabled).lower() == "false":
            continue
        if scalars(alarm, "alarm_actions"):
            return True
    return False


def missing_items(stack: Stack, group_name: str) -> list[str]:
    group = stack.resources(LOG_GROUP)[group_name]
    filters = [f for f in stack.resources(METRIC_FILTER).values() if on_group(f, group_name, group)]
    alarms = list(stack.resources(ALARM).values())
    missing = []
    for item, terms in CIS_ITEMS.items():
        covered = False
        for metric_filter in filters:
            pattern = str(scalar(metric_filter, "pattern") or "")
            if not all(names_term(pattern, term) for term in terms):
                continue
            for transformation in blocks(metric_filter, "metric_transformation"):
                metric = (scalar(transformation, "name"), scalar(transformation, "namespace"))
                covered = covered or alarmed(metric, alarms)
        if not covered:
            missing.append(item)
    return missing


class CloudtrailCisAlarmsWithActions(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure the trail's log group has a metric filter and an alarm with an action "
                "for each CIS alarm: root use, unauthorized calls, security group, NACL, trail "
                "and KMS key changes"
            ),
            id="CKV_PHI_51",
            category=CheckCategories.LOGGING,
            judged_types=[TRAIL],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        groups = stack.resources(LOG_GROUP)
        for name, trail in sorted(stack.resources(TRAIL).items()):
            delivery = scalar(trail, "cloud_watch_logs_group_arn")
            group = next((g for g in sorted(groups) if refers_to(delivery, LOG_GROUP, g)), None)
            if group is None:
                yield Verdict(address(TRAIL, name), False, "delivers to no log group of its stack")
                continue
            missing = missing_items(stack, group)
            yield Verdict(
                address(TRAIL, name), not missing, "no alarm with an action: " + ", ".join(missing)
            )


check = register(CloudtrailCisAlarmsWithActions())
