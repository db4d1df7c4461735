"""CKV_PHI_5 "Ensure a SageMaker model package group policy does not grant public access".

Registered models are trained on patient data and can leak it (membership inference, memorised
records); their registry is shared only with the production account for promotion. HIPAA
45 CFR 164.312(a)(1) (access control), GDPR Art. 25/32 and EU AI Act Art. 15 ask that it is
never open to everyone. The `resource_policy` fails when a statement allows anyone: a `"*"`
principal (or `{"AWS": "*"}`) that no condition narrows to known accounts or organizations
(`aws:PrincipalAccount`, `aws:PrincipalOrgID`, `aws:SourceAccount`, ... with StringEquals-like
operators and no wildcard values), or an Allow with `NotPrincipal`. A policy that is not JSON
fails (it cannot be verified).
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import json_document, scalar
from policies.checks._documents import grants_public_access, statements


class ModelPackageGroupPolicyNotPublic(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a SageMaker model package group policy does not grant public access",
            id="CKV_PHI_5",
            categories=[CheckCategories.IAM],
            supported_resources=["aws_sagemaker_model_package_group_policy"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["resource_policy"]
        policy = json_document(scalar(conf, "resource_policy"))
        if policy is None:
            self.details.append("resource_policy is not a JSON policy document")
            return CheckResult.FAILED
        for index, statement in enumerate(statements(policy)):
            if grants_public_access(statement):
                self.details.append(f"statement {statement.get('Sid', index)} allows anyone")
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = ModelPackageGroupPolicyNotPublic()
