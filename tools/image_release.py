"""Whether the images an environment file names can be deployed now, asked of ECR itself.

    python -m tools.image_release --environment FILE

Exit status: 0 every image can be deployed, 1 one cannot (a line per field), 2 a usage error,
130 interrupted.

`python -m tools.images check` compares environment files with the digests CI recorded; this
asks the registries, with the credentials of the account about to be applied (promote.yml runs
it before every workload apply): each image built here must be in the registry the field names
(ECR replicated it from the registry CI pushed to) and must carry a `scanned-` tag, which the
images workflow gives a digest only after its Trivy gate passed (an image that failed keeps its
quarantine tag alone); each of AWS's images must resolve by the digest named. A field that
names a tag is refused outright: the schema already refuses tags for the images built here.

The enclave image is named by its PCR0, which no registry holds; the host's bootstrap compares
the fetched file with it before the enclave starts (modules/enclave_bootstrap.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from modules.iam_statements import ECR_IMAGE
from tools.cli import UsageError, run_command
from tools.images import ECR_MEDIA_TYPES, IMAGES, EnvironmentFile, Image, read_environment

# What the images workflow tags a digest with once its scan passed (`SCANNED_TAG` there).
SCANNED_TAG_PREFIX: Final = "scanned-"

EcrClients = Callable[[str], Any]


def default_clients(region: str) -> Any:
    return boto3.client("ecr", region_name=region)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "error"))


def scanned_problem(ecr: Any, account: str, repository: str, digest: str) -> str | None:
    """Why the digest in this account's repository is not a released (scanned) image."""
    where = f"{account}/{repository}@{digest[:19]}..."
    try:
        answer = ecr.describe_images(
            registryId=account, repositoryName=repository, imageIds=[{"imageDigest": digest}]
        )
    except ClientError as error:
        code = _error_code(error)
        if code in {"ImageNotFoundException", "RepositoryNotFoundException"}:
            return f"{where} is not in the registry (not pushed, or not replicated yet)"
        return f"{where} cannot be described ({code})"
    details = answer.get("imageDetails", [])
    tags = [tag for detail in details for tag in detail.get("imageTags", [])]
    if not details:
        return f"{where} is not in the registry (not pushed, or not replicated yet)"
    if not any(tag.startswith(SCANNED_TAG_PREFIX) for tag in tags):
        shown = ", ".join(sorted(tags)) or "none"
        return (
            f"{where} carries no {SCANNED_TAG_PREFIX}* tag (tags: {shown}): CI never released "
            "it, so its scan did not pass"
        )
    return None


def resolves_problem(ecr: Any, account: str, repository: str, digest: str) -> str | None:
    """Why AWS's image does not resolve by this digest (ecr:BatchGetImage, the pull right)."""
    where = f"{account}/{repository}@{digest[:19]}..."
    try:
        answer = ecr.batch_get_image(
            registryId=account,
            repositoryName=repository,
            imageIds=[{"imageDigest": digest}],
            acceptedMediaTypes=list(ECR_MEDIA_TYPES),
        )
    except ClientError as error:
        return f"{where} cannot be read ({_error_code(error)})"
    if answer.get("failures") or not answer.get("images"):
        reasons = [f.get("failureCode", "?") for f in answer.get("failures", [])]
        return f"{where} does not resolve ({', '.join(reasons) or 'no image'})"
    return None


def field_release_problem(image: Image, value: str, ecr_clients: EcrClients) -> str | None:
    parts = ECR_IMAGE.match(value)
    if parts is None:
        return f"{value!r} is not an ECR image URI"
    if parts["digest"] is None:
        return f"names the tag :{parts['tag']}, not a digest: nothing ties it to a scanned image"
    ecr = ecr_clients(parts["region"])
    check = scanned_problem if image.delivery == "ecr" else resolves_problem
    return check(ecr, parts["account"], parts["repository"], parts["digest"])


def release_problems(environment: EnvironmentFile, ecr_clients: EcrClients) -> list[str]:
    """One line per image field of the file that ECR says cannot be deployed now."""
    problems = []
    for image in (i for i in IMAGES if i.delivery != "eif"):
        for dotted in image.fields:
            problem = field_release_problem(image, environment.value(dotted), ecr_clients)
            if problem:
                problems.append(f"{environment.path}: {dotted}: {problem}")
    return problems


def released(environment_path: Path, ecr_clients: EcrClients = default_clients) -> int:
    environment = read_environment(environment_path)
    if not environment.holds_images:
        print(f"{environment.path}: organization environment, no images")
        return 0
    try:
        problems = release_problems(environment, ecr_clients)
    except NoCredentialsError:
        raise UsageError("no AWS credentials: `released` asks ECR in the account") from None
    except BotoCoreError as error:
        raise UsageError(f"ECR cannot be reached: {error}") from None
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"{len(problems)} image{'s' if len(problems) > 1 else ''} of {environment.path} "
            "cannot be deployed now: apply nothing until CI has released them"
        )
        return 1
    print(f"{environment.path}: every image is in its registry and was released by CI")
    return 0


def main(argv: Sequence[str] | None = None, ecr_clients: EcrClients = default_clients) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.image_release", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--environment", type=Path, required=True, help="environment.yaml")
    arguments = parser.parse_args(argv)
    return run_command(lambda: released(arguments.environment, ecr_clients))


if __name__ == "__main__":
    sys.exit(main())
