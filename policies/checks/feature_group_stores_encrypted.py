"""CKV_PHI_2 "Ensure a SageMaker feature group encrypts its online and offline stores with KMS".

Feature groups hold features derived from patient records (PHI). HIPAA 45 CFR
164.312(a)(2)(iv) and GDPR Art. 32 call for encryption at rest with keys the covered entity
controls. Each store a feature group enables must name a KMS key: the online store
(`online_store_config.security_config.kms_key_id`, when `enable_online_store` is true) and the
offline store (`offline_store_config.s3_storage_config.kms_key_id`). A feature group with
neither store fails (AWS would reject it; nothing proves where its data goes).
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import block, is_set, is_true, scalar


class FeatureGroupStoresEncrypted(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a SageMaker feature group encrypts its online and offline stores with KMS",
            id="CKV_PHI_2",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["aws_sagemaker_feature_group"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = [
            "online_store_config/[0]/security_config/[0]/kms_key_id",
            "offline_store_config/[0]/s3_storage_config/[0]/kms_key_id",
        ]
        online = block(conf, "online_store_config")
        offline = block(conf, "offline_store_config")
        online_enabled = online is not None and is_true(scalar(online, "enable_online_store"))
        if not online_enabled and offline is None:
            self.details.append("neither an online nor an offline store is configured")
        if online_enabled and online is not None:
            security = block(online, "security_config")
            if security is None or not is_set(scalar(security, "kms_key_id")):
                self.details.append("online store without security_config.kms_key_id")
        if offline is not None:
            storage = block(offline, "s3_storage_config")
            if storage is None or not is_set(scalar(storage, "kms_key_id")):
                self.details.append("offline store without s3_storage_config.kms_key_id")
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = FeatureGroupStoresEncrypted()
