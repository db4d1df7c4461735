"""The platform's container images: one table, built for the platform that runs each, pushed,
and named by digest, so that environments run exactly what CI built and scanned.

    python -m tools.images matrix [--github-output FILE]
    python -m tools.images build --registry REGISTRY --tag TAG [--image NAME ...]
                                 [--record FILE] [--github-output FILE]
    python -m tools.images record [--environment FILE ...] [--enclave-measurement FILE]
                                  [--record FILE]
    python -m tools.images check --environment FILE [...] [--record FILE ...]

`IMAGES` is the one definition: each image's Dockerfile, platform, ECR repository, and the
environment-file fields that name it and that name the instance types running it.

`matrix` prints the images CI pushes to ECR, as a GitHub Actions matrix. `build` runs `docker
buildx build --platform ... --push` for each (the enclave image is `--load`ed instead: nitro-cli
turns it into an EIF), each base image pinned by the digest its tag names at that moment, and
records what was pushed, `<registry>/<repository>@sha256:...`, read from buildx's
`--metadata-file`. `record` adds what is not built here: the digests of AWS's own images
(SageMaker's XGBoost and Model Monitor analyzer) in the registries the environment files name,
resolved with `aws ecr batch-get-image`, and the enclave image's PCR0 from
`python -m ml.enclave.measure build`'s record. `check` compares each environment file's image
fields with the records and reports every field that names a tag, another digest or another
repository, and every image whose consumers run on another architecture.

A digest is a content address: an image replicated into each environment's account keeps it,
so the registry an environment pulls from is not compared, only the repository and the digest.

Exit status: 0 ok, 1 a mismatch (check) or a failed build, 2 a usage error (one line on stderr
naming the file and the field), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from ml.framework_versions import XGBOOST_FRAMEWORK, XGBOOST_REPOSITORY
from modules.iam_statements import ECR_IMAGE
from tools.cli import UsageError, run_command

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_RECORD: Final = Path("reports/images/digests.json")

Platform = Literal["linux/amd64", "linux/arm64"]
# ecr: built here, pushed to ECR, named by digest. eif: built here, loaded into the local
# Docker for `nitro-cli build-enclave`; named by its PCR0. aws: AWS's image, named by digest.
Delivery = Literal["ecr", "eif", "aws"]

DIGEST: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
PCR0: Final = re.compile(r"^[0-9a-f]{96}$")
# <family>.<size> with an optional ml. prefix; the family is a category (c, m, r, g, inf, ...),
# a generation, then attribute letters, where `g` marks an AWS Graviton (arm64) processor:
# c7g, m7gd, c7gn, g5g are Graviton; m5, c6i, m6a, g5, inf2 are x86_64.
INSTANCE_TYPE: Final = re.compile(
    r"^(?:ml\.)?(?P<category>[a-z]+)(?P<generation>[0-9]+)(?P<attributes>[a-z-]*)\.[a-z0-9]+$"
)
# What ECR may hold under a tag; accepting all keeps the digest ECR returns the stored one.
ECR_MEDIA_TYPES: Final = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


@dataclass(frozen=True)
class Image:
    name: str
    delivery: Delivery
    platform: Platform
    # Environment-file fields (dotted) that name this image, and those naming the instance
    # types it runs on: their architecture must be the image's.
    fields: tuple[str, ...]
    runs_on: tuple[str, ...]
    # Relative to the repository root; None for AWS's images.
    dockerfile: str | None = None
    # The ECR repository (for eif images, the local image name given to nitro-cli).
    repository: str = ""
    # AWS's images: the tag whose digest `record` resolves.
    upstream_tag: str | None = None

    @property
    def built_here(self) -> bool:
        return self.dockerfile is not None


IMAGES: Final = (
    Image(
        name="feature-builder",
        delivery="ecr",
        platform="linux/amd64",
        fields=("ml.features.builder.image",),
        runs_on=("ml.features.builder.instance_type",),
        dockerfile="ml/Dockerfile.feature-builder",
        repository="phi-ml/feature-builder",
    ),
    Image(
        # FROM SageMaker's XGBoost 3.0-5, published for x86_64 only.
        name="model-steps",
        delivery="ecr",
        platform="linux/amd64",
        fields=("ml.pipeline.processing_image",),
        runs_on=("ml.pipeline.processing_instance_type",),
        dockerfile="ml/Dockerfile.model-steps",
        repository="phi-ml/model-steps",
    ),
    Image(
        # The Graviton endpoint's container (modules/inference.py).
        name="serving",
        delivery="ecr",
        platform="linux/arm64",
        fields=("ml.pipeline.inference_image",),
        runs_on=("ml.inference.endpoint_instance_type",),
        dockerfile="ml/Dockerfile.serving",
        repository="phi-ml/readmission-inference",
    ),
    Image(
        # The patient-token enclave on the Graviton hosts; environments name its PCR0.
        name="enclave",
        delivery="eif",
        platform="linux/arm64",
        fields=("ml.inference.enclave.image_sha384",),
        runs_on=("ml.inference.enclave.instance_type",),
        dockerfile="ml/Dockerfile.enclave",
        repository="phi-ml/enclave",
    ),
    Image(
        name="sagemaker-xgboost",
        delivery="aws",
        platform="linux/amd64",
        fields=("ml.pipeline.training_image",),
        runs_on=("ml.pipeline.training_instance_type",),
        repository=XGBOOST_REPOSITORY,
        upstream_tag=XGBOOST_FRAMEWORK,
    ),
    Image(
        # AWS publishes the analyzer under `latest` only: pinning its digest is what keeps a
        # schedule from silently running a new analyzer.
        name="model-monitor-analyzer",
        delivery="aws",
        platform="linux/amd64",
        fields=("ml.monitoring.monitor_image",),
        runs_on=("ml.monitoring.instance_type",),
        repository="sagemaker-model-monitor-analyzer",
        upstream_tag="latest",
    ),
)
BY_NAME: Final = {image.name: image for image in IMAGES}


class ImageError(Exception):
    """A build or a lookup failed after it started (exit 1); the message says which."""


# --- instance types, references ------------------------------------------------------------


def instance_platform(instance_type: str) -> Platform:
    """The platform an EC2 or SageMaker (ml.) instance type runs: arm64 on Graviton."""
    parts = INSTANCE_TYPE.match(instance_type)
    if parts is None:
        raise ValueError(f"{instance_type!r} is not an instance type (e.g. ml.m5.xlarge)")
    return "linux/arm64" if "g" in parts["attributes"] else "linux/amd64"


def registry_of(reference: str) -> str:
    return reference.split("/", 1)[0]


def without_tag(reference: str) -> str:
    """An image reference without its :tag or @digest."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def _digest_reference(reference: str, image: Image) -> re.Match[str] | None:
    parts = ECR_IMAGE.match(reference)
    if parts is None or parts["digest"] is None or parts["repository"] != image.repository:
        return None
    return parts


# --- records -------------------------------------------------------------------------------


@dataclass
class Record:
    """image name -> what CI recorded for it (repository@sha256:... or, for the enclave, its
    PCR0); bases: image name -> the base images it was built FROM, by digest."""

    images: dict[str, list[str]] = field(default_factory=dict)
    bases: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, value: str) -> None:
        values = self.images.setdefault(name, [])
        if value not in values:
            values.append(value)

    def merge(self, other: Record) -> None:
        for name, values in other.images.items():
            for value in values:
                self.add(name, value)
        for name, bases in other.bases.items():
            known = self.bases.setdefault(name, [])
            known.extend(base for base in bases if base not in known)

    def as_json(self) -> dict[str, Any]:
        return {
            "images": {name: self.images[name] for name in sorted(self.images)},
            "bases": {name: self.bases[name] for name in sorted(self.bases)},
        }


def _recorded_value_problem(image: Image, value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if image.delivery == "eif":
        return None if PCR0.match(value) else "must be a PCR0 (SHA-384, 96 lower-case hex)"
    if _digest_reference(value, image) is None:
        return f"must be an ECR image {image.repository}@sha256:<64 hex> (got {value!r})"
    return None


def read_record(path: Path) -> Record:
    """A digests record, validated: every problem is a UsageError naming the file and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such digests record (run `build`/`record` first)") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise UsageError(f"{path}: images: required, a mapping of image name to digests")
    unknown = sorted(set(data) - {"images", "bases"})
    if unknown:
        raise UsageError(f"{path}: {unknown[0]}: unknown key (expected images, bases)")
    record = Record()
    for name, values in data["images"].items():
        image = BY_NAME.get(name)
        if image is None:
            raise UsageError(
                f"{path}: images.{name}: not an image of tools/images.py ({', '.join(BY_NAME)})"
            )
        if not isinstance(values, list) or not values:
            raise UsageError(f"{path}: images.{name}: must be a non-empty list")
        for index, value in enumerate(values):
            problem = _recorded_value_problem(image, value)
            if problem:
                raise UsageError(f"{path}: images.{name}[{index}]: {problem}")
            record.add(name, value)
    bases = data.get("bases", {})
    if not isinstance(bases, dict) or not all(
        isinstance(v, list) and all(isinstance(b, str) and "@sha256:" in b for b in v)
        for v in bases.values()
    ):
        raise UsageError(f"{path}: bases: must map image names to lists of image@sha256:...")
    record.bases = {name: list(values) for name, values in bases.items()}
    return record


def read_records(paths: Iterable[Path]) -> Record:
    merged = Record()
    for path in paths:
        merged.merge(read_record(path))
    return merged


def write_record(path: Path, record: Record) -> None:
    """Merge `record` into the file at `path` (created with its folder when missing)."""
    combined = read_record(path) if path.exists() else Record()
    combined.merge(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(combined.as_json(), indent=2) + "\n", encoding="utf-8")


# --- environment files ---------------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentFile:
    path: Path
    data: Mapping[str, Any]

    @property
    def holds_images(self) -> bool:
        # The management account's file (kind: organization) runs no workload.
        return self.data.get("kind") != "organization"

    def value(self, dotted: str) -> str:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise UsageError(f"{self.path}: {dotted}: required field is missing")
            node = node[part]
        if not isinstance(node, str):
            raise UsageError(f"{self.path}: {dotted}: must be a string")
        return node


def read_environment(path: Path) -> EnvironmentFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such environment file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise UsageError(f"{path}: malformed YAML at {where}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must be a YAML mapping of fields")
    return EnvironmentFile(path, data)


# --- check ---------------------------------------------------------------------------------


def _suggestion(value: str, image: Image, recorded: Sequence[str]) -> str:
    """The value to write: the recorded digest, in the registry the field already names."""
    same_registry = [r for r in recorded if registry_of(r) == registry_of(value)]
    chosen = (same_registry or list(recorded))[0]
    if image.delivery == "eif":
        return chosen
    if ECR_IMAGE.match(value) is None:
        return chosen
    return f"{registry_of(value)}/{image.repository}@{chosen.rsplit('@', 1)[1]}"


def _ecr_field_problem(image: Image, value: str, recorded: Sequence[str]) -> str | None:
    parts = ECR_IMAGE.match(value)
    if parts is None:
        return f"{value!r} is not an ECR image URI"
    if parts["repository"] != image.repository:
        return f"repository {parts['repository']} is not {image.name}'s {image.repository}"
    if parts["digest"] is None:
        return (
            f"names the tag :{parts['tag']}, not a digest: a tag can be moved to an image "
            "CI never scanned"
        )
    if parts["digest"] not in {r.rsplit("@", 1)[1] for r in recorded}:
        return f"{parts['digest']} is not a digest CI recorded for {image.name}"
    return None


def field_problem(image: Image, value: str, recorded: Sequence[str]) -> str | None:
    """Why `value`, an environment's field naming `image`, is not what CI recorded (with
    the value to write instead)."""
    if not recorded:
        return f"the records hold nothing for {image.name} (build or record it first)"
    if image.delivery == "eif":
        problem = (
            None
            if value in recorded
            else f"{value[:16]}... is not the PCR0 CI recorded for the {image.name} image"
        )
    else:
        problem = _ecr_field_problem(image, value, recorded)
    return None if problem is None else f"{problem}; write {_suggestion(value, image, recorded)}"


def platform_problem(image: Image, instance_type: str) -> str | None:
    try:
        runs = instance_platform(instance_type)
    except ValueError as error:
        return str(error)
    if runs == image.platform:
        return None
    return f"{instance_type} runs {runs}, but {image.name} is built for {image.platform}"


def environment_problems(environment: EnvironmentFile, record: Record) -> list[str]:
    """Every field of `environment` naming an image that is not the recorded one, and every
    instance type whose architecture is not its image's; missing fields are usage errors."""
    problems = []
    for image in IMAGES:
        for dotted in image.fields:
            value = environment.value(dotted)
            problem = field_problem(image, value, record.images.get(image.name, []))
            if problem:
                problems.append(f"{environment.path}: {dotted}: {problem}")
        for dotted in image.runs_on:
            problem = platform_problem(image, environment.value(dotted))
            if problem:
                problems.append(f"{environment.path}: {dotted}: {problem}")
    return problems


def check(environment_paths: Sequence[Path], record_paths: Sequence[Path]) -> int:
    record = read_records(record_paths)
    environments = [read_environment(path) for path in environment_paths]
    problems: list[str] = []
    for environment in environments:
        if not environment.holds_images:
            print(f"{environment.path}: organization environment, no images")
            continue
        found = environment_problems(environment, record)
        problems += found
        if not found:
            print(f"{environment.path}: every image is the one CI recorded")
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"{len(problems)} problem{'s' if len(problems) > 1 else ''}: environments must "
            "name exactly the images CI built and scanned (by digest)"
        )
        return 1
    return 0


# --- matrix --------------------------------------------------------------------------------


def ecr_login_registries(image: Image) -> list[str]:
    """The ECR registries `build` pulls this image's bases from (docker needs a login)."""
    return sorted(
        {registry_of(base) for base in base_images(image) if ECR_IMAGE.match(base) is not None}
    )


def build_matrix() -> list[dict[str, str]]:
    return [
        {
            "image": image.name,
            "platform": image.platform,
            "repository": image.repository,
            "base_registries": " ".join(ecr_login_registries(image)),
        }
        for image in IMAGES
        if image.delivery == "ecr"
    ]


def write_github_output(path: Path | None, values: Mapping[str, str]) -> None:
    if path is None:
        return
    with path.open("a", encoding="utf-8") as output:
        for key, value in values.items():
            output.write(f"{key}={value}\n")


def matrix(github_output: Path | None) -> int:
    document = json.dumps({"include": build_matrix()}, separators=(",", ":"))
    print(document)
    write_github_output(github_output, {"matrix": document})
    return 0


# --- build ---------------------------------------------------------------------------------


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, rest = stripped.partition(" ")
            found.append((instruction.upper(), rest.strip()))
    return found


@dataclass(frozen=True)
class Base:
    reference: str  # what FROM names, arguments expanded
    argument: str | None  # the ARG FROM names, if it names one (FROM ${BASE_IMAGE})


def dockerfile_bases(text: str) -> list[Base]:
    """The external images the Dockerfile's stages start FROM (not earlier stages, not
    scratch), with the defaults of the ARGs declared before the first FROM."""
    arguments: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[Base] = []
    seen_from = False
    for instruction, rest in _dockerfile_instructions(text):
        if instruction == "ARG" and not seen_from:
            name, _, default = rest.partition("=")
            arguments[name.strip()] = default.strip().strip("\"'")
        elif instruction == "FROM":
            seen_from = True
            words = [w for w in rest.split() if not w.startswith("--platform")]
            if not words:
                continue
            named = words[0]
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            argument = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", named)
            reference = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                lambda m: arguments.get(m.group(1), ""),
                named,
            )
            if reference.lower() in stages or reference == "scratch":
                continue
            bases.append(Base(reference, argument.group(1) if argument else None))
    return bases


def base_images(image: Image) -> list[str]:
    if image.dockerfile is None:
        return []
    text = (REPO_ROOT / image.dockerfile).read_text(encoding="utf-8")
    return [base.reference for base in dockerfile_bases(text)]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise UsageError(
            "docker is not on PATH: `build` runs `docker buildx build --push` and must run "
            "where Docker runs (CI's images workflow, or a machine with Docker and buildx)"
        )
    plugin = subprocess.run(
        [docker, "buildx", "version"], capture_output=True, text=True, check=False
    )
    if plugin.returncode != 0:
        raise UsageError(
            f"docker buildx is not available ({_first_line(plugin.stderr)}): install the "
            "buildx plugin (CI: docker/setup-buildx-action)"
        )
    return docker


def resolve_digest(docker: str, reference: str) -> str:
    """The digest a registry serves for `reference` now (an index for multi-arch images)."""
    completed = subprocess.run(
        [
            docker,
            "buildx",
            "imagetools",
            "inspect",
            reference,
            "--format",
            "{{json .Manifest.Digest}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ImageError(f"cannot resolve {reference}: {_first_line(completed.stderr)}")
    try:
        digest = json.loads(completed.stdout)
    except json.JSONDecodeError:
        digest = None
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ImageError(f"cannot resolve {reference}: no sha256 digest in imagetools' answer")
    return digest


def build_command(
    docker: str,
    image: Image,
    *,
    target: str,
    metadata_file: Path,
    pinned: Mapping[Base, str],
) -> list[str]:
    command = [
        docker,
        "buildx",
        "build",
        "--platform",
        image.platform,
        "--file",
        str(image.dockerfile),
        "--tag",
        target,
        "--metadata-file",
        str(metadata_file),
        # One image manifest (Docker media types), not an index with attestations: SageMaker
        # pulls single-platform images, and the digest recorded is the one it pulls.
        "--provenance=false",
        "--sbom=false",
    ]
    for base, reference in pinned.items():
        # The base by the digest its tag named when this build started.
        if base.argument is not None:
            command += ["--build-arg", f"{base.argument}={reference}"]
        else:
            command += ["--build-context", f"{base.reference}=docker-image://{reference}"]
    if image.delivery == "eif":
        # Every byte is in PCR0: nothing comes from a cache of an earlier build.
        command += ["--load", "--no-cache"]
    else:
        command += ["--push"]
    return [*command, "."]


def pushed_digest(metadata_file: Path) -> str:
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ImageError(f"{metadata_file}: buildx wrote no readable metadata ({error})") from None
    digest = metadata.get("containerimage.digest") if isinstance(metadata, dict) else None
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ImageError(f"{metadata_file}: containerimage.digest: no sha256 digest")
    return digest


def _selected(names: Sequence[str]) -> list[Image]:
    buildable = [image for image in IMAGES if image.built_here]
    if not names:
        return [image for image in buildable if image.delivery == "ecr"]
    unknown = [name for name in names if name not in {image.name for image in buildable}]
    if unknown:
        raise UsageError(
            f"--image {unknown[0]}: not an image built here "
            f"({', '.join(image.name for image in buildable)})"
        )
    return [BY_NAME[name] for name in dict.fromkeys(names)]


def build(
    names: Sequence[str],
    *,
    registry: str | None,
    tag: str,
    record_path: Path,
    github_output: Path | None,
) -> int:
    images = _selected(names)
    pushed = [image for image in images if image.delivery == "ecr"]
    for image in pushed:
        if registry is None or not ECR_IMAGE.match(f"{registry}/{image.repository}:{tag}"):
            raise UsageError(
                f"--registry {registry!r} --tag {tag!r}: pushing {image.name} needs an ECR "
                "registry (<account>.dkr.ecr.<region>.amazonaws.com) and a Docker tag"
            )
    if not pushed and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise UsageError(f"--tag {tag!r}: not a Docker tag")
    docker = _docker()
    if record_path.exists():
        read_record(record_path)  # a malformed record fails now, not after the pushes
    record = Record()
    outputs: dict[str, str] = {}
    for image in images:
        text = (REPO_ROOT / str(image.dockerfile)).read_text(encoding="utf-8")
        pinned = {}
        for base in dockerfile_bases(text):
            if "@sha256:" in base.reference:
                pinned[base] = base.reference
            else:
                pinned[base] = (
                    f"{without_tag(base.reference)}@{resolve_digest(docker, base.reference)}"
                )
        record.bases[image.name] = list(pinned.values())
        target = (
            f"{registry}/{image.repository}:{tag}"
            if image.delivery == "ecr"
            else f"{image.repository}:{tag}"
        )
        metadata_file = record_path.parent / f"{image.name}.buildx-metadata.json"
        metadata_file.parent.mkdir(parents=True, exist_ok=True)
        metadata_file.unlink(missing_ok=True)
        command = build_command(
            docker, image, target=target, metadata_file=metadata_file, pinned=pinned
        )
        print(f"images: {image.name} ({image.platform}) -> {target}", file=sys.stderr)
        completed = subprocess.run(command, cwd=REPO_ROOT, check=False)
        if completed.returncode != 0:
            raise ImageError(
                f"docker buildx build of {image.name} failed (exit {completed.returncode})"
            )
        if image.delivery == "ecr":
            reference = f"{registry}/{image.repository}@{pushed_digest(metadata_file)}"
            record.add(image.name, reference)
            outputs[image.name] = reference
            print(f"{image.name}: {reference}")
        else:
            # Loaded, not pushed: `python -m ml.enclave.measure build` reads it from Docker.
            outputs[image.name] = target
            print(f"{image.name}: {target} (loaded; its PCR0 is recorded by `record`)")
    write_record(record_path, record)
    if len(images) == 1:
        outputs["ref"] = outputs[images[0].name]
    write_github_output(github_output, outputs)
    return 0


# --- record (what is not built here) -------------------------------------------------------


def resolve_ecr_digest(aws: str, registry: str, repository: str, tag: str) -> str:
    """The digest of <registry>/<repository>:<tag>, with ecr:BatchGetImage: the pull
    permission AWS grants on its SageMaker images (no Docker needed)."""
    where = f"{registry}/{repository}:{tag}"
    parts = ECR_IMAGE.match(where)
    if parts is None:
        raise UsageError(f"{where}: not an ECR image")
    completed = subprocess.run(
        [
            aws,
            "ecr",
            "batch-get-image",
            "--registry-id",
            parts["account"],
            "--region",
            parts["region"],
            "--repository-name",
            repository,
            "--image-ids",
            f"imageTag={tag}",
            "--accepted-media-types",
            *ECR_MEDIA_TYPES,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ImageError(f"cannot resolve {where}: {_first_line(completed.stderr)}")
    try:
        answer = json.loads(completed.stdout)
        digest = answer["images"][0]["imageId"]["imageDigest"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        raise ImageError(f"cannot resolve {where}: ECR returned no image for the tag") from None
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ImageError(f"cannot resolve {where}: {digest!r} is not a sha256 digest")
    return digest


def enclave_measurement(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such measurement record") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: malformed JSON at line {error.lineno}: {error.msg}") from None
    value = data.get("image_sha384") if isinstance(data, dict) else None
    if not isinstance(value, str) or not PCR0.match(value):
        raise UsageError(f"{path}: image_sha384: must be a PCR0 (96 lower-case hex)")
    return value


def record(environment_paths: Sequence[Path], measurement: Path | None, record_path: Path) -> int:
    if not environment_paths and measurement is None:
        raise UsageError("record: name --environment FILE(s) and/or --enclave-measurement FILE")
    if record_path.exists():
        read_record(record_path)
    wanted: dict[tuple[str, str], str] = {}  # (image, registry) -> tag
    for environment in map(read_environment, environment_paths):
        if not environment.holds_images:
            continue
        for image in (i for i in IMAGES if i.delivery == "aws"):
            for dotted in image.fields:
                value = environment.value(dotted)
                parts = ECR_IMAGE.match(value)
                if parts is None or parts["repository"] != image.repository:
                    raise UsageError(
                        f"{environment.path}: {dotted}: {value!r} is not AWS's "
                        f"{image.repository} image in ECR"
                    )
                wanted[(image.name, registry_of(value))] = str(image.upstream_tag)
    found = Record()
    if wanted:
        aws = shutil.which("aws")
        if aws is None:
            raise UsageError("aws CLI is not on PATH: `record` resolves AWS's images with it")
        for (name, registry), tag in sorted(wanted.items()):
            repository = BY_NAME[name].repository
            digest = resolve_ecr_digest(aws, registry, repository, tag)
            found.add(name, f"{registry}/{repository}@{digest}")
            print(f"{name}: {registry}/{repository}:{tag} is {digest}")
    if measurement is not None:
        found.add("enclave", enclave_measurement(measurement))
        print(f"enclave: PCR0 {found.images['enclave'][-1]}")
    write_record(record_path, found)
    return 0


# --- command line --------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.images", description=(__doc__ or "").split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("matrix", help="the images CI pushes, as a job matrix")
    show.add_argument("--github-output", type=Path)
    built = commands.add_parser("build", help="build, push and record the images")
    built.add_argument("--image", action="append", default=[], help="one image (repeatable)")
    built.add_argument("--registry", help="<account>.dkr.ecr.<region>.amazonaws.com")
    built.add_argument("--tag", required=True, help="the tag pushed (CI: a quarantine tag)")
    built.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    built.add_argument("--github-output", type=Path)
    recorded = commands.add_parser("record", help="record AWS's images and the enclave PCR0")
    recorded.add_argument("--environment", type=Path, action="append", default=[])
    recorded.add_argument("--enclave-measurement", type=Path)
    recorded.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    checked = commands.add_parser("check", help="compare environment files with the records")
    checked.add_argument("--environment", type=Path, action="append", required=True)
    checked.add_argument("--record", type=Path, action="append", default=[])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)

    def command() -> int:
        try:
            if arguments.command == "matrix":
                return matrix(arguments.github_output)
            if arguments.command == "build":
                return build(
                    arguments.image,
                    registry=arguments.registry,
                    tag=arguments.tag,
                    record_path=arguments.record,
                    github_output=arguments.github_output,
                )
            if arguments.command == "record":
                return record(
                    arguments.environment, arguments.enclave_measurement, arguments.record
                )
            return check(arguments.environment, arguments.record or [DEFAULT_RECORD])
        except ImageError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
