"""Data residency facts: where EU patient data may be, and which actions a region allow-list
may leave out. The environment model, the SCP documents and the checks that judge them all
read these; none of them owns them."""

from __future__ import annotations

from typing import Final

# AWS regions inside EU member states: GDPR Chapter V and EHDS residency keep EU patient data
# here. Not eu-west-2 (London) nor eu-central-2 (Zurich): the UK and Switzerland have GDPR
# adequacy decisions, which permit transfers, but they are not EU territory.
EU_RESIDENCY_REGIONS: Final = frozenset(
    {"eu-central-1", "eu-west-1", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1"}
)

# AWS's "Deny access to AWS based on the requested AWS Region" example (Organizations user
# guide; aws-samples/service-control-policy-examples, Region-controls). Two departures from it,
# both deliberate: `kms:*` and `config:*` are not exempted, because they are Regional services
# and a key or a recorder outside the allowed Regions is exactly what residency forbids (the
# Control Tower execution role, which deploys Config everywhere it governs, is exempted by ARN
# instead); `acm:*` is not exempted either (no CloudFront in a PHI platform).
GLOBAL_SERVICE_ACTIONS: Final = (
    "account:*",
    "aws-portal:*",
    "billing:*",
    "budgets:*",
    "ce:*",
    "cloudfront:*",
    "cur:*",
    "ec2:DescribeRegions",
    "globalaccelerator:*",
    "health:*",
    "iam:*",
    "networkmanager:*",
    "organizations:*",
    "pricing:*",
    "route53:*",
    "route53domains:*",
    "s3:GetAccountPublicAccessBlock",
    "s3:ListAllMyBuckets",
    "s3:PutAccountPublicAccessBlock",
    "shield:*",
    "sts:*",
    "support:*",
    "trustedadvisor:*",
    "waf:*",
    "wafv2:*",
)
