"""Feature build layer: the FHIR export becomes feature records in a SageMaker pipeline of two
isolated, encrypted Processing jobs; Build shards whole partitions over its instances; the role
reads only the export and the spec; the spec object is the environment's, KMS-encrypted; the
container the pipeline runs is the one the Dockerfile builds."""

from __future__ import annotations

import ast
import copy
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import main
from environments.layer_configs import layer_configs
from environments.loader import ENVIRONMENT_FILE, ENVIRONMENTS_DIR, EnvironmentFileError
from environments.loader import load_environment as load_environment_file
from environments.schema import WorkloadEnvironment
from ml.feature_spec import spec_from_dict
from modules.feature_build import FeatureBuild, FeatureBuildConfig
from modules.features import FeatureGroupSpec, Features, FeaturesConfig
from modules.keys import KeyPurpose, key_policy
from modules.network import Network, NetworkConfig
from tests import dockerfiles
from tests.base_layers import BUCKET_PREFIX, add_keys_and_storage
from tests.iam import as_list, iam_allows, statement_applies
from tests.synth import only, resources, statements, synth_stack
from tests.terraform_check import terraform_validate

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "ml" / "Dockerfile.feature-builder"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
VPC_CIDR = "10.42.0.0/16"
PIPELINE = "unit-readmission-features"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
IMAGE = f"{ECR}/phi-ml/feature-builder@sha256:{'cd' * 32}"
INSTANCES = 3
PARTITIONS = 12
EXPORT_PREFIX = "fhir-export/"
# Written out, not imported: changing the module's values must fail a test.
ENTRYPOINT = ["python3", "-m", "ml.feature_builder"]
RAW = f"{BUCKET_PREFIX}-raw"
ARTIFACTS = f"{BUCKET_PREFIX}-ml-artifacts"
OFFLINE = f"{BUCKET_PREFIX}-feature-offline"


def group(name: str, identifier: str, event_time: str, *features: tuple[str, str]) -> Any:
    return FeatureGroupSpec(
        name=name,
        record_identifier=identifier,
        event_time=event_time,
        features=tuple({"name": n, "type": t} for n, t in features),
    )


GROUPS = (
    group(
        "patient-vitals",
        "patient_id",
        "event_time",
        ("patient_id", "String"),
        ("event_time", "String"),
        ("heart_rate", "Fractional"),
        ("processing_basis", "String"),
    ),
    group(
        "encounters",
        "encounter_id",
        "discharged_at",
        ("encounter_id", "String"),
        ("patient_id", "String"),
        ("discharged_at", "Fractional"),
        ("length_of_stay_days", "Integral"),
        ("processing_basis", "String"),
    ),
)


def build_config(**overrides: Any) -> FeatureBuildConfig:
    values: dict[str, Any] = {
        "environment": "unit",
        "account_id": ACCOUNT,
        "region": REGION,
        "jurisdiction": "US",
        "pipeline_name": PIPELINE,
        "image": IMAGE,
        "instance_type": "ml.m5.xlarge",
        "instance_count": INSTANCES,
        "partitions": PARTITIONS,
        "max_bad_line_share": 0.02,
        "max_runtime_seconds": 5400,
        "export_prefix": EXPORT_PREFIX,
        "groups": GROUPS,
        "processing_basis_kind": "hipaa-de-identified",
        "processing_basis_reference": "synthetic-population",
        "vpc_cidr": VPC_CIDR,
    }
    values.update(overrides)
    return FeatureBuildConfig(**values)


def build_platform(stack: Any, config: FeatureBuildConfig) -> FeatureBuild:
    """The feature build on real keys, buckets, network and feature groups."""
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
    features = Features(
        stack,
        "features",
        config=FeaturesConfig(
            environment="unit", account_id=ACCOUNT, region=REGION, groups=config.groups
        ),
        feature_key=keys.feature_store,
        offline_bucket=storage.feature_offline,
    )
    return FeatureBuild(
        stack,
        "feature-build",
        config=config,
        ml_key=keys.ml_artifacts,
        feature_key=keys.feature_store,
        raw_bucket=storage.raw,
        artifacts_bucket=storage.ml_artifacts,
        offline_bucket=storage.feature_offline,
        resolved_output_s3_uris=features.resolved_output_s3_uris,
        vpc_id=network.vpc_id,
        subnet_ids=network.workload_subnet_ids,
    )


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    return synth_stack(lambda stack: build_platform(stack, build_config()))


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


def bucket_ref(synthesized: dict[str, Any], bucket: str, attribute: str) -> str:
    (logical,) = [
        name
        for name, body in resources(synthesized, "aws_s3_bucket").items()
        if body["bucket"] == bucket
    ]
    return ref("aws_s3_bucket", logical, attribute)


def named_ref(synthesized: dict[str, Any], type_: str, name: str, attribute: str) -> str:
    (logical,) = [
        logical
        for logical, body in resources(synthesized, type_).items()
        if body.get("name") == name
    ]
    return ref(type_, logical, attribute)


def workload_subnet_refs(synthesized: dict[str, Any]) -> list[str]:
    return sorted(
        ref("aws_subnet", name, "id")
        for name, subnet in resources(synthesized, "aws_subnet").items()
        if subnet["tags"]["tier"] == "workload"
    )


def definition_of(synthesized: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(only(synthesized, "aws_sagemaker_pipeline")["pipeline_definition"]))


@pytest.fixture(scope="module")
def definition(synthesized: dict[str, Any]) -> dict[str, Any]:
    return definition_of(synthesized)


def step_named(definition: dict[str, Any], name: str) -> dict[str, Any]:
    (step,) = [s for s in definition["Steps"] if s["Name"] == name]
    return step


def arguments(definition: dict[str, Any], step: str) -> dict[str, Any]:
    return dict(step_named(definition, step)["Arguments"])


def processing_input(definition: dict[str, Any], step: str, name: str) -> dict[str, Any]:
    (found,) = [
        i for i in arguments(definition, step)["ProcessingInputs"] if i["InputName"] == name
    ]
    return dict(found["S3Input"])


def processing_output(definition: dict[str, Any], step: str, name: str) -> dict[str, Any]:
    outputs = arguments(definition, step)["ProcessingOutputConfig"]["Outputs"]
    (found,) = [o for o in outputs if o["OutputName"] == name]
    return dict(found["S3Output"])


def test_the_pipeline_is_named_after_the_training_pipeline(synthesized: dict[str, Any]) -> None:
    pipeline = only(synthesized, "aws_sagemaker_pipeline")
    assert pipeline["pipeline_name"] == PIPELINE
    assert pipeline["role_arn"] == named_ref(
        synthesized, "aws_iam_role", f"{PIPELINE}-execution", "arn"
    )
    assert [s["Name"] for s in definition_of(synthesized)["Steps"]] == ["Partition", "Build"]


# --- sharding: Build receives whole partitions, over the configured instances --------------


def sharding_violations(definition: dict[str, Any], instances: int) -> list[str]:
    found = []
    partition = arguments(definition, "Partition")
    build = arguments(definition, "Build")
    if partition["ProcessingResources"]["ClusterConfig"]["InstanceCount"] != 1:
        found.append("Partition runs on more than one instance")
    count = build["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
    if count != instances:
        found.append(f"Build runs on {count} instances, not {instances}")
    source = processing_input(definition, "Build", "partitions")
    if source["S3DataDistributionType"] != "ShardedByS3Key":
        found.append(f"partitions are {source['S3DataDistributionType']}")
    expected = {
        "Get": "Steps.Partition.ProcessingOutputConfig.Outputs['partitions'].S3Output.S3Uri"
    }
    if source["S3Uri"] != expected:
        found.append(f"Build reads {source['S3Uri']}, not Partition's partitions")
    spec = processing_input(definition, "Build", "spec")
    if spec["S3DataDistributionType"] != "FullyReplicated":
        found.append("not every instance gets the spec")
    return found


def test_build_shards_whole_partitions_over_the_configured_instances(
    definition: dict[str, Any],
) -> None:
    assert sharding_violations(definition, INSTANCES) == []
    partition_args = arguments(definition, "Partition")["AppSpecification"]["ContainerArguments"]
    assert partition_args[partition_args.index("--partitions") + 1] == str(PARTITIONS)


def _set_input(step: str, name: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(definition: dict[str, Any]) -> None:
        for item in step_named(definition, step)["Arguments"]["ProcessingInputs"]:
            if item["InputName"] == name:
                item["S3Input"][key] = value

    return mutate


def _set_instances(step: str, count: int) -> Callable[[dict[str, Any]], None]:
    def mutate(definition: dict[str, Any]) -> None:
        cluster = step_named(definition, step)["Arguments"]["ProcessingResources"]["ClusterConfig"]
        cluster["InstanceCount"] = count

    return mutate


SHARDING_MUTATIONS = {
    "replicated-partitions": (
        _set_input("Build", "partitions", "S3DataDistributionType", "FullyReplicated"),
        "partitions are FullyReplicated",
    ),
    "one-build-instance": (_set_instances("Build", 1), "Build runs on 1 instances"),
    "two-partitioners": (_set_instances("Partition", 2), "Partition runs on more than one"),
    "reads-the-export-again": (
        _set_input("Build", "partitions", "S3Uri", "s3://raw/fhir-export/"),
        "not Partition's partitions",
    ),
    "sharded-spec": (
        _set_input("Build", "spec", "S3DataDistributionType", "ShardedByS3Key"),
        "spec",
    ),
}


@pytest.mark.parametrize("case", sorted(SHARDING_MUTATIONS))
def test_sharding_checker_detects_each_change(definition: dict[str, Any], case: str) -> None:
    mutate, expected = SHARDING_MUTATIONS[case]
    broken = copy.deepcopy(definition)
    mutate(broken)
    found = sharding_violations(broken, INSTANCES)
    assert len(found) == 1 and expected in found[0], found


# --- inputs and outputs: the export prefix in, the offline store and run folders out --------


def test_partition_reads_exactly_the_raw_buckets_export_prefix(
    synthesized: dict[str, Any], definition: dict[str, Any]
) -> None:
    export = processing_input(definition, "Partition", "export")
    raw = bucket_ref(synthesized, RAW, "bucket")
    assert export == {
        # One export folder, named per run, inside the export prefix.
        "S3Uri": {
            "Std:Join": {
                "On": "",
                "Values": [f"s3://{raw}/{EXPORT_PREFIX}", {"Get": "Parameters.ExportFolder"}],
            }
        },
        "LocalPath": "/opt/ml/processing/input/export",
        "S3DataType": "S3Prefix",
        "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated",
    }
    inputs = [i["InputName"] for i in arguments(definition, "Partition")["ProcessingInputs"]]
    assert inputs == ["export"]


def test_a_changed_export_input_is_told_apart(
    synthesized: dict[str, Any], definition: dict[str, Any]
) -> None:
    """Twin: the whole raw bucket, or another prefix of it, is not the export prefix."""
    raw = bucket_ref(synthesized, RAW, "bucket")
    for uri in (f"s3://{raw}/", f"s3://{raw}/incoming/", f"s3://{raw}/fhir-export-old/"):
        broken = copy.deepcopy(definition)
        _set_input("Partition", "export", "S3Uri", uri)(broken)
        assert (
            processing_input(broken, "Partition", "export")["S3Uri"]
            != (processing_input(definition, "Partition", "export")["S3Uri"])
        )


def run_folder(synthesized: dict[str, Any], uri: Any) -> list[Any] | None:
    """The parts after s3://<artifacts>/pipelines/<pipeline>/<execution id>/, or None when
    the URI is not in this pipeline's run folder."""
    artifacts = bucket_ref(synthesized, ARTIFACTS, "bucket")
    if not isinstance(uri, dict) or "Std:Join" not in uri:
        return None
    values = uri["Std:Join"]["Values"]
    if values[:2] != [
        f"s3://{artifacts}/pipelines/{PIPELINE}",
        {"Get": "Execution.PipelineExecutionId"},
    ]:
        return None
    return list(values[2:])


def test_outputs_go_to_the_offline_store_and_the_runs_own_folders(
    synthesized: dict[str, Any], definition: dict[str, Any]
) -> None:
    offline = bucket_ref(synthesized, OFFLINE, "bucket")
    assert processing_output(definition, "Build", "offline") == {
        "S3Uri": f"s3://{offline}/feature-store/",
        "LocalPath": "/opt/ml/processing/output/offline",
        "S3UploadMode": "EndOfJob",
    }
    for step, name in (
        ("Partition", "partitions"),
        ("Partition", "report"),
        ("Build", "online"),
        ("Build", "report"),
    ):
        output = processing_output(definition, step, name)
        assert run_folder(synthesized, output["S3Uri"]) == [step.lower(), name], (step, name)
        assert output["LocalPath"] == f"/opt/ml/processing/output/{name}"


def test_the_run_folder_reader_refuses_another_location(synthesized: dict[str, Any]) -> None:
    artifacts = bucket_ref(synthesized, ARTIFACTS, "bucket")
    execution = {"Get": "Execution.PipelineExecutionId"}
    other = {"Std:Join": {"On": "/", "Values": [f"s3://{artifacts}/pipelines/x", execution]}}
    assert run_folder(synthesized, other) is None
    assert run_folder(synthesized, f"s3://{artifacts}/pipelines/{PIPELINE}/report") is None


def test_jobs_run_the_builder_image_with_the_documented_arguments(
    definition: dict[str, Any],
) -> None:
    partition = arguments(definition, "Partition")["AppSpecification"]
    build = arguments(definition, "Build")["AppSpecification"]
    for app in (partition, build):
        assert app["ImageUri"] == IMAGE
        assert app["ContainerEntrypoint"] == ENTRYPOINT
    assert partition["ContainerArguments"] == [
        "partition",
        "--input",
        "/opt/ml/processing/input/export",
        "--output",
        "/opt/ml/processing/output/partitions",
        "--partitions",
        str(PARTITIONS),
        "--report",
        "/opt/ml/processing/output/report",
        "--max-bad-line-share",
        "0.02",
    ]
    assert build["ContainerArguments"] == [
        "build",
        "--input",
        "/opt/ml/processing/input/partitions",
        "--spec",
        "/opt/ml/processing/input/spec/feature-spec.json",
        "--offline-output",
        "/opt/ml/processing/output/offline",
        "--online-output",
        "/opt/ml/processing/output/online",
        "--report",
        "/opt/ml/processing/output/report",
        "--write-time",
        {"Get": "Execution.StartDateTime"},
    ]
    # The paths the arguments name are the inputs' and outputs' local paths.
    assert processing_input(definition, "Build", "spec")["LocalPath"] == (
        "/opt/ml/processing/input/spec"
    )
    for step in ("Partition", "Build"):
        assert arguments(definition, step)["StoppingCondition"] == {"MaxRuntimeInSeconds": 5400}


def test_the_builder_accepts_the_arguments_the_pipeline_passes(definition: dict[str, Any]) -> None:
    """The definition's arguments parse with the program's own parser (the write time as
    SageMaker renders Execution.StartDateTime, ISO-8601 UTC)."""
    from ml.feature_builder import parse_arguments  # noqa: PLC0415 (pyarrow: only here)

    for step in ("Partition", "Build"):
        values = [
            "2026-01-15T10:30:00.123Z" if isinstance(value, dict) else value
            for value in arguments(definition, step)["AppSpecification"]["ContainerArguments"]
        ]
        parsed = parse_arguments(values)
        assert parsed.command == step.lower()


# --- every job: isolated, in the private subnets, KMS on volumes and outputs -----------------


def job_violations(
    definition: dict[str, Any],
    *,
    volume_key: str,
    output_keys: dict[str, str],
    subnets: list[str],
    security_group: str,
) -> list[str]:
    found = []
    for step in definition["Steps"]:
        name, args = step["Name"], step["Arguments"]
        if step["Type"] != "Processing":
            found.append(f"{name}: unchecked step type {step['Type']}")
            continue
        network = args.get("NetworkConfig", {})
        if network.get("EnableNetworkIsolation") is not True:
            found.append(f"{name}: network isolation off")
        if network.get("EnableInterContainerTrafficEncryption") is not True:
            found.append(f"{name}: inter-container traffic unencrypted")
        vpc = network.get("VpcConfig") or {}
        expected_vpc = {"SecurityGroupIds": [security_group], "Subnets": subnets}
        if {k: sorted(v) for k, v in vpc.items()} != expected_vpc:
            found.append(f"{name}: VPC config {vpc}")
        cluster = args.get("ProcessingResources", {}).get("ClusterConfig", {})
        if cluster.get("VolumeKmsKeyId") != volume_key:
            found.append(f"{name}: volume key {cluster.get('VolumeKmsKeyId')}")
        output_key = args.get("ProcessingOutputConfig", {}).get("KmsKeyId")
        if output_key != output_keys.get(name):
            found.append(f"{name}: output key {output_key}")
    return found


@pytest.fixture(scope="module")
def job_context(synthesized: dict[str, Any]) -> dict[str, Any]:
    ml_key = key_ref(synthesized, "ml-artifacts")
    return {
        "volume_key": ml_key,
        # Build writes the offline store: the feature-store key, like the rest of it.
        "output_keys": {"Partition": ml_key, "Build": key_ref(synthesized, "feature-store")},
        "subnets": workload_subnet_refs(synthesized),
        "security_group": named_ref(synthesized, "aws_security_group", f"{PIPELINE}-jobs", "id"),
    }


def test_both_jobs_are_isolated_in_the_private_subnets_and_encrypted(
    definition: dict[str, Any], job_context: dict[str, Any]
) -> None:
    assert len(job_context["subnets"]) == 2
    assert job_violations(definition, **job_context) == []


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(args: dict[str, Any]) -> None:
        for part in path[:-1]:
            args = args[part]
        del args[path[-1]]

    return mutate


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(args: dict[str, Any]) -> None:
        for part in path[:-1]:
            args = args[part]
        args[path[-1]] = value

    return mutate


JOB_MUTATIONS = [
    ("Partition", _drop(("NetworkConfig", "EnableNetworkIsolation")), "network isolation off"),
    ("Build", _set(("NetworkConfig", "EnableNetworkIsolation"), False), "isolation off"),
    ("Build", _drop(("NetworkConfig", "EnableInterContainerTrafficEncryption")), "unencrypted"),
    ("Partition", _drop(("NetworkConfig", "VpcConfig")), "VPC config"),
    ("Build", _set(("NetworkConfig", "VpcConfig", "Subnets"), ["subnet-public"]), "VPC config"),
    ("Build", _drop(("ProcessingResources", "ClusterConfig", "VolumeKmsKeyId")), "volume key"),
    ("Partition", _drop(("ProcessingOutputConfig", "KmsKeyId")), "output key"),
    # The offline store's files under the ML key would be unreadable to its readers.
    ("Build", _set(("ProcessingOutputConfig", "KmsKeyId"), "ml-artifacts-key"), "output key"),
]


@pytest.mark.parametrize(
    ("step", "mutate", "expected"),
    JOB_MUTATIONS,
    ids=[f"{s}-{e.replace(' ', '-')}-{i}" for i, (s, _, e) in enumerate(JOB_MUTATIONS)],
)
def test_job_checker_detects_each_missing_control(
    definition: dict[str, Any],
    job_context: dict[str, Any],
    step: str,
    mutate: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    broken = copy.deepcopy(definition)
    mutate(step_named(broken, step)["Arguments"])
    found = job_violations(broken, **job_context)
    assert len(found) == 1 and found[0].startswith(f"{step}:") and expected in found[0], found


def test_jobs_reach_only_the_vpc_endpoints_and_s3_over_https(synthesized: dict[str, Any]) -> None:
    group = named_ref(synthesized, "aws_security_group", f"{PIPELINE}-jobs", "id")
    rules = [
        r
        for r in resources(synthesized, "aws_vpc_security_group_egress_rule").values()
        if r["security_group_id"] == group
    ]
    (prefix_list,) = synthesized["data"]["aws_prefix_list"]
    s3 = ref("data.aws_prefix_list", prefix_list, "id")
    destinations = sorted(str(r.get("cidr_ipv4") or r.get("prefix_list_id")) for r in rules)
    assert destinations == sorted([VPC_CIDR, s3])
    assert all((r["ip_protocol"], r["from_port"], r["to_port"]) == ("tcp", 443, 443) for r in rules)
    ingress = resources(synthesized, "aws_vpc_security_group_ingress_rule").values()
    assert not [r for r in ingress if r["security_group_id"] == group]


# --- the execution role --------------------------------------------------------------------


@pytest.fixture(scope="module")
def execution_policy(synthesized: dict[str, Any]) -> str:
    (policy,) = [
        p["policy"]
        for p in resources(synthesized, "aws_iam_role_policy").values()
        if p["name"] == "build-features-from-the-export-only"
    ]
    return str(policy)


RAW_KEYS = {
    # key in the raw bucket -> whether the role may read it
    f"{EXPORT_PREFIX}store-FHIR_EXPORT-job/Patient/Patient-0.ndjson": True,
    f"{EXPORT_PREFIX}x.ndjson": True,
    "incoming/site-7/batch.ndjson": False,
    "fhir-import/bundle.ndjson": False,
    "fhir-export-old/Patient/Patient-0.ndjson": False,
    "Patient-0.ndjson": False,
}


def raw_reads(synthesized: dict[str, Any], policy: str) -> dict[str, bool]:
    raw = bucket_ref(synthesized, RAW, "arn")
    return {key: iam_allows(policy, "s3:GetObject", f"{raw}/{key}") for key in RAW_KEYS}


def test_the_role_reads_nothing_of_the_raw_bucket_outside_the_export_prefix(
    synthesized: dict[str, Any], execution_policy: str
) -> None:
    assert raw_reads(synthesized, execution_policy) == RAW_KEYS
    raw = bucket_ref(synthesized, RAW, "arn")
    for prefix, expected in ((EXPORT_PREFIX, True), ("incoming/", False), ("", False)):
        allowed = iam_allows(execution_policy, "s3:ListBucket", raw, {"s3:prefix": prefix})
        assert allowed is expected, prefix


def test_the_raw_read_check_detects_a_wider_grant(
    synthesized: dict[str, Any], execution_policy: str
) -> None:
    """Twin: the read statement widened to the whole bucket reads the other prefixes too."""
    raw = bucket_ref(synthesized, RAW, "arn")
    policy = json.loads(execution_policy)
    for candidate in policy["Statement"]:
        if candidate["Sid"] == "ReadFhirExportPrefixOnly":
            candidate["Resource"] = f"{raw}/*"
    reads = raw_reads(synthesized, json.dumps(policy))
    assert reads["incoming/site-7/batch.ndjson"] is True
    assert reads != RAW_KEYS


def execution_requests(synthesized: dict[str, Any]) -> list[tuple[str, str, str, Any, bool]]:
    raw = bucket_ref(synthesized, RAW, "arn")
    artifacts = bucket_ref(synthesized, ARTIFACTS, "arn")
    offline = bucket_ref(synthesized, OFFLINE, "arn")
    ml, feature, phi = (
        key_ref(synthesized, p) for p in ("ml-artifacts", "feature-store", "phi-data")
    )
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    sm = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    role = named_ref(synthesized, "aws_iam_role", f"{PIPELINE}-execution", "arn")
    (vpc,) = resources(synthesized, "aws_vpc")
    vpc_arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{ref('aws_vpc', vpc, 'id')}"
    isolated = {
        "sagemaker:NetworkIsolation": "true",
        "sagemaker:InterContainerTrafficEncryption": "true",
        "sagemaker:VpcSubnets": ["subnet-1"],
    }
    job = f"{sm}:processing-job/pipelines-a1b2c3d4e5f6-build-x7y8z9"
    run = f"pipelines/{PIPELINE}/a1b2c3d4e5f6"
    spec = f"{artifacts}/pipelines/{PIPELINE}/feature-spec.json"
    return [
        ("read-spec", "s3:GetObject", spec, {}, True),
        ("replace-spec", "s3:PutObject", spec, {}, False),
        ("read-other-artifacts", "s3:GetObject", f"{artifacts}/models/m.tar.gz", {}, False),
        ("read-other-pipeline", "s3:GetObject", f"{artifacts}/pipelines/x/1/a", {}, False),
        (
            "write-run-folder",
            "s3:PutObject",
            f"{artifacts}/{run}/build/report/algo-1.json",
            {},
            True,
        ),
        ("read-run-folder", "s3:GetObject", f"{artifacts}/{run}/partition/partitions/p", {}, True),
        ("write-other-pipeline", "s3:PutObject", f"{artifacts}/pipelines/x/1/a", {}, False),
        ("list-own-artifacts", "s3:ListBucket", artifacts, {"s3:prefix": f"{run}/"}, True),
        ("list-all-artifacts", "s3:ListBucket", artifacts, {"s3:prefix": ""}, False),
        (
            "write-declared-group",
            "s3:PutObject",
            f"{offline}/feature-store/encounters/{ACCOUNT}/sagemaker/{REGION}/offline-store/"
            "encounters-1700000000/data/year=2026/part.parquet",
            {},
            True,
        ),
        ("write-undeclared-group", "s3:PutObject", f"{offline}/feature-store/labs/x", {}, False),
        ("write-offline-root", "s3:PutObject", f"{offline}/feature-store/x.parquet", {}, False),
        ("read-offline-store", "s3:GetObject", f"{offline}/feature-store/encounters/x", {}, False),
        ("write-raw", "s3:PutObject", f"{raw}/{EXPORT_PREFIX}x", {}, False),
        ("delete-export", "s3:DeleteObject", f"{raw}/{EXPORT_PREFIX}x", {}, False),
        ("decrypt-export-via-s3", "kms:Decrypt", phi, via_s3, True),
        ("decrypt-export-directly", "kms:Decrypt", phi, {}, False),
        ("encrypt-with-phi-key", "kms:GenerateDataKey", phi, via_s3, False),
        ("ml-key-via-s3", "kms:GenerateDataKey", ml, via_s3, True),
        ("ml-key-directly", "kms:Decrypt", ml, {}, False),
        ("feature-key-via-s3", "kms:GenerateDataKey", feature, via_s3, True),
        ("feature-key-directly", "kms:GenerateDataKey", feature, {}, False),
        ("grant-for-volumes", "kms:CreateGrant", ml, {"kms:GrantIsForAWSResource": "true"}, True),
        ("grant-for-anyone", "kms:CreateGrant", ml, {}, False),
        ("isolated-build-job", "sagemaker:CreateProcessingJob", job, isolated, True),
        (
            "isolated-partition-job",
            "sagemaker:CreateProcessingJob",
            f"{sm}:processing-job/pipelines-a1b2c3d4e5f6-Partition-x7y8z9",
            isolated,
            True,
        ),
        (
            "job-with-network",
            "sagemaker:CreateProcessingJob",
            job,
            {**isolated, "sagemaker:NetworkIsolation": "false"},
            False,
        ),
        (
            "job-outside-vpc",
            "sagemaker:CreateProcessingJob",
            job,
            {k: v for k, v in isolated.items() if k != "sagemaker:VpcSubnets"},
            False,
        ),
        (
            "other-pipelines-step",
            "sagemaker:CreateProcessingJob",
            f"{sm}:processing-job/pipelines-a1b2c3d4e5f6-evaluate-x7y8z9",
            isolated,
            False,
        ),
        (
            "adhoc-job",
            "sagemaker:CreateProcessingJob",
            f"{sm}:processing-job/build",
            isolated,
            False,
        ),
        (
            "training-job",
            "sagemaker:CreateTrainingJob",
            f"{sm}:training-job/pipelines-x",
            {},
            False,
        ),
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
            "pull-builder-image",
            "ecr:BatchGetImage",
            f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/phi-ml/feature-builder",
            {},
            True,
        ),
        (
            "pull-other-image",
            "ecr:BatchGetImage",
            f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/phi-ml/processing",
            {},
            False,
        ),
        (
            "eni-in-this-vpc",
            "ec2:CreateNetworkInterface",
            f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/subnet-1",
            {"ec2:Vpc": vpc_arn},
            True,
        ),
        (
            "eni-in-other-vpc",
            "ec2:CreateNetworkInterface",
            f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/subnet-1",
            {"ec2:Vpc": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/vpc-other"},
            False,
        ),
        (
            "start-pipeline",
            "sagemaker:StartPipelineExecution",
            f"{sm}:pipeline/{PIPELINE}",
            {},
            False,
        ),
        ("put-feature-record", "sagemaker:PutRecord", f"{sm}:feature-group/encounters", {}, False),
    ]


EXECUTION_CASES = [
    "read-spec",
    "replace-spec",
    "read-other-artifacts",
    "read-other-pipeline",
    "write-run-folder",
    "read-run-folder",
    "write-other-pipeline",
    "list-own-artifacts",
    "list-all-artifacts",
    "write-declared-group",
    "write-undeclared-group",
    "write-offline-root",
    "read-offline-store",
    "write-raw",
    "delete-export",
    "decrypt-export-via-s3",
    "decrypt-export-directly",
    "encrypt-with-phi-key",
    "ml-key-via-s3",
    "ml-key-directly",
    "feature-key-via-s3",
    "feature-key-directly",
    "grant-for-volumes",
    "grant-for-anyone",
    "isolated-build-job",
    "isolated-partition-job",
    "job-with-network",
    "job-outside-vpc",
    "other-pipelines-step",
    "adhoc-job",
    "training-job",
    "pass-itself",
    "pass-itself-to-ec2",
    "pull-builder-image",
    "pull-other-image",
    "eni-in-this-vpc",
    "eni-in-other-vpc",
    "start-pipeline",
    "put-feature-record",
]


@pytest.mark.parametrize("case", EXECUTION_CASES)
def test_execution_role_allows_exactly_the_builds_own_work(
    synthesized: dict[str, Any], execution_policy: str, case: str
) -> None:
    """Each allowed request is the twin of a refused one differing in one resource or key."""
    requests = {r[0]: r[1:] for r in execution_requests(synthesized)}
    assert set(requests) == set(EXECUTION_CASES)
    action, resource, context, expected = requests[case]
    assert iam_allows(execution_policy, action, resource, context) is expected


# APIs without resource-level permissions (or confined by condition): the only "*" resources.
ALLOWED_WILDCARD_RESOURCES = {
    "EcrLogin": ["ecr:GetAuthorizationToken"],
    "PublishSageMakerJobMetrics": ["cloudwatch:PutMetricData"],
    "DescribeNetworkHasNoResourceLevelPermissions": [
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
    ],
}


def breadth_violations(policy_json: str) -> list[str]:
    found = []
    for candidate in statements(policy_json):
        if candidate["Effect"] != "Allow":
            continue
        sid, actions = candidate["Sid"], sorted(as_list(candidate["Action"]))
        found += [f"{sid}: wildcard action {a}" for a in actions if "*" in a]
        if "*" in as_list(candidate["Resource"]) and actions != ALLOWED_WILDCARD_RESOURCES.get(sid):
            found.append(f"{sid}: {actions} on *")
    return found


def test_the_role_names_specific_resources(execution_policy: str) -> None:
    assert breadth_violations(execution_policy) == []


def test_the_breadth_check_detects_a_star_resource(execution_policy: str) -> None:
    policy = json.loads(execution_policy)
    policy["Statement"].append(
        {"Sid": "Wide", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    )
    assert breadth_violations(json.dumps(policy)) == ["Wide: ['s3:GetObject'] on *"]


# --- the spec object ------------------------------------------------------------------------


TOKEN = re.compile(r"\$\{([^}]*)\}")


def substituted(content: str) -> str:
    """The content as Terraform would write it: each feature group's resolved offline URI in
    the layout DescribeFeatureGroup reports."""

    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        (group_name,) = [g.name for g in GROUPS if f"group-{g.name}_" in expression]
        assert expression.endswith(
            ".offline_store_config[0].s3_storage_config[0].resolved_output_s3_uri"
        ), expression
        return (
            f"s3://{OFFLINE}/feature-store/{group_name}/{ACCOUNT}/sagemaker/{REGION}/"
            f"offline-store/{group_name}-1700000000/data"
        )

    return TOKEN.sub(value, content)


def spec_object_violations(synthesized: dict[str, Any], body: dict[str, Any]) -> list[str]:
    found = []
    if body.get("server_side_encryption") != "aws:kms":
        found.append(f"server-side encryption {body.get('server_side_encryption')}")
    if body.get("kms_key_id") != key_ref(synthesized, "ml-artifacts"):
        found.append(f"key {body.get('kms_key_id')}")
    if body.get("bucket") != bucket_ref(synthesized, ARTIFACTS, "bucket"):
        found.append(f"bucket {body.get('bucket')}")
    if body.get("key") != f"pipelines/{PIPELINE}/feature-spec.json":
        found.append(f"key path {body.get('key')}")
    return found


def test_the_spec_object_is_encrypted_with_the_ml_key_where_the_job_reads_it(
    synthesized: dict[str, Any], definition: dict[str, Any]
) -> None:
    spec = only(synthesized, "aws_s3_object")
    assert spec_object_violations(synthesized, spec) == []
    # Its encryption context is its own ARN (no bucket key): the deployer's right to encrypt
    # with the ML key covers this object only.
    assert spec["bucket_key_enabled"] is False
    artifacts = bucket_ref(synthesized, ARTIFACTS, "bucket")
    assert processing_input(definition, "Build", "spec")["S3Uri"] == (
        f"s3://{artifacts}/{spec['key']}"
    )
    (pipeline,) = resources(synthesized, "aws_sagemaker_pipeline").values()
    assert pipeline["depends_on"] == [
        f"aws_s3_object.{next(iter(resources(synthesized, 'aws_s3_object')))}"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"server_side_encryption": "AES256"}, "server-side encryption AES256"),
        ({"kms_key_id": None}, "key None"),
        ({"kms_key_id": "alias/aws/s3"}, "key alias/aws/s3"),
        ({"key": "feature-spec.json"}, "key path"),
    ],
    ids=["sse-s3", "no-key", "aws-managed-key", "elsewhere"],
)
def test_the_spec_object_check_detects_each_change(
    synthesized: dict[str, Any], change: dict[str, Any], expected: str
) -> None:
    body = {**only(synthesized, "aws_s3_object"), **change}
    found = spec_object_violations(synthesized, body)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_spec_is_the_environments_and_parses_as_the_builder_reads_it(
    synthesized: dict[str, Any],
) -> None:
    content = only(synthesized, "aws_s3_object")["content"]
    # Before Terraform fills them in, the locations are the data layer's feature groups'.
    groups = json.loads(content)["groups"]
    for declared, written in zip(GROUPS, groups, strict=True):
        (logical,) = [
            n for n in resources(synthesized, "aws_sagemaker_feature_group") if declared.name in n
        ]
        assert written["resolved_output_s3_uri"] == ref(
            "aws_sagemaker_feature_group",
            logical,
            "offline_store_config[0].s3_storage_config[0].resolved_output_s3_uri",
        )
    spec = spec_from_dict(json.loads(substituted(content)))
    assert spec.environment == "unit"
    assert spec.basis.label == "hipaa-de-identified:synthetic-population"
    assert spec.max_bad_line_share == 0.02
    assert [g.name for g in spec.groups] == ["patient-vitals", "encounters"]
    assert [f.name for f in spec.groups[1].features] == [f.name for f in GROUPS[1].features]
    assert spec.groups[0].resolved_output_s3_uri.endswith("/patient-vitals-1700000000/data")


def test_a_spec_the_builder_would_refuse_is_caught(synthesized: dict[str, Any]) -> None:
    """Twin: the same content with a feature the builder cannot derive does not parse."""
    document = json.loads(substituted(only(synthesized, "aws_s3_object")["content"]))
    document["groups"][0]["features"][2]["type"] = "String"
    with pytest.raises(ValueError, match="heart_rate' is Fractional when derived from FHIR"):
        spec_from_dict(document)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("image", f"{ECR}/phi-ml/feature-builder:1.0.0", "names the tag ':1.0.0'"),
        ("image", f"{ECR}/phi-ml/feature-builder", "not a private ECR image"),
        ("image", "docker.io/library/python@sha256:" + "ab" * 32, "not a private ECR image"),
        ("instance_type", "m5.xlarge", "String should match pattern"),
        ("instance_count", 0, "greater than or equal to 1"),
        ("instance_count", 101, "less than or equal to 100"),
        ("partitions", 10_001, "less than or equal to 10000"),
        ("partitions", INSTANCES - 1, "cannot keep 3 instances busy"),
        ("max_bad_line_share", 0.51, "less than or equal to 0.5"),
        ("max_bad_line_share", -0.01, "greater than or equal to 0"),
        ("max_runtime_seconds", 59, "greater than or equal to 60"),
        ("max_runtime_seconds", 432_001, "less than or equal to 432000"),
        ("export_prefix", "fhir-export", "String should match pattern"),
        ("export_prefix", "/fhir-export/", "String should match pattern"),
        ("export_prefix", "fhir-*/", "String should match pattern"),
        ("pipeline_name", "x" * 55, "at most 54 characters"),
        ("pipeline_name", "Unit-Features", "String should match pattern"),
        ("processing_basis_kind", "ehds-data-permit", "not a processing basis in the US"),
    ],
    ids=lambda value: str(value)[:24],
)
def test_config_rejects_bad_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)) as raised:
        build_config(**{field: value})
    if field != "processing_basis_kind":  # a rule across fields: reported for the model
        assert raised.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    "overrides",
    [
        {"instance_count": 100, "partitions": 100},
        {"partitions": INSTANCES},
        {"partitions": 10_000},
        {"max_bad_line_share": 0.5},
        {"max_bad_line_share": 0},
        {"max_runtime_seconds": 432_000},
        {"export_prefix": "fhir/exports/"},
        {"pipeline_name": "x" * 54},
    ],
    ids=str,
)
def test_config_accepts_the_boundaries(overrides: dict[str, Any]) -> None:
    """Twin of the rejections: the rules refuse only what they should."""
    config = build_config(**overrides)
    assert {name: getattr(config, name) for name in overrides} == overrides


def test_the_role_name_fits_iam_at_the_longest_pipeline_name() -> None:
    config = build_config(pipeline_name="x" * 54)
    assert len(config.execution_role_name) == 64


def test_config_refuses_unknown_fields_such_as_an_isolation_switch() -> None:
    with pytest.raises(ValidationError, match="enable_network_isolation"):
        build_config(enable_network_isolation=False)


# --- the environment file: errors at the YAML field -----------------------------------------


def environment_with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev" / ENVIRONMENT_FILE).read_text())
    change(data)
    path = tmp_path / "dev" / ENVIRONMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def builder_setting(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["ml"]["features"]["builder"][name] = value

    return change


def training_pipeline_named(name: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["ml"]["pipeline"]["name"] = name

    return change


def export_prefix(value: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["ml"]["features"]["export_prefix"] = value

    return change


IMAGE_BY_TAG = "111111111111.dkr.ecr.us-east-1.amazonaws.com/phi-ml/feature-builder:2.1.0"


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (builder_setting("image", IMAGE_BY_TAG), "ml.features.builder.image", "pinned by digest"),
        (builder_setting("partitions", 1), "ml.features.builder.partitions", "instances busy"),
        (builder_setting("instance_count", 0), "ml.features.builder.instance_count", "1"),
        (export_prefix("fhir-export"), "ml.features.export_prefix", "pattern"),
        # 46 characters: the training pipeline's own limit (48) holds, the features
        # pipeline's role (<name>-features-execution) would not fit IAM's 64.
        (training_pipeline_named("p" * 46), "ml.pipeline.name", "at most 54 characters"),
    ],
    ids=["tagged-image", "fewer-partitions", "no-instances", "prefix", "long-name"],
)
def test_a_bad_builder_setting_is_reported_at_its_yaml_field(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], field: str, rule: str
) -> None:
    with pytest.raises(EnvironmentFileError) as raised:
        load_environment_file(environment_with(tmp_path, change))
    assert raised.value.field == field
    assert rule in raised.value.rule


def test_the_unchanged_file_loads_and_the_longest_name_that_fits_does(tmp_path: Path) -> None:
    """Twin of the field errors: the same writing path with no change, and a 45-character
    training pipeline name, both load."""
    unchanged = load_environment_file(environment_with(tmp_path, lambda data: None))
    assert unchanged == shipped("dev")
    environment = load_environment_file(
        environment_with(tmp_path / "long", training_pipeline_named("p" * 45))
    )
    assert isinstance(environment, WorkloadEnvironment)
    assert layer_configs(environment).feature_build.pipeline_name == "p" * 45 + "-features"


# --- the environments: configs, keys and the ML stack ---------------------------------------


def shipped(name: str) -> WorkloadEnvironment:
    environment = load_environment_file(ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE)
    assert isinstance(environment, WorkloadEnvironment)
    return environment


@pytest.mark.parametrize("name", ["dev", "staging", "prod", "eu-research"])
def test_each_environments_builder_is_mapped_from_its_file(name: str) -> None:
    environment = shipped(name)
    configs = layer_configs(environment)
    build, settings = configs.feature_build, environment.ml.features
    assert build.pipeline_name == f"{environment.ml.pipeline.name}-features"
    assert (build.image, build.instance_count, build.partitions) == (
        settings.builder.image,
        settings.builder.instance_count,
        settings.builder.partitions,
    )
    assert build.max_bad_line_share == settings.builder.max_bad_line_share
    assert build.export_prefix == settings.export_prefix
    assert build.groups == configs.features.groups
    assert build.offline_prefix == configs.features.offline_prefix


def key_policy_of(name: str, purpose: KeyPurpose) -> list[dict[str, Any]]:
    keys = layer_configs(shipped(name)).keys
    return list(statements(key_policy(keys.key_config(purpose))))


def key_allows(
    policy: list[dict[str, Any]], principal: str, action: str, context: dict[str, Any]
) -> bool:
    """A key policy's verdict for one principal (its own ARN, or a role matched by
    aws:PrincipalArn through the account principal)."""
    account = f"arn:aws:iam::{principal.split(':')[4]}:root"
    context = {"aws:PrincipalArn": principal, **context}
    applicable = [
        s
        for s in policy
        if {principal, account} & set(as_list(s.get("Principal", {}).get("AWS", [])))
        and statement_applies(s, action, "*", context)
    ]
    return any(s["Effect"] == "Allow" for s in applicable) and not any(
        s["Effect"] == "Deny" for s in applicable
    )


@pytest.mark.parametrize(
    "purpose", [KeyPurpose.PHI_DATA, KeyPurpose.ML_ARTIFACTS, KeyPurpose.FEATURE_STORE]
)
def test_the_keys_admit_the_execution_role_before_it_exists(purpose: KeyPurpose) -> None:
    configs = layer_configs(shipped("dev"))
    role = f"arn:aws:iam::111111111111:role/{configs.feature_build.execution_role_name}"
    policy = key_policy_of("dev", purpose)
    assert key_allows(policy, role, "kms:Decrypt", {})
    # Twin: a role of another name is not admitted.
    assert not key_allows(
        policy, "arn:aws:iam::111111111111:role/other-features", "kms:Decrypt", {}
    )


def test_the_deployer_may_encrypt_the_spec_object_only_and_never_decrypt() -> None:
    configs = layer_configs(shipped("dev"))
    deployer = shipped("dev").deployment_role_arn
    spec = f"arn:aws:s3:::acme-phi-dev-ml-artifacts/{configs.feature_build.spec_key}"
    policy = key_policy_of("dev", KeyPurpose.ML_ARTIFACTS)
    through_s3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    assert key_allows(
        policy,
        deployer,
        "kms:GenerateDataKey",
        {**through_s3, "kms:EncryptionContext:aws:s3:arn": spec},
    )
    for action, context in (
        ("kms:GenerateDataKey", {**through_s3, "kms:EncryptionContext:aws:s3:arn": spec + "x"}),
        (
            "kms:GenerateDataKey",
            {
                **through_s3,
                "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::acme-phi-dev-ml-artifacts",
            },
        ),
        ("kms:GenerateDataKey", {"kms:EncryptionContext:aws:s3:arn": spec}),
        ("kms:Decrypt", {**through_s3, "kms:EncryptionContext:aws:s3:arn": spec}),
    ):
        assert not key_allows(policy, deployer, action, context), (action, context)
    # Only the ML key: the others give the deployer nothing of the kind.
    for purpose in (KeyPurpose.PHI_DATA, KeyPurpose.FEATURE_STORE):
        other = key_policy_of("dev", purpose)
        assert not key_allows(
            other,
            deployer,
            "kms:GenerateDataKey",
            {**through_s3, "kms:EncryptionContext:aws:s3:arn": spec},
        )


@pytest.fixture(scope="module")
def dev_ml(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("feature-build") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev"], out)
    return dict(json.loads((out / "stacks" / "dev-ml" / "cdk.tf.json").read_text()))


def test_the_ml_stack_declares_the_features_pipeline_and_outputs_its_arn(
    dev_ml: dict[str, Any],
) -> None:
    pipelines = {
        p["pipeline_name"]: n for n, p in resources(dev_ml, "aws_sagemaker_pipeline").items()
    }
    assert set(pipelines) == {"phi-ml-dev-readmission", "phi-ml-dev-readmission-features"}
    assert dev_ml["output"]["features-pipeline-arn"]["value"] == ref(
        "aws_sagemaker_pipeline", pipelines["phi-ml-dev-readmission-features"], "arn"
    )
    definition = json.loads(
        resources(dev_ml, "aws_sagemaker_pipeline")[pipelines["phi-ml-dev-readmission-features"]][
            "pipeline_definition"
        ]
    )
    build = step_named(definition, "Build")["Arguments"]
    assert build["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    # The role the key policies admit by name is the one the stack creates.
    (role,) = [
        r
        for r in resources(dev_ml, "aws_iam_role").values()
        if r["name"] == "phi-ml-dev-readmission-features-execution"
    ]
    admitted = layer_configs(shipped("dev")).keys.service_roles
    for purpose in (KeyPurpose.PHI_DATA, KeyPurpose.ML_ARTIFACTS, KeyPurpose.FEATURE_STORE):
        assert f"arn:aws:iam::111111111111:role/{role['name']}" in admitted[purpose]


def test_the_spec_names_the_data_stacks_feature_groups(dev_ml: dict[str, Any]) -> None:
    """A cross-stack reference: the data stack's resolved offline locations, read from its
    state, inside the JSON the job reads."""
    content = only(dev_ml, "aws_s3_object")["content"]
    uris = [g["resolved_output_s3_uri"] for g in json.loads(content)["groups"]]
    assert len(uris) == 2
    for uri, name in zip(uris, ["patient-vitals", "encounters"], strict=True):
        assert uri.startswith(
            "${data.terraform_remote_state.cross-stack-reference-input-dev-data.outputs."
            "cross-stack-output-aws_sagemaker_feature_groupfeatures_group-" + name
        ), uri
        assert uri.endswith("offline_store_config0s3_storage_config0resolved_output_s3_uri}")


# --- the container: what the pipeline runs is what the Dockerfile builds --------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    return dockerfiles.instructions(DOCKERFILE)


def dockerfile_pins() -> dict[str, str]:
    return dockerfiles.pip_pins(DOCKERFILE)


def dockerfile_entrypoint() -> list[str]:
    return dockerfiles.entrypoint(DOCKERFILE)


def module_file(module: str) -> Path | None:
    base = REPO / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def builder_imports(module: str = "ml.feature_builder") -> set[str]:
    """The third-party top-level packages the builder's modules import (transitively within
    the ml package)."""
    seen: set[str] = set()
    third_party: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        path = module_file(current)
        if current in seen or path is None:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top == "ml":
                    pending.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.add(top)
    return third_party


def test_the_entrypoint_module_exists_and_has_a_main() -> None:
    module = REPO / "ml" / "feature_builder.py"
    assert module.is_file()
    tree = ast.parse(module.read_text(encoding="utf-8"))
    assert "main" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert dockerfile_entrypoint()[-1] == "ml.feature_builder"


def test_the_pipeline_runs_the_dockerfiles_entrypoint(definition: dict[str, Any]) -> None:
    assert dockerfile_entrypoint() == ENTRYPOINT
    for step in ("Partition", "Build"):
        assert arguments(definition, step)["AppSpecification"]["ContainerEntrypoint"] == (
            dockerfile_entrypoint()
        )


def test_the_image_installs_exactly_the_pinned_versions_of_what_the_builder_imports() -> None:
    pins, pinned = dockerfile_pins(), dockerfiles.pyproject_pins()
    assert {"pyarrow", "orjson", "boto3"} <= set(pins)
    assert {name: pinned.get(name) for name in pins} == pins
    # Every package the builder imports is in the image (boto3 only for s3:// inputs).
    assert builder_imports() <= set(pins), builder_imports() - set(pins)


def test_the_pin_check_detects_a_drifted_version() -> None:
    """Twin: a Dockerfile pin other than pyproject's is told apart."""
    pins = {**dockerfile_pins(), "pyarrow": "25.0.0"}
    assert {name: dockerfiles.pyproject_pins().get(name) for name in pins} != pins


def test_the_image_is_aws_published_non_root_and_copies_the_package() -> None:
    instructions = dockerfile_instructions()
    (base,) = [rest for instruction, rest in instructions if instruction == "FROM"]
    assert base.startswith("public.ecr.aws/docker/library/python:3.11")
    users = [rest for instruction, rest in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("COPY", "ml /opt/program/ml") in instructions
    (environment,) = [rest for instruction, rest in instructions if instruction == "ENV"]
    assert set(environment.split()) == {"PYTHONPATH=/opt/program", "PYTHONUNBUFFERED=1"}
    assert all(
        "--no-cache-dir" in rest for i, rest in instructions if rest.startswith("pip install")
    )


# --- real terraform -----------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_validates_the_feature_build_layer(tmp_path: Path) -> None:
    result = terraform_validate(
        tmp_path, lambda stack: build_platform(stack, build_config()), region=REGION
    )
    assert "The configuration is valid" in result.stdout


@pytest.mark.parametrize(
    ("objects", "deployers", "message"),
    [
        (("arn:aws:s3:::acme-phi-dev-ml-artifacts/pipelines/*",), ("arn:x",), "exact S3 object"),
        (("arn:aws:s3:::acme-phi-dev-ml-artifacts",), ("arn:x",), "exact S3 object"),
        (("arn:aws:s3:::acme-phi-dev-ml-artifacts/a.json",), (), "go together"),
        ((), ("arn:x",), "go together"),
    ],
    ids=["wildcard", "bucket", "no-deployer", "no-object"],
)
def test_a_key_admits_deployers_for_exact_objects_only(
    objects: tuple[str, ...], deployers: tuple[str, ...], message: str
) -> None:
    keys = layer_configs(shipped("dev")).keys
    base = keys.key_config(KeyPurpose.ML_ARTIFACTS).model_dump()
    with pytest.raises(ValidationError, match=message):
        type(keys.key_config(KeyPurpose.ML_ARTIFACTS))(
            **{**base, "deployed_objects": objects, "object_deployers": deployers}
        )
    # Twin: one exact object with its deployer is accepted.
    exact = {"deployed_objects": ("arn:aws:s3:::b-1/a.json",), "object_deployers": ("arn:x",)}
    assert type(keys.key_config(KeyPurpose.ML_ARTIFACTS))(**{**base, **exact})
