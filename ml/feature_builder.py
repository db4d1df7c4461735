"""FHIR export -> Feature Store records: the program of the feature-build processing job.

    python -m ml.feature_builder partition --input EXPORT --output DIR --partitions N --report DIR
    python -m ml.feature_builder build --input DIR --spec feature-spec.json \\
        --offline-output DIR --online-output DIR --report DIR [--write-time ISO] [--shard NAME]

Inputs are a local folder or an `s3://` prefix (read with the job's credentials). The paths
follow SageMaker Processing's contract (/opt/ml/processing/input/..., output/...; the host
name from /opt/ml/config/resourceconfig.json names this instance's files), so the same
program runs in-process in tests and in the container. `build` also runs directly on a
HealthLake export (one machine); `partition` first makes the export shardable.

Bad input lines are counted and reported by file and line; above the allowed share (default
1%) the program writes nothing and exits 2. Outputs appear only when complete: they are built
in a hidden folder beside each output and moved into place at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ml.feature_records import build_groups
from ml.feature_spec import FeatureSpec, SpecError, read_spec
from ml.fhir_export import ExportReader, InputError, export_files
from ml.offline_store import offline_store_uri_of, relative_data_path, write_group
from ml.online_store import FeatureStoreRuntime, put_records, write_online_file
from ml.partition import partition_export
from ml.sagemaker_paths import resource_config

EXIT_BAD_INPUT: Final = 2
LOCAL_SHARD: Final = "local"
REPORT_SUFFIX: Final = ".json"


class TooManyBadLinesError(Exception):
    """More bad lines than allowed: nothing is written."""


@dataclass(frozen=True)
class BuildResult:
    report: dict[str, Any]


def current_shard(resource_config_path: Path | None = None) -> str:
    """This instance's host name in a processing cluster (algo-1, algo-2, ...)."""
    try:
        path = resource_config_path or resource_config()
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return LOCAL_SHARD
    host = config.get("current_host") if isinstance(config, dict) else None
    return host if isinstance(host, str) and host else LOCAL_SHARD


@contextmanager
def staged(output: Path) -> Iterator[Path]:
    """A hidden folder beside output whose contents move into output only on success."""
    output.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=output.parent))
    try:
        yield stage
        for child in sorted(stage.iterdir()):
            target = output / child.name
            if child.is_dir() and target.is_dir():
                shutil.copytree(child, target, dirs_exist_ok=True)
            else:
                child.replace(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _check_share(reader: ExportReader, allowed: float) -> None:
    if reader.report.bad_share > allowed:
        raise TooManyBadLinesError(
            f"{reader.report.bad_count} of {reader.report.lines} lines are bad "
            f"({reader.report.bad_share:.2%} > {allowed:.2%} allowed): nothing written"
        )


def build(
    files: Sequence[Path],
    spec: FeatureSpec,
    *,
    offline_output: Path,
    online_output: Path | None,
    shard: str,
    write_time: datetime,
    display_root: Path | None = None,
    online_client: FeatureStoreRuntime | None = None,
) -> BuildResult:
    """Read files, build every group, write the offline layout (and online records)."""
    started = time.perf_counter()
    reader = ExportReader(display_root=display_root)
    reader.read_files(files)
    reader.drop_unknown_subjects()
    _check_share(reader, spec.max_bad_line_share)
    built = build_groups(reader.columns, spec)
    offline_root = offline_store_uri_of(spec.groups)
    records: dict[str, int] = {}
    files_written: dict[str, int] = {}
    online: dict[str, int] = {}
    with staged(offline_output) as offline_stage:
        for group in spec.groups:
            table = built.tables[group.name]
            data_root = offline_stage / relative_data_path(group, offline_root)
            written = list(
                write_group(table, group, data_root=data_root, shard=shard, write_time=write_time)
            )
            records[group.name] = table.num_rows
            files_written[group.name] = len(written)
        if online_output is not None:
            with staged(online_output) as online_stage:
                for group in spec.groups:
                    online[group.name] = write_online_file(
                        built.tables[group.name],
                        group,
                        online_stage / group.name / f"{shard}.ndjson",
                    )
        if online_client is not None:
            for group in spec.groups:
                online[group.name] = put_records(online_client, built.tables[group.name], group)
    report = {
        "shard": shard,
        "environment": spec.environment,
        "processing_basis": spec.basis.label,
        "write_time": write_time.isoformat(),
        "input": reader.report.as_dict(),
        "patients": len(reader.columns.patients),
        "patients_excluded_by_consent": len(built.consent.excluded_by_consent),
        "records_per_group": records,
        "offline_files_per_group": files_written,
        "online_records_per_group": online,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return BuildResult(report)


def partition(
    files: Sequence[Path],
    output: Path,
    *,
    partitions: int,
    max_bad_line_share: float,
    display_root: Path | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    reader = ExportReader(display_root=display_root)
    with staged(output) as stage:
        written = partition_export(files, stage, partitions=partitions, reader=reader)
        _check_share(reader, max_bad_line_share)
    return {
        "input": reader.report.as_dict(),
        "partitions_written": len(written),
        "seconds": round(time.perf_counter() - started, 3),
    }


# --- inputs ---------------------------------------------------------------------------------


@contextmanager
def local_input(location: str, s3_client: Any = None) -> Iterator[Path]:
    """A local folder as it is, or an s3:// prefix downloaded into a temporary folder (with
    the given client, or one from the usual credential chain)."""
    if not location.startswith("s3://"):
        yield Path(location)
        return
    if s3_client is None:
        import boto3  # noqa: PLC0415  (only runs reading S3 themselves need it)

        s3_client = boto3.client("s3")
    s3 = s3_client
    bucket, _, prefix = location[len("s3://") :].partition("/")
    with tempfile.TemporaryDirectory(prefix="fhir-export-") as folder:
        root = Path(folder)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith(".ndjson"):
                    continue
                target = root / key[len(prefix) :].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(target))
        yield root


# --- command line ---------------------------------------------------------------------------


def _share(value: str) -> float:
    share = float(value)
    if not 0 <= share < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a share in [0, 1)")
    return share


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return number


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        # SageMaker renders Execution.StartDateTime in UTC; a zone-less time is read so.
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.feature_builder", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    part = commands.add_parser("partition", help="split an export into patient partitions")
    part.add_argument("--input", required=True, help="export folder or s3:// prefix")
    part.add_argument("--output", required=True, type=Path)
    part.add_argument("--partitions", required=True, type=_positive)
    part.add_argument("--report", required=True, type=Path)
    part.add_argument("--max-bad-line-share", type=_share, default=0.01)
    part.add_argument("--shard", help="name of this instance's report (default: the host)")
    make = commands.add_parser("build", help="build every declared feature group")
    make.add_argument("--input", required=True, help="export or partitions: folder or s3://")
    make.add_argument("--spec", required=True, type=Path, help="feature-spec.json")
    make.add_argument("--offline-output", required=True, type=Path)
    make.add_argument("--online-output", type=Path)
    make.add_argument("--report", required=True, type=Path)
    make.add_argument("--write-time", type=_instant, help="Feature Store write_time (now)")
    make.add_argument("--shard", help="name of this instance's files (default: the host)")
    return parser.parse_args(argv)


def _write_report(folder: Path, shard: str, report: dict[str, Any]) -> Path:
    with staged(folder) as stage:
        (stage / f"{shard}{REPORT_SUFFIX}").write_text(
            json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return folder / f"{shard}{REPORT_SUFFIX}"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    shard = arguments.shard or current_shard()
    try:
        with local_input(arguments.input) as root:
            files = export_files(root)
            if arguments.command == "partition":
                report = partition(
                    files,
                    arguments.output,
                    partitions=arguments.partitions,
                    max_bad_line_share=arguments.max_bad_line_share,
                    display_root=root,
                )
            else:
                spec = read_spec(arguments.spec)
                result = build(
                    files,
                    spec,
                    offline_output=arguments.offline_output,
                    online_output=arguments.online_output,
                    shard=shard,
                    write_time=arguments.write_time or datetime.now(UTC).replace(microsecond=0),
                    display_root=root,
                )
                report = result.report
    except (InputError, SpecError, TooManyBadLinesError, ValueError) as error:
        print(f"feature_builder: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    path = _write_report(arguments.report, shard, report)
    bad = report["input"]["bad_lines"]
    print(f"feature_builder: {arguments.command} done ({bad} bad lines); report {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
