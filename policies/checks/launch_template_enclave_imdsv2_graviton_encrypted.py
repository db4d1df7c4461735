"""CKV_PHI_7 "Ensure a launch template enables Nitro Enclaves and IMDSv2 on Graviton with
encrypted EBS".

The enclave hosts pre- and post-process PHI around inference. Nitro Enclaves isolate that
processing from the host's own operators and processes (HIPAA 45 CFR 164.312(a)(1) access
control, GDPR Art. 25 data protection by design); IMDSv2 (session tokens) closes the SSRF path
to the instance's credentials; CMK-encrypted EBS covers 164.312(a)(2)(iv). The platform runs
these hosts on Graviton (Arm, where the enclave image is built), and an x86 type would not boot
it. Required: `enclave_options.enabled` true; `metadata_options.http_tokens` "required"; an
`instance_type` of a Graviton family (a `g` after the generation digit: c7g, m7gd, r8g, c6gn,
x2gd, im4gn); at least one `block_device_mappings` entry, each with `ebs.encrypted` true and a
`kms_key_id`.
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import block, blocks, is_set, is_true, scalar

# EC2 instance families on AWS Graviton: letters, a generation digit, then "g" (c7g, m7gd,
# r8g, c6gn, x2gd, im4gn, is4gen, g5g, t4g, hpc7g).
GRAVITON_INSTANCE_TYPE = re.compile(r"^[a-z]+[0-9]+g[a-z0-9]*\.[a-z0-9-]+$")


class LaunchTemplateEnclaveImdsv2GravitonEncrypted(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a launch template enables Nitro Enclaves and IMDSv2 on Graviton "
                "with encrypted EBS"
            ),
            id="CKV_PHI_7",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["aws_launch_template"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = [
            "enclave_options",
            "metadata_options",
            "instance_type",
            "block_device_mappings",
        ]
        enclave = block(conf, "enclave_options")
        if enclave is None or not is_true(scalar(enclave, "enabled")):
            self.details.append("Nitro Enclaves are not enabled")
        metadata = block(conf, "metadata_options")
        if metadata is None or scalar(metadata, "http_tokens") != "required":
            self.details.append("metadata_options.http_tokens is not 'required' (IMDSv2)")
        instance_type = scalar(conf, "instance_type")
        if not isinstance(instance_type, str) or not GRAVITON_INSTANCE_TYPE.match(instance_type):
            self.details.append(f"instance_type {instance_type!r} is not a Graviton type")
        mappings = blocks(conf, "block_device_mappings")
        if not mappings:
            self.details.append("no block_device_mappings: volume encryption is not declared")
        for mapping in mappings:
            ebs = block(mapping, "ebs")
            device = scalar(mapping, "device_name")
            if ebs is None or not is_true(scalar(ebs, "encrypted")):
                self.details.append(f"{device}: EBS volume not encrypted")
            elif not is_set(scalar(ebs, "kms_key_id")):
                self.details.append(f"{device}: EBS volume without a customer managed kms_key_id")
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = LaunchTemplateEnclaveImdsv2GravitonEncrypted()
