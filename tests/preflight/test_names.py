"""The names family (policies/preflight/names.py): the platform's stacks pass every rule and
each rule judged something; one edit a real AWS API would refuse fails exactly its rule on
exactly its resource, and its twin just inside the limit passes; a botocore model, a
documentation sentence or the runtime lifecycle data that changed shape stops the preflight."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import botocore.model
import botocore.session
import pytest

from policies.findings import Finding, Status
from policies.preflight import names
from policies.preflight.base import PreflightSourceError, SynthesizedStacks
from requirements import aws_values
from tests.preflight.conftest import mutate_block

Block = dict[str, Any]


@pytest.fixture(scope="module")
def findings(stacks: SynthesizedStacks) -> list[Finding]:
    return names.check(stacks)


def test_the_platforms_stacks_pass_every_names_rule(findings: list[Finding]) -> None:
    failed = [f for f in findings if f.status is Status.FAILED]
    assert [f"{f.check_id} {f.stack} {f.resource}: {f.detail}" for f in failed] == []


def test_every_names_rule_judged_the_platforms_stacks(findings: list[Finding]) -> None:
    passed = Counter(f.check_id for f in findings if f.status is Status.PASSED)
    assert [rule.id for rule in names.RULES if passed[rule.id] == 0] == []


def test_rules_are_declared_once_with_the_source_they_read() -> None:
    ids = [rule.id for rule in names.RULES]
    assert len(ids) == len(set(ids))
    assert all(rule.family == "names" and rule.id.startswith("PF_NAMES_") for rule in names.RULES)
    role = next(r for r in names.RULES if r.id == "PF_NAMES_IAM_ROLE_NAME")
    assert role.source == f"botocore {botocore.__version__} service model iam CreateRole.RoleName"


# --- mutants: one edit of one real stack ----------------------------------------------------


@dataclass(frozen=True)
class Edit:
    stack: str
    resource_type: str
    prefix: str  # the logical name's start: which block of the type is edited
    change: Callable[[Block], None]

    def apply(self, out: Path, scratch: Path) -> tuple[SynthesizedStacks, str]:
        return mutate_block(
            out,
            scratch,
            stack=self.stack,
            resource_type=self.resource_type,
            prefix=self.prefix,
            change=lambda b, _: self.change(b),
        )


def setting(path: str, value: Any) -> Callable[[Block], None]:
    """Sets a dotted path of a block (the first element of a list on the way)."""

    def change(block: Block) -> None:
        *parents, last = path.split(".")
        node: Any = block
        for part in parents:
            node = node[part]
            node = node[0] if isinstance(node, list) else node
        node[last] = value

    return change


def pipeline_step(step_name: str, path: str, value: Any) -> Callable[[Block], None]:
    """Sets a dotted path in one step of the block's pipeline definition (a JSON string)."""

    def change(block: Block) -> None:
        definition = json.loads(block["pipeline_definition"])
        steps = list(names.pipeline_steps(definition["Steps"]))
        setting(path, value)(next(s for s in steps if s["Name"] == step_name)["Arguments"])
        block["pipeline_definition"] = json.dumps(definition)

    return change


LAMBDA = ("dev-ml", "aws_lambda_function", "deployment_deployer")
ROLE = ("dev-ml", "aws_iam_role", "deployment_deployer")
BUCKET = ("dev-data", "aws_s3_bucket", "storage_curated")
PIPELINE = ("dev-ml", "aws_sagemaker_pipeline", "pipelines_pipeline")
FEATURES = ("dev-data", "aws_sagemaker_feature_group", "features_group-encounters")
PROCESSING = "ProcessingResources.ClusterConfig.InstanceType"
REGISTER = "InferenceSpecification.SupportedRealtimeInferenceInstanceTypes"
ENV = "environment.variables"

# (edit, the rule it breaks) for AWS's refusals, and the twin just inside each limit.
REFUSED: dict[str, tuple[Edit, str]] = {
    "lambda name of 65": (
        Edit(*LAMBDA, setting("function_name", "f" * 65)),
        "PF_NAMES_LAMBDA_FUNCTION_FUNCTION_NAME",
    ),
    "role name with a space": (
        Edit(*ROLE, setting("name", "phi ml deployer")),
        "PF_NAMES_IAM_ROLE_NAME",
    ),
    "role name with a non-ASCII letter (Java's \\w)": (
        Edit(*ROLE, setting("name", "phi-ml-rôle")),
        "PF_NAMES_IAM_ROLE_NAME",
    ),
    "role name of 65 around a reference": (
        Edit(*ROLE, setting("name", "${var.prefix}" + "r" * 65)),
        "PF_NAMES_IAM_ROLE_NAME",
    ),
    "bucket with uppercase": (
        Edit(*BUCKET, setting("bucket", "Acme-Phi-Dev-Curated")),
        "PF_NAMES_S3_BUCKET_BUCKET",
    ),
    "bucket with xn-- prefix": (
        Edit(*BUCKET, setting("bucket", "xn--acme-phi-dev-curated")),
        "PF_NAMES_S3_BUCKET_BUCKET",
    ),
    "bucket with -s3alias suffix": (
        Edit(*BUCKET, setting("bucket", "acme-phi-dev-curated-s3alias")),
        "PF_NAMES_S3_BUCKET_BUCKET",
    ),
    "bucket as an IP address": (
        Edit(*BUCKET, setting("bucket", "192.168.5.4")),
        "PF_NAMES_S3_BUCKET_BUCKET",
    ),
    "bucket with adjacent periods": (
        Edit(*BUCKET, setting("bucket", "acme..curated")),
        "PF_NAMES_S3_BUCKET_BUCKET",
    ),
    "deprecated runtime python3.8": (
        Edit(*LAMBDA, setting("runtime", "python3.8")),
        "PF_NAMES_LAMBDA_RUNTIME_NOT_DEPRECATED",
    ),
    "runtime botocore does not know": (
        Edit(*LAMBDA, setting("runtime", "python3.99")),
        "PF_NAMES_LAMBDA_FUNCTION_RUNTIME",
    ),
    "processing step on ml.c7g.xlarge": (
        Edit(*PIPELINE, pipeline_step("Preprocess", PROCESSING, "ml.c7g.xlarge")),
        "PF_NAMES_PIPELINE_INSTANCE_TYPE",
    ),
    "training step on ml.c7g.xlarge": (
        Edit(*PIPELINE, pipeline_step("Train", "ResourceConfig.InstanceType", "ml.c7g.xlarge")),
        "PF_NAMES_PIPELINE_INSTANCE_TYPE",
    ),
    "registered model for an EC2 type": (
        Edit(*PIPELINE, pipeline_step("Register", REGISTER, ["c7g.xlarge"])),
        "PF_NAMES_PIPELINE_INSTANCE_TYPE",
    ),
    "endpoint instance type without ml.": (
        Edit(*LAMBDA, setting(f"{ENV}.INSTANCE_TYPE", "c7g.xlarge")),
        "PF_NAMES_LAMBDA_FUNCTION_ENVIRONMENT_VARIABLES_INSTANCE_TYPE",
    ),
    "monitor on an endpoint-only type": (
        Edit(*LAMBDA, setting(f"{ENV}.MONITOR_INSTANCE_TYPE", "ml.c7g.xlarge")),
        "PF_NAMES_LAMBDA_FUNCTION_ENVIRONMENT_VARIABLES_MONITOR_INSTANCE_TYPE",
    ),
    "feature group name of 65": (
        Edit(*FEATURES, setting("feature_group_name", "g" * 65)),
        "PF_NAMES_SAGEMAKER_FEATURE_GROUP_FEATURE_GROUP_NAME",
    ),
    "feature name with a period": (
        Edit(*FEATURES, setting("feature_definition.feature_name", "admitted.at")),
        "PF_NAMES_SAGEMAKER_FEATURE_GROUP_FEATURE_DEFINITION_FEATURE_NAME",
    ),
    "kms alias without alias/": (
        Edit("dev-data", "aws_kms_alias", "keys_logs", setting("name", "phi-ml/dev/logs")),
        "PF_NAMES_KMS_ALIAS_NAME",
    ),
    "kms alias in the aws/ namespace": (
        Edit("dev-data", "aws_kms_alias", "keys_logs", setting("name", "alias/aws/logs")),
        "PF_NAMES_KMS_ALIAS_NAME",
    ),
    "launch template type EC2 lacks": (
        Edit("dev-ml", "aws_launch_template", "", setting("instance_type", "c7g.huge")),
        "PF_NAMES_LAUNCH_TEMPLATE_INSTANCE_TYPE",
    ),
    "queue name with a period": (
        Edit("dev-ml", "aws_sqs_queue", "monitoring", setting("name", "phi.dev.dlq")),
        "PF_NAMES_SQS_QUEUE_NAME",
    ),
    "security group name sg-": (
        Edit("dev-ml", "aws_security_group", "inference_enclave", setting("name", "sg-enclave")),
        "PF_NAMES_SECURITY_GROUP_NAME",
    ),
    "event rule name with a slash": (
        Edit("dev-ml", "aws_cloudwatch_event_rule", "monitoring_v", setting("name", "a/b")),
        "PF_NAMES_CLOUDWATCH_EVENT_RULE_NAME",
    ),
    "cloudformation stack name with underscore": (
        Edit("dev-fhir", "aws_cloudformation_stack", "", setting("name", "phi_ml_fhir")),
        "PF_NAMES_CLOUDFORMATION_STACK_NAME",
    ),
}
ACCEPTED: dict[str, Edit] = {
    "lambda name of 64": Edit(*LAMBDA, setting("function_name", "f" * 64)),
    "role name of 64 with every allowed symbol": Edit(*ROLE, setting("name", "r" * 57 + "+=,.@-_")),
    "role name that fits around a reference": Edit(*ROLE, setting("name", "${var.p}-deployer")),
    "bucket of 63 with dots": Edit(*BUCKET, setting("bucket", "a.b-" + "c" * 59)),
    "bucket with xn-- inside": Edit(*BUCKET, setting("bucket", "acme-xn--curated")),
    "runtime python3.13": Edit(*LAMBDA, setting("runtime", "python3.13")),
    "processing step on ml.r5.xlarge": Edit(
        *PIPELINE, pipeline_step("Preprocess", PROCESSING, "ml.r5.xlarge")
    ),
    "registered model for ml.c7g.xlarge": Edit(
        *PIPELINE, pipeline_step("Register", REGISTER, ["ml.c7g.xlarge"])
    ),
    "feature group name of 64": Edit(*FEATURES, setting("feature_group_name", "g" * 64)),
    "kms alias alias/x": Edit("dev-data", "aws_kms_alias", "keys_logs", setting("name", "alias/x")),
    "fifo queue": Edit("dev-ml", "aws_sqs_queue", "monitoring", setting("name", "dlq.fifo")),
}


@pytest.mark.parametrize(("edit", "rule_id"), REFUSED.values(), ids=REFUSED.keys())
def test_a_value_aws_refuses_fails_its_rule_on_its_resource(
    synthesized: Path, tmp_path: Path, edit: Edit, rule_id: str
) -> None:
    edited, address = edit.apply(synthesized, tmp_path)
    failed = [f for f in names.check(edited) if f.status is Status.FAILED]
    assert [(f.check_id, f.stack, f.resource) for f in failed] == [(rule_id, edit.stack, address)]
    assert "[source: " in failed[0].detail


@pytest.mark.parametrize("edit", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_its_twin_inside_the_limit_passes(synthesized: Path, tmp_path: Path, edit: Edit) -> None:
    edited, _ = edit.apply(synthesized, tmp_path)
    assert [f.detail for f in names.check(edited) if f.status is Status.FAILED] == []


def test_a_failure_names_the_attribute_the_value_and_the_constraint(
    synthesized: Path, tmp_path: Path
) -> None:
    edited, _ = Edit(*ROLE, setting("name", "phi ml deployer")).apply(synthesized, tmp_path)
    (failure,) = [f for f in names.check(edited) if f.status is Status.FAILED]
    assert failure.detail.startswith("name 'phi ml deployer': does not match the pattern")
    assert "iam CreateRole.RoleName (shape roleNameType)" in failure.detail


def test_runtime_deprecation_follows_the_lifecycle_dates() -> None:
    lifecycle = names.runtime_lifecycle()
    assert names.runtime_problem("python3.12", lifecycle, date(2028, 10, 30)) is None
    assert "deprecated on 2028-10-31" in str(
        names.runtime_problem("python3.12", lifecycle, date(2028, 10, 31))
    )
    assert "no entry" in str(names.runtime_problem("cobol85", lifecycle, date(2026, 1, 1)))


# --- the sources: a model or data file that changed shape stops the preflight ---------------


def reshaped(service: str, change: Callable[[dict[str, Any]], None]) -> Callable[[str], Any]:
    """The service models with `service`'s model JSON changed by `change`."""
    real = aws_values.service_model
    loader = botocore.session.get_session().get_component("data_loader")
    data = copy.deepcopy(loader.load_service_model(service, "service-2"))
    change(data)
    changed = botocore.model.ServiceModel(data, service_name=service)
    return lambda name: changed if name == service else real(name)


def drop_member(data: dict[str, Any]) -> None:
    del data["shapes"]["CreateFunctionRequest"]["members"]["FunctionName"]


def drop_pattern(data: dict[str, Any]) -> None:
    del data["shapes"]["roleNameType"]["pattern"]


def drop_operation(data: dict[str, Any]) -> None:
    del data["operations"]["CreateProcessingJob"]


def drop_enum(data: dict[str, Any]) -> None:
    del data["shapes"]["ProductionVariantInstanceType"]["enum"]


def reword(data: dict[str, Any]) -> None:
    data["shapes"]["CreateQueueRequest"]["members"]["QueueName"]["documentation"] = "<p>Any.</p>"


@pytest.mark.parametrize(
    ("service", "change", "named"),
    [
        (
            "lambda",
            drop_member,
            "lambda CreateFunction FunctionName: no input member 'FunctionName'",
        ),
        ("iam", drop_pattern, "iam CreateRole.RoleName (shape roleNameType): no pattern"),
        ("sagemaker", drop_operation, "sagemaker CreateProcessingJob"),
        ("sagemaker", drop_enum, "ProductionVariantInstanceType): no enum"),
        ("sqs", reword, "documentation no longer says 'A queue name can have up to 80"),
    ],
    ids=["member", "pattern", "operation", "enum", "documentation"],
)
def test_a_model_that_changed_shape_is_a_source_error(
    stacks: SynthesizedStacks,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    change: Callable[[dict[str, Any]], None],
    named: str,
) -> None:
    # The walk through the model is the leaf's (requirements.aws_values), used by names too.
    monkeypatch.setattr(aws_values, "service_model", reshaped(service, change))
    with pytest.raises(PreflightSourceError, match=named.replace("(", r"\(").replace(")", r"\)")):
        names.check(stacks)


def test_the_real_model_is_no_source_error(stacks: SynthesizedStacks) -> None:
    names.check(stacks)  # the twin of the reshaped models: no exception


def test_unreadable_runtime_lifecycle_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(names, "LIFECYCLE_FILE", "NoSuchLifecycle.json")
    with pytest.raises(PreflightSourceError, match=r"NoSuchLifecycle\.json"):
        names.check(stacks)


def test_an_unknown_service_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PreflightSourceError, match="no service model 'no-such-service'"):
        names.member_shape("no-such-service", "CreateThing", "Name")
