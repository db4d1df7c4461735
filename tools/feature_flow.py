"""The FHIR -> features data flow on an emulator where the environment's data stack is
applied: a synthetic HealthLake export into the raw bucket, the feature builder on it, the
records into the feature groups' offline and online stores, and a read-back of what landed.

Used by `make features` (which applies the data stack first) and by `make e2e` (after every
stack is applied, so the runtime checks judge real records). The builder runs in this process
from `ml/`, exactly the code the processing job's image carries.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from botocore.config import Config

from environments.layer_configs import layer_configs
from environments.loader import ENVIRONMENT_FILE, ENVIRONMENTS_DIR
from environments.schema import WorkloadEnvironment
from ml import synthetic_fhir
from ml.feature_builder import build, local_input
from ml.feature_spec import FeatureSpec
from ml.fhir_export import export_files
from ml.offline_store import offline_store_uri_of, read_group

DEFAULT_PATIENTS: Final = 200
DEFAULT_SEED: Final = 7
# The population's clock: the export is as of this instant, so a rerun writes the same files.
AS_OF: Final = datetime(2026, 6, 30, tzinfo=UTC)
SUMMARY_FILE: Final = "summary.json"
SPEC_FILE: Final = "feature-spec.json"
UPLOAD_THREADS: Final = 8


@dataclass(frozen=True)
class Population:
    patients: int = DEFAULT_PATIENTS
    seed: int = DEFAULT_SEED


# make e2e flows a smaller population: enough opted-out patients and records for the checks.
E2E_POPULATION: Final = Population(patients=80, seed=DEFAULT_SEED)


def environment_path(name: str) -> Path:
    """The environment file of `name` in the folder main.py synthesizes from
    (PHI_ENVIRONMENTS_DIR, as main.py reads it)."""
    return Path(os.environ.get("PHI_ENVIRONMENTS_DIR", ENVIRONMENTS_DIR)) / name / ENVIRONMENT_FILE


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _sse_kms(key_arn: str) -> dict[str, str]:
    # The hardened buckets refuse any put without SSE-KMS (their policy names the header).
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn}


def _upload(s3: Any, files: list[Path], root: Path, *, bucket: str, prefix: str, key: str) -> int:
    def put(path: Path) -> None:
        name = prefix + path.relative_to(root).as_posix()
        s3.upload_file(str(path), bucket, name, ExtraArgs=_sse_kms(key))

    # Thousands of small Parquet files (one per event-time hour): in parallel, as S3 takes
    # them. boto3 clients are thread-safe.
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        list(pool.map(put, files))
    return len(files)


def upload_export(s3: Any, export_root: Path, bucket: str, prefix: str, key_arn: str) -> int:
    return _upload(
        s3, export_files(export_root), export_root, bucket=bucket, prefix=prefix, key=key_arn
    )


def upload_offline(s3: Any, offline_root: Path, offline_store_uri: str, key_arn: str) -> int:
    bucket, _, prefix = offline_store_uri[len("s3://") :].partition("/")
    files = sorted(offline_root.rglob("*.parquet"))
    return _upload(s3, files, offline_root, bucket=bucket, prefix=prefix, key=key_arn)


def read_back_stores(
    runtime: Any, s3: Any, spec: FeatureSpec, offline_root: Path, *, opted_out: frozenset[str]
) -> dict[str, Any]:
    """What the stores now hold: per group, the offline objects under its resolved URI, the
    online record of one identifier read back with GetRecord, and how many opted-out patient
    identifiers appear anywhere in the offline records (it must be none)."""
    offline_store = offline_store_uri_of(spec.groups)
    found: dict[str, Any] = {}
    for group in spec.groups:
        bucket, _, prefix = group.resolved_output_s3_uri[len("s3://") :].partition("/")
        listed = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        objects = sum(len(page.get("Contents", [])) for page in listed)
        table = read_group(offline_root / group.resolved_output_s3_uri[len(offline_store) :])
        identifiers = {
            str(value)
            for column in ("patient_id", group.record_identifier)
            if column in table.column_names
            for value in table.column(column).to_pylist()
        }
        online = None
        if table.num_rows:
            identifier = str(table.column(group.record_identifier)[0])
            record = runtime.get_record(
                FeatureGroupName=group.name, RecordIdentifierValueAsString=identifier
            ).get("Record", [])
            online = len(record)
        found[group.name] = {
            "offline_objects": objects,
            "offline_rows": table.num_rows,
            "online_features_of_first_record": online,
            "opted_out_identifiers_found": len(identifiers & opted_out),
        }
    return found


def flow_features(
    environment: WorkloadEnvironment,
    session: Any,
    *,
    endpoint_url: str,
    folder: Path,
    population: Population = Population(),
) -> dict[str, Any]:
    """Run the flow against the emulator at endpoint_url as `session` (a boto3 session of the
    environment's deployment identity); writes export/, offline/, feature-spec.json and
    summary.json under folder and returns the summary."""
    started = time.monotonic()
    export_root = fresh(folder / "export")
    offline_root = fresh(folder / "offline")
    generated = synthetic_fhir.generate(population.patients, population.seed, as_of=AS_OF)
    synthetic_fhir.write_export(generated, export_root)
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2})

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url, config=config)

    s3, sagemaker, kms = client("s3"), client("sagemaker"), client("kms")
    runtime = client("sagemaker-featurestore-runtime")
    keys = {
        purpose: kms.describe_key(KeyId=f"alias/phi-ml/{environment.name}/{purpose}")[
            "KeyMetadata"
        ]["Arn"]
        for purpose in ("phi-data", "feature-store")
    }
    configs = layer_configs(environment)
    raw_bucket = configs.storage.bucket_name("raw")
    export_prefix = environment.ml.features.export_prefix
    uploaded = upload_export(s3, export_root, raw_bucket, export_prefix, keys["phi-data"])
    resolved = {
        group.name: sagemaker.describe_feature_group(FeatureGroupName=group.name)[
            "OfflineStoreConfig"
        ]["S3StorageConfig"]["ResolvedOutputS3Uri"]
        for group in environment.ml.features.groups
    }
    # The spec the stack hands the processing job, from the same layer config.
    spec = configs.feature_build.feature_spec(resolved)
    (folder / SPEC_FILE).write_text(spec.to_json() + "\n", encoding="utf-8")
    # The builder reads the export back from S3, as the processing job's input does.
    with local_input(f"s3://{raw_bucket}/{export_prefix}", s3) as downloaded:
        result = build(
            export_files(downloaded),
            spec,
            offline_output=offline_root,
            online_output=None,
            shard="local",
            write_time=datetime.now(UTC).replace(microsecond=0),
            display_root=downloaded,
            online_client=runtime,
        )
    objects = upload_offline(
        s3, offline_root, offline_store_uri_of(spec.groups), keys["feature-store"]
    )
    summary = {
        "environment": environment.name,
        "emulator": endpoint_url,
        "patients_generated": population.patients,
        "seed": population.seed,
        "export_files_uploaded": uploaded,
        "offline_objects_uploaded": objects,
        **result.report,
        "read_back": read_back_stores(
            runtime, s3, spec, offline_root, opted_out=generated.opted_out
        ),
        "seconds_flow": round(time.monotonic() - started, 1),
    }
    write_summary(folder, summary)
    return summary


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def leaked_identifiers(summary: dict[str, Any]) -> int:
    return sum(found["opted_out_identifiers_found"] for found in summary["read_back"].values())


def summary_lines(summary: dict[str, Any]) -> list[str]:
    read = summary["input"]
    lines = [
        f"features: {summary['environment']} on the emulator ({summary['emulator']})",
        f"  resources read: {json.dumps(read['resources'])}",
        f"  bad lines: {read['bad_lines']}  skipped: {json.dumps(read['skipped'])}",
        f"  patients: {summary['patients']}, excluded by consent: "
        f"{summary['patients_excluded_by_consent']}  basis: {summary['processing_basis']}",
    ]
    for group, found in summary["read_back"].items():
        lines.append(
            f"  {group}: {summary['records_per_group'][group]} records, "
            f"{found['offline_objects']} offline objects, "
            f"{summary['online_records_per_group'][group]} online records, "
            f"opted-out identifiers found: {found['opted_out_identifiers_found']}"
        )
    return lines
