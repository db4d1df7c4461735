"""CKV_PHI_13 "Ensure production data stores and their keys have lifecycle.prevent_destroy".

Losing a production data store loses patient records, models' lineage or the keys that decrypt
them (a scheduled KMS key deletion makes every object it encrypts unreadable). HIPAA 45 CFR
164.308(a)(7) (contingency plan, data backup) and 164.312(c)(1) (integrity), GDPR Art. 32(1)(c)
(availability and resilience). `prevent_destroy` makes Terraform refuse a plan that would
destroy or replace the resource.

Judged, with the stack in view, in production stacks only: every `aws_kms_key`,
`aws_s3_bucket`, `aws_sagemaker_feature_group`, and `aws_cloudformation_stack` holding an
`AWS::HealthLake::FHIRDatastore`; each needs `lifecycle.prevent_destroy` true. A stack is
production when its provider's `default_tags` have `production` "true" or `environment` "prod"
(policies/checks/_tags.py `is_production`: the environment file's `production: true` is not yet
among the tags the platform emits).
"""

from __future__ import annotations

from collections.abc import Iterable

from checkov.common.models.enums import CheckCategories

from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    lifecycle_prevents_destroy,
    register,
)
from policies.checks._tags import is_production

HEALTHLAKE_DATASTORE = "AWS::HealthLake::FHIRDatastore"
DATA_STORE_TYPES = ("aws_kms_key", "aws_s3_bucket", "aws_sagemaker_feature_group")
CLOUDFORMATION_STACK = "aws_cloudformation_stack"


class ProductionDataStoresPreventDestroy(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure production data stores and their keys have lifecycle.prevent_destroy",
            id="CKV_PHI_13",
            category=CheckCategories.BACKUP_AND_RECOVERY,
            judged_types=[*DATA_STORE_TYPES, CLOUDFORMATION_STACK],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        if not is_production(stack.default_tags()):
            return
        judged = [(t, n, c) for t in DATA_STORE_TYPES for n, c in stack.resources(t).items()]
        judged += [
            (CLOUDFORMATION_STACK, name, conf)
            for name, conf in stack.resources(CLOUDFORMATION_STACK).items()
            if HEALTHLAKE_DATASTORE in str(conf.get("template_body", ""))
        ]
        for resource_type, name, conf in judged:
            protected = lifecycle_prevents_destroy(conf)
            reason = "" if protected else "no lifecycle.prevent_destroy"
            yield Verdict(address(resource_type, name), protected, reason)


check = register(ProductionDataStoresPreventDestroy())
