"""CKV_PHI_6 "Ensure a SageMaker endpoint configuration captures requests and responses,
encrypted with KMS".

Inference requests carry PHI. Capturing them and the model's answers is the audit trail of what
the model decided (HIPAA 45 CFR 164.312(b) audit controls, EU AI Act Art. 12 record-keeping,
FDA change control performance monitoring) and the input of drift monitoring; the capture and
the endpoint's storage volumes must be encrypted (164.312(a)(2)(iv), GDPR Art. 32). Required:
`kms_key_arn`, and a `data_capture_config` that is enabled (`enable_capture` not false), samples
more than 0 %, captures both `Input` and `Output`, has a `destination_s3_uri` and a
`kms_key_id`.

The platform's endpoint configurations are created by its deployer function (runtime/deployer,
one per approved model version, outside Terraform), so the check also judges what Terraform
does hold: a function whose environment names both ENDPOINT_NAME and MODEL_PACKAGE_GROUP is a
deployer, and must be given the KMS key for the endpoint's storage and captures
(KMS_KEY_ARN), a capture destination (CAPTURE_S3_URI, s3://) and a sampling rate above 0 %
(CAPTURE_SAMPLING_PERCENT); the deployer's code always captures both directions. Other
functions are not judged.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import block, blocks, is_set, scalar

CAPTURE_MODES = frozenset({"Input", "Output"})


class EndpointDataCaptureEncrypted(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a SageMaker endpoint configuration captures requests and responses, "
                "encrypted with KMS"
            ),
            id="CKV_PHI_6",
            categories=[CheckCategories.LOGGING],
            supported_resources=["aws_sagemaker_endpoint_configuration", "aws_lambda_function"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        if self.entity_type == "aws_lambda_function":
            return self._deployer(conf)
        self.evaluated_keys = ["kms_key_arn", "data_capture_config"]
        if not is_set(scalar(conf, "kms_key_arn")):
            self.details.append("no kms_key_arn for the endpoint's storage volumes")
        capture = block(conf, "data_capture_config")
        if capture is None:
            self.details.append("no data_capture_config")
            return CheckResult.FAILED
        # The API captures when EnableCapture is omitted; only an explicit false turns it off.
        if scalar(capture, "enable_capture") in (False, "false"):
            self.details.append("enable_capture is false")
        sampling = scalar(capture, "initial_sampling_percentage")
        if not isinstance(sampling, int | float) or sampling <= 0:
            self.details.append(f"initial_sampling_percentage is {sampling!r}")
        modes = {scalar(option, "capture_mode") for option in blocks(capture, "capture_options")}
        if missing := sorted(CAPTURE_MODES - modes):
            self.details.append(f"capture_options miss {', '.join(missing)}")
        if not is_set(scalar(capture, "destination_s3_uri")):
            self.details.append("no destination_s3_uri")
        if not is_set(scalar(capture, "kms_key_id")):
            self.details.append("captured data without kms_key_id")
        return CheckResult.FAILED if self.details else CheckResult.PASSED

    def _deployer(self, conf: dict[str, list[Any]]) -> CheckResult:
        variables = block(block(conf, "environment") or {}, "variables") or {}
        if not isinstance(variables, dict) or not set(variables) >= DEPLOYER_VARIABLES:
            return CheckResult.UNKNOWN  # not a deployer
        self.evaluated_keys = ["environment/[0]/variables"]
        setting = {name: scalar(variables, name) for name in variables}
        if not is_set(setting.get("KMS_KEY_ARN")):
            self.details.append("deployer without KMS_KEY_ARN for storage and captures")
        if not str(setting.get("CAPTURE_S3_URI") or "").startswith("s3://"):
            self.details.append("deployer without an s3:// CAPTURE_S3_URI")
        try:
            sampling = float(str(setting.get("CAPTURE_SAMPLING_PERCENT")))
        except ValueError:
            sampling = 0.0
        if sampling <= 0:
            self.details.append(
                f"deployer samples {setting.get('CAPTURE_SAMPLING_PERCENT')!r} % of requests"
            )
        return CheckResult.FAILED if self.details else CheckResult.PASSED


DEPLOYER_VARIABLES = frozenset({"ENDPOINT_NAME", "MODEL_PACKAGE_GROUP"})

check = EndpointDataCaptureEncrypted()
