"""CKV_PHI_49 "Ensure every AWS Config recorder delivers to an S3 bucket with a KMS key and every
aggregator collects the whole organization in all regions".

AWS Config is the inventory and configuration history behind HIPAA 45 CFR 164.308(a)(1)(ii)(A)
(risk analysis) and (D) (information system activity review), 164.312(b) (audit controls) and
GDPR Art. 30 and 32(1)(d) (records, regular testing of the measures). A recorder without a
delivery channel records into nothing an auditor can read; history delivered without a KMS key
is protected by S3-managed keys only; an aggregator of named accounts or regions silently misses
an account or region added later. Judged, with the stack in view:
- each `aws_config_configuration_recorder` passes when its stack has an
  `aws_config_delivery_channel` and every delivery channel of the stack names an
  `s3_bucket_name` and an `s3_kms_key_arn` (AWS Config has one recorder and one delivery channel
  per account and region, so the channel of a recorder is the one beside it);
- each `aws_config_configuration_aggregator` passes when it has an
  `organization_aggregation_source` with `all_regions` true, a `role_arn`, and no
  `account_aggregation_source`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import block, blocks, is_set, is_true, scalar
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

RECORDER = "aws_config_configuration_recorder"
DELIVERY_CHANNEL = "aws_config_delivery_channel"
AGGREGATOR = "aws_config_configuration_aggregator"


def delivery_problem(channels: dict[str, dict[str, Any]]) -> str | None:
    if not channels:
        return "no delivery channel in its stack"
    for name, channel in sorted(channels.items()):
        if not is_set(scalar(channel, "s3_bucket_name")):
            return f"{address(DELIVERY_CHANNEL, name)} names no S3 bucket"
        if not is_set(scalar(channel, "s3_kms_key_arn")):
            return f"{address(DELIVERY_CHANNEL, name)} delivers without a KMS key"
    return None


def aggregator_problem(aggregator: dict[str, Any]) -> str | None:
    if blocks(aggregator, "account_aggregation_source"):
        return "aggregates named accounts, not the organization"
    source = block(aggregator, "organization_aggregation_source")
    if source is None:
        return "no organization aggregation source"
    if not is_true(scalar(source, "all_regions")):
        return "aggregates named regions, not all regions"
    if not is_set(scalar(source, "role_arn")):
        return "no role to read the organization"
    return None


class ConfigDeliversEncryptedAndAggregatesOrganization(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every AWS Config recorder delivers to an S3 bucket with a KMS key and "
                "every aggregator collects the whole organization in all regions"
            ),
            id="CKV_PHI_49",
            category=CheckCategories.LOGGING,
            judged_types=[RECORDER, AGGREGATOR],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        channels = stack.resources(DELIVERY_CHANNEL)
        for name in sorted(stack.resources(RECORDER)):
            problem = delivery_problem(channels)
            yield Verdict(address(RECORDER, name), problem is None, problem or "")
        for name, aggregator in sorted(stack.resources(AGGREGATOR).items()):
            problem = aggregator_problem(aggregator)
            yield Verdict(address(AGGREGATOR, name), problem is None, problem or "")


check = register(ConfigDeliversEncryptedAndAggregatesOrganization())
