"""CKV_PHI_36 "Ensure no SageMaker model, endpoint configuration or endpoint is declared in
Terraform: only approved registry versions are deployed, by the deployer".

What serves patients is a version a person approved in the Model Registry: FDA's
predetermined change control plan expectations (only a reviewed, recorded change reaches
use), EU AI Act Art. 14 (human oversight) and Art. 12 (record of what ran), HIPAA 45 CFR
164.308(a)(1)(ii)(B) (risk management). The platform's deployer creates the model, endpoint
configuration and endpoint of each approved version from that version's package. A model
declared in Terraform names whatever image and archive its author wrote, serves without
approval, and Terraform's replace cycle would destroy the versions a rollback returns to.

Judged, with the stack in view: every `aws_sagemaker_model_package_group` fails when its stack
declares an `aws_sagemaker_model`, `aws_sagemaker_endpoint_configuration` or
`aws_sagemaker_endpoint` (they would bypass its approval), and passes otherwise. Such a
resource in a stack that has no model package group is judged itself and fails: the platform
declares none anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from checkov.common.models.enums import CheckCategories

from policies.checks._stack import Stack, StackCheck, Verdict, address, register

REGISTRY_GROUP = "aws_sagemaker_model_package_group"
SERVING_TYPES = (
    "aws_sagemaker_model",
    "aws_sagemaker_endpoint_configuration",
    "aws_sagemaker_endpoint",
)


class SagemakerServingLeftToTheDeployer(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure no SageMaker model, endpoint configuration or endpoint is declared in "
                "Terraform: only approved registry versions are deployed, by the deployer"
            ),
            id="CKV_PHI_36",
            category=CheckCategories.AI_AND_ML,
            judged_types=[REGISTRY_GROUP, *SERVING_TYPES],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        declared = [
            address(resource_type, name)
            for resource_type in SERVING_TYPES
            for name in sorted(stack.resources(resource_type))
        ]
        groups = sorted(stack.resources(REGISTRY_GROUP))
        for name in groups:
            yield Verdict(
                address(REGISTRY_GROUP, name),
                not declared,
                f"declared beside the registry: {', '.join(declared)}" if declared else "",
            )
        if not groups:
            for serving in declared:
                yield Verdict(serving, False, "declared in Terraform, not by the deployer")


check = register(SagemakerServingLeftToTheDeployer())
