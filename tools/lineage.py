"""`make lineage ENV=dev [PACKAGE=<arn|version>]`: the chain an auditor needs for one model
version (FDA PCCP traceability, EU AI Act Article 12 record-keeping), read from the
environment's account: the version the endpoint serves, or the one named.

    python -m tools.lineage ENV [--package ARN|VERSION] [--format text|json] [--output FILE]
                                [--endpoint-url URL] [--profile PROFILE]
                                [--source-profile PROFILE]

What it prints, each link read from where the platform records it:
- the version, its provenance (MetadataProperties) and its approval: status, comment, who last
  changed it and when;
- the dataset manifest its CustomerMetadataProperties name, fetched from S3 with its sha256
  recomputed and compared with the recorded one (ml/dataset_manifest.py's schema);
- the feature build (the features pipeline's execution) and the FHIR export it read, resolved
  from that execution's own definition and parameters;
- the training pipeline's execution: status, parameters, steps (ListPipelineExecutionSteps
  where the endpoint implements it);
- images by digest, the training job named by the model archive URL with its hyperparameters,
  the recorded model archive sha256 (recorded by Evaluate, not recomputed here), the
  model-quality metrics (the report the version names, read from S3) and the drift baseline;
- the endpoint: endpoint configuration -> model -> the package its deployer tag names;
- every rollback in the group: the versions carrying `rolled-back-at`, in time order;
- for a version promoted from another environment (`promoted-from`, tools/promote_model.py):
  where it was trained and approved. Its dataset manifest, feature build, pipeline execution
  and training job are in that account: with --source-profile they are read there (the source
  version's own lineage, whose findings are this one's, plus: the source must be Approved and
  record the same model-archive-sha256); without, they are named with the command that reads
  them, and nothing is read across accounts.

Read-only: SageMaker and STS Describe*/List*/Get* calls, and S3 GetObject of the two documents
the version names (the manifest, the metrics report), which hold counts and digests, never a
patient identifier. policies/runtime/guard.py refuses anything else before it is sent.
Credentials: the usual chain (--profile, AWS_PROFILE, the AWS_* variables, SSO); --endpoint-url
(or AWS_ENDPOINT_URL) for the local emulator.

Exit status: 0 the chain is complete and consistent; 1 a finding (a digest that does not
match, metadata a version lacks, a link that names something that cannot be found, values
that disagree); 2 it cannot run as asked (unknown environment, no endpoint and no --package,
an unknown package, access denied, credentials of another account), with one `error:` line.
An API the endpoint does not implement is said so and is not a finding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

from environments.layer_configs import layer_configs
from environments.loader import ENVIRONMENTS_DIR, EnvironmentFileError, load_environments
from environments.schema import WorkloadEnvironment
from ml.dataset_manifest import ManifestError, manifest_from_dict
from ml.model_quality import GATE_METRIC_PATHS
from ml.sagemaker_paths import MODEL_ARCHIVE
from modules.feature_build import EXPORT_FOLDER_PARAMETER, EXPORT_INPUT, PARTITION_STEP
from modules.pipelines import FEATURE_BUILD_EXECUTION, FEATURES_AS_OF_PARAMETER, TRAIN_STEP
from policies.runtime.clients import (
    CONNECTION_ERRORS,
    ClientFactory,
    credentials_error,
    error_code,
    error_message,
    is_access_denied,
    is_credentials_problem,
    is_not_implemented,
    pages,
)
from requirements.model_lineage import (
    DATASET_MANIFEST_SHA256,
    DATASET_MANIFEST_URI,
    FEATURE_BUILD_JOB,
    FEATURES_AS_OF,
    IMAGE_BY_DIGEST,
    MODEL_ARCHIVE_SHA256,
    PROCESSING_IMAGE,
    PROMOTED_FROM,
    REQUIRED_CUSTOMER_METADATA,
    REQUIRED_METADATA_PROPERTIES,
    ROLLED_BACK_AT,
    ROLLED_BACK_ENDPOINT,
    ROLLED_BACK_TO,
    SHA256_HEX,
    TRAINING_IMAGE,
)
from runtime.deployer.handler import TAG_MODEL_PACKAGE
from tools.cli import UsageError, run_command

# The register step's key for its own execution (modules/pipelines.py writes it literally;
# requirements/model_lineage.py names no constant for it yet).
PIPELINE_EXECUTION_KEY: Final = "PipelineExecutionArn"
# The only content reads: the manifest and the metrics report the version names.
CONTENT_READS: Final = frozenset({"GetObject"})
APPROVED: Final = "Approved"
PLATFORM_TAG_PREFIX: Final = "phi-ml:"
PACKAGE_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):model-package/"
    r"(?P<group>[A-Za-z0-9-]+)/(?P<version>[0-9]+)$"
)
PIPELINE_EXECUTION_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:pipeline/[^/]+/execution/[^/]+$"
)
S3_URI: Final = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")
ARCHIVE_SUFFIX: Final = f"/output/{MODEL_ARCHIVE}"
T = TypeVar("T")
# Where the model archive digest comes from: the lineage never downloads the archive.
ARCHIVE_DIGEST_SOURCE: Final = "recorded by Evaluate; not recomputed here"
# Manifest inputs printed in the text form (JSON lists every one).
TEXT_INPUTS_SHOWN: Final = 10


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """A lookup that returned nothing: why, as the reader should see it."""

    note: str


@dataclass
class Reader:
    """Read-only clients and what the reads left unresolved: findings (a link the version
    records that cannot be followed) and APIs this endpoint does not offer."""

    clients: ClientFactory
    where: str
    findings: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)

    @property
    def sagemaker(self) -> Any:
        return self.clients.client("sagemaker")

    def read(self, what: str, client: Any, method: str, **parameters: Any) -> dict[str, Any] | Gap:
        return self._attempt(
            what, client, method, lambda: dict(getattr(client, method)(**parameters))
        )

    def listed(
        self, what: str, client: Any, method: str, key: str, **parameters: Any
    ) -> list[Any] | Gap:
        return self._attempt(
            what, client, method, lambda: list(pages(client, method, key, **parameters))
        )

    def _attempt(self, what: str, client: Any, method: str, call: Callable[[], T]) -> T | Gap:
        api = client.meta.method_to_api_mapping.get(method, method)
        try:
            return call()
        except (ClientError, NotImplementedError) as problem:
            if is_not_implemented(problem):
                note = f"{api} is not available from this endpoint ({self.where})"
                self.unavailable.append(note)
                return Gap(note)
            assert isinstance(problem, ClientError)
            if is_credentials_problem(problem) or is_access_denied(problem):
                raise
            note = f"{what}: {api} answered {error_code(problem)}: {error_message(problem)}"
            self.findings.append(note)
            return Gap(note)

    def s3_document(self, what: str, uri: str) -> bytes | Gap:
        matched = S3_URI.match(uri)
        if matched is None:
            note = f"{what}: {uri!r} is not an s3://bucket/key URI"
            self.findings.append(note)
            return Gap(note)
        s3 = self.clients.content_client("s3", CONTENT_READS)
        found = self.read(
            f"{what} {uri}", s3, "get_object", Bucket=matched["bucket"], Key=matched["key"]
        )
        return found if isinstance(found, Gap) else bytes(found["Body"].read())

    def finding(self, text: str) -> str:
        self.findings.append(text)
        return text


def tags_of(reader: Reader, what: str, arn: str) -> dict[str, str] | Gap:
    found = reader.listed(what, reader.sagemaker, "list_tags", "Tags", ResourceArn=arn)
    if isinstance(found, Gap):
        return found
    return {str(tag["Key"]): str(tag["Value"]) for tag in found}


def note_of(found: Any) -> dict[str, str]:
    return {"note": found.note} if isinstance(found, Gap) else {}


def instant(text: Any) -> datetime | None:
    if isinstance(text, datetime):
        moment = text
    else:
        try:
            moment = datetime.fromisoformat(str(text))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def identity(modified: Any) -> str | None:
    """Who a Created/LastModifiedBy block names: the IAM identity, or the Studio user."""
    if not isinstance(modified, dict):
        return None
    iam = modified.get("IamIdentity") or {}
    return iam.get("Arn") or modified.get("UserProfileName") or modified.get("UserProfileArn")


# --- the endpoint ----------------------------------------------------------------------------


def described_endpoint(reader: Reader, name: str) -> dict[str, Any] | None:
    try:
        return dict(reader.sagemaker.describe_endpoint(EndpointName=name))
    except ClientError as problem:
        if error_code(problem) in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def endpoint_view(reader: Reader, name: str, versions: dict[str, int]) -> dict[str, Any]:
    """What the endpoint serves: configuration -> models -> the package each is tagged with."""
    endpoint = described_endpoint(reader, name)
    if endpoint is None:
        return {"name": name, "exists": False}
    view: dict[str, Any] = {
        "name": name,
        "exists": True,
        "status": endpoint.get("EndpointStatus"),
        "created": endpoint.get("CreationTime"),
        "last_modified": endpoint.get("LastModifiedTime"),
        "endpoint_config": endpoint.get("EndpointConfigName"),
        "variants": [],
    }
    tags = tags_of(reader, f"endpoint {name}", str(endpoint["EndpointArn"]))
    view["platform_tags"] = (
        {k: v for k, v in tags.items() if k.startswith(PLATFORM_TAG_PREFIX)}
        if not isinstance(tags, Gap)
        else {}
    )
    config_name = str(endpoint.get("EndpointConfigName"))
    config = reader.read(
        f"endpoint configuration {config_name}",
        reader.sagemaker,
        "describe_endpoint_config",
        EndpointConfigName=config_name,
    )
    if isinstance(config, Gap):
        view["note"] = config.note
        return view
    capture = config.get("DataCaptureConfig") or {}
    view["kms_key"] = config.get("KmsKeyId")
    view["data_capture"] = {
        "enabled": capture.get("EnableCapture"),
        "sampling_percent": capture.get("InitialSamplingPercentage"),
        "destination": capture.get("DestinationS3Uri"),
    }
    for variant in config.get("ProductionVariants") or []:
        model_name = str(variant.get("ModelName"))
        served: dict[str, Any] = {
            "variant": variant.get("VariantName"),
            "model": model_name,
            "instance_type": variant.get("InstanceType"),
            "instance_count": variant.get("InitialInstanceCount"),
        }
        model = reader.read(
            f"model {model_name}", reader.sagemaker, "describe_model", ModelName=model_name
        )
        if isinstance(model, Gap):
            served["note"] = model.note
        else:
            container = model.get("PrimaryContainer") or {}
            model_tags = tags_of(reader, f"model {model_name}", str(model["ModelArn"]))
            package_arn = None if isinstance(model_tags, Gap) else model_tags.get(TAG_MODEL_PACKAGE)
            served |= {
                "image": container.get("Image"),
                "model_data_url": container.get("ModelDataUrl"),
                "network_isolation": model.get("EnableNetworkIsolation"),
                "model_package_arn": package_arn,
                "model_package_version": versions.get(package_arn or ""),
                **note_of(model_tags),
            }
        view["variants"].append(served)
    return view


def served_packages(view: dict[str, Any]) -> list[str]:
    return sorted(
        {
            str(v["model_package_arn"])
            for v in view.get("variants", [])
            if v.get("model_package_arn")
        }
    )


# --- which version ---------------------------------------------------------------------------


def chosen_package(
    package: str | None,
    *,
    group: str,
    summaries: list[dict[str, Any]],
    view: dict[str, Any],
    environment: str,
) -> tuple[str, str]:
    """(the package ARN to trace, how it was chosen), or UsageError."""
    by_version = {int(s["ModelPackageVersion"]): str(s["ModelPackageArn"]) for s in summaries}
    listing = (
        f"versions {min(by_version)}-{max(by_version)}" if by_version else "no version registered"
    )
    if package is None:
        endpoint = view["name"]
        if not view["exists"]:
            raise UsageError(
                f"endpoint {endpoint} does not exist in {environment}: name a version with "
                f"--package ARN|VERSION (make lineage PACKAGE=...; group {group}: {listing})"
            )
        served = served_packages(view)
        if len(served) != 1:
            raise UsageError(
                f"endpoint {endpoint} serves {len(served)} versions tagged {TAG_MODEL_PACKAGE} "
                f"({', '.join(served) or 'none'}): name one with --package ARN|VERSION"
            )
        return served[0], f"served by endpoint {endpoint} (its model's {TAG_MODEL_PACKAGE} tag)"
    if package.isdigit():
        version = int(package)
        if version not in by_version:
            raise UsageError(f"no version {version} in model package group {group} ({listing})")
        return by_version[version], f"version {version} of {group}, as named"
    matched = PACKAGE_ARN.match(package)
    if matched is None:
        raise UsageError(
            f"--package {package!r} is neither a model package version ARN nor a version number"
        )
    # SageMaker writes the group in lower case in the ARN.
    if matched["group"] != group.lower():
        raise UsageError(f"{package} is not a version of {environment}'s group {group}")
    if package not in by_version.values():
        raise UsageError(f"no model package {package} in group {group} ({listing})")
    return package, "as named"


# --- the chain -------------------------------------------------------------------------------


def _execution_definition(reader: Reader, what: str, arn: str) -> dict[str, Any] | None:
    found = reader.read(
        f"{what} {arn}",
        reader.sagemaker,
        "describe_pipeline_definition_for_execution",
        PipelineExecutionArn=arn,
    )
    if isinstance(found, Gap):
        return None
    try:
        definition = json.loads(str(found.get("PipelineDefinition", "")))
    except ValueError:
        reader.finding(f"{what} {arn}: its pipeline definition is not JSON")
        return None
    return definition if isinstance(definition, dict) else None


def _steps(steps: Any) -> list[dict[str, Any]]:
    """Every step of a definition, condition branches included."""
    found: list[dict[str, Any]] = []
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict):
            found.append(step)
            arguments = step.get("Arguments") or {}
            found += _steps(arguments.get("IfSteps")) + _steps(arguments.get("ElseSteps"))
    return found


def _step(definition: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    return next((s for s in _steps((definition or {}).get("Steps")) if s.get("Name") == name), None)


def resolved(value: Any, parameters: dict[str, str]) -> str | None:
    """A definition value with its parameters filled in (strings, Parameters.* and Std:Join
    only: anything else cannot be known from outside the run)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return None
    reference = value.get("Get")
    if isinstance(reference, str) and reference.startswith("Parameters."):
        return parameters.get(reference.removeprefix("Parameters."))
    join = value.get("Std:Join")
    if isinstance(join, dict) and isinstance(join.get("Values"), list):
        parts = [resolved(part, parameters) for part in join["Values"]]
        if any(part is None for part in parts):
            return None
        return str(join.get("On", "")).join(str(part) for part in parts)
    return None


def execution(reader: Reader, what: str, arn: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """A pipeline execution's description and its parameters."""
    if not arn:
        return {"arn": None}, {}
    section: dict[str, Any] = {"arn": arn}
    described = reader.read(
        f"{what} {arn}", reader.sagemaker, "describe_pipeline_execution", PipelineExecutionArn=arn
    )
    if isinstance(described, Gap):
        section["note"] = described.note
    else:
        section |= {
            "pipeline": described.get("PipelineArn"),
            "status": described.get("PipelineExecutionStatus"),
            "started": described.get("CreationTime"),
            "last_modified": described.get("LastModifiedTime"),
            "failure_reason": described.get("FailureReason") or None,
        }
    listed = reader.listed(
        f"{what} {arn}",
        reader.sagemaker,
        "list_pipeline_parameters_for_execution",
        "PipelineParameters",
        PipelineExecutionArn=arn,
    )
    parameters = (
        {} if isinstance(listed, Gap) else {str(p["Name"]): str(p["Value"]) for p in listed}
    )
    section["parameters"] = parameters if not isinstance(listed, Gap) else None
    if isinstance(listed, Gap) and "note" not in section:
        section["note"] = listed.note
    return section, parameters


def feature_build_section(
    reader: Reader, arn: str | None, *, raw_bucket: str, export_prefix: str
) -> dict[str, Any]:
    section, parameters = execution(reader, "feature build", arn)
    if not arn:
        section["note"] = f"not recorded (CustomerMetadataProperties['{FEATURE_BUILD_JOB}'])"
        return section
    export: dict[str, Any] = {"uri": None}
    partition = _step(_execution_definition(reader, "feature build", arn), PARTITION_STEP)
    inputs = ((partition or {}).get("Arguments") or {}).get("ProcessingInputs") or []
    declared = next((i for i in inputs if i.get("InputName") == EXPORT_INPUT), None)
    uri = resolved(((declared or {}).get("S3Input") or {}).get("S3Uri"), parameters)
    if uri:
        export = {"uri": uri, "source": "the execution's pipeline definition and parameters"}
    elif EXPORT_FOLDER_PARAMETER in parameters:
        export = {
            "uri": f"s3://{raw_bucket}/{export_prefix}{parameters[EXPORT_FOLDER_PARAMETER]}",
            "source": f"the execution's {EXPORT_FOLDER_PARAMETER} under the environment's "
            "current raw bucket and export prefix (its definition could not be resolved)",
        }
    else:
        export["note"] = reader.finding(
            f"feature build {arn}: the FHIR export it read cannot be named (no "
            f"{EXPORT_FOLDER_PARAMETER} parameter, no resolvable {PARTITION_STEP} input)"
        )
    section["fhir_export"] = export
    return section


def _step_summary(step: dict[str, Any]) -> dict[str, Any]:
    jobs = [
        str(item["Arn"])
        for item in (step.get("Metadata") or {}).values()
        if isinstance(item, dict) and item.get("Arn")
    ]
    return {
        "step": step.get("StepName"),
        "status": step.get("StepStatus"),
        "started": step.get("StartTime"),
        "ended": step.get("EndTime"),
        "jobs": jobs,
        "failure_reason": step.get("FailureReason") or None,
    }


def same_instant(first: Any, second: Any) -> bool:
    one, other = instant(first), instant(second)
    return one == other if one is not None and other is not None else str(first) == str(second)


def pipeline_section(
    reader: Reader, arn: str | None, customer: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    section, parameters = execution(reader, "pipeline execution", arn)
    if not arn:
        section["note"] = reader.finding(
            f"no pipeline execution recorded (CustomerMetadataProperties"
            f"['{PIPELINE_EXECUTION_KEY}'] or MetadataProperties.GeneratedBy)"
        )
        return section, None
    steps = reader.listed(
        f"pipeline execution {arn}",
        reader.sagemaker,
        "list_pipeline_execution_steps",
        "PipelineExecutionSteps",
        PipelineExecutionArn=arn,
    )
    section["steps"] = [_step_summary(s) for s in steps] if not isinstance(steps, Gap) else None
    if isinstance(steps, Gap):
        section["steps_note"] = steps.note
    checks = (
        (FEATURE_BUILD_EXECUTION, FEATURE_BUILD_JOB, lambda a, b: a == b),
        (FEATURES_AS_OF_PARAMETER, FEATURES_AS_OF, same_instant),
    )
    for parameter, key, agree in checks:
        if (
            parameter in parameters
            and customer.get(key)
            and not agree(parameters[parameter], customer[key])
        ):
            reader.finding(
                f"the pipeline execution's {parameter} is {parameters[parameter]!r} but the "
                f"version records {key}={customer[key]!r}"
            )
    return section, _execution_definition(reader, "pipeline execution", arn)


def manifest_section(reader: Reader, customer: dict[str, str]) -> dict[str, Any]:
    uri, recorded = customer.get(DATASET_MANIFEST_URI), customer.get(DATASET_MANIFEST_SHA256)
    section: dict[str, Any] = {"uri": uri, "recorded_sha256": recorded}
    if recorded and not SHA256_HEX.match(recorded):
        reader.finding(f"{DATASET_MANIFEST_SHA256} {recorded!r} is not a sha256 digest")
    if not uri:
        section["note"] = f"not recorded (CustomerMetadataProperties['{DATASET_MANIFEST_URI}'])"
        return section
    document = reader.s3_document("dataset manifest", uri)
    if isinstance(document, Gap):
        section["note"] = document.note
        return section
    computed = hashlib.sha256(document).hexdigest()
    section["computed_sha256"] = computed
    section["digest_matches"] = computed == recorded if recorded else None
    if recorded and computed != recorded:
        reader.finding(
            f"dataset manifest {uri}: its bytes hash to {computed}, the version records "
            f"{recorded}: the manifest is not the one the version was trained from"
        )
    try:
        manifest = manifest_from_dict(json.loads(document), uri)
    except (ValueError, ManifestError) as problem:
        section["note"] = reader.finding(
            f"dataset manifest {uri}: not a readable manifest ({problem})"
        )
        return section
    section |= {
        "as_of": manifest.as_of,
        "label": manifest.label,
        "features": list(manifest.feature_names),
        "split_seed": manifest.split_seed,
        "split_shares": manifest.split_shares,
        "splits": {
            name: {
                "file": split.file,
                "sha256": split.sha256,
                "rows": split.rows,
                "positives": split.positives,
                "patients": split.patients,
            }
            for name, split in manifest.splits.items()
        },
        "inputs": [{"path": i.path, "sha256": i.sha256, "bytes": i.bytes} for i in manifest.inputs],
        "records": manifest.records,
        "excluded": manifest.excluded,
    }
    as_of = customer.get(FEATURES_AS_OF)
    if as_of and not same_instant(as_of, manifest.as_of):
        reader.finding(
            f"dataset manifest {uri}: as of {manifest.as_of}, the version records "
            f"{FEATURES_AS_OF}={as_of}"
        )
    return section


def image(reference: Any) -> dict[str, Any]:
    return {
        "image": reference,
        "pinned_by_digest": bool(reference) and IMAGE_BY_DIGEST.match(str(reference)) is not None,
    }


# Only the serving image must be pinned by digest (the deployer refuses any other, and the
# runtime checks judge it): the built-in algorithm's training image is AWS's, by tag, in every
# environment. The others are shown as recorded, pinned or not, and are not findings.
def images_section(
    reader: Reader, package: dict[str, Any], customer: dict[str, str]
) -> dict[str, Any]:
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    section: dict[str, Any] = {
        "serving": [image(c.get("Image")) for c in containers],
        "processing": image(customer.get(PROCESSING_IMAGE)),
        "training": image(customer.get(TRAINING_IMAGE)),
    }
    if not containers:
        reader.finding("InferenceSpecification.Containers: the version names no serving image")
    for index, serving in enumerate(section["serving"]):
        if not serving["pinned_by_digest"]:
            reader.finding(
                f"InferenceSpecification.Containers[{index}].Image {serving['image']!r} is not "
                "pinned by digest"
            )
    return section


def training_section(
    reader: Reader,
    package: dict[str, Any],
    customer: dict[str, str],
    definition: dict[str, Any] | None,
) -> dict[str, Any]:
    archive = model_archive_url(package) or ""
    section: dict[str, Any] = {
        "model_archive": archive or None,
        "model_archive_sha256": customer.get(MODEL_ARCHIVE_SHA256),
        "model_archive_sha256_source": ARCHIVE_DIGEST_SOURCE,
        "job": None,
        "hyperparameters": None,
    }
    if archive.endswith(ARCHIVE_SUFFIX) and archive.count("/") > 3:
        output_path, _, job_name = archive.removesuffix(ARCHIVE_SUFFIX).rpartition("/")
        section |= {"s3_output_path": output_path, "job": job_name}
    elif archive:
        section["note"] = reader.finding(
            f"model archive {archive} is not <S3OutputPath>/<training job>{ARCHIVE_SUFFIX}: "
            "the training job cannot be named"
        )
    if section["job"]:
        job = reader.read(
            f"training job {section['job']}",
            reader.sagemaker,
            "describe_training_job",
            TrainingJobName=section["job"],
        )
        if isinstance(job, Gap):
            section["job_note"] = job.note
        else:
            artifacts = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
            section |= {
                "job_arn": job.get("TrainingJobArn"),
                "job_status": job.get("TrainingJobStatus"),
                "job_created": job.get("CreationTime"),
                "job_ended": job.get("TrainingEndTime"),
                "job_training_image": (job.get("AlgorithmSpecification") or {}).get(
                    "TrainingImage"
                ),
                "hyperparameters": dict(job.get("HyperParameters") or {}),
                "hyperparameters_source": "the training job (DescribeTrainingJob)",
            }
            if artifacts and artifacts != archive:
                reader.finding(
                    f"training job {section['job']} wrote {artifacts}, the version serves {archive}"
                )
    if section["hyperparameters"] is None:
        train = _step(definition, TRAIN_STEP)
        asked = ((train or {}).get("Arguments") or {}).get("HyperParameters")
        if isinstance(asked, dict):
            section["hyperparameters"] = asked
            section["hyperparameters_source"] = (
                f"the pipeline execution's definition ({TRAIN_STEP} step: what the run asked "
                "for; the training job itself could not be read)"
            )
    return section


def _at(document: Any, path: str) -> Any:
    for part in path.split("."):
        document = document.get(part) if isinstance(document, dict) else None
    return document


def metrics_section(reader: Reader, package: dict[str, Any]) -> dict[str, Any]:
    uri = _at(package.get("ModelMetrics"), "ModelQuality.Statistics.S3Uri")
    section: dict[str, Any] = {"uri": uri}
    if not uri:
        section["note"] = reader.finding(
            "ModelMetrics.ModelQuality.Statistics: the version names no evaluation report"
        )
        return section
    document = reader.s3_document("model-quality report", str(uri))
    if isinstance(document, Gap):
        section["note"] = document.note
        return section
    try:
        report = json.loads(document)
    except ValueError:
        section["note"] = reader.finding(f"model-quality report {uri}: not JSON")
        return section
    metrics = {}
    for name, path in GATE_METRIC_PATHS.items():
        scalar = _at(report, path.rpartition(".")[0])
        if isinstance(scalar, dict) and "value" in scalar:
            metrics[name] = {
                "value": scalar["value"],
                "standard_deviation": scalar.get("standard_deviation"),
            }
    section |= {"item_count": _at(report, "dataset.item_count"), "metrics": metrics}
    if not metrics:
        section["note"] = reader.finding(
            f"model-quality report {uri}: none of {', '.join(GATE_METRIC_PATHS)} is in it"
        )
    return section


def baseline_section(reader: Reader, package: dict[str, Any]) -> dict[str, Any]:
    baselines = package.get("DriftCheckBaselines") or {}
    documents = {
        f"{kind}.{part}": block.get("S3Uri")
        for kind, parts in baselines.items()
        if isinstance(parts, dict)
        for part, block in parts.items()
        if isinstance(block, dict)
    }
    for part in ("Constraints", "Statistics"):
        if not documents.get(f"ModelDataQuality.{part}"):
            reader.finding(
                f"DriftCheckBaselines.ModelDataQuality.{part}: the version names no monitoring "
                "baseline"
            )
    return {"documents": documents}


def approval_section(package: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": package.get("ModelApprovalStatus"),
        "comment": package.get("ApprovalDescription"),
        "last_modified_by": identity(package.get("LastModifiedBy")),
        "last_modified_at": package.get("LastModifiedTime"),
        # The registry keeps the last change only: a later update (a rollback's, say) replaces
        # who and when of the approval itself.
        "note": "who and when: the version's last modification, LastModifiedBy/LastModifiedTime",
    }


def rollbacks(reader: Reader, summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for summary in summaries:
        arn = str(summary["ModelPackageArn"])
        package = reader.read(
            f"model package {arn}", reader.sagemaker, "describe_model_package", ModelPackageName=arn
        )
        if isinstance(package, Gap):
            continue
        customer = package.get("CustomerMetadataProperties") or {}
        if ROLLED_BACK_AT not in customer:
            continue
        found.append(
            {
                "version": package.get("ModelPackageVersion"),
                "model_package_arn": arn,
                "rolled_back_at": customer[ROLLED_BACK_AT],
                "rolled_back_to": customer.get(ROLLED_BACK_TO),
                "endpoint": customer.get(ROLLED_BACK_ENDPOINT),
                "status": package.get("ModelApprovalStatus"),
                "reason": package.get("ApprovalDescription"),
            }
        )
    latest = datetime.max.replace(tzinfo=UTC)
    return sorted(
        found,
        key=lambda r: (instant(r["rolled_back_at"]) or latest, str(r["rolled_back_at"])),
    )


def endpoint_section(
    reader: Reader, view: dict[str, Any], package: dict[str, Any]
) -> dict[str, Any]:
    arn = str(package["ModelPackageArn"])
    section = dict(view)
    if not view["exists"]:
        section["serves_this_version"] = False
        return section
    mine = [v for v in view.get("variants", []) if v.get("model_package_arn") == arn]
    section["serves_this_version"] = bool(mine)
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    container = containers[0] if containers else {}
    for variant in mine:
        for field_name, key in (("image", "Image"), ("model_data_url", "ModelDataUrl")):
            if variant.get(field_name) != container.get(key):
                reader.finding(
                    f"model {variant['model']} is tagged as this version but its {key} is "
                    f"{variant.get(field_name)!r}, the version's is {container.get(key)!r}"
                )
    if mine and package.get("ModelApprovalStatus") != APPROVED:
        reader.finding(
            f"endpoint {view['name']} serves this version, whose status is "
            f"{package.get('ModelApprovalStatus')}, not {APPROVED}"
        )
    return section


def model_archive_url(package: dict[str, Any]) -> str | None:
    """The version's own model archive (a promoted version's is the copy in its account)."""
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    return str(containers[0].get("ModelDataUrl", "")) or None if containers else None


def source_environment(arn: str) -> WorkloadEnvironment | None:
    """The environment file whose account and region hold the package ARN's registry."""
    matched = PACKAGE_ARN.match(arn)
    if matched is None:
        return None
    for environment in load_environments(root=environments_root()):
        if (
            isinstance(environment, WorkloadEnvironment)
            and environment.account_id == matched["account"]
            and environment.region == matched["region"]
        ):
            return environment
    return None


def not_followed(
    customer: dict[str, str], execution_arn: str | None, note: str
) -> dict[str, dict[str, Any]]:
    """The training side of a promoted version, as recorded, when its account is not read."""
    return {
        "dataset_manifest": {
            "uri": customer.get(DATASET_MANIFEST_URI),
            "recorded_sha256": customer.get(DATASET_MANIFEST_SHA256),
            "note": note,
        },
        "feature_build": {"arn": customer.get(FEATURE_BUILD_JOB), "note": note},
        "pipeline_execution": {"arn": execution_arn, "note": note},
        "training": {
            "model_archive_sha256": customer.get(MODEL_ARCHIVE_SHA256),
            "model_archive_sha256_source": ARCHIVE_DIGEST_SOURCE,
            "job": None,
            "hyperparameters": None,
            "note": note,
        },
    }


def promotion_section(
    reader: Reader,
    promoted_from: str,
    customer: dict[str, str],
    *,
    execution_arn: str | None,
    endpoint_url: str | None,
    source_clients: SourceClients | None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Where a promoted version was trained and approved, and its training side read there
    (the source version's own lineage), or named with how to read it."""
    source = source_environment(promoted_from)
    section: dict[str, Any] = {"from": promoted_from, "followed": False}
    if source is None:
        note = reader.finding(
            f"promoted from {promoted_from}, which is in no environment file's account and "
            "region: its training cannot be traced"
        )
        return {**section, "note": note}, not_followed(customer, execution_arn, note)
    section |= {"environment": source.name, "account": source.account_id}
    if source_clients is None:
        note = (
            f"trained in {source.name} (account {source.account_id}), not read from this "
            f"account: make lineage ENV={source.name} PACKAGE={promoted_from}, or "
            "SOURCE_PROFILE=<a profile of that account> here"
        )
        return {**section, "note": note}, not_followed(customer, execution_arn, note)
    lineage = trace(
        source,
        source_clients(source),
        package=promoted_from,
        endpoint_url=endpoint_url,
        source_clients=source_clients,
    )
    for finding in lineage["findings"]:
        reader.finding(f"{source.name}: {finding}")
    reader.unavailable.extend(f"{source.name}: {u}" for u in lineage["unavailable"])
    if lineage["approval"]["status"] != APPROVED:
        reader.finding(
            f"promoted from {promoted_from}, which is {lineage['approval']['status']} in "
            f"{source.name}: only an approved version may be promoted"
        )
    recorded = customer.get(MODEL_ARCHIVE_SHA256)
    source_recorded = lineage["training"].get("model_archive_sha256")
    if recorded != source_recorded:
        reader.finding(
            f"{MODEL_ARCHIVE_SHA256} {recorded} differs from the source version's "
            f"{source_recorded}: this is not the model {source.name} evaluated"
        )
    section |= {
        "followed": True,
        "source_approval": lineage["approval"],
        "source_provenance": lineage["version"]["provenance"],
    }
    return section, lineage


# Reads the source account of a promoted version: its environment -> clients of that account.
SourceClients = Callable[[WorkloadEnvironment], ClientFactory]


def trace(
    environment: WorkloadEnvironment,
    clients: ClientFactory,
    *,
    package: str | None,
    endpoint_url: str | None,
    source_clients: SourceClients | None = None,
) -> dict[str, Any]:
    """The lineage document of one version of the environment's group. A version promoted from
    another environment was trained there: its dataset, feature build, pipeline execution and
    training job are read in that account (`source_clients`), or named and not read."""
    configs = layer_configs(environment)
    group = configs.pipeline.model_package_group_name
    reader = Reader(clients, endpoint_url or f"AWS {environment.region}")
    caller = clients.client("sts").get_caller_identity()["Account"]
    if caller != environment.account_id:
        raise UsageError(
            f"the credentials are of account {caller}, {environment.name} is account "
            f"{environment.account_id}: use credentials of that account (--profile, AWS_PROFILE)"
        )
    sagemaker = reader.sagemaker
    summaries = list(
        pages(
            sagemaker, "list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=group
        )
    )
    versions = {str(s["ModelPackageArn"]): int(s["ModelPackageVersion"]) for s in summaries}
    view = endpoint_view(reader, configs.inference.name, versions)
    arn, chosen = chosen_package(
        package, group=group, summaries=summaries, view=view, environment=environment.name
    )
    described = dict(sagemaker.describe_model_package(ModelPackageName=arn))
    customer = {
        str(k): str(v) for k, v in (described.get("CustomerMetadataProperties") or {}).items()
    }
    provenance = described.get("MetadataProperties") or {}
    missing = [key for key in REQUIRED_CUSTOMER_METADATA if not customer.get(key)]
    for key in missing:
        reader.finding(f"CustomerMetadataProperties['{key}'] is not recorded")
    for name in REQUIRED_METADATA_PROPERTIES:
        if not provenance.get(name):
            reader.finding(f"MetadataProperties.{name} is not recorded")
    generated_by = str(provenance.get("GeneratedBy") or "")
    execution_arn = customer.get(PIPELINE_EXECUTION_KEY) or (
        generated_by if PIPELINE_EXECUTION_ARN.match(generated_by) else None
    )
    promoted_from = customer.get(PROMOTED_FROM)
    promotion: dict[str, Any] | None = None
    if promoted_from:
        promotion, trained = promotion_section(
            reader,
            promoted_from,
            customer,
            execution_arn=execution_arn,
            endpoint_url=endpoint_url,
            source_clients=source_clients,
        )
        manifest, feature_build, pipeline = (
            trained["dataset_manifest"],
            trained["feature_build"],
            trained["pipeline_execution"],
        )
        training = {**trained["training"], "model_archive": model_archive_url(described)}
    else:
        pipeline, definition = pipeline_section(reader, execution_arn, customer)
        manifest = manifest_section(reader, customer)
        feature_build = feature_build_section(
            reader,
            customer.get(FEATURE_BUILD_JOB),
            raw_bucket=configs.storage.bucket_name("raw"),
            export_prefix=configs.feature_build.export_prefix,
        )
        training = training_section(reader, described, customer, definition)
    document: dict[str, Any] = {
        "environment": environment.name,
        "account": environment.account_id,
        "region": environment.region,
        "endpoint_url": endpoint_url,
        "model_package_group": group,
        "model_package_arn": arn,
        "chosen": chosen,
        "version": {
            "version": described.get("ModelPackageVersion"),
            "created": described.get("CreationTime"),
            "created_by": identity(described.get("CreatedBy")),
            "description": described.get("ModelPackageDescription"),
            "provenance": {name: provenance.get(name) for name in REQUIRED_METADATA_PROPERTIES},
            "promoted_from": promoted_from,
            "missing_metadata": missing,
        },
        "approval": approval_section(described),
        "promotion": promotion,
        "dataset_manifest": manifest,
        "feature_build": feature_build,
        "pipeline_execution": pipeline,
        "images": images_section(reader, described, customer),
        "training": training,
        "metrics": metrics_section(reader, described),
        "drift_baseline": baseline_section(reader, described),
        "endpoint": endpoint_section(reader, view, described),
        "rollbacks": rollbacks(reader, summaries),
    }
    document["findings"] = list(reader.findings)
    document["unavailable"] = list(reader.unavailable)
    rendered: dict[str, Any] = jsonable(document)
    return rendered


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


# --- text ------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "(not recorded)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_nested(v)}" for k, v in value.items()) or "(none)"
    return str(value)


def _nested(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + " ".join(f"{k}={_nested(v)}" for k, v in value.items()) + ")"
    return str(value)


def _item(label: str, value: Any) -> str:
    return f"  {label}: {_shown(value)}"


def _notes(section: dict[str, Any], *keys: str) -> list[str]:
    return [f"  ! {section[key]}" for key in keys or ("note",) if section.get(key)]


def _pinned(entry: dict[str, Any]) -> str:
    if not entry["image"]:
        return "(not recorded)"
    pinned = "pinned by digest" if entry["pinned_by_digest"] else "NOT pinned by digest"
    return f"{entry['image']} ({pinned})"


def _version_text(document: dict[str, Any]) -> list[str]:
    version, approval = document["version"], document["approval"]
    lines = [
        f"version {version['version']}",
        _item("created", f"{version['created']} by {_shown(version['created_by'])}"),
        _item("description", version["description"]),
        *(_item(name, value) for name, value in version["provenance"].items()),
    ]
    if version["promoted_from"]:
        lines.append(_item("promoted from", version["promoted_from"]))
    return [
        *lines,
        "",
        "approval",
        _item("status", approval["status"]),
        _item("comment", approval["comment"]),
        _item("last modified by", approval["last_modified_by"]),
        _item("last modified at", approval["last_modified_at"]),
        f"  ({approval['note']})",
    ]


def _promotion_text(document: dict[str, Any]) -> list[str]:
    promotion = document["promotion"]
    if not promotion:
        return []
    lines = ["promotion", _item("from", promotion["from"])]
    if promotion.get("environment"):
        lines.append(_item("trained in", f"{promotion['environment']} ({promotion['account']})"))
    if promotion["followed"]:
        approval = promotion["source_approval"]
        lines += [
            _item(
                "approved there",
                f"{approval['status']} by {_shown(approval['last_modified_by'])} at "
                f"{_shown(approval['last_modified_at'])}: {_shown(approval['comment'])}",
            ),
            f"  (the dataset, feature build, pipeline execution and training below are read in "
            f"{promotion['environment']})",
        ]
    return lines + _notes(promotion)


def _manifest_text(document: dict[str, Any]) -> list[str]:
    manifest = document["dataset_manifest"]
    lines = [
        "dataset manifest",
        _item("uri", manifest["uri"]),
        _item("recorded sha256", manifest["recorded_sha256"]),
    ]
    if "computed_sha256" in manifest:
        verdict = {True: "matches", False: "DOES NOT MATCH", None: "nothing recorded to compare"}
        computed = f"{manifest['computed_sha256']} ({verdict[manifest['digest_matches']]})"
        lines.append(_item("computed sha256", computed))
    if "as_of" in manifest:
        lines += [
            _item("as of", manifest["as_of"]),
            _item("label", manifest["label"]),
            _item("features", ", ".join(manifest["features"])),
            _item(
                "split seed", f"{manifest['split_seed']}, shares {_shown(manifest['split_shares'])}"
            ),
        ]
        lines += [
            f"  split {name}: {split['file']} sha256 {split['sha256']} rows {split['rows']} "
            f"positives {split['positives']} patients {split['patients']}"
            for name, split in manifest["splits"].items()
        ]
        inputs = manifest["inputs"]
        lines.append(f"  inputs: {len(inputs)} files, {sum(i['bytes'] for i in inputs)} bytes")
        lines += [
            f"    {entry['path']} sha256 {entry['sha256']} ({entry['bytes']} bytes)"
            for entry in inputs[:TEXT_INPUTS_SHOWN]
        ]
        if len(inputs) > TEXT_INPUTS_SHOWN:
            more = len(inputs) - TEXT_INPUTS_SHOWN
            lines.append(f"    ... {more} more (--format json lists every one)")
        lines += [_item("records", manifest["records"]), _item("excluded", manifest["excluded"])]
    return lines + _notes(manifest)


def _execution_text(title: str, section: dict[str, Any]) -> list[str]:
    lines = [title, _item("execution", section["arn"])]
    if section.get("status"):
        lines.append(_item("status", f"{section['status']}, started {section['started']}"))
    if section.get("parameters") is not None:
        lines.append(_item("parameters", section["parameters"]))
    export = section.get("fhir_export")
    if export is not None:
        lines.append(_item("FHIR export read", export["uri"]))
        if export.get("source"):
            lines.append(f"    (from {export['source']})")
        lines += _notes(export)
    for step in section.get("steps") or []:
        jobs = f" {', '.join(step['jobs'])}" if step["jobs"] else ""
        lines.append(
            f"  step {step['step']}: {step['status']} {step['started']} -> {step['ended']}{jobs}"
        )
    return lines + _notes(section, "steps_note", "note")


def _chain_text(document: dict[str, Any]) -> list[str]:
    return [
        *_execution_text("feature build", document["feature_build"]),
        "",
        *_execution_text("pipeline execution", document["pipeline_execution"]),
    ]


def _model_text(document: dict[str, Any]) -> list[str]:
    images, training = document["images"], document["training"]
    lines = ["images", *(_item("serving", _pinned(entry)) for entry in images["serving"])]
    lines += [
        _item("processing", _pinned(images["processing"])),
        _item("training", _pinned(images["training"])),
        "",
        "training",
        _item("model archive", training["model_archive"]),
        _item(
            "model-archive-sha256",
            f"{_shown(training['model_archive_sha256'])} "
            f"({training['model_archive_sha256_source']})",
        ),
        _item("training job", training["job"]),
    ]
    if training.get("job_status"):
        lines.append(
            _item(
                "job status",
                f"{training['job_status']}, {training['job_created']} -> {training['job_ended']}",
            )
        )
    lines += _notes(training, "job_note")
    lines.append(_item("hyperparameters", training["hyperparameters"]))
    if training.get("hyperparameters_source"):
        lines.append(f"    (from {training['hyperparameters_source']})")
    return lines + _notes(training)


def _evaluation_text(document: dict[str, Any]) -> list[str]:
    metrics = document["metrics"]
    lines = ["metrics", _item("report", metrics["uri"])]
    if metrics.get("metrics"):
        lines.append(_item("test items", metrics.get("item_count")))
        lines += [
            f"  {name}: {scalar['value']} (standard deviation {scalar['standard_deviation']})"
            for name, scalar in metrics["metrics"].items()
        ]
    lines += _notes(metrics)
    documents = document["drift_baseline"]["documents"]
    lines += ["", "drift baseline"]
    lines += [_item(name, uri) for name, uri in documents.items()] or ["  (none recorded)"]
    return lines


def _endpoint_text(document: dict[str, Any]) -> list[str]:
    endpoint = document["endpoint"]
    lines = [f"endpoint {endpoint['name']}"]
    if not endpoint["exists"]:
        return [*lines, "  does not exist"]
    lines += [
        _item("status", endpoint["status"]),
        _item("endpoint configuration", endpoint["endpoint_config"]),
    ]
    for variant in endpoint.get("variants", []):
        package = variant.get("model_package_arn")
        version = variant.get("model_package_version")
        which = f" (version {version})" if version is not None else ""
        if package and version is None:
            which = " (not a version of the group)"
        lines.append(
            f"  variant {variant['variant']}: model {variant['model']} -> "
            f"{package or f'(no {TAG_MODEL_PACKAGE} tag)'}{which}"
        )
        lines += _notes(variant)
    if "data_capture" in endpoint:
        lines.append(_item("data capture", endpoint["data_capture"]))
    if endpoint.get("platform_tags"):
        lines.append(_item("tags", endpoint["platform_tags"]))
    serves = "serves this version" if endpoint["serves_this_version"] else "does not serve it"
    return [*lines, f"  {serves}", *_notes(endpoint)]


def _rollbacks_text(document: dict[str, Any]) -> list[str]:
    lines = ["rollbacks"]
    if not document["rollbacks"]:
        lines.append(f"  none (no version of the group carries {ROLLED_BACK_AT})")
    lines += [
        f"  {r['rolled_back_at']}: version {r['version']} ({r['status']}) on "
        f"{_shown(r['endpoint'])} -> {_shown(r['rolled_back_to'])}: {_shown(r['reason'])}"
        for r in document["rollbacks"]
    ]
    return lines


def _outcome_text(document: dict[str, Any]) -> list[str]:
    lines = []
    if document["unavailable"]:
        lines += ["not available from this endpoint"]
        lines += [f"  {text}" for text in document["unavailable"]]
        lines.append("")
    findings = document["findings"]
    return [*lines, f"findings: {len(findings) or 'none'}", *(f"  - {f}" for f in findings)]


SECTIONS: Final = (
    _version_text,
    _promotion_text,
    _manifest_text,
    _chain_text,
    _model_text,
    _evaluation_text,
    _endpoint_text,
    _rollbacks_text,
    _outcome_text,
)


def render_text(document: dict[str, Any]) -> str:
    where = f", {document['endpoint_url']}" if document["endpoint_url"] else ""
    lines = [
        f"lineage of {document['model_package_arn']}",
        f"  {document['environment']} (account {document['account']}, {document['region']}"
        f"{where}); {document['chosen']}",
    ]
    for section in SECTIONS:
        shown = section(document)
        if shown:
            lines += ["", *shown]
    return "\n".join(lines) + "\n"


# --- the command -----------------------------------------------------------------------------


def environments_root() -> Path:
    return Path(os.environ.get("PHI_ENVIRONMENTS_DIR", ENVIRONMENTS_DIR))


def workload(name: str) -> WorkloadEnvironment:
    try:
        [environment] = load_environments([name], environments_root())
    except EnvironmentFileError as problem:
        raise UsageError(str(problem)) from None
    if not isinstance(environment, WorkloadEnvironment):
        raise UsageError(f"{name} is the organization: it has no model registry")
    return environment


def traced(
    environment: WorkloadEnvironment,
    session: boto3.Session,
    *,
    package: str | None,
    endpoint_url: str | None,
    source_session: boto3.Session | None = None,
) -> dict[str, Any]:
    """trace(), with every reason it cannot run turned into one UsageError line."""
    emulated = endpoint_url is not None
    clients = ClientFactory(session, environment.region, endpoint_url, emulated=emulated)

    def source_clients(source: WorkloadEnvironment) -> ClientFactory:
        assert source_session is not None
        return ClientFactory(source_session, source.region, endpoint_url, emulated=emulated)

    try:
        return trace(
            environment,
            clients,
            package=package,
            endpoint_url=endpoint_url,
            source_clients=source_clients if source_session is not None else None,
        )
    except CONNECTION_ERRORS as problem:
        raise UsageError(f"cannot reach {endpoint_url or 'AWS'}: {problem}") from None
    except (ClientError, BotoCoreError) as problem:
        if is_credentials_problem(problem):
            raise UsageError(str(credentials_error(problem))) from None
        if isinstance(problem, ClientError) and is_access_denied(problem):
            raise UsageError(
                f"access denied to {problem.operation_name} ({error_message(problem)}): the "
                "caller needs read access to the registry, the pipelines, the endpoint and the "
                "two documents the version names"
            ) from None
        if isinstance(problem, ClientError):
            raise UsageError(
                f"{problem.operation_name} failed ({error_code(problem)}: {error_message(problem)})"
            ) from None
        raise UsageError(f"{type(problem).__name__}: {problem}") from None


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.lineage", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("environment", metavar="ENV", help="a workload environment (dev, ...)")
    parser.add_argument(
        "--package",
        metavar="ARN|VERSION",
        help="a version of the environment's group (default: the one its endpoint serves)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--output", type=Path, help="write the lineage here, not to stdout")
    parser.add_argument(
        "--endpoint-url", help="the AWS endpoint (the local emulator); default AWS_ENDPOINT_URL"
    )
    parser.add_argument("--profile", help="AWS profile (default: the usual credentials chain)")
    parser.add_argument(
        "--source-profile",
        help="AWS profile of the account a promoted version was trained in: its dataset, "
        "feature build, pipeline execution and training are read there (default: named only)",
    )
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    *,
    session: boto3.Session | None = None,
    source_session: boto3.Session | None = None,
) -> int:
    arguments = parse_arguments(argv)

    def print_lineage() -> int:
        environment = workload(arguments.environment)
        try:
            chosen = session or boto3.Session(profile_name=arguments.profile)
            source = source_session or (
                boto3.Session(profile_name=arguments.source_profile)
                if arguments.source_profile
                else None
            )
        except ProfileNotFound as problem:
            raise UsageError(f"{problem} (see `aws configure list-profiles`)") from None
        endpoint_url = arguments.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        document = traced(
            environment,
            chosen,
            package=arguments.package,
            endpoint_url=endpoint_url,
            source_session=source,
        )
        text = (
            json.dumps(document, indent=2, sort_keys=True) + "\n"
            if arguments.format == "json"
            else render_text(document)
        )
        findings = len(document["findings"])
        if arguments.output is None:
            sys.stdout.write(text)
        else:
            try:
                arguments.output.parent.mkdir(parents=True, exist_ok=True)
                arguments.output.write_text(text, encoding="utf-8")
            except OSError as problem:
                raise UsageError(f"cannot write {arguments.output}: {problem.strerror}") from None
            print(
                f"lineage of {document['model_package_arn']} written to {arguments.output}: "
                f"{findings or 'no'} finding{'s' if findings != 1 else ''}"
            )
        return 1 if findings else 0

    return run_command(print_lineage)


if __name__ == "__main__":
    sys.exit(main())
