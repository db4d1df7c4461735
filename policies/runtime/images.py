"""ECR: every repository the environment's images are pulled from exists, keeps its tags
immutable (a recorded digest's tag can never be re-pointed), scans every push, and encrypts
with KMS (modules/images.py)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from botocore.exceptions import ClientError

from policies.runtime.clients import error_code
from policies.runtime.model import CheckContext, Missing, Outcome, RuntimeCheck, failed, passed

REQUIRED_TAG_MUTABILITY = "IMMUTABLE"


def repositories_hardened(context: CheckContext) -> Iterator[Outcome]:
    ecr = context.client("ecr")

    def evaluate(name: str, arn: str) -> Outcome:
        try:
            (repository,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
        except ClientError as problem:
            if error_code(problem) == "RepositoryNotFoundException":
                raise Missing(
                    f"no repository {name}: the environment's images cannot be pulled"
                ) from None
            raise
        problems: list[str] = []
        mutability = repository.get("imageTagMutability")
        if mutability != REQUIRED_TAG_MUTABILITY:
            problems.append(f"tags are {mutability}, not {REQUIRED_TAG_MUTABILITY}")
        if not repository.get("imageScanningConfiguration", {}).get("scanOnPush"):
            problems.append("pushes are not scanned")
        encryption = repository.get("encryptionConfiguration", {}).get("encryptionType")
        if encryption not in ("KMS", "KMS_DSSE"):
            problems.append(f"encrypted with {encryption or 'nothing reported'}, not KMS")
        if problems:
            return failed(arn, "; ".join(problems))
        return passed(arn, f"tags {mutability}, scan on push, {encryption} encryption")

    for name in context.expected.image_repositories:
        arn = context.arn("ecr", f"repository/{name}")
        yield context.judge(arn, partial(evaluate, name, arn))


CHECKS = (
    RuntimeCheck(
        "RT_PHI_IMAGE_REPOSITORIES_HARDENED",
        "ECR repositories of the platform's images: immutable tags, scan on push, KMS",
        repositories_hardened,
        workload_only=True,
    ),
)
