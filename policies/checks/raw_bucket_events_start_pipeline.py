"""CKV_PHI_15 "Ensure the raw bucket emits EventBridge events and a rule starts the pipeline
with the object's key and version".

Provenance: every training run must say which object started it. FDA's predetermined change
control plan expectations (traceability of each model change to its data), EU AI Act Art. 10
(data governance) and Art. 12 (record-keeping), HIPAA 45 CFR 164.312(b) (audit controls). The
platform's path is: new object in the raw bucket -> S3 event to EventBridge -> rule -> pipeline
started with the object's key and version id as parameters. Judged, with the stack in view:

- each raw bucket (an `aws_s3_bucket` whose cdktf construct path has a `raw` segment, e.g.
  `dev-data/storage/raw/bucket`) passes when an `aws_s3_bucket_notification` of its stack
  refers to it with `eventbridge` true;
- each `aws_sagemaker_pipeline` that makes a model (a Training, Tuning, AutoML, Model or
  RegisterModel step, Condition branches included; a definition that cannot be read counts
  as one) passes when an `aws_cloudwatch_event_target` of its stack targets it (`arn` =
  `${aws_sagemaker_pipeline.<name>.arn}`) from an enabled `aws_cloudwatch_event_rule` of that
  stack whose `event_pattern` matches `aws.s3` `Object Created` events of a named bucket, and
  passes `$.detail.object.key` and `$.detail.object.version-id` as pipeline parameters.
A pipeline that only runs Processing jobs (the FHIR -> features build, which reads a whole
export, not one object) makes no model and is not judged here; its jobs are judged by
CKV_PHI_3 like every pipeline's. The two halves live in different stacks (`<env>-data`,
`<env>-ml`), so each is judged where it is declared; which bucket the rule names is the
composition's business (the raw one, through the data stack's outputs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, is_true, json_document
from policies.checks._documents import as_list, get_path, pipeline_steps
from policies.checks._stack import Stack, StackCheck, Verdict, address, refers_to, register

RAW_SEGMENT = "raw"
PROVENANCE_PARAMETERS = ("$.detail.object.key", "$.detail.object.version-id")
# Step types that train, tune, create or register a model: the runs whose data must be named.
MODEL_STEP_TYPES = frozenset({"Training", "Tuning", "AutoML", "Model", "RegisterModel"})


def makes_a_model(pipeline: dict[str, Any]) -> bool:
    definition = json_document(pipeline.get("pipeline_definition"))
    if definition is None:
        return True
    return any(step.get("Type") in MODEL_STEP_TYPES for step in pipeline_steps(definition))


def is_raw_bucket(conf: dict[str, Any]) -> bool:
    path = str(get_path(conf, "//", "metadata", "path") or "")
    return RAW_SEGMENT in path.split("/")


def rule_starts_on_new_objects(rule: dict[str, Any]) -> bool:
    if str(rule.get("state", "ENABLED")).upper() != "ENABLED" or rule.get("is_enabled") is False:
        return False
    pattern = json_document(rule.get("event_pattern"))
    if pattern is None:
        return False
    return (
        "aws.s3" in as_list(pattern.get("source"))
        and "Object Created" in as_list(pattern.get("detail-type"))
        and bool(as_list(get_path(pattern, "detail", "bucket", "name")))
    )


def passes_provenance(target: dict[str, Any]) -> bool:
    values = {
        str(parameter.get("value"))
        for pipeline_target in blocks(target, "sagemaker_pipeline_target")
        for parameter in blocks(pipeline_target, "pipeline_parameter_list")
    }
    return all(p in values for p in PROVENANCE_PARAMETERS)


class RawBucketEventsStartPipeline(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure the raw bucket emits EventBridge events and a rule starts the pipeline "
                "with the object's key and version"
            ),
            id="CKV_PHI_15",
            category=CheckCategories.LOGGING,
            judged_types=["aws_s3_bucket", "aws_sagemaker_pipeline"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        notifications = stack.resources("aws_s3_bucket_notification").values()
        for name, conf in stack.resources("aws_s3_bucket").items():
            if is_raw_bucket(conf):
                emits = any(
                    refers_to(n.get("bucket"), "aws_s3_bucket", name)
                    and is_true(n.get("eventbridge"))
                    for n in notifications
                )
                yield Verdict(address("aws_s3_bucket", name), emits, "no EventBridge notification")
        rules = stack.resources("aws_cloudwatch_event_rule")
        targets = stack.resources("aws_cloudwatch_event_target").values()
        for name, pipeline in stack.resources("aws_sagemaker_pipeline").items():
            if not makes_a_model(pipeline):
                continue
            started = any(
                refers_to(target.get("arn"), "aws_sagemaker_pipeline", name)
                and passes_provenance(target)
                and any(
                    refers_to(target.get("rule"), "aws_cloudwatch_event_rule", rule_name)
                    and rule_starts_on_new_objects(rule)
                    for rule_name, rule in rules.items()
                )
                for target in targets
            )
            yield Verdict(
                address("aws_sagemaker_pipeline", name), started, "no S3 object rule starts it"
            )


check = register(RawBucketEventsStartPipeline())
