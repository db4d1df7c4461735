"""CKV_PHI_4 "Ensure a SageMaker pipeline registers models as PendingManualApproval".

A model trained on patient data reaches production only after a person reviews it: FDA's
predetermined change control plan expectations (a human-approved, traceable change), EU AI Act
Art. 14 (human oversight) and HIPAA 45 CFR 164.308(a)(1)(ii)(B) (risk management). Every
RegisterModel step of `pipeline_definition` (Condition branches included) must set
`ModelApprovalStatus` to the literal `PendingManualApproval`: not `Approved`, not a pipeline
parameter a caller could set to `Approved` at start time, and not left to the API default.
Pipelines that register no model are not judged; a definition kept in S3 cannot be verified and
fails.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.checks._conf import json_document, scalar
from policies.checks._documents import get_path, pipeline_steps

PENDING_MANUAL_APPROVAL = "PendingManualApproval"


class PipelineRegistersPendingManualApproval(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure a SageMaker pipeline registers models as PendingManualApproval",
            id="CKV_PHI_4",
            categories=[CheckCategories.AI_AND_ML],
            supported_resources=["aws_sagemaker_pipeline"],
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["pipeline_definition"]
        definition = json_document(scalar(conf, "pipeline_definition"))
        if definition is None:
            self.details.append("no JSON pipeline_definition: registrations cannot be verified")
            return CheckResult.FAILED
        registrations = [s for s in pipeline_steps(definition) if s.get("Type") == "RegisterModel"]
        if not registrations:
            return CheckResult.UNKNOWN
        for step in registrations:
            status = get_path(step, "Arguments", "ModelApprovalStatus")
            if status != PENDING_MANUAL_APPROVAL:
                self.details.append(f"step {step.get('Name')}: ModelApprovalStatus is {status!r}")
        return CheckResult.FAILED if self.details else CheckResult.PASSED


check = PipelineRegistersPendingManualApproval()
