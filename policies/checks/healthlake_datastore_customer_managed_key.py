"""CKV_PHI_1 "Ensure a HealthLake FHIR datastore is encrypted with a customer managed KMS key".

A HealthLake datastore holds patients' FHIR records. HIPAA 45 CFR 164.312(a)(2)(iv) and GDPR
Art. 32 call for encryption at rest; a customer managed key (not HealthLake's AWS owned default)
keeps the key policy, its audit trail and the power to revoke access with the covered entity.

The AWS provider has no HealthLake resource: the platform declares the datastore in the
template of an `aws_cloudformation_stack`. Every `AWS::HealthLake::FHIRDatastore` in
`template_body` must have `SseConfiguration.KmsEncryptionConfig` with `CmkType`
`CUSTOMER_MANAGED_KMS_KEY` and a `KmsKeyId`. A template that names the type but is not JSON
fails (it cannot be verified); stacks without a HealthLake datastore are not judged.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import is_set, json_document, scalar
from policies.checks._documents import cloudformation_resources, get_path

HEALTHLAKE_DATASTORE = "AWS::HealthLake::FHIRDatastore"
CUSTOMER_MANAGED = "CUSTOMER_MANAGED_KMS_KEY"


class HealthLakeDatastoreCustomerManagedKey(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a HealthLake FHIR datastore is encrypted with a customer managed KMS key",
            id="CKV_PHI_1",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["aws_cloudformation_stack"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["template_body"]
        body = scalar(conf, "template_body")
        if not isinstance(body, str) or HEALTHLAKE_DATASTORE not in body:
            return CheckResult.UNKNOWN
        template = json_document(body)
        if template is None:
            self.details.append("template_body is not JSON: its datastore cannot be verified")
            return CheckResult.FAILED
        datastores = list(cloudformation_resources(template, HEALTHLAKE_DATASTORE))
        if not datastores:
            return CheckResult.UNKNOWN
        for logical_id, properties in datastores:
            encryption = get_path(properties, "SseConfiguration", "KmsEncryptionConfig")
            cmk_type = get_path(encryption, "CmkType")
            key = get_path(encryption, "KmsKeyId")
            if cmk_type != CUSTOMER_MANAGED:
                self.details.append(f"{logical_id}: CmkType {cmk_type!r} is not {CUSTOMER_MANAGED}")
            elif not (is_set(key) or isinstance(key, dict)):
                self.details.append(f"{logical_id}: no KmsKeyId")
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = HealthLakeDatastoreCustomerManagedKey()
