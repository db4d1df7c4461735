"""Names, enums and instance types the stacks set, judged against the API that receives them:
the enum, pattern (matched whole, as the services do) and length limits of the input member
in botocore's service model. A rule a model states only in its documentation is restated in
DOCUMENTED with the sentences it restates, which must still be in the model (a reworded rule
stops the preflight, never judges by a stale copy). S3 bucket names follow S3's published
rules; Lambda runtime deprecation is cfn-lint's lifecycle data (botocore has no dates).

A value holding a Terraform reference is judged only when its literal part alone is longer
than the member's maximum; the referenced value is judged where it is made. A binding whose
operation, member or expected constraint the model lacks raises PreflightSourceError.
"""

from __future__ import annotations

import ast
import html
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Final, NamedTuple

import regex  # type: ignore[import-untyped]  # botocore's patterns use Java classes (\p{L})

from policies.findings import Finding
from policies.preflight.base import (
    BOTOCORE,
    CFN_LINT_VERSION,
    TOKEN,
    PreflightSourceError,
    Resource,
    Rule,
    SynthesizedStacks,
    has_token,
    package_data,
    verdict,
)

# S3's bucket naming rules have one definition, shared with the environment loader.
from requirements import aws_values
from requirements.aws_values import S3_RULES, bucket_name_problem

FAMILY: Final = "names"
KINDS: Final = ("enum", "pattern", "length", "documented")

# The API input member each attribute ends up in, as groups of five words (a group may wrap;
# a wrapped attribute continues with its dot): resource_type.attribute, botocore service,
# operation, member, and what the model must carry for the member: an `enum`, a `pattern`, a
# maximum `length`, or `documented` (a rule only its documentation states: DOCUMENTED).
# Attributes and members are dotted paths walking through nested blocks and lists alike.
BINDINGS: Final = """
aws_autoscaling_group.name autoscaling CreateAutoScalingGroup AutoScalingGroupName pattern
aws_autoscaling_policy.name autoscaling PutScalingPolicy PolicyName pattern
aws_autoscaling_policy.policy_type autoscaling PutScalingPolicy PolicyType pattern
aws_autoscaling_policy.target_tracking_configuration.predefined_metric_specification
    .predefined_metric_type autoscaling PutScalingPolicy
    TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType enum
aws_cloudformation_stack.name cloudformation CreateStack StackName documented
aws_cloudformation_stack.on_failure cloudformation CreateStack OnFailure enum
aws_cloudtrail.name cloudtrail CreateTrail Name documented
aws_cloudwatch_event_rule.name events PutRule Name pattern
aws_cloudwatch_event_rule.state events PutRule State enum
aws_cloudwatch_event_target.target_id events PutTargets Targets.Id pattern
aws_cloudwatch_log_group.name logs CreateLogGroup logGroupName pattern
aws_cloudwatch_log_metric_filter.name logs PutMetricFilter filterName pattern
aws_cloudwatch_log_metric_filter.metric_transformation.name
    logs PutMetricFilter metricTransformations.metricName pattern
aws_cloudwatch_log_metric_filter.metric_transformation.namespace
    logs PutMetricFilter metricTransformations.metricNamespace pattern
aws_cloudwatch_log_metric_filter.metric_transformation.unit
    logs PutMetricFilter metricTransformations.unit enum
aws_cloudwatch_metric_alarm.alarm_name cloudwatch PutMetricAlarm AlarmName length
aws_cloudwatch_metric_alarm.comparison_operator cloudwatch PutMetricAlarm ComparisonOperator enum
aws_cloudwatch_metric_alarm.statistic cloudwatch PutMetricAlarm Statistic enum
aws_config_configuration_aggregator.name
    config PutConfigurationAggregator ConfigurationAggregatorName pattern
aws_config_configuration_recorder.name
    config PutConfigurationRecorder ConfigurationRecorder.name length
aws_config_configuration_recorder.recording_mode.recording_frequency
    config PutConfigurationRecorder ConfigurationRecorder.recordingMode.recordingFrequency enum
aws_config_conformance_pack.name config PutConformancePack ConformancePackName pattern
aws_config_delivery_channel.name config PutDeliveryChannel DeliveryChannel.name length
aws_config_delivery_channel.snapshot_delivery_properties.delivery_frequency
    config PutDeliveryChannel
    DeliveryChannel.configSnapshotDeliveryProperties.deliveryFrequency enum
aws_ecr_repository.name ecr CreateRepository repositoryName pattern
aws_ecr_repository.image_tag_mutability ecr CreateRepository imageTagMutability enum
aws_ecr_repository.encryption_configuration.encryption_type
    ecr CreateRepository encryptionConfiguration.encryptionType enum
aws_flow_log.traffic_type ec2 CreateFlowLogs TrafficType enum
aws_flow_log.log_destination_type ec2 CreateFlowLogs LogDestinationType enum
aws_glue_catalog_database.name glue CreateDatabase DatabaseInput.Name pattern
aws_glue_catalog_table.name glue CreateTable TableInput.Name pattern
aws_glue_catalog_table.storage_descriptor.columns.name
    glue CreateTable TableInput.StorageDescriptor.Columns.Name pattern
aws_guardduty_detector.finding_publishing_frequency
    guardduty CreateDetector FindingPublishingFrequency enum
aws_guardduty_detector_feature.name guardduty UpdateDetector Features.Name enum
aws_iam_instance_profile.name iam CreateInstanceProfile InstanceProfileName pattern
aws_iam_role.name iam CreateRole RoleName pattern
aws_iam_role_policy.name iam PutRolePolicy PolicyName pattern
aws_kms_alias.name kms CreateAlias AliasName pattern
aws_kms_key.key_usage kms CreateKey KeyUsage enum
aws_kms_key.customer_master_key_spec kms CreateKey KeySpec enum
aws_lambda_function.function_name lambda CreateFunction FunctionName pattern
aws_lambda_function.runtime lambda CreateFunction Runtime enum
aws_lambda_function.handler lambda CreateFunction Handler pattern
aws_lambda_function.architectures lambda CreateFunction Architectures enum
aws_lambda_function.tracing_config.mode lambda CreateFunction TracingConfig.Mode enum
aws_lambda_function.logging_config.log_format lambda CreateFunction LoggingConfig.LogFormat enum
aws_lambda_permission.statement_id lambda AddPermission StatementId pattern
aws_launch_template.name ec2 CreateLaunchTemplate LaunchTemplateName pattern
aws_launch_template.instance_type ec2 CreateLaunchTemplate LaunchTemplateData.InstanceType enum
aws_organizations_account.name organizations CreateAccount AccountName pattern
aws_organizations_organization.feature_set organizations CreateOrganization FeatureSet enum
aws_organizations_organizational_unit.name organizations CreateOrganizationalUnit Name pattern
aws_organizations_policy.name organizations CreatePolicy Name pattern
aws_organizations_policy.type organizations CreatePolicy Type enum
aws_sagemaker_feature_group.feature_group_name sagemaker CreateFeatureGroup FeatureGroupName pattern
aws_sagemaker_feature_group.record_identifier_feature_name
    sagemaker CreateFeatureGroup RecordIdentifierFeatureName pattern
aws_sagemaker_feature_group.event_time_feature_name
    sagemaker CreateFeatureGroup EventTimeFeatureName pattern
aws_sagemaker_feature_group.feature_definition.feature_name
    sagemaker CreateFeatureGroup FeatureDefinitions.FeatureName pattern
aws_sagemaker_feature_group.feature_definition.feature_type
    sagemaker CreateFeatureGroup FeatureDefinitions.FeatureType enum
aws_sagemaker_feature_group.online_store_config.storage_type
    sagemaker CreateFeatureGroup OnlineStoreConfig.StorageType enum
aws_sagemaker_feature_group.offline_store_config.table_format
    sagemaker CreateFeatureGroup OfflineStoreConfig.TableFormat enum
aws_sagemaker_model_package_group.model_package_group_name
    sagemaker CreateModelPackageGroup ModelPackageGroupName pattern
aws_sagemaker_pipeline.pipeline_name sagemaker CreatePipeline PipelineName pattern
aws_sagemaker_pipeline.pipeline_display_name sagemaker CreatePipeline PipelineDisplayName pattern
aws_security_group.name ec2 CreateSecurityGroup GroupName documented
aws_securityhub_account.control_finding_generator
    securityhub EnableSecurityHub ControlFindingGenerator enum
aws_sns_topic.name sns CreateTopic Name documented
aws_sqs_queue.name sqs CreateQueue QueueName documented
aws_vpc_endpoint.vpc_endpoint_type ec2 CreateVpcEndpoint VpcEndpointType enum
# The deployer (runtime/deployer) passes these variables verbatim to SageMaker: the
# endpoint's instance type, its Model Monitor job's, and the names it creates.
aws_lambda_function.environment.variables.INSTANCE_TYPE
    sagemaker CreateEndpointConfig ProductionVariants.InstanceType enum
aws_lambda_function.environment.variables.MONITOR_INSTANCE_TYPE
    sagemaker CreateDataQualityJobDefinition JobResources.ClusterConfig.InstanceType enum
aws_lambda_function.environment.variables.ENDPOINT_NAME
    sagemaker CreateEndpoint EndpointName pattern
aws_lambda_function.environment.variables.MONITORING_SCHEDULE_NAME
    sagemaker CreateMonitoringSchedule MonitoringScheduleName pattern
"""
# Pipeline step type, the SageMaker operation its Arguments are the request of, and a member
# naming instance types (one per line). Condition steps are read through IfSteps/ElseSteps.
PIPELINE_STEPS: Final = """
Processing CreateProcessingJob ProcessingResources.ClusterConfig.InstanceType
Training CreateTrainingJob ResourceConfig.InstanceType
Training CreateTrainingJob ResourceConfig.InstanceGroups.InstanceType
Tuning CreateHyperParameterTuningJob TrainingJobDefinition.ResourceConfig.InstanceType
Transform CreateTransformJob TransformResources.InstanceType
RegisterModel CreateModelPackage InferenceSpecification.SupportedRealtimeInferenceInstanceTypes
RegisterModel CreateModelPackage InferenceSpecification.SupportedTransformInstanceTypes
"""


class Documented(NamedTuple):
    sentences: tuple[str, ...]  # quoted from the member's documentation in the model
    pattern: str  # the rule they state, matched whole


# (service, operation, member) -> the rule its documentation states, judged with the model's.
DOCUMENTED: Final[dict[tuple[str, str, str], Documented]] = {
    ("lambda", "CreateFunction", "FunctionName"): Documented(
        ("If you specify only the function name, it is limited to 64 characters in length.",),
        r"[a-zA-Z0-9_-]{1,64}|(arn:|[0-9]{12}:).+",  # an ARN's length is the model's max
    ),
    ("kms", "CreateAlias", "AliasName"): Documented(
        ("This value must begin with alias/", "The alias name cannot begin with alias/aws/"),
        r"alias/(?!aws/).+",
    ),
    ("sns", "CreateTopic", "Name"): Documented(
        ("must be between 1 and 256 characters long.", "must end with the .fifo suffix."),
        r"(?=.{1,256}$)[A-Za-z0-9_-]+(\.fifo)?",  # "only ... ASCII letters, numbers, _ and -"
    ),
    ("sqs", "CreateQueue", "QueueName"): Documented(
        ("A queue name can have up to 80 characters.", "alphanumeric characters, hyphens"),
        r"(?=.{1,80}$)[A-Za-z0-9_-]+(\.fifo)?",  # "... hyphens ( - ), and underscores ( _ )"
    ),
    ("ec2", "CreateSecurityGroup", "GroupName"): Documented(
        (
            "Up to 255 characters in length. Cannot start with sg- .",
            "Valid characters: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*",
        ),
        r"(?!sg-)[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{1,255}",
    ),
    ("cloudformation", "CreateStack", "StackName"): Documented(
        ("A stack name can contain only alphanumeric characters (case sensitive) and hyphens.",),
        r"[A-Za-z][A-Za-z0-9-]{0,127}",  # "start with an alphabetical character", 128 at most
    ),
    ("cloudtrail", "CreateTrail", "Name"): Documented(
        ("Be between 3 and 128 characters", "Have no adjacent periods, underscores or dashes."),
        r"(?=.{3,128}$)(?![0-9]{1,3}(\.[0-9]{1,3}){3}$)[A-Za-z0-9]+([._-][A-Za-z0-9]+)*",
    ),
}

LIFECYCLE_FOLDER: Final = ("cfnlint", "data", "AdditionalSpecs")
LIFECYCLE_FILE: Final = "LmbdRuntimeLifecycle.json"


@dataclass(frozen=True)
class Binding:
    resource_type: str
    path: str
    service: str
    operation: str
    member: str
    kind: str

    @property
    def rule(self) -> Rule:
        api = f"{self.service} {self.operation}.{self.member}"
        documented = DOCUMENTED.get((self.service, self.operation, self.member))
        stated = f" and its documentation ({' '.join(documented.sentences)})" if documented else ""
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{self.resource_type[4:]}_{self.path}").upper()
        return Rule(
            id=f"PF_NAMES_{slug}",
            family=FAMILY,
            title=f"{self.resource_type}.{self.path} is valid for {api}",
            source=f"{BOTOCORE} service model {api}{stated}",
        )


def parse_bindings(table: str) -> tuple[Binding, ...]:
    words = re.sub(r"\s+\.", ".", re.sub(r"#[^\n]*", "", table)).split()
    if len(words) % 5 or any(kind not in KINDS for kind in words[4::5]):
        raise ValueError("names.BINDINGS: not groups of attribute service operation member kind")
    groups = (words[i : i + 5] for i in range(0, len(words), 5))
    return tuple(Binding(*attribute.split(".", 1), *rest) for attribute, *rest in groups)


BOUND: Final = parse_bindings(BINDINGS)
STEP_MEMBERS: Final = tuple(tuple(line.split()) for line in PIPELINE_STEPS.split("\n") if line)
S3_BUCKET: Final = Rule(
    id="PF_NAMES_S3_BUCKET_BUCKET",
    family=FAMILY,
    title="S3 bucket names follow S3's general purpose bucket naming rules",
    source=f"Amazon S3 bucket naming rules, {S3_RULES} (as read 2026-12-07)",
)
LAMBDA_RUNTIME: Final = Rule(
    id="PF_NAMES_LAMBDA_RUNTIME_NOT_DEPRECATED",
    family=FAMILY,
    title="Lambda functions use a runtime AWS has not deprecated",
    source=f"cfn-lint {CFN_LINT_VERSION} data/AdditionalSpecs/{LIFECYCLE_FILE} (AWS's schedule, "
    "https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html, as data; botocore's "
    "Runtime enum has no dates)",
)
PIPELINE_INSTANCE_TYPE: Final = Rule(
    id="PF_NAMES_PIPELINE_INSTANCE_TYPE",
    family=FAMILY,
    title="SageMaker pipeline steps request instance types their job kind offers",
    source=f"{BOTOCORE} service model sagemaker, per step type: "
    + "; ".join(f"{step} {operation}.{member}" for step, operation, member in STEP_MEMBERS),
)
RULES: Final = (*(b.rule for b in BOUND), S3_BUCKET, LAMBDA_RUNTIME, PIPELINE_INSTANCE_TYPE)


def check(stacks: SynthesizedStacks) -> list[Finding]:
    findings: list[Finding] = []
    for binding in BOUND:
        judge = constraint_of(binding.service, binding.operation, binding.member, binding.kind)
        for resource in stacks.resources(binding.resource_type):
            for value in values_at(resource.block, binding.path):
                findings += judged(binding.rule, resource, binding.path, value, judge)
    for resource in stacks.resources("aws_s3_bucket"):
        for value in values_at(resource.block, "bucket"):
            findings += judged(S3_BUCKET, resource, "bucket", value, S3_JUDGE)
    return findings + _runtime_findings(stacks) + _pipeline_findings(stacks)


@dataclass(frozen=True)
class Judge:
    problem: Callable[[str], str | None]  # None when the API accepts the value
    max_length: int | None = None


def judged(rule: Rule, resource: Resource, where: str, value: Any, judge: Judge) -> list[Finding]:
    """The finding on one value (none for a non-string, or a reference that may fit)."""
    if not isinstance(value, str):
        return []
    problem: str | None
    if has_token(value):
        literal_length = len(TOKEN.sub("", value))
        if judge.max_length is None or literal_length <= judge.max_length:
            return []  # the referenced value is judged where it is defined
        problem = f"{literal_length} characters without its references, over {judge.max_length}"
    else:
        problem = judge.problem(value)
    detail = None if problem is None else f"{where} {value!r}: {problem}"
    return [verdict(rule, resource, detail, judged=f"{where} {value!r}")]


# `judged`'s detail, read back: where, then the value's repr, then the problem.
_JUDGED_DETAIL: Final = re.compile(
    r"(?P<where>.+?) (?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"): "
)


def refused_value(finding: Finding) -> str | None:
    """The value a failed finding of this family refused (None for a reference that does not
    fit, whose value is not known here)."""
    match = _JUDGED_DETAIL.match(finding.detail)
    if match is None or not match.group("value"):
        return None
    value = ast.literal_eval(match.group("value"))
    return value if isinstance(value, str) and not has_token(value) else None


def constraint_of(service: str, operation: str, member: str, kind: str) -> Judge:
    """The member's constraints from the model and its documented rule; PreflightSourceError
    when the model lacks the operation, the member, or the kind the table expects."""
    shape = member_shape(service, operation, member)
    where = f"{BOTOCORE} {service} {operation}.{member} (shape {shape.name})"
    enum = tuple(getattr(shape, "enum", None) or ())
    pattern, low, high = (shape.metadata.get(key) for key in ("pattern", "min", "max"))
    documented = DOCUMENTED.get((service, operation, member))
    carried = {"enum": enum, "pattern": pattern, "length": high, "documented": documented}
    if not carried[kind]:
        raise PreflightSourceError(f"{where}: no {kind} where the names table expects one")
    parent, _, last = member.rpartition(".")
    raw = str(member_shape(service, operation, parent).members[last].documentation or "")
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))  # plain text
    for sentence in documented.sentences if documented else ():
        if sentence not in text:
            raise PreflightSourceError(
                f"{where}: its documentation no longer says {sentence!r} "
                "(review the rule restated in names.DOCUMENTED)"
            )
    compiled = _compiled(pattern) if pattern is not None else None
    restated = _compiled(documented.pattern) if documented else None
    stated = " ".join(documented.sentences) if documented else ""

    def problem(value: str) -> str | None:
        if enum and value not in enum:
            return f"not one of the {len(enum)} values of {where}"
        if low is not None and len(value) < low:
            return f"{len(value)} characters, fewer than the minimum {low} of {where}"
        if high is not None and len(value) > high:
            return f"{len(value)} characters, more than the maximum {high} of {where}"
        if compiled is not None and compiled.fullmatch(value) is None:
            return f"does not match the pattern {pattern} of {where}"
        if restated is not None and restated.fullmatch(value) is None:
            return f"breaks the rule its documentation states: {stated}"
        return None

    return Judge(problem, high)


@cache
def _compiled(pattern: str) -> Any:
    """A botocore (Java) pattern in the regex module's terms: Java's \\w and \\d are ASCII, and
    its UTF-16 surrogate-pair range means the supplementary characters."""
    pattern_ = pattern.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
    translated, in_class = "", False
    for piece in re.findall(r"\\.|.", pattern_, flags=re.DOTALL):
        in_class = (in_class or piece == "[") and not (in_class and piece == "]")
        ascii_set = {r"\w": "a-zA-Z0-9_", r"\d": "0-9"}.get(piece)
        translated += piece if ascii_set is None else ascii_set if in_class else f"[{ascii_set}]"
    try:
        return regex.compile(translated)
    except regex.error as error:
        message = f"{BOTOCORE}: pattern {pattern!r} does not compile ({error})"
        raise PreflightSourceError(message) from None


def service_model(service: str) -> Any:
    try:
        return aws_values.service_model(service)
    except aws_values.ServiceModelError as error:
        raise PreflightSourceError(f"{BOTOCORE}: {error}") from None


def member_shape(service: str, operation: str, member: str) -> Any:
    """The shape at a dotted path of an operation's input ("": itself), through lists; the
    walk is the leaf's (requirements.aws_values), which the environment loader uses too."""
    try:
        return aws_values.member_shape(aws_values.ApiMember(service, operation, member))
    except aws_values.ServiceModelError as error:
        raise PreflightSourceError(f"{BOTOCORE}: {error}") from None


def values_at(node: Any, path: str) -> Iterator[Any]:
    """The values at a dotted path, walking through lists (Terraform blocks and API lists)."""
    if isinstance(node, list):
        for item in node:
            yield from values_at(item, path)
    elif not path:
        yield node
    elif isinstance(node, dict):
        head, _, rest = path.partition(".")
        if head in node:
            yield from values_at(node[head], rest)


S3_JUDGE: Final = Judge(bucket_name_problem, max_length=63)


# --- Lambda runtime deprecation -------------------------------------------------------------


def runtime_lifecycle() -> dict[str, dict[str, Any]]:
    """runtime -> {"deprecated", "create-block", "update-block": ISO date or None}."""
    try:
        data = json.loads(package_data(*LIFECYCLE_FOLDER, LIFECYCLE_FILE).read_text())
    except (ModuleNotFoundError, OSError, ValueError) as error:
        raise PreflightSourceError(f"cfn-lint's {LIFECYCLE_FILE} unreadable ({error})") from None
    lifecycle: dict[str, dict[str, Any]] = data if isinstance(data, dict) else {}
    if not lifecycle or not all(isinstance(d, dict) and "deprecated" in d for d in data.values()):
        raise PreflightSourceError(f"cfn-lint's {LIFECYCLE_FILE}: not runtime -> dates")
    return lifecycle


def runtime_problem(runtime: str, lifecycle: dict[str, dict[str, Any]], today: date) -> str | None:
    dates = lifecycle.get(runtime)
    if dates is None:
        return f"no entry in cfn-lint's {LIFECYCLE_FILE}: AWS has no schedule for it"
    deprecated = dates["deprecated"]
    if deprecated is not None and date.fromisoformat(deprecated) <= today:
        return (
            f"deprecated on {deprecated} (no more security patches); AWS blocks creating "
            f"functions on it from {dates.get('create-block')} and updating them from "
            f"{dates.get('update-block')}"
        )
    return None


def _runtime_findings(stacks: SynthesizedStacks) -> list[Finding]:
    lifecycle = runtime_lifecycle()
    # A runtime botocore's enum lacks is that rule's finding, not a second one here.
    known = set(member_shape("lambda", "CreateFunction", "Runtime").enum or ())
    judge = Judge(lambda runtime: runtime_problem(runtime, lifecycle, datetime.now(UTC).date()))
    findings = []
    for resource in stacks.resources("aws_lambda_function"):
        runtime = resource.block.get("runtime")
        if runtime in known:
            findings += judged(LAMBDA_RUNTIME, resource, "runtime", runtime, judge)
    return findings


# --- instance types inside pipeline definitions ---------------------------------------------


def pipeline_steps(steps: Any) -> Iterator[dict[str, Any]]:
    """Every step of a definition's Steps, those inside condition branches included."""
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict):
            yield step
            arguments = step.get("Arguments")
            if isinstance(arguments, dict):
                for branch in ("IfSteps", "ElseSteps"):
                    yield from pipeline_steps(arguments.get(branch))


def _pipeline_findings(stacks: SynthesizedStacks) -> list[Finding]:
    judges = {
        (step, member): constraint_of("sagemaker", operation, member, "enum")
        for step, operation, member in STEP_MEMBERS
    }
    findings: list[Finding] = []
    for resource in stacks.resources("aws_sagemaker_pipeline"):
        try:
            definition = json.loads(resource.block.get("pipeline_definition", ""))
        except (TypeError, ValueError):
            continue  # not inline JSON: the pipelines family judges the definition itself
        steps = definition.get("Steps") if isinstance(definition, dict) else None
        for step in pipeline_steps(steps):
            for (kind, member), judge in judges.items():
                if step.get("Type") == kind:
                    where = f"step {step.get('Name')!r} ({kind}) {member}"
                    for value in values_at(step.get("Arguments"), member):
                        findings += judged(PIPELINE_INSTANCE_TYPE, resource, where, value, judge)
    return findings
