"""`make promote-model FROM=staging TO=prod PACKAGE=<arn|version>`: move the model version a
person approved in one environment's registry to the next environment's registry, by digest,
for that environment's reviewers to approve again (FDA change control). Nothing is retrained:
the bytes that were evaluated are the bytes that are registered.

    python -m tools.promote_model --from staging --to prod --package 7
    python -m tools.promote_model --from staging --to prod --package ARN
                                  [--source-profile P] [--target-profile P] [--endpoint-url URL]

The promotion path is dev -> staging -> prod (PROMOTION_CHAIN, the order of the promotion
workflow): a version moves only to the environment right after its own, never back, never
past one. The environment files must agree: both sides in the same jurisdiction, and a
production target must be the account the source registry grants promotion reads to
(`ml.registry.production_account_id`). eu-research is its own production and promotes nowhere.

In order, nothing written before every check has passed:
1. Source (the source account's credentials: `--source-profile` or the usual chain):
   DescribeModelPackage of the one version. Refused unless it is Approved, its one container's
   image is pinned by @sha256: digest, it records `model-archive-sha256`, and each object it
   names (model archive, evaluation report in ModelMetrics, the drift baseline's constraints
   and statistics in DriftCheckBaselines) lies where the source pipeline writes it: its run
   folder in the artifacts bucket, under the name its step writes. So nothing else, a training
   split or the raw PHI bucket, is ever read.
2. Target (`--target-profile`): the credentials must be the target account's and its group
   must exist. A package of that group whose `promoted-from` is this version is reported, and
   nothing else happens (idempotent).
3. Source: GetObject of exactly those four objects (a botocore hook refuses any other source
   call before it is sent); the archive must hash to `model-archive-sha256`, the documents
   must be JSON.
4. Target: the serving image's digest must be in the target's own serving repository, and its
   ML key must exist. Each object is put in the target's artifacts bucket under the target
   pipeline's prefix (`<prefix>promoted-from-<source>/<the run's relative path>`, where the
   target's model role and monitor read), encrypted with that key, then read back by version
   and its sha256 compared: the archive with `model-archive-sha256`, a document with the
   bytes read from the source. Any difference deletes every copy (by version), registers
   nothing.
5. CreateModelPackage in the target group: PendingManualApproval, the target repository's
   image with the same digest, ModelMetrics and DriftCheckBaselines pointing at the copies,
   MetadataProperties and CustomerMetadataProperties carried over plus `promoted-from`. If it
   fails, the copies are deleted (unless SageMaker registered it and only the answer was lost).

Exit status: 0 promoted, or already promoted (reported); 1 refused (the version or the request
breaks change control: not Approved, a tag, a digest mismatch, a direction off the path, an
object outside the run folder, an image the target repository lacks); 2 it cannot run as asked
(unknown environment or package, a bad --package, credentials of another account, access
denied, the target's group or ML key missing, the endpoint unreachable). One line on stderr.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

from environments.layer_configs import LayerConfigs, layer_configs
from environments.loader import ENVIRONMENTS_DIR, EnvironmentFileError, load_environments
from environments.schema import WorkloadEnvironment
from ml.sagemaker_paths import BASELINE_CONSTRAINTS, BASELINE_STATISTICS, MODEL_ARCHIVE
from modules.deployment import image_repository
from modules.keys import KeyPurpose
from modules.pipelines import BASELINE_OUTPUT, EVALUATION_FILE, EVALUATION_OUTPUT
from policies.runtime.clients import (
    CONNECTION_ERRORS,
    credentials_error,
    error_code,
    error_message,
    is_access_denied,
    is_credentials_problem,
    pages,
)
from requirements.model_lineage import (
    IMAGE_BY_DIGEST,
    MODEL_ARCHIVE_SHA256,
    PROMOTED_FROM,
    SHA256_HEX,
)
from tools.cli import UsageError, run_command

# The order the promotion workflow applies the environments in (.github/workflows/promote.yml)
# and the one a model version follows. The environment files hold no order of their own; what
# they do say (jurisdiction, the account a registry grants promotion reads to) is checked
# against it in promotion_problem.
PROMOTION_CHAIN: Final = ("dev", "staging", "prod")
APPROVED: Final = "Approved"
# The target's reviewers decide again (FDA change control): a promotion never approves.
PENDING_MANUAL_APPROVAL: Final = "PendingManualApproval"
EXIT_REFUSED: Final = 1
# SageMaker's limits on a package.
MAX_CUSTOMER_METADATA: Final = 50
MAX_DESCRIPTION: Final = 1024
# The only source operations a promotion makes (SourceGuard refuses any other).
SOURCE_DESCRIBE: Final = "DescribeModelPackage"
SOURCE_OBJECT_READS: Final = frozenset({"GetObject", "HeadObject"})
# Container fields a promoted package carries over; Image and ModelDataUrl are rewritten.
CARRIED_CONTAINER_FIELDS: Final = (
    "Environment",
    "Framework",
    "FrameworkVersion",
    "NearestModelName",
)
CARRIED_INFERENCE_FIELDS: Final = (
    "SupportedContentTypes",
    "SupportedResponseMIMETypes",
    "SupportedRealtimeInferenceInstanceTypes",
    "SupportedTransformInstanceTypes",
)
CARRIED_PACKAGE_FIELDS: Final = ("Domain", "Task")
SPOOLED_IN_MEMORY_BYTES: Final = 64 * 1024 * 1024
CHUNK_BYTES: Final = 1 << 20
PACKAGE_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):model-package/"
    r"(?P<group>[A-Za-z0-9-]+)/(?P<version>[1-9][0-9]*)$"
)
VERSION_NUMBER: Final = re.compile(r"^[1-9][0-9]*$")
S3_URI: Final = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>\S+)$")
ECR_HOST: Final = re.compile(r"^(?P<account>[0-9]{12})\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com")
NOT_FOUND_CODES: Final = frozenset({"ValidationException", "ResourceNotFound"})
MISSING_OBJECT_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})
MISSING_IMAGE_CODES: Final = frozenset({"ImageNotFoundException", "RepositoryNotFoundException"})


class RefusedError(Exception):
    """The promotion would break change control; nothing is registered (exit 1)."""


# --- the two environments ------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One environment of a promotion and the names its layers give what a promotion uses."""

    environment: WorkloadEnvironment
    configs: LayerConfigs

    @classmethod
    def of(cls, environment: WorkloadEnvironment) -> Side:
        return cls(environment, layer_configs(environment))

    @property
    def name(self) -> str:
        return self.environment.name

    @property
    def account_id(self) -> str:
        return self.environment.account_id

    @property
    def region(self) -> str:
        return self.environment.region

    @property
    def where(self) -> str:
        return f"{self.name} (account {self.account_id}, {self.region})"

    @property
    def group(self) -> str:
        return self.configs.pipeline.model_package_group_name

    @property
    def artifacts_bucket(self) -> str:
        return self.configs.storage.bucket_name("ml-artifacts")

    @property
    def runs_prefix(self) -> str:
        """Where the pipeline writes its runs in the artifacts bucket (model role and monitor
        read there, and nowhere else of the bucket)."""
        return self.configs.pipeline.artifacts_prefix

    @property
    def serving_repository(self) -> str:
        """The only repository the environment's deployer serves images from."""
        return image_repository(self.configs.inference.inference_image)

    @property
    def ml_key_alias(self) -> str:
        return self.configs.keys.key_config(KeyPurpose.ML_ARTIFACTS).alias

    def package_arn(self, version: int) -> str:
        # Group names are lower case (modules/registry.py), as SageMaker writes them in ARNs.
        return (
            f"arn:aws:sagemaker:{self.region}:{self.account_id}:model-package/"
            f"{self.group}/{version}"
        )

    def promoted_prefix(self, source: Side) -> str:
        return f"{self.runs_prefix}promoted-from-{source.name}/"


def environments(from_name: str, to_name: str, root: Path) -> tuple[Side, Side]:
    """Both environments, validated; only workload environments hold a model registry."""
    try:
        loaded = load_environments([from_name, to_name], root)
    except EnvironmentFileError as problem:
        raise UsageError(str(problem)) from None
    sides = []
    for environment in loaded:
        if not isinstance(environment, WorkloadEnvironment):
            raise UsageError(
                f"'{environment.name}' is the organization environment: it has no model "
                "registry; a promotion moves a version between workload environments"
            )
        sides.append(Side.of(environment))
    source, target = sides
    return source, target


def promotion_problem(source: WorkloadEnvironment, target: WorkloadEnvironment) -> str | None:
    """Why a version may not move from `source` to `target`, or None: only to the environment
    right after its own on PROMOTION_CHAIN, and only where the environment files agree."""
    path = " -> ".join(PROMOTION_CHAIN)
    if source.name == target.name:
        return f"{source.name} -> {target.name}: a version is promoted to the next environment"
    for environment in (source, target):
        if environment.name not in PROMOTION_CHAIN:
            return (
                f"{environment.name} is not on the promotion path {path}: its models are "
                "trained and approved in its own account and promoted nowhere"
            )
    start, end = PROMOTION_CHAIN.index(source.name), PROMOTION_CHAIN.index(target.name)
    if end < start:
        return (
            f"{source.name} -> {target.name} reverses the promotion path {path}: a version "
            "moves only to the environment after its own"
        )
    if end > start + 1:
        skipped = ", ".join(PROMOTION_CHAIN[start + 1 : end])
        return (
            f"{source.name} -> {target.name} skips {skipped} on the promotion path {path}: "
            f"promote to {PROMOTION_CHAIN[start + 1]} and approve it there first"
        )
    return files_problem(source, target)


def files_problem(source: WorkloadEnvironment, target: WorkloadEnvironment) -> str | None:
    """Where the environment files disagree with a step of the promotion path."""
    if source.jurisdiction is not target.jurisdiction:
        return (
            f"{source.name} is a {source.jurisdiction.value} environment, {target.name} a "
            f"{target.jurisdiction.value} one: a promotion stays in its jurisdiction"
        )
    granted = source.ml.registry.production_account_id
    if target.production and granted != target.account_id:
        return (
            f"{source.name}'s registry grants promotion reads to account {granted} "
            f"(ml.registry.production_account_id), not to {target.name}'s {target.account_id}"
        )
    return None


def source_package_arn(package: str, source: Side) -> str:
    """The ARN of `--package` (a version number of the source group, or an ARN in it)."""
    if VERSION_NUMBER.match(package):
        return source.package_arn(int(package))
    matched = PACKAGE_ARN.match(package)
    if matched is None:
        raise UsageError(
            f"--package {package!r} is neither a model package version ARN nor a version number"
        )
    if (matched["account"], matched["region"], matched["group"]) != (
        source.account_id,
        source.region,
        source.group.lower(),
    ):
        raise UsageError(
            f"{package} is not a version of {source.name}'s group {source.group} "
            f"(account {source.account_id}, {source.region})"
        )
    return package


# --- what a version names ------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One object a promotion moves: where the package names it and where the pipeline
    writes it (`written`, after the runs prefix), plus the pattern of the role that reads it
    in the target's account, if one does."""

    what: str
    field: str
    written: str
    reader: Callable[[LayerConfigs], str] | None = None

    def patterns(self, side: Side) -> tuple[str, ...]:
        own = f"{side.runs_prefix}{self.written}"
        return (own,) if self.reader is None else (own, self.reader(side.configs))


ARCHIVE: Final = Kind(
    "model archive",
    "InferenceSpecification.Containers[0].ModelDataUrl",
    f"*/{MODEL_ARCHIVE}",
    lambda configs: f"{configs.inference.model_archive_prefix}*/{MODEL_ARCHIVE}",
)
REPORT: Final = Kind(
    "evaluation report",
    "ModelMetrics.ModelQuality.Statistics",
    f"*/{EVALUATION_OUTPUT}/{EVALUATION_FILE}",
)
CONSTRAINTS: Final = Kind(
    "drift baseline constraints",
    "DriftCheckBaselines.ModelDataQuality.Constraints",
    f"*/{BASELINE_OUTPUT}/{BASELINE_CONSTRAINTS}",
    lambda configs: configs.monitoring.baseline_objects,
)
STATISTICS: Final = Kind(
    "drift baseline statistics",
    "DriftCheckBaselines.ModelDataQuality.Statistics",
    f"*/{BASELINE_OUTPUT}/{BASELINE_STATISTICS}",
    lambda configs: configs.monitoring.baseline_objects,
)
DOCUMENTS: Final = (REPORT, CONSTRAINTS, STATISTICS)


@dataclass(frozen=True)
class Artifact:
    kind: Kind
    bucket: str
    key: str
    target_key: str
    # What the copy must hash to when it is known before reading: the archive's recorded
    # digest. A document's is the digest of the bytes read from the source.
    recorded_sha256: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class SourceVersion:
    arn: str
    package: dict[str, Any]
    image_digest: str
    customer: dict[str, str]
    artifacts: tuple[Artifact, ...]


def _at(document: Any, path: str) -> Any:
    for part in path.split("."):
        document = document.get(part) if isinstance(document, dict) else None
    return document


def s3_blocks(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, S3Uri) of every block under `value` that names an S3 object."""
    if isinstance(value, dict):
        if "S3Uri" in value:
            yield path, value["S3Uri"]
            return
        for key, item in value.items():
            yield from s3_blocks(item, f"{path}.{key}")


def checked_source(package: dict[str, Any], arn: str, source: Side, target: Side) -> SourceVersion:
    """The version as it may be promoted, or RefusedError naming the first reason it may not."""
    status = package.get("ModelApprovalStatus")
    if status != APPROVED:
        raise RefusedError(
            f"{arn} is {status or 'without an approval status'}, not {APPROVED}: only a "
            f"version {source.name}'s reviewers approved is promoted"
        )
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    if len(containers) != 1:
        raise RefusedError(f"{arn} has {len(containers)} containers, not exactly one")
    image = str(containers[0].get("Image", ""))
    if not IMAGE_BY_DIGEST.match(image):
        raise RefusedError(
            f"{arn}'s serving image {image!r} is not pinned by @sha256: digest: a promotion "
            "moves an image by digest, never by tag"
        )
    customer = {
        str(key): str(value)
        for key, value in (package.get("CustomerMetadataProperties") or {}).items()
    }
    recorded = customer.get(MODEL_ARCHIVE_SHA256, "")
    if not SHA256_HEX.match(recorded):
        raise RefusedError(
            f"{arn} records no {MODEL_ARCHIVE_SHA256} (CustomerMetadataProperties): its archive "
            "cannot be checked against the one that was evaluated"
        )
    if len({*customer, PROMOTED_FROM}) > MAX_CUSTOMER_METADATA:
        raise RefusedError(
            f"{arn} has {len(customer)} CustomerMetadataProperties: with {PROMOTED_FROM} they "
            f"exceed SageMaker's {MAX_CUSTOMER_METADATA}"
        )
    named = {ARCHIVE.field: containers[0].get("ModelDataUrl")}
    for kind in DOCUMENTS:
        named[kind.field] = _at(package, f"{kind.field}.S3Uri")
    others = [
        f"{path} ({uri})"
        for top in ("ModelMetrics", "DriftCheckBaselines")
        for path, uri in s3_blocks(package.get(top), top)
        if path not in named
    ]
    if others:
        raise RefusedError(
            f"{arn} also names {', '.join(others)}: a promotion moves only the model archive, "
            "the evaluation report and the data-quality baseline its pipeline writes"
        )
    artifacts = tuple(
        artifact(kind, named[kind.field], source, target, recorded if kind is ARCHIVE else None)
        for kind in (ARCHIVE, *DOCUMENTS)
    )
    return SourceVersion(arn, package, image.rpartition("@")[2], customer, artifacts)


def artifact(kind: Kind, uri: Any, source: Side, target: Side, recorded: str | None) -> Artifact:
    """Where an object is read and where its copy goes; RefusedError unless the source pipeline
    wrote it there (so nothing else of the account, a dataset or raw PHI, is ever read)."""
    if not uri:
        raise RefusedError(f"the version names no {kind.what} ({kind.field})")
    matched = S3_URI.match(str(uri))
    patterns = kind.patterns(source)
    if (
        matched is None
        or matched["bucket"] != source.artifacts_bucket
        or not all(fnmatchcase(matched["key"], pattern) for pattern in patterns)
    ):
        raise RefusedError(
            f"{kind.field} {uri!r} is not where {source.name}'s pipeline writes a {kind.what} "
            f"(s3://{source.artifacts_bucket}/{patterns[0]}): a promotion reads nothing else"
        )
    key = str(matched["key"])
    target_key = target.promoted_prefix(source) + key.removeprefix(source.runs_prefix)
    unreadable = [p for p in kind.patterns(target) if not fnmatchcase(target_key, p)]
    if unreadable:
        raise RefusedError(
            f"the {kind.what} copy {target_key} would not be readable in {target.name} "
            f"({unreadable[0]})"
        )
    return Artifact(kind, str(matched["bucket"]), key, target_key, recorded)


# --- the source account: read only, and only what the version names ----------------------


@dataclass
class SourceGuard:
    """A botocore hook on the source clients: DescribeModelPackage of the one version, then
    GetObject/HeadObject of the objects it names; anything else is refused before it is sent."""

    package_arn: str
    objects: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def install(self, client: Any) -> Any:
        client.meta.events.register_first("before-parameter-build.*.*", self._check)
        return client

    def _check(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == SOURCE_DESCRIBE and params.get("ModelPackageName") == self.package_arn:
            return
        if model.name in SOURCE_OBJECT_READS and (
            (params.get("Bucket"), params.get("Key")) in self.objects
        ):
            return
        service = model.service_model.service_name
        raise RefusedError(
            f"{service}:{model.name} {params.get('Key') or params.get('ModelPackageName') or ''} "
            "on the source account: a promotion reads only the version and the objects it names"
        )


def described_source(sagemaker: Any, arn: str, source: Side) -> dict[str, Any]:
    try:
        package = dict(sagemaker.describe_model_package(ModelPackageName=arn))
    except ClientError as problem:
        if error_code(problem) in NOT_FOUND_CODES:
            raise UsageError(
                f"no model package {arn} in {source.where} ({error_message(problem)})"
            ) from None
        raise
    if package.get("ModelPackageArn") != arn:
        raise RefusedError(
            f"DescribeModelPackage of {arn} answered {package.get('ModelPackageArn')}"
        )
    return package


@dataclass
class Read:
    artifact: Artifact
    body: IO[bytes]
    sha256: str
    content_type: str | None


def read_source(s3: Any, artifact: Artifact, stack: ExitStack, source: Side) -> Read:
    """The object's bytes (spooled to disk when large) and their sha256; RefusedError for an archive
    that is not the evaluated one or a document that is not JSON."""
    try:
        response = s3.get_object(Bucket=artifact.bucket, Key=artifact.key)
    except ClientError as problem:
        if error_code(problem) in MISSING_OBJECT_CODES:
            raise RefusedError(
                f"the {artifact.kind.what} {artifact.uri} does not exist in {source.name}"
            ) from None
        raise
    body: IO[bytes] = stack.enter_context(
        tempfile.SpooledTemporaryFile(max_size=SPOOLED_IN_MEMORY_BYTES)  # noqa: SIM115
    )
    digest = hashlib.sha256()
    for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
        digest.update(chunk)
        body.write(chunk)
    sha256 = digest.hexdigest()
    if artifact.recorded_sha256 is not None and sha256 != artifact.recorded_sha256:
        raise RefusedError(
            f"the {artifact.kind.what} {artifact.uri} hashes to {sha256}, the version records "
            f"{MODEL_ARCHIVE_SHA256} {artifact.recorded_sha256}: not the evaluated bytes; "
            "nothing copied or registered"
        )
    if artifact.recorded_sha256 is None:
        body.seek(0)
        try:
            json.loads(body.read())
        except ValueError:
            raise RefusedError(
                f"the {artifact.kind.what} {artifact.uri} is not a JSON document"
            ) from None
    content_type = response.get("ContentType")
    return Read(artifact, body, sha256, str(content_type) if content_type else None)


# --- the target account --------------------------------------------------------------------


def check_identity(sts: Any, side: Side) -> None:
    account = str(sts.get_caller_identity()["Account"])
    if account != side.account_id:
        raise UsageError(
            f"the target credentials are of account {account}, {side.name} is account "
            f"{side.account_id}: use credentials of that account (--target-profile)"
        )


def check_group(sagemaker: Any, side: Side) -> None:
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=side.group)
    except ClientError as problem:
        if error_code(problem) in NOT_FOUND_CODES:
            raise UsageError(
                f"model package group {side.group} does not exist in {side.where}: apply "
                f"{side.name}'s ML stack first"
            ) from None
        raise


def existing_promotion(sagemaker: Any, side: Side, source_arn: str) -> dict[str, Any] | None:
    """The target group's package promoted from `source_arn`, newest first, if there is one."""
    for summary in pages(
        sagemaker,
        "list_model_packages",
        "ModelPackageSummaryList",
        ModelPackageGroupName=side.group,
        SortBy="CreationTime",
        SortOrder="Descending",
    ):
        described = dict(
            sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        )
        if (described.get("CustomerMetadataProperties") or {}).get(PROMOTED_FROM) == source_arn:
            return described
    return None


def check_image(ecr: Any, side: Side, digest: str) -> str:
    """The target's serving image of `digest`; RefusedError unless its repository holds it."""
    repository = side.serving_repository
    host, _, name = repository.partition("/")
    registry = ECR_HOST.match(host)
    try:
        ecr.describe_images(
            repositoryName=name,
            imageIds=[{"imageDigest": digest}],
            **({"registryId": registry["account"]} if registry else {}),
        )
    except ClientError as problem:
        if error_code(problem) in MISSING_IMAGE_CODES:
            raise RefusedError(
                f"{side.name}'s serving repository {repository} holds no image {digest} "
                f"({error_code(problem)}): push or replicate the image CI built there first; "
                "nothing copied or registered"
            ) from None
        raise
    return f"{repository}@{digest}"


def ml_key_arn(kms: Any, side: Side) -> str:
    alias = side.ml_key_alias
    try:
        metadata = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as problem:
        if error_code(problem) == "NotFoundException":
            raise UsageError(
                f"{side.name}'s ML key {alias} does not exist in {side.where}: apply its keys first"
            ) from None
        raise
    if metadata.get("KeyState") != "Enabled":
        raise UsageError(f"{side.name}'s ML key {alias} is {metadata.get('KeyState')}, not Enabled")
    return str(metadata["Arn"])


@dataclass(frozen=True)
class Copy:
    artifact: Artifact
    bucket: str
    version_id: str | None
    sha256: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.artifact.target_key}"


def _version(copy: Copy) -> dict[str, str]:
    return {"VersionId": copy.version_id} if copy.version_id else {}


def write_copy(s3: Any, read: Read, side: Side, key_arn: str, written: list[Copy]) -> Copy:
    """Put the bytes in the target's artifacts bucket under the ML key, then read the copy back
    (by version) and compare its sha256; RefusedError on any difference (the caller removes it)."""
    artifact = read.artifact
    read.body.seek(0)
    parameters: dict[str, Any] = {
        "Bucket": side.artifacts_bucket,
        "Key": artifact.target_key,
        "Body": read.body,
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": key_arn,
        # S3 refuses the put if the bytes it receives hash otherwise.
        "ChecksumSHA256": base64.b64encode(bytes.fromhex(read.sha256)).decode(),
    }
    if read.content_type:
        parameters["ContentType"] = read.content_type
    response = s3.put_object(**parameters)
    version = response.get("VersionId")
    expected = artifact.recorded_sha256 or read.sha256
    copy = Copy(artifact, side.artifacts_bucket, str(version) if version else None, expected)
    written.append(copy)
    stored = s3.get_object(Bucket=copy.bucket, Key=artifact.target_key, **_version(copy))
    digest = hashlib.sha256()
    for chunk in stored["Body"].iter_chunks(CHUNK_BYTES):
        digest.update(chunk)
    basis = MODEL_ARCHIVE_SHA256 if artifact.recorded_sha256 else "the bytes read from the source"
    if digest.hexdigest() != expected:
        raise RefusedError(
            f"the {artifact.kind.what} copy {copy.uri} hashes to {digest.hexdigest()}, not "
            f"{expected} ({basis}): copies removed, nothing registered"
        )
    if stored.get("ServerSideEncryption") != "aws:kms" or stored.get("SSEKMSKeyId") != key_arn:
        raise RefusedError(
            f"the {artifact.kind.what} copy {copy.uri} is encrypted with "
            f"{stored.get('SSEKMSKeyId')!r}, not {side.name}'s ML key {key_arn}: copies "
            "removed, nothing registered"
        )
    return copy


def remove_copies(s3: Any, written: list[Copy]) -> list[str]:
    """Delete each copy's version; what could not be deleted, and why."""
    left: list[str] = []
    for copy in reversed(written):
        try:
            s3.delete_object(Bucket=copy.bucket, Key=copy.artifact.target_key, **_version(copy))
        except (ClientError, BotoCoreError) as problem:
            left.append(f"{copy.uri} ({failure(problem)})")
    return left


def pointed_at_copies(value: Any, path: str, copies: dict[str, str]) -> Any:
    if not isinstance(value, dict):
        return value
    if path in copies:
        return {**value, "S3Uri": copies[path]}
    return {key: pointed_at_copies(item, f"{path}.{key}", copies) for key, item in value.items()}


def package_request(
    version: SourceVersion, source: Side, target: Side, image: str, copies: Sequence[Copy]
) -> dict[str, Any]:
    """CreateModelPackage's arguments: the source version, moved into the target's account."""
    package = version.package
    by_field = {copy.artifact.kind.field: copy.uri for copy in copies}
    source_container = package["InferenceSpecification"]["Containers"][0]
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": by_field[ARCHIVE.field]}
    container |= {k: source_container[k] for k in CARRIED_CONTAINER_FIELDS if k in source_container}
    inference = package["InferenceSpecification"]
    specification: dict[str, Any] = {"Containers": [container]}
    specification |= {k: inference[k] for k in CARRIED_INFERENCE_FIELDS if k in inference}
    description = f"promoted from {version.arn}, approved in {source.name}"
    if package.get("ModelPackageDescription"):
        description += f"; {package['ModelPackageDescription']}"
    request: dict[str, Any] = {
        "ModelPackageGroupName": target.group,
        "ModelPackageDescription": description[:MAX_DESCRIPTION],
        "ModelApprovalStatus": PENDING_MANUAL_APPROVAL,
        "InferenceSpecification": specification,
        "CustomerMetadataProperties": {**version.customer, PROMOTED_FROM: version.arn},
        # SageMaker answers a repeated token with the package it already created.
        "ClientToken": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{version.arn} -> {target.group}")),
    }
    for top in ("ModelMetrics", "DriftCheckBaselines"):
        request[top] = pointed_at_copies(package[top], top, by_field)
    if package.get("MetadataProperties"):
        request["MetadataProperties"] = dict(package["MetadataProperties"])
    request |= {k: package[k] for k in CARRIED_PACKAGE_FIELDS if package.get(k)}
    return request


# --- the promotion -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    source: Side
    target: Side
    source_arn: str
    target_arn: str
    status: str
    already: bool
    image: str = ""
    copies: tuple[Copy, ...] = ()


def one_line(text: str) -> str:
    return " ".join(text.split())


def failure(problem: BaseException) -> str:
    if is_credentials_problem(problem):
        return one_line(str(credentials_error(problem)))
    if isinstance(problem, ClientError):
        if is_access_denied(problem):
            return one_line(f"access denied to {problem.operation_name} ({error_message(problem)})")
        return one_line(
            f"{problem.operation_name} failed ({error_code(problem)}: {error_message(problem)})"
        )
    return one_line(
        str(problem) if isinstance(problem, RefusedError | UsageError) else repr(problem)
    )


@contextmanager
def calls(side: Side, endpoint_url: str | None) -> Iterator[None]:
    """AWS errors of one side's calls as one UsageError line naming that side."""
    try:
        yield
    except CONNECTION_ERRORS as problem:
        raise UsageError(f"cannot reach {endpoint_url or 'AWS'}: {problem}") from None
    except (ClientError, BotoCoreError) as problem:
        raise UsageError(f"{side.where}: {failure(problem)}") from None


def client_config(endpoint_url: str | None) -> Config:
    if endpoint_url:
        # The emulator answers at once or not at all.
        return Config(
            retries={"mode": "standard", "max_attempts": 2},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path"},
            user_agent_extra="phi-ml-promote-model",
        )
    return Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra="phi-ml-promote-model",
    )


@dataclass
class Clients:
    session: boto3.Session
    side: Side
    endpoint_url: str | None
    guard: SourceGuard | None = None
    _made: dict[str, Any] = field(default_factory=dict)

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            client = self.session.client(
                service,
                region_name=self.side.region,
                endpoint_url=self.endpoint_url,
                config=client_config(self.endpoint_url),
            )
            self._made[service] = self.guard.install(client) if self.guard else client
        return self._made[service]


def promote(
    source: Side,
    target: Side,
    arn: str,
    *,
    source_session: boto3.Session,
    target_session: boto3.Session,
    endpoint_url: str | None,
) -> Outcome:
    guard = SourceGuard(arn)
    reads_from = Clients(source_session, source, endpoint_url, guard)
    writes_to = Clients(target_session, target, endpoint_url)
    with calls(source, endpoint_url):
        package = described_source(reads_from("sagemaker"), arn, source)
    version = checked_source(package, arn, source, target)
    with calls(target, endpoint_url):
        check_identity(writes_to("sts"), target)
        check_group(writes_to("sagemaker"), target)
        existing = existing_promotion(writes_to("sagemaker"), target, arn)
    if existing is not None:
        return Outcome(
            source,
            target,
            arn,
            str(existing["ModelPackageArn"]),
            str(existing.get("ModelApprovalStatus")),
            already=True,
        )
    guard.objects = frozenset((a.bucket, a.key) for a in version.artifacts)
    with ExitStack() as spools:
        with calls(source, endpoint_url):
            reads = [read_source(reads_from("s3"), a, spools, source) for a in version.artifacts]
        with calls(target, endpoint_url):
            image = check_image(writes_to("ecr"), target, version.image_digest)
            key_arn = ml_key_arn(writes_to("kms"), target)
        return registered(
            version=version,
            reads=reads,
            source=source,
            target=target,
            image=image,
            key_arn=key_arn,
            writes_to=writes_to,
        )


def registered(
    *,
    version: SourceVersion,
    reads: list[Read],
    source: Side,
    target: Side,
    image: str,
    key_arn: str,
    writes_to: Clients,
) -> Outcome:
    """Copy, verify, register; on any failure the copies made are deleted again."""
    written: list[Copy] = []
    registering = False
    try:
        with calls(target, writes_to.endpoint_url):
            copies = [write_copy(writes_to("s3"), read, target, key_arn, written) for read in reads]
            request = package_request(version, source, target, image, copies)
            registering = True
            created = writes_to("sagemaker").create_model_package(**request)
    except BaseException as problem:
        if registering:
            # An answer lost after SageMaker registered it: the package names these copies.
            found = _registered_anyway(writes_to, target, version.arn)
            if found is not None:
                return Outcome(
                    source,
                    target,
                    version.arn,
                    found,
                    PENDING_MANUAL_APPROVAL,
                    False,
                    image,
                    tuple(written),
                )
        left = remove_copies(writes_to("s3"), written)
        if left:
            raise UsageError(
                f"{failure(problem)}; and these copies could not be removed, delete them: "
                + ", ".join(left)
            ) from None
        raise
    return Outcome(
        source,
        target,
        version.arn,
        str(created["ModelPackageArn"]),
        PENDING_MANUAL_APPROVAL,
        already=False,
        image=image,
        copies=tuple(copies),
    )


def _registered_anyway(writes_to: Clients, target: Side, source_arn: str) -> str | None:
    try:
        found = existing_promotion(writes_to("sagemaker"), target, source_arn)
    except (ClientError, BotoCoreError):
        return None
    return None if found is None else str(found["ModelPackageArn"])


def render(outcome: Outcome) -> str:
    source, target = outcome.source.name, outcome.target.name
    if outcome.already:
        return (
            f"already promoted: {source} {outcome.source_arn} is {target} {outcome.target_arn} "
            f"({outcome.status}); nothing copied or registered\n"
        )
    lines = [
        f"promoted {source} {outcome.source_arn} -> {target} {outcome.target_arn}",
        f"  approval: {outcome.status} ({target}'s reviewers decide before its deployer serves it)",
        f"  image: {outcome.image}",
    ]
    for copy in outcome.copies:
        basis = MODEL_ARCHIVE_SHA256 if copy.artifact.recorded_sha256 else f"as read in {source}"
        lines.append(f"  {copy.artifact.kind.what}: {copy.uri} sha256 {copy.sha256} (= {basis})")
    return "\n".join(lines) + "\n"


# --- the command ---------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.promote_model", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--from", dest="source", required=True, metavar="ENV")
    parser.add_argument("--to", dest="target", required=True, metavar="ENV")
    parser.add_argument(
        "--package", required=True, metavar="ARN|VERSION", help="an approved version of FROM"
    )
    parser.add_argument(
        "--source-profile", help="AWS profile of FROM's account (default: the usual chain)"
    )
    parser.add_argument(
        "--target-profile", help="AWS profile of TO's account (default: the usual chain)"
    )
    parser.add_argument(
        "--endpoint-url", help="the AWS endpoint (the local emulator); default AWS_ENDPOINT_URL"
    )
    parser.add_argument(
        "--environments-dir",
        type=Path,
        default=Path(os.environ.get("PHI_ENVIRONMENTS_DIR", ENVIRONMENTS_DIR)),
        help="folder of <name>/environment.yaml (default: environments/)",
    )
    return parser.parse_args(argv)


def session_of(profile: str | None, given: boto3.Session | None) -> boto3.Session:
    if given is not None:
        return given
    try:
        return boto3.Session(profile_name=profile)
    except ProfileNotFound as problem:
        raise UsageError(f"{problem} (see `aws configure list-profiles`)") from None


def main(
    argv: Sequence[str] | None = None,
    *,
    source_session: boto3.Session | None = None,
    target_session: boto3.Session | None = None,
) -> int:
    arguments = parse_arguments(argv)

    def command() -> int:
        try:
            source, target = environments(
                arguments.source, arguments.target, arguments.environments_dir
            )
            problem = promotion_problem(source.environment, target.environment)
            if problem:
                raise RefusedError(problem)
            arn = source_package_arn(arguments.package, source)
            outcome = promote(
                source,
                target,
                arn,
                source_session=session_of(arguments.source_profile, source_session),
                target_session=session_of(arguments.target_profile, target_session),
                endpoint_url=arguments.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            )
        except RefusedError as refusal:
            print(f"refused: {one_line(str(refusal))}", file=sys.stderr)
            return EXIT_REFUSED
        sys.stdout.write(render(outcome))
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
