"""ECR repositories for the images the platform builds (feature builder, model steps, serving):
the repositories the environment file's image references point at, created before any job
pulls from them, and the registry replication that carries one scanned build to every account.

CI builds, scans and pushes each image once, into the account that builds (`.github/workflows/
images.yml`); ECR replicates every pushed image to the accounts listed in `ml.images.
replicate_to`, whose registry policy admits only that source account. A digest is the same in
every registry, so promotion edits a digest in the next environment file and never rebuilds.
"""

from __future__ import annotations

import json
import re
from typing import Final

from constructs import Construct
from pydantic import Field, field_validator, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.policy import policy_document, statement

# Tags never move: a digest once scanned and recorded is the only thing a tag can name.
TAG_MUTABILITY: Final = "IMMUTABLE"
# Images hold code, never PHI. The key is ECR's AWS-managed KMS key, not a platform CMK:
# replicated copies are re-encrypted in each destination by ECR itself, and a CMK would need
# the replication service's grants in every destination account's key policy.
ENCRYPTION_TYPE: Final = "KMS"
# Only pushes that never got a tag expire. Not by tag prefix: an image that passed its scan
# holds both its `quarantine-*` and `scanned-*` tags, and removing the quarantine tag in the
# building registry is not replicated (ECR replicates pushes, not deletions), so a rule on
# `quarantine-*` would expire released images in every destination. One that failed its scan
# keeps its quarantine tag, is never recorded and so never named by an environment file.
UNTAGGED_EXPIRY_DAYS: Final = 14
# What a destination registry lets the source account do: create the repository if missing,
# and write replicated images (AWS's documented cross-account replication policy).
REPLICATION_ACTIONS: Final = ("ecr:CreateRepository", "ecr:ReplicateImage")

# ECR's repository name rule (CreateRepository: 2-256 characters, this pattern).
_REPOSITORY_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")


class ReplicationDestination(LayerConfig):
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


class ImagesConfig(LayerConfig):
    environment: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    # The repositories in this account and region that the environment's images name.
    repositories: tuple[str, ...] = Field(min_length=1)
    # The account that builds: its registry replicates to these destinations.
    replicate_to: tuple[ReplicationDestination, ...] = ()
    # A destination: the one account whose registry may replicate into this one.
    replicated_from: str | None = Field(default=None, pattern=r"^\d{12}$")

    @field_validator("repositories")
    @classmethod
    def _repository_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [n for n in names if not (2 <= len(n) <= 256 and _REPOSITORY_NAME.match(n))]
        if bad:
            raise ValueError(
                f"{', '.join(bad)}: an ECR repository name is 2-256 lower-case letters, digits "
                "and . _ - separators, in /-separated parts"
            )
        if len(set(names)) != len(names):
            raise ValueError("a repository is listed twice")
        return names

    @model_validator(mode="after")
    def _one_direction(self) -> ImagesConfig:
        if self.replicate_to and self.replicated_from:
            raise ValueError(
                "replicate_to and replicated_from together: ECR does not replicate a replicated "
                "image onwards, so a registry either builds and sends or receives"
            )
        seen = set()
        for destination in self.replicate_to:
            where = (destination.account_id, destination.region)
            if where == (self.account_id, self.region):
                raise ValueError(f"replicate_to names this registry itself ({where[0]} {where[1]})")
            if where in seen:
                raise ValueError(f"replicate_to names {where[0]} {where[1]} twice")
            seen.add(where)
        if self.replicated_from == self.account_id:
            raise ValueError("replicated_from is this account itself")
        return self


def lifecycle_policy() -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"untagged pushes expire after {UNTAGGED_EXPIRY_DAYS} days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": UNTAGGED_EXPIRY_DAYS,
                    },
                    "action": {"type": "expire"},
                }
            ]
        },
        sort_keys=True,
    )


def replication_registry_policy(config: ImagesConfig) -> str:
    """A destination registry: the source account may replicate into it, nobody else."""
    if config.replicated_from is None:
        raise ValueError("replication_registry_policy of a registry that receives nothing")
    return policy_document(
        statement(
            "SourceRegistryReplicates",
            effect="Allow",
            principal={"AWS": f"arn:aws:iam::{config.replicated_from}:root"},
            actions=list(REPLICATION_ACTIONS),
            resources=f"arn:aws:ecr:{config.region}:{config.account_id}:repository/*",
        )
    )


class ImageRepositories(Construct):
    """The platform's image repositories in one account: tags immutable, every push scanned,
    encrypted with KMS, untagged pushes expiring; the building account replicates them to the
    listed accounts, and a receiving account admits only its one source."""

    def __init__(self, scope: Construct, id_: str, *, config: ImagesConfig) -> None:
        super().__init__(scope, id_)
        self.repository_arns: dict[str, str] = {}
        for name in config.repositories:
            construct_id = name.replace("/", "-")
            repository = aws.EcrRepository(
                self,
                f"repository-{construct_id}",
                name=name,
                image_tag_mutability=TAG_MUTABILITY,
                image_scanning_configuration=aws.EcrRepositoryImageScanningConfiguration(
                    scan_on_push=True
                ),
                encryption_configuration=[
                    aws.EcrRepositoryEncryptionConfiguration(encryption_type=ENCRYPTION_TYPE)
                ],
            )
            aws.EcrLifecyclePolicy(
                self,
                f"lifecycle-{construct_id}",
                repository=repository.name,
                policy=lifecycle_policy(),
            )
            self.repository_arns[name] = repository.arn
        if config.replicate_to:
            aws.EcrReplicationConfiguration(
                self,
                "replication",
                replication_configuration=aws.EcrReplicationConfigurationReplicationConfiguration(
                    rule=[
                        aws.EcrReplicationConfigurationReplicationConfigurationRule(
                            destination=[
                                aws.EcrReplicationConfigurationReplicationConfigurationRuleDestination(
                                    registry_id=destination.account_id,
                                    region=destination.region,
                                )
                                for destination in config.replicate_to
                            ],
                            repository_filter=[
                                aws.EcrReplicationConfigurationReplicationConfigurationRuleRepositoryFilter(
                                    filter=name, filter_type="PREFIX_MATCH"
                                )
                                for name in config.repositories
                            ],
                        )
                    ]
                ),
            )
        if config.replicated_from:
            aws.EcrRegistryPolicy(
                self, "replication-policy", policy=replication_registry_policy(config)
            )
