"""Pipelines layer: every job isolated, in the VPC and encrypted with the ML key; models
registered only for a person's approval and only above the metric threshold; each run started
by a succeeded feature build and naming it, its as-of time, the images and the commit;
least-privilege roles."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformOutput
from pydantic import ValidationError

from modules.network import Network, NetworkConfig
from modules.pipelines import MODEL_APPROVAL_STATUS, PipelineConfig, Pipelines, SourceRevision
from tests.base_layers import BUCKET_PREFIX, add_keys_and_storage
from tests.eventbridge import event_matches
from tests.iam import as_list, iam_allows
from tests.synth import only, resources, statement_by_sid, statements, synth_stack
from tests.terraform_check import terraform_validate

ACCOUNT = "123456789012"
REGION = "eu-west-1"
VPC_CIDR = "10.42.0.0/16"
PIPELINE = "unit-readmission"
GROUP = "unit-readmission"
PREFIX = BUCKET_PREFIX
FEATURES_PIPELINE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/unit-readmission-features"
SOURCE = SourceRevision(repository="https://git.example/acme/phi-ml", commit="c0ffee" + "0" * 34)
OFFLINE_URI = f"s3://{PREFIX}-feature-offline/offline-store"
THRESHOLD = 0.8
METRIC = "auc"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
PROCESSING_IMAGE = f"{ECR}/phi-ml/processing@sha256:{'cd' * 32}"
TRAINING_IMAGE = f"{ECR}/phi-ml/training@sha256:{'ab' * 32}"
FEATURE_GROUPS = ("patient-vitals", "encounters")
SPEC_KEY = "pipelines/unit-readmission-features/feature-spec.json"
HYPERPARAMETERS = {
    "num_round": 300,
    "objective": "binary:logistic",
    "eval_metric": METRIC,
    "max_depth": 3,
    "eta": 0.05,
    "early_stopping_rounds": 30,
}
# Written out, not imported: changing the module's constant must fail a test.
PENDING = "PendingManualApproval"
JOB_TYPES = ("Processing", "Training")


def pipeline_config(**overrides: Any) -> PipelineConfig:
    values: dict[str, Any] = {
        "environment": "unit",
        "account_id": ACCOUNT,
        "region": REGION,
        "pipeline_name": PIPELINE,
        "model_package_group_name": GROUP,
        "processing_image": PROCESSING_IMAGE,
        "training_image": TRAINING_IMAGE,
        "processing_instance_type": "ml.m5.xlarge",
        "training_instance_type": "ml.m5.2xlarge",
        "metric_name": METRIC,
        "metric_threshold": THRESHOLD,
        "offline_store_uri": OFFLINE_URI,
        "feature_groups": FEATURE_GROUPS,
        "feature_spec_key": SPEC_KEY,
        "hyperparameters": dict(HYPERPARAMETERS),
        "max_runtime_seconds": 7200,
        "vpc_cidr": VPC_CIDR,
    }
    values.update(overrides)
    return PipelineConfig(**values)


def build_platform(stack: Any, config: PipelineConfig) -> Pipelines:
    """The pipeline on real keys, buckets and network, as the ML stack will wire it."""
    keys, storage = add_keys_and_storage(stack, region=REGION)
    network = Network(
        stack,
        "network",
        config=NetworkConfig(
            environment="unit",
            account_id=ACCOUNT,
            region=REGION,
            vpc_cidr=VPC_CIDR,
            az_count=2,
            flow_log_retention_days=2192,
        ),
        logs_key=keys.logs,
    )
    return Pipelines(
        stack,
        "pipelines",
        config=config,
        ml_key=keys.ml_artifacts,
        feature_key=keys.feature_store,
        artifacts_bucket=storage.ml_artifacts,
        features_pipeline_arn=FEATURES_PIPELINE_ARN,
        offline_bucket_arn=storage.feature_offline.bucket_arn,
        vpc_id=network.vpc_id,
        subnet_ids=network.workload_subnet_ids,
        source=SOURCE,
    )


EXPOSED = (
    "pipeline_arn",
    "pipeline_name",
    "execution_role_arn",
    "security_group_id",
    "trigger_rule_arn",
    "dead_letter_queue_arn",
)


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    def build(stack: Any) -> None:
        built = build_platform(stack, pipeline_config())
        for name in EXPOSED:
            TerraformOutput(stack, name.replace("_", "-"), value=getattr(built, name))

    return synth_stack(build)


# --- references into the synthesized stack ------------------------------------------------


def ref(type_: str, logical: str, attribute: str) -> str:
    return f"${{{type_}.{logical}.{attribute}}}"


def key_ref(synthesized: dict[str, Any], purpose: str) -> str:
    (logical,) = [
        name
        for name, key in resources(synthesized, "aws_kms_key").items()
        if key["tags"]["key-purpose"] == purpose
    ]
    return ref("aws_kms_key", logical, "arn")


def bucket_ref(synthesized: dict[str, Any], purpose: str, attribute: str) -> str:
    (logical,) = [
        name
        for name, bucket in resources(synthesized, "aws_s3_bucket").items()
        if bucket["bucket"] == f"{PREFIX}-{purpose}"
    ]
    return ref("aws_s3_bucket", logical, attribute)


def workload_subnet_refs(synthesized: dict[str, Any]) -> list[str]:
    return sorted(
        ref("aws_subnet", name, "id")
        for name, subnet in resources(synthesized, "aws_subnet").items()
        if subnet["tags"]["tier"] == "workload"
    )


def named_ref(synthesized: dict[str, Any], type_: str, name: str, attribute: str) -> str:
    (logical,) = [
        logical
        for logical, resource in resources(synthesized, type_).items()
        if resource.get("name") == name
    ]
    return ref(type_, logical, attribute)


def jobs_security_group_ref(synthesized: dict[str, Any]) -> str:
    return named_ref(synthesized, "aws_security_group", f"{PIPELINE}-jobs", "id")


def definition_of(synthesized: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(only(synthesized, "aws_sagemaker_pipeline")["pipeline_definition"]))


@pytest.fixture(scope="module")
def definition(synthesized: dict[str, Any]) -> dict[str, Any]:
    return definition_of(synthesized)


def all_steps(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step, including those nested in a condition's branches."""
    pending = list(definition["Steps"])
    while pending:
        step = pending.pop(0)
        yield step
        if step["Type"] == "Condition":
            pending += step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", [])


def step_named(definition: dict[str, Any], name: str) -> dict[str, Any]:
    (step,) = [s for s in all_steps(definition) if s["Name"] == name]
    return step


# --- every job: isolated, in the VPC, encrypted with the ML key ---------------------------


def job_violations(
    definition: dict[str, Any], *, key: str, subnets: list[str], security_group: str
) -> list[str]:
    """What is wrong with the jobs of a definition (empty when every job is locked down).

    Processing jobs carry the network controls in NetworkConfig; CreateTrainingJob has them
    as top-level fields. Any other job type is a violation: this checker does not know it.
    """
    found: list[str] = []
    expected_vpc = {"SecurityGroupIds": [security_group], "Subnets": subnets}
    for step in all_steps(definition):
        name, kind, args = step["Name"], step["Type"], step.get("Arguments", {})
        if kind in ("Condition", "Fail", "RegisterModel"):
            continue
        if kind == "Processing":
            network = args.get("NetworkConfig", {})
            volume_key = args.get("ProcessingResources", {}).get("ClusterConfig", {})
            output_key = args.get("ProcessingOutputConfig", {}).get("KmsKeyId")
        elif kind == "Training":
            network = args
            volume_key = args.get("ResourceConfig", {})
            output_key = args.get("OutputDataConfig", {}).get("KmsKeyId")
        else:
            found.append(f"{name}: unchecked job type {kind}")
            continue
        if network.get("EnableNetworkIsolation") is not True:
            found.append(f"{name}: network isolation off")
        if network.get("EnableInterContainerTrafficEncryption") is not True:
            found.append(f"{name}: inter-container traffic unencrypted")
        vpc = network.get("VpcConfig") or {}
        if {k: sorted(v) for k, v in vpc.items()} != expected_vpc:
            found.append(f"{name}: VPC config {vpc}")
        if volume_key.get("VolumeKmsKeyId") != key:
            found.append(f"{name}: volume key {volume_key.get('VolumeKmsKeyId')}")
        if output_key != key:
            found.append(f"{name}: output key {output_key}")
    return found


@pytest.fixture(scope="module")
def job_context(synthesized: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key_ref(synthesized, "ml-artifacts"),
        "subnets": workload_subnet_refs(synthesized),
        "security_group": jobs_security_group_ref(synthesized),
    }


def test_every_job_is_isolated_in_the_vpc_and_encrypted_with_the_ml_key(
    definition: dict[str, Any], job_context: dict[str, Any]
) -> None:
    jobs = [s["Name"] for s in all_steps(definition) if s["Type"] in JOB_TYPES]
    assert jobs == ["Preprocess", "Train", "Evaluate", "Baseline"]
    assert job_violations(definition, **job_context) == []


def _drop(path: tuple[str, ...]) -> Any:
    def mutate(args: dict[str, Any]) -> None:
        for part in path[:-1]:
            args = args[part]
        del args[path[-1]]

    return mutate


def _set(path: tuple[str, ...], value: Any) -> Any:
    def mutate(args: dict[str, Any]) -> None:
        for part in path[:-1]:
            args = args[part]
        args[path[-1]] = value

    return mutate


MUTATIONS = [
    ("Preprocess", _drop(("NetworkConfig", "EnableNetworkIsolation")), "network isolation off"),
    ("Evaluate", _set(("NetworkConfig", "EnableNetworkIsolation"), False), "isolation off"),
    ("Train", _set(("EnableNetworkIsolation",), False), "network isolation off"),
    ("Train", _drop(("EnableInterContainerTrafficEncryption",)), "traffic unencrypted"),
    ("Preprocess", _drop(("NetworkConfig", "VpcConfig")), "VPC config"),
    ("Train", _set(("VpcConfig", "Subnets"), ["subnet-public"]), "VPC config"),
    ("Evaluate", _set(("NetworkConfig", "VpcConfig", "SecurityGroupIds"), ["sg-x"]), "VPC"),
    (
        "Preprocess",
        _drop(("ProcessingResources", "ClusterConfig", "VolumeKmsKeyId")),
        "volume key",
    ),
    ("Train", _set(("ResourceConfig", "VolumeKmsKeyId"), "alias/aws/ebs"), "volume key"),
    ("Evaluate", _drop(("ProcessingOutputConfig", "KmsKeyId")), "output key"),
    ("Train", _set(("OutputDataConfig", "KmsKeyId"), "arn:aws:kms:other"), "output key"),
]


@pytest.mark.parametrize(
    ("step", "mutate", "expected"),
    MUTATIONS,
    ids=[f"{s}-{e.replace(' ', '-')}-{i}" for i, (s, _, e) in enumerate(MUTATIONS)],
)
def test_job_checker_detects_each_missing_control(
    definition: dict[str, Any], job_context: dict[str, Any], step: str, mutate: Any, expected: str
) -> None:
    """Twin: the same checker fails a definition with one control removed from one job."""
    broken = copy.deepcopy(definition)
    mutate(step_named(broken, step)["Arguments"])
    found = job_violations(broken, **job_context)
    assert len(found) == 1 and found[0].startswith(f"{step}:") and expected in found[0], found


def test_job_checker_refuses_job_types_it_does_not_check(
    definition: dict[str, Any], job_context: dict[str, Any]
) -> None:
    broken = copy.deepcopy(definition)
    broken["Steps"].append({"Name": "Score", "Type": "Transform", "Arguments": {}})
    assert job_violations(broken, **job_context) == ["Score: unchecked job type Transform"]


def s3_destinations(definition: dict[str, Any]) -> list[Any]:
    found = []
    for step in all_steps(definition):
        args = step.get("Arguments", {})
        for output in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
            found.append(output["S3Output"]["S3Uri"])
        if "OutputDataConfig" in args:
            found.append(args["OutputDataConfig"]["S3OutputPath"])
    return found


def uri_root(uri: Any) -> str:
    """The literal part a run-time S3 URI starts with."""
    if isinstance(uri, str):
        return uri
    (join,) = uri.values()
    return str(join["Values"][0])


def test_every_output_is_under_this_pipelines_artifacts_prefix(
    synthesized: dict[str, Any], definition: dict[str, Any]
) -> None:
    root = f"s3://{bucket_ref(synthesized, 'ml-artifacts', 'bucket')}/pipelines/{PIPELINE}"
    destinations = s3_destinations(definition)
    assert len(destinations) == 4  # dataset, model, evaluation, baseline
    assert {uri_root(d) for d in destinations} == {root}
    # Each run writes to its own folder: the execution id follows the root.
    assert all(
        d["Std:Join"]["Values"][1] == {"Get": "Execution.PipelineExecutionId"} for d in destinations
    )


def test_jobs_run_the_configured_images_and_instance_types(definition: dict[str, Any]) -> None:
    preprocess = step_named(definition, "Preprocess")["Arguments"]
    train = step_named(definition, "Train")["Arguments"]
    assert preprocess["AppSpecification"]["ImageUri"] == PROCESSING_IMAGE
    assert preprocess["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert train["AlgorithmSpecification"]["TrainingImage"] == TRAINING_IMAGE
    assert train["ResourceConfig"]["InstanceType"] == "ml.m5.2xlarge"
    for step in all_steps(definition):
        if step["Type"] in JOB_TYPES:
            assert step["Arguments"]["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}


# --- the human approval and the metric gate ----------------------------------------------


def approval_violations(definition: dict[str, Any]) -> list[str]:
    """Every register step must register as a literal PendingManualApproval: a parameter
    could be set to Approved by whoever starts the run."""
    found = []
    registers = [s for s in all_steps(definition) if s["Type"] == "RegisterModel"]
    if not registers:
        found.append("no register step")
    for step in registers:
        status = step["Arguments"].get("ModelApprovalStatus")
        if status != PENDING:
            found.append(f"{step['Name']}: {status}")
    return found


def test_models_are_registered_only_for_manual_approval(definition: dict[str, Any]) -> None:
    assert MODEL_APPROVAL_STATUS == PENDING
    assert approval_violations(definition) == []
    register = step_named(definition, "Register")["Arguments"]
    assert register["ModelPackageGroupName"] == GROUP


@pytest.mark.parametrize(
    "status", ["Approved", {"Get": "Parameters.ModelApprovalStatus"}, None], ids=str
)
def test_approval_checker_detects_auto_approval(definition: dict[str, Any], status: Any) -> None:
    broken = copy.deepcopy(definition)
    arguments = step_named(broken, "Register")["Arguments"]
    if status is None:
        del arguments["ModelApprovalStatus"]
    else:
        arguments["ModelApprovalStatus"] = status
    assert approval_violations(broken) == [f"Register: {status}"]


def evaluate_gate(gate: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """Run a condition step against an evaluation report: the names of the steps taken.

    Knows what our gate uses: a binary comparison of a JsonGet on the evaluation property
    file with a literal number (a parameter there could be lowered at run time)."""
    comparisons = {
        "GreaterThanOrEqualTo": lambda a, b: a >= b,
        "GreaterThan": lambda a, b: a > b,
        "LessThanOrEqualTo": lambda a, b: a <= b,
        "LessThan": lambda a, b: a < b,
        "Equals": lambda a, b: a == b,
    }
    results = []
    for condition in gate["Arguments"]["Conditions"]:
        json_get = condition["LeftValue"]["Std:JsonGet"]
        value: Any = report
        for part in json_get["Path"].split("."):
            value = value[part]
        threshold = condition["RightValue"]
        assert isinstance(threshold, float | int), f"threshold is not a literal: {threshold}"
        results.append(comparisons[condition["Type"]](value, threshold))
    branch = "IfSteps" if all(results) else "ElseSteps"
    return [step["Name"] for step in gate["Arguments"][branch]]


def report(value: float) -> dict[str, Any]:
    """An evaluation report as ml.evaluate writes it (Model Monitor's model-quality schema)."""
    return {
        "version": 0.0,
        "dataset": {"item_count": 400},
        "binary_classification_metrics": {METRIC: {"value": value, "standard_deviation": "NaN"}},
    }


@pytest.mark.parametrize(
    ("score", "taken"),
    [(THRESHOLD, ["Register"]), (0.95, ["Register"]), (0.7999, ["MetricBelowThreshold"])],
)
def test_gate_registers_exactly_when_the_metric_reaches_the_threshold(
    definition: dict[str, Any], score: float, taken: list[str]
) -> None:
    gate = step_named(definition, "MetricGate")
    (condition,) = gate["Arguments"]["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["RightValue"] == THRESHOLD
    assert condition["LeftValue"]["Std:JsonGet"] == {
        "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
        "Path": f"binary_classification_metrics.{METRIC}.value",
    }
    assert evaluate_gate(gate, report(score)) == taken
    assert step_named(definition, "MetricBelowThreshold")["Type"] == "Fail"


def test_gate_evaluator_sees_a_strict_comparison_and_a_parameter_threshold(
    definition: dict[str, Any],
) -> None:
    """Twin: the evaluator distinguishes >= from >, and refuses a run-time threshold."""
    strict = copy.deepcopy(step_named(definition, "MetricGate"))
    strict["Arguments"]["Conditions"][0]["Type"] = "GreaterThan"
    assert evaluate_gate(strict, report(THRESHOLD)) == ["MetricBelowThreshold"]
    parameter = copy.deepcopy(step_named(definition, "MetricGate"))
    parameter["Arguments"]["Conditions"][0]["RightValue"] = {"Get": "Parameters.Threshold"}
    with pytest.raises(AssertionError, match="not a literal"):
        evaluate_gate(parameter, report(0.99))


def test_gate_reads_the_report_the_evaluate_step_writes(definition: dict[str, Any]) -> None:
    evaluate = step_named(definition, "Evaluate")
    report_file, digest_file = evaluate["PropertyFiles"]
    assert report_file == {
        "PropertyFileName": "EvaluationReport",
        "OutputName": "evaluation",
        "FilePath": "evaluation.json",
    }
    # The scored archive's digest, beside the report in the same output.
    assert digest_file == {
        "PropertyFileName": "ModelDigest",
        "OutputName": "evaluation",
        "FilePath": "model-digest.json",
    }
    outputs = evaluate["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert "evaluation" in [o["OutputName"] for o in outputs]
    statistics = step_named(definition, "Register")["Arguments"]["ModelMetrics"]
    assert statistics["ModelQuality"]["Statistics"]["S3Uri"] == {
        "Std:Join": {
            "On": "/",
            "Values": [
                {
                    "Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation']"
                    ".S3Output.S3Uri"
                },
                "evaluation.json",
            ],
        }
    }


def test_threshold_comes_from_config(synthesized: dict[str, Any]) -> None:
    """Another threshold in config is another threshold in the definition."""
    other = synth_stack(lambda stack: build_platform(stack, pipeline_config(metric_threshold=0.9)))
    (condition,) = step_named(definition_of(other), "MetricGate")["Arguments"]["Conditions"]
    assert condition["RightValue"] == 0.9
    assert evaluate_gate(step_named(definition_of(other), "MetricGate"), report(0.85)) == [
        "MetricBelowThreshold"
    ]


# --- the order of the steps ---------------------------------------------------------------

_STEP_REFERENCE = re.compile(r"Steps\.([A-Za-z0-9_-]+)\.")


def dependencies(definition: dict[str, Any]) -> dict[str, set[str]]:
    """Step -> the steps it waits for: DependsOn, property references, and the condition
    step for everything in its branches."""
    graph: dict[str, set[str]] = {}

    def visit(step: dict[str, Any], parent: str | None) -> None:
        arguments = {k: v for k, v in step.get("Arguments", {}).items() if not k.endswith("Steps")}
        needs = set(_STEP_REFERENCE.findall(json.dumps(arguments)))
        needs |= set(step.get("DependsOn", []))
        if parent is not None:
            needs.add(parent)
        graph[step["Name"]] = needs
        for branch in ("IfSteps", "ElseSteps"):
            for child in step.get("Arguments", {}).get(branch, []):
                visit(child, step["Name"])

    for step in definition["Steps"]:
        visit(step, None)
    return graph


def execution_order(definition: dict[str, Any]) -> list[set[str]]:
    """The steps in waves that can run once the previous wave is done (Kahn's algorithm);
    fails on a cycle or a reference to a step that does not exist."""
    graph = dependencies(definition)
    dangling = {need for needs in graph.values() for need in needs} - set(graph)
    assert not dangling, f"references to unknown steps: {dangling}"
    waves: list[set[str]] = []
    remaining = {name: set(needs) for name, needs in graph.items()}
    while remaining:
        ready = {name for name, needs in remaining.items() if not needs}
        assert ready, f"cycle among {sorted(remaining)}"
        waves.append(ready)
        for name in ready:
            del remaining[name]
        for needs in remaining.values():
            needs.difference_update(ready)
    return waves


def test_steps_run_preprocess_train_evaluate_gate_register(definition: dict[str, Any]) -> None:
    graph = dependencies(definition)
    assert graph["Train"] == {"Preprocess"}
    assert graph["Evaluate"] == {"Preprocess", "Train"}
    assert graph["Baseline"] == {"Preprocess"}
    assert graph["MetricGate"] == {"Evaluate"}
    assert graph["Register"] == {"MetricGate", "Preprocess", "Train", "Evaluate", "Baseline"}
    gate = step_named(definition, "MetricGate")["Arguments"]
    assert [s["Name"] for s in gate["IfSteps"]] == ["Register"]
    assert [s["Name"] for s in gate["ElseSteps"]] == ["MetricBelowThreshold"]
    # The last wave is the gate's two exclusive branches: only one of them ever runs.
    assert execution_order(definition) == [
        {"Preprocess"},
        {"Train", "Baseline"},
        {"Evaluate"},
        {"MetricGate"},
        {"Register", "MetricBelowThreshold"},
    ]


def test_order_checker_detects_a_step_that_no_longer_waits(definition: dict[str, Any]) -> None:
    """Twin: training on a literal URI instead of the preprocessing output breaks the chain."""
    broken = copy.deepcopy(definition)
    for channel in step_named(broken, "Train")["Arguments"]["InputDataConfig"]:
        channel["DataSource"]["S3DataSource"]["S3Uri"] = "s3://elsewhere/train/"
    assert dependencies(broken)["Train"] == set()
    assert execution_order(broken)[0] == {"Preprocess", "Train"}


def test_order_checker_detects_a_dangling_reference(definition: dict[str, Any]) -> None:
    broken = copy.deepcopy(definition)
    step_named(broken, "Evaluate")["DependsOn"] = ["Validate"]
    with pytest.raises(AssertionError, match="Validate"):
        execution_order(broken)


# --- provenance: the feature build that started the run ---------------------------------


def test_the_feature_build_and_as_of_reach_preprocessing_and_the_registered_model(
    definition: dict[str, Any],
) -> None:
    parameters = {p["Name"]: p for p in definition["Parameters"]}
    assert {"FeatureBuildExecutionArn", "FeaturesAsOf", "InputDataUri"} <= set(parameters)
    # No defaults: a run started by hand must name the build and the cut-off too.
    assert "DefaultValue" not in parameters["FeatureBuildExecutionArn"]
    assert "DefaultValue" not in parameters["FeaturesAsOf"]
    assert parameters["InputDataUri"]["DefaultValue"] == OFFLINE_URI
    build = {"Get": "Parameters.FeatureBuildExecutionArn"}
    as_of = {"Get": "Parameters.FeaturesAsOf"}
    preprocess = step_named(definition, "Preprocess")["Arguments"]
    assert preprocess["Environment"]["FEATURE_BUILD_EXECUTION_ARN"] == build
    arguments = preprocess["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--as-of") + 1] == as_of
    features = {i["InputName"]: i["S3Input"] for i in preprocess["ProcessingInputs"]}
    # One input per declared group, each under the (overridable) offline store location.
    for group in FEATURE_GROUPS:
        assert features[f"features-{group}"]["S3Uri"] == {
            "Std:Join": {"On": "", "Values": [{"Get": "Parameters.InputDataUri"}, group]}
        }
        assert (
            features[f"features-{group}"]["LocalPath"]
            == f"/opt/ml/processing/input/features/{group}"
        )
    register = step_named(definition, "Register")["Arguments"]
    metadata = register["CustomerMetadataProperties"]
    assert metadata["feature-build-job"] == build
    assert metadata["features-as-of"] == as_of
    assert metadata["InputDataUri"] == {"Get": "Parameters.InputDataUri"}
    assert metadata["processing-image"] == PROCESSING_IMAGE
    assert metadata["training-image"] == TRAINING_IMAGE
    assert metadata["model-archive-sha256"] == {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.ModelDigest"},
            "Path": "model_archive_sha256",
        }
    }
    assert register["MetadataProperties"] == {
        "GeneratedBy": {"Get": "Execution.PipelineExecutionArn"},
        "Repository": SOURCE.repository,
        "CommitId": SOURCE.commit,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [("commit", "main"), ("commit", "C0FFEE" + "0" * 34), ("repository", "a repo")],
)
def test_a_source_revision_that_names_no_commit_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        SourceRevision(**{field: value})
    # The twin: a full commit and a URL, or both unrecorded, are accepted.
    assert SourceRevision(repository="https://x.example/r", commit="a" * 40).commit == "a" * 40
    assert SourceRevision().commit == "unrecorded"


def test_definition_references_only_declared_parameters(definition: dict[str, Any]) -> None:
    declared = {p["Name"] for p in definition["Parameters"]}
    used = set(re.findall(r"Parameters\.([A-Za-z0-9_-]+)", json.dumps(definition["Steps"])))
    assert used == declared


# --- the trigger: EventBridge rule, target, dead-letter queue -----------------------------


def pipeline_status_change(**detail: Any) -> dict[str, Any]:
    """SageMaker's pipeline execution status event, as EventBridge delivers it."""
    execution = f"{FEATURES_PIPELINE_ARN}/execution/4r2y0v8dkpxe"
    event: dict[str, Any] = {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": "2026-07-01T02:14:09Z",
        "region": REGION,
        "resources": [FEATURES_PIPELINE_ARN, execution],
        "detail": {
            "pipelineExecutionDisplayName": "execution-1719800000000",
            "currentPipelineExecutionStatus": "Succeeded",
            "previousPipelineExecutionStatus": "Executing",
            "executionStartTime": "2026-07-01T01:58:41Z",
            "executionEndTime": "2026-07-01T02:14:07Z",
            "pipelineArn": FEATURES_PIPELINE_ARN,
            "pipelineExecutionArn": execution,
        },
    }
    event["detail"].update(detail)
    return event


@pytest.fixture(scope="module")
def trigger_pattern(synthesized: dict[str, Any]) -> dict[str, Any]:
    rule = only(synthesized, "aws_cloudwatch_event_rule")
    assert rule["state"] == "ENABLED"
    return dict(json.loads(rule["event_pattern"]))


OTHER_PIPELINE = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/unit-readmission"
TRIGGER_EVENTS = {
    "feature-build-succeeded": (pipeline_status_change(), True),
    "feature-build-failed": (
        pipeline_status_change(currentPipelineExecutionStatus="Failed"),
        False,
    ),
    "feature-build-stopped": (
        pipeline_status_change(currentPipelineExecutionStatus="Stopped"),
        False,
    ),
    "feature-build-started": (
        pipeline_status_change(currentPipelineExecutionStatus="Executing"),
        False,
    ),
    # Training's own success must not start training again.
    "training-succeeded": (pipeline_status_change(pipelineArn=OTHER_PIPELINE), False),
}


@pytest.mark.parametrize("case", sorted(TRIGGER_EVENTS))
def test_rule_matches_succeeded_feature_builds_only(
    trigger_pattern: dict[str, Any], case: str
) -> None:
    event, expected = TRIGGER_EVENTS[case]
    assert event_matches(trigger_pattern, event) is expected


def test_matcher_would_catch_a_rule_without_the_status_or_pipeline_filter(
    trigger_pattern: dict[str, Any],
) -> None:
    """Twin: a pattern missing a filter matches the events the real one rejects."""
    any_status = copy.deepcopy(trigger_pattern)
    del any_status["detail"]["currentPipelineExecutionStatus"]
    assert event_matches(any_status, TRIGGER_EVENTS["feature-build-failed"][0])
    any_pipeline = copy.deepcopy(trigger_pattern)
    del any_pipeline["detail"]["pipelineArn"]
    assert event_matches(any_pipeline, TRIGGER_EVENTS["training-succeeded"][0])


@pytest.fixture(scope="module")
def target(synthesized: dict[str, Any]) -> dict[str, Any]:
    return only(synthesized, "aws_cloudwatch_event_target")


def test_target_starts_this_pipeline_with_the_feature_build(
    synthesized: dict[str, Any], target: dict[str, Any], definition: dict[str, Any]
) -> None:
    assert target["arn"] == ref(
        "aws_sagemaker_pipeline",
        next(iter(resources(synthesized, "aws_sagemaker_pipeline"))),
        "arn",
    )
    assert target["rule"] == named_ref(
        synthesized, "aws_cloudwatch_event_rule", f"{PIPELINE}-trigger", "name"
    )
    parameters = {
        p["name"]: p["value"]
        for p in target["sagemaker_pipeline_target"]["pipeline_parameter_list"]
    }
    assert parameters["FeatureBuildExecutionArn"] == "$.detail.pipelineExecutionArn"
    assert parameters["FeaturesAsOf"] == "$.detail.executionEndTime"
    assert parameters["InputDataUri"] == OFFLINE_URI
    assert set(parameters) <= {p["Name"] for p in definition["Parameters"]}


def resolve_path(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def test_dynamic_parameters_resolve_to_the_feature_build(target: dict[str, Any]) -> None:
    event, _ = TRIGGER_EVENTS["feature-build-succeeded"]
    values = {
        p["name"]: resolve_path(event, p["value"]) if p["value"].startswith("$.") else p["value"]
        for p in target["sagemaker_pipeline_target"]["pipeline_parameter_list"]
    }
    assert values["FeatureBuildExecutionArn"] == f"{FEATURES_PIPELINE_ARN}/execution/4r2y0v8dkpxe"
    assert values["FeaturesAsOf"] == "2026-07-01T02:14:07Z"


def test_failed_deliveries_are_retried_then_dead_lettered(
    synthesized: dict[str, Any], target: dict[str, Any]
) -> None:
    retry = target["retry_policy"]
    assert 0 < retry["maximum_retry_attempts"] <= 185
    assert 60 <= retry["maximum_event_age_in_seconds"] <= 86_400
    queue = named_ref(synthesized, "aws_sqs_queue", f"{PIPELINE}-trigger-dlq", "arn")
    assert target["dead_letter_config"] == {"arn": queue}


def test_dead_letter_queue_is_encrypted_with_the_ml_key(synthesized: dict[str, Any]) -> None:
    queue = only(synthesized, "aws_sqs_queue")
    assert queue["kms_master_key_id"] == key_ref(synthesized, "ml-artifacts")
    assert "sqs_managed_sse_enabled" not in queue
    assert queue["message_retention_seconds"] == 1_209_600


def service_publish_violations(
    policy_json: str, *, service: str, action: str, source_arn: str
) -> list[str]:
    """Allow statements of a queue/topic policy: only `service`, only `action`, only when the
    request comes from `source_arn` (the confused-deputy guard)."""
    found = []
    for candidate in statements(policy_json):
        if candidate["Effect"] != "Allow":
            continue
        sid = candidate.get("Sid", "?")
        if candidate.get("Principal") != {"Service": service}:
            found.append(f"{sid}: principal {candidate.get('Principal')}")
        if candidate["Action"] not in (action, [action]):
            found.append(f"{sid}: actions {candidate['Action']}")
        if candidate.get("Condition") != {"ArnEquals": {"aws:SourceArn": source_arn}}:
            found.append(f"{sid}: condition {candidate.get('Condition')}")
    return found


def test_dead_letter_queue_accepts_only_this_rule_through_eventbridge(
    synthesized: dict[str, Any],
) -> None:
    policy = only(synthesized, "aws_sqs_queue_policy")
    queue = only(synthesized, "aws_sqs_queue")
    assert policy["queue_url"] == named_ref(synthesized, "aws_sqs_queue", queue["name"], "url")
    rule = named_ref(synthesized, "aws_cloudwatch_event_rule", f"{PIPELINE}-trigger", "arn")
    violations = service_publish_violations(
        policy["policy"], service="events.amazonaws.com", action="sqs:SendMessage", source_arn=rule
    )
    assert violations == []
    assert [s["Effect"] for s in statements(policy["policy"])].count("Allow") == 1
    insecure = statement_by_sid(policy["policy"], "DenyInsecureTransport")
    assert insecure["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"Principal": "*"}, "principal *"),
        ({"Principal": {"AWS": "arn:aws:iam::999999999999:root"}}, "principal"),
        ({"Condition": None}, "condition None"),
        ({"Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:events:x:rule/other"}}}, "cond"),
        ({"Action": "sqs:*"}, "actions sqs:*"),
    ],
    ids=["anyone", "other-account", "no-source-arn", "other-rule", "all-actions"],
)
def test_queue_policy_checker_detects_a_wider_allow(
    synthesized: dict[str, Any], change: dict[str, Any], expected: str
) -> None:
    policy = json.loads(only(synthesized, "aws_sqs_queue_policy")["policy"])
    allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
    allow.update(change)
    if allow["Condition"] is None:
        del allow["Condition"]
    rule = named_ref(synthesized, "aws_cloudwatch_event_rule", f"{PIPELINE}-trigger", "arn")
    found = service_publish_violations(
        json.dumps(policy),
        service="events.amazonaws.com",
        action="sqs:SendMessage",
        source_arn=rule,
    )
    assert len(found) == 1 and expected in found[0], found


# --- roles: who may do what ---------------------------------------------------------------


def role_policy(synthesized: dict[str, Any], role_name: str) -> str:
    role = named_ref(synthesized, "aws_iam_role", role_name, "id")
    (policy,) = [
        p for p in resources(synthesized, "aws_iam_role_policy").values() if p["role"] == role
    ]
    return str(policy["policy"])


@pytest.fixture(scope="module")
def execution_policy(synthesized: dict[str, Any]) -> str:
    return role_policy(synthesized, f"{PIPELINE}-execution")


def _isolated_job(synthesized: dict[str, Any]) -> dict[str, Any]:
    return {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:InterContainerTrafficEncryption": "true",
        "sagemaker:VpcSubnets": workload_subnet_refs(synthesized),
    }


def execution_requests(
    synthesized: dict[str, Any],
) -> list[tuple[str, str, str, dict[str, Any], bool]]:
    """(id, action, resource, context, allowed?) for the execution role."""
    offline = bucket_ref(synthesized, "feature-offline", "arn")
    artifacts = bucket_ref(synthesized, "ml-artifacts", "arn")
    raw = bucket_ref(synthesized, "raw", "arn")
    ml_key, feature_key = (
        key_ref(synthesized, "ml-artifacts"),
        key_ref(synthesized, "feature-store"),
    )
    phi_key = key_ref(synthesized, "phi-data")
    role = named_ref(synthesized, "aws_iam_role", f"{PIPELINE}-execution", "arn")
    sm = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    package = f"{sm}:model-package/{GROUP}/7"
    pending = {"sagemaker:ModelApprovalStatus": PENDING}
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    isolated = _isolated_job(synthesized)
    job = f"{sm}:training-job/pipelines-abc123-train-xyz"
    return [
        ("read-offline-store", "s3:GetObject", f"{offline}/offline-store/x/data.parquet", {}, True),
        ("list-offline-store", "s3:ListBucket", offline, {"s3:prefix": "offline-store/x"}, True),
        ("read-raw-phi", "s3:GetObject", f"{raw}/incoming/x.csv", {}, False),
        ("write-offline-store", "s3:PutObject", f"{offline}/offline-store/x", {}, False),
        ("write-own-artifacts", "s3:PutObject", f"{artifacts}/pipelines/{PIPELINE}/e1/m", {}, True),
        ("write-other-pipeline", "s3:PutObject", f"{artifacts}/pipelines/other/e1/m", {}, False),
        ("list-all-artifacts", "s3:ListBucket", artifacts, {"s3:prefix": ""}, False),
        ("delete-artifacts", "s3:DeleteObject", f"{artifacts}/pipelines/{PIPELINE}/x", {}, False),
        ("ml-key-encrypt", "kms:GenerateDataKey", ml_key, {}, True),
        ("feature-key-via-s3", "kms:Decrypt", feature_key, via_s3, True),
        ("feature-key-directly", "kms:Decrypt", feature_key, {}, False),
        ("phi-key", "kms:Decrypt", phi_key, via_s3, False),
        (
            "grant-for-aws-service",
            "kms:CreateGrant",
            ml_key,
            {"kms:GrantIsForAWSResource": "true"},
            True,
        ),
        ("grant-for-anyone", "kms:CreateGrant", ml_key, {}, False),
        ("isolated-job", "sagemaker:CreateTrainingJob", job, isolated, True),
        (
            "job-with-network",
            "sagemaker:CreateTrainingJob",
            job,
            {**isolated, "sagemaker:NetworkIsolation": "false"},
            False,
        ),
        (
            "job-unencrypted-traffic",
            "sagemaker:CreateProcessingJob",
            f"{sm}:processing-job/pipelines-abc-preprocess-x",
            {**isolated, "sagemaker:InterContainerTrafficEncryption": "false"},
            False,
        ),
        (
            "job-outside-vpc",
            "sagemaker:CreateTrainingJob",
            job,
            {k: v for k, v in isolated.items() if k != "sagemaker:VpcSubnets"},
            False,
        ),
        (
            "job-not-from-pipeline",
            "sagemaker:CreateTrainingJob",
            f"{sm}:training-job/adhoc",
            isolated,
            False,
        ),
        ("register-pending", "sagemaker:CreateModelPackage", package, pending, True),
        (
            "register-approved",
            "sagemaker:CreateModelPackage",
            package,
            {"sagemaker:ModelApprovalStatus": "Approved"},
            False,
        ),
        (
            "register-elsewhere",
            "sagemaker:CreateModelPackage",
            f"{sm}:model-package/other/1",
            pending,
            False,
        ),
        (
            "approve",
            "sagemaker:UpdateModelPackage",
            package,
            {"sagemaker:ModelApprovalStatus": "Approved"},
            False,
        ),
        ("delete-package", "sagemaker:DeleteModelPackage", package, {}, False),
        (
            "pass-itself",
            "iam:PassRole",
            role,
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
            True,
        ),
        (
            "pass-itself-to-ec2",
            "iam:PassRole",
            role,
            {"iam:PassedToService": "ec2.amazonaws.com"},
            False,
        ),
        (
            "pass-other-role",
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT}:role/admin",
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
            False,
        ),
        (
            "eni-in-this-vpc",
            "ec2:CreateNetworkInterface",
            "*",
            {"ec2:Vpc": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{named_vpc_ref(synthesized)}"},
            True,
        ),
        (
            "eni-in-other-vpc",
            "ec2:CreateNetworkInterface",
            "*",
            {"ec2:Vpc": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/vpc-other"},
            False,
        ),
        (
            "pull-own-image",
            "ecr:BatchGetImage",
            f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/phi-ml/processing",
            {},
            True,
        ),
        (
            "pull-other-image",
            "ecr:BatchGetImage",
            f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/x",
            {},
            False,
        ),
        (
            "start-pipeline",
            "sagemaker:StartPipelineExecution",
            f"{sm}:pipeline/{PIPELINE}",
            {},
            False,
        ),
    ]


def named_vpc_ref(synthesized: dict[str, Any]) -> str:
    (logical,) = resources(synthesized, "aws_vpc")
    return ref("aws_vpc", logical, "id")


EXECUTION_CASES = [
    "read-offline-store",
    "list-offline-store",
    "read-raw-phi",
    "write-offline-store",
    "write-own-artifacts",
    "write-other-pipeline",
    "list-all-artifacts",
    "delete-artifacts",
    "ml-key-encrypt",
    "feature-key-via-s3",
    "feature-key-directly",
    "phi-key",
    "grant-for-aws-service",
    "grant-for-anyone",
    "isolated-job",
    "job-with-network",
    "job-unencrypted-traffic",
    "job-outside-vpc",
    "job-not-from-pipeline",
    "register-pending",
    "register-approved",
    "register-elsewhere",
    "approve",
    "delete-package",
    "pass-itself",
    "pass-itself-to-ec2",
    "pass-other-role",
    "eni-in-this-vpc",
    "eni-in-other-vpc",
    "pull-own-image",
    "pull-other-image",
    "start-pipeline",
]


@pytest.mark.parametrize("case", EXECUTION_CASES)
def test_execution_role_allows_exactly_the_pipelines_own_work(
    synthesized: dict[str, Any], execution_policy: str, case: str
) -> None:
    """Each allowed request is the twin of a refused one differing in one resource or key."""
    requests = {r[0]: r[1:] for r in execution_requests(synthesized)}
    assert set(requests) == set(EXECUTION_CASES)
    action, resource, context, expected = requests[case]
    assert iam_allows(execution_policy, action, resource, context) is expected


ALLOWED_WILDCARD_RESOURCES = {
    # Sid -> the only actions it may grant on "*" (APIs without resource-level permissions,
    # or confined by condition).
    "EcrLogin": ["ecr:GetAuthorizationToken"],
    "PublishSageMakerJobMetrics": ["cloudwatch:PutMetricData"],
    "DescribeVpcForJobs": [
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
    ],
    "ManageJobNetworkInterfacesInThisVpc": [
        "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission",
    ],
}


def breadth_violations(policy_json: str) -> list[str]:
    """Allow statements that are broader than they must be: wildcard actions, or "*"
    resources outside the known APIs that have no resource-level permissions."""
    found = []
    for candidate in statements(policy_json):
        if candidate["Effect"] != "Allow":
            continue
        sid, actions = candidate.get("Sid", "?"), as_list(candidate["Action"])
        found += [
            f"{sid}: wildcard action {a}"
            for a in actions
            if "*" in a.split(":")[-1] and not a.startswith("kms:GenerateDataKey")
        ]
        if "*" in as_list(candidate["Resource"]) and sorted(
            actions
        ) != ALLOWED_WILDCARD_RESOURCES.get(sid):
            found.append(f"{sid}: {actions} on *")
    return found


def test_execution_role_names_specific_resources(execution_policy: str) -> None:
    assert breadth_violations(execution_policy) == []
    interfaces = statement_by_sid(execution_policy, "ManageJobNetworkInterfacesInThisVpc")
    assert set(interfaces["Condition"]) == {"ArnEquals"}
    metrics = statement_by_sid(execution_policy, "PublishSageMakerJobMetrics")
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"Sid": "Wide", "Action": "s3:GetObject", "Resource": "*"}, "Wide: ['s3:GetObject'] on *"),
        (
            {"Sid": "AllS3", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
            "wildcard action s3:*",
        ),
        (
            {"Sid": "EcrLogin", "Action": ["ecr:GetAuthorizationToken", "ecr:*"], "Resource": "*"},
            "EcrLogin",
        ),
    ],
    ids=["star-resource", "star-action", "known-sid-widened"],
)
def test_breadth_checker_detects_a_wider_statement(
    execution_policy: str, extra: dict[str, Any], expected: str
) -> None:
    policy = json.loads(execution_policy)
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != extra["Sid"]]
    policy["Statement"].append({"Effect": "Allow", **extra})
    found = breadth_violations(json.dumps(policy))
    assert any(expected in f for f in found), found


def trust(synthesized: dict[str, Any], role_name: str) -> dict[str, Any]:
    (role,) = [r for r in resources(synthesized, "aws_iam_role").values() if r["name"] == role_name]
    (statement,) = statements(role["assume_role_policy"])
    return statement


@pytest.mark.parametrize(
    ("role", "service"),
    [
        (f"{PIPELINE}-execution", "sagemaker.amazonaws.com"),
        (f"{PIPELINE}-trigger", "events.amazonaws.com"),
    ],
)
def test_roles_trust_their_service_for_this_account_only(
    synthesized: dict[str, Any], role: str, service: str
) -> None:
    statement = trust(synthesized, role)
    assert statement["Principal"] == {"Service": service}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_eventbridge_role_may_only_start_this_pipeline(synthesized: dict[str, Any]) -> None:
    policy = role_policy(synthesized, f"{PIPELINE}-trigger")
    pipeline = ref(
        "aws_sagemaker_pipeline",
        next(iter(resources(synthesized, "aws_sagemaker_pipeline"))),
        "arn",
    )
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements(policy)] == [
        ("Allow", "sagemaker:StartPipelineExecution", pipeline)
    ]
    assert iam_allows(policy, "sagemaker:StartPipelineExecution", pipeline)
    other = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/other"
    assert not iam_allows(policy, "sagemaker:StartPipelineExecution", other)
    assert only(synthesized, "aws_cloudwatch_event_target")["role_arn"] == named_ref(
        synthesized, "aws_iam_role", f"{PIPELINE}-trigger", "arn"
    )


def test_pipeline_runs_as_the_execution_role(
    synthesized: dict[str, Any], definition: dict[str, Any]
) -> None:
    role = named_ref(synthesized, "aws_iam_role", f"{PIPELINE}-execution", "arn")
    assert only(synthesized, "aws_sagemaker_pipeline")["role_arn"] == role
    jobs = [s for s in all_steps(definition) if s["Type"] in JOB_TYPES]
    assert {s["Arguments"]["RoleArn"] for s in jobs} == {role}


def test_outputs_name_the_resources_other_layers_attach_to(synthesized: dict[str, Any]) -> None:
    outputs = {name: output["value"] for name, output in synthesized["output"].items()}
    pipeline = next(iter(resources(synthesized, "aws_sagemaker_pipeline")))
    assert outputs == {
        "pipeline-arn": ref("aws_sagemaker_pipeline", pipeline, "arn"),
        "pipeline-name": ref("aws_sagemaker_pipeline", pipeline, "pipeline_name"),
        "execution-role-arn": named_ref(
            synthesized, "aws_iam_role", f"{PIPELINE}-execution", "arn"
        ),
        "security-group-id": jobs_security_group_ref(synthesized),
        "trigger-rule-arn": named_ref(
            synthesized, "aws_cloudwatch_event_rule", f"{PIPELINE}-trigger", "arn"
        ),
        "dead-letter-queue-arn": named_ref(
            synthesized, "aws_sqs_queue", f"{PIPELINE}-trigger-dlq", "arn"
        ),
    }


# --- the jobs' security group -------------------------------------------------------------


def egress_violations(synthesized: dict[str, Any]) -> list[str]:
    group = jobs_security_group_ref(synthesized)
    s3 = ref("data.aws_prefix_list", next(iter(synthesized["data"]["aws_prefix_list"])), "id")
    found = []
    rules = [
        r
        for r in resources(synthesized, "aws_vpc_security_group_egress_rule").values()
        if r["security_group_id"] == group
    ]
    for rule in rules:
        destination = rule.get("cidr_ipv4") or rule.get("prefix_list_id")
        if (rule["ip_protocol"], rule.get("from_port"), rule.get("to_port")) != ("tcp", 443, 443):
            found.append(f"{destination}: {rule['ip_protocol']} {rule.get('from_port')}")
        if destination not in (VPC_CIDR, s3):
            found.append(f"egress to {destination}")
    if len(rules) != 2:
        found.append(f"{len(rules)} egress rules")
    ingress = resources(synthesized, "aws_vpc_security_group_ingress_rule").values()
    found += [f"ingress {r}" for r in ingress if r["security_group_id"] == group]
    inline = named_ref(synthesized, "aws_security_group", f"{PIPELINE}-jobs", "id")
    assert inline == group
    return found


def test_jobs_reach_only_the_vpc_endpoints_and_s3_over_https(synthesized: dict[str, Any]) -> None:
    assert egress_violations(synthesized) == []
    (prefix_list,) = synthesized["data"]["aws_prefix_list"].values()
    assert prefix_list["name"] == f"com.amazonaws.{REGION}.s3"
    group = next(
        g
        for g in resources(synthesized, "aws_security_group").values()
        if g["name"] == f"{PIPELINE}-jobs"
    )
    assert "ingress" not in group and "egress" not in group


def test_egress_checker_detects_an_internet_rule(synthesized: dict[str, Any]) -> None:
    broken = copy.deepcopy(synthesized)
    rules = broken["resource"]["aws_vpc_security_group_egress_rule"]
    rule = next(r for r in rules.values() if r.get("cidr_ipv4") == VPC_CIDR)
    rule["cidr_ipv4"] = "0.0.0.0/0"
    assert egress_violations(broken) == ["egress to 0.0.0.0/0"]


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metric_threshold", 0),
        ("metric_threshold", 1.5),
        ("metric_threshold", -0.1),
        ("metric_threshold", float("nan")),
        ("training_instance_type", "m5.xlarge"),
        ("processing_instance_type", "ml5.large"),
        # The step programs run from the image CI built: a tag could be moved after review.
        ("processing_image", f"{ECR}/phi-ml/processing:1.4.2"),
        ("offline_store_uri", "https://bucket/prefix"),
        ("processing_image", "docker.io/library/python:3.11"),
        ("training_image", f"{ECR}/phi-ml/training"),
        ("pipeline_name", "Unit-Readmission"),
        ("model_package_group_name", "group_with_underscore"),
        ("max_runtime_seconds", 0),
        ("vpc_cidr", "10.42.0.1/16"),
        ("account_id", "12345"),
    ],
)
def test_config_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        pipeline_config(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metric_threshold", 1.0),
        ("metric_threshold", 0.001),
        ("processing_image", f"{ECR}/phi-ml/other-steps@sha256:{'ef' * 32}"),
        ("offline_store_uri", f"s3://{PREFIX}-feature-offline"),
        ("training_instance_type", "ml.g5.12xlarge"),
    ],
)
def test_config_accepts_the_boundaries(field: str, value: Any) -> None:
    """Twin of the rejections: the rules refuse only what they should."""
    assert getattr(pipeline_config(**{field: value}), field) == value


def test_config_refuses_unknown_fields_such_as_an_approval_switch() -> None:
    with pytest.raises(ValidationError, match="model_approval_status"):
        pipeline_config(model_approval_status="Approved")


def test_offline_store_must_be_in_the_offline_bucket() -> None:
    def build(stack: Any) -> None:
        config = pipeline_config(offline_store_uri="s3://somewhere-else/offline-store")
        build_platform_with_literal_offline_arn(stack, config)

    with pytest.raises(ValueError, match="not in arn:aws:s3:::acme-unit-feature-offline"):
        synth_stack(build)


def build_platform_with_literal_offline_arn(stack: Any, config: PipelineConfig) -> None:
    """The cross-stack case: the offline bucket given as a literal ARN."""
    keys, storage = add_keys_and_storage(stack, region=REGION)
    Pipelines(
        stack,
        "pipelines",
        config=config,
        ml_key=keys.ml_artifacts,
        feature_key=keys.feature_store,
        artifacts_bucket=storage.ml_artifacts,
        features_pipeline_arn=FEATURES_PIPELINE_ARN,
        offline_bucket_arn=f"arn:aws:s3:::{PREFIX}-feature-offline",
        vpc_id="vpc-0123456789abcdef0",
        subnet_ids=["subnet-0123456789abcdef0"],
        source=SOURCE,
    )


# --- real terraform -----------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_pipelines_layer(tmp_path: Path) -> None:
    result = terraform_validate(
        tmp_path, lambda stack: build_platform(stack, pipeline_config()), region=REGION
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The configuration is valid" in result.stdout


# --- what the pipeline registers, the deployer can serve --------------------------------------


def test_a_serving_image_by_tag_is_refused_at_load_time() -> None:
    """The deployer serves only images pinned by digest: a registered tag would be an approved
    version that can never be deployed."""
    tagged = f"{ECR}/phi-ml/serving:1.4.2"
    with pytest.raises(ValidationError, match="must be pinned by @sha256: digest"):
        pipeline_config(inference_image=tagged)
    pinned = f"{ECR}/phi-ml/serving@sha256:{'cd' * 32}"
    assert pipeline_config(inference_image=pinned).serving_image == pinned  # twin
