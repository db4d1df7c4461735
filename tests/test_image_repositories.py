"""The image repositories (modules/images.py): every repository an environment's images name
exists in that account with immutable tags, scan on push and KMS; the building account
replicates to exactly the accounts that say they receive from it, and a receiving registry
admits only that one source. Each refusal has the shipped file as its loading twin."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from environments.layer_configs import layer_configs
from environments.loader import EnvironmentFileError, load_environments
from environments.schema import WorkloadEnvironment
from modules.iam_statements import ECR_IMAGE
from modules.images import (
    REPLICATION_ACTIONS,
    UNTAGGED_EXPIRY_DAYS,
    ImageRepositories,
    ImagesConfig,
    ReplicationDestination,
)
from tests.iam import as_list
from tests.synth import only, resources, synth_stack
from tests.test_feature_environment import load_changed

WORKLOADS = {e.name: e for e in load_environments() if isinstance(e, WorkloadEnvironment)}
CONFIGS = {name: layer_configs(environment) for name, environment in WORKLOADS.items()}


def images_config(**overrides: Any) -> ImagesConfig:
    values: dict[str, Any] = {
        "environment": "dev",
        "account_id": "111111111111",
        "region": "us-east-1",
        "repositories": ("phi-ml/model-steps", "phi-ml/feature-builder"),
        "replicate_to": (ReplicationDestination(account_id="333333333333", region="us-east-1"),),
        **overrides,
    }
    return ImagesConfig(**values)


def synthesized(config: ImagesConfig) -> dict[str, Any]:
    return synth_stack(lambda stack: ImageRepositories(stack, "images", config=config))


def named_images(environment: WorkloadEnvironment) -> set[str]:
    ml = environment.ml
    references = (
        ml.features.builder.image,
        ml.pipeline.processing_image,
        ml.pipeline.inference_image,
    )
    return {match["repository"] for r in references if r and (match := ECR_IMAGE.match(r))}


# --- the construct --------------------------------------------------------------------------


def test_every_repository_is_immutable_scanned_and_kms_encrypted() -> None:
    found = resources(synthesized(images_config()), "aws_ecr_repository")
    assert sorted(r["name"] for r in found.values()) == [
        "phi-ml/feature-builder",
        "phi-ml/model-steps",
    ]
    for repository in found.values():
        assert repository["image_tag_mutability"] == "IMMUTABLE"
        assert repository["image_scanning_configuration"] == {"scan_on_push": True}
        assert repository["encryption_configuration"] == [{"encryption_type": "KMS"}]
        assert not repository.get("force_delete"), "a destroy would delete recorded digests"


def test_only_untagged_pushes_expire() -> None:
    policies = resources(synthesized(images_config()), "aws_ecr_lifecycle_policy")
    assert len(policies) == 2
    for policy in policies.values():
        (rule,) = json.loads(policy["policy"])["rules"]
        # A tagged image never matches: a released image holds its quarantine-* tag too in
        # every destination registry, so a rule on a tag prefix would expire it there.
        assert rule["selection"]["tagStatus"] == "untagged"
        assert rule["selection"]["countNumber"] == UNTAGGED_EXPIRY_DAYS
        assert rule["action"] == {"type": "expire"}


def test_the_building_registry_replicates_its_repositories_to_each_destination() -> None:
    config = images_config(
        replicate_to=(
            ReplicationDestination(account_id="333333333333", region="us-east-1"),
            ReplicationDestination(account_id="444444444444", region="eu-central-1"),
        )
    )
    document = synthesized(config)
    (rule,) = only(document, "aws_ecr_replication_configuration")["replication_configuration"][
        "rule"
    ]
    assert rule["destination"] == [
        {"registry_id": "333333333333", "region": "us-east-1"},
        {"registry_id": "444444444444", "region": "eu-central-1"},
    ]
    assert {f["filter"] for f in rule["repository_filter"]} == set(config.repositories)
    assert resources(document, "aws_ecr_registry_policy") == {}


def test_a_receiving_registry_admits_only_its_source_and_replicates_nowhere() -> None:
    config = images_config(
        account_id="333333333333", replicate_to=(), replicated_from="111111111111"
    )
    document = synthesized(config)
    assert resources(document, "aws_ecr_replication_configuration") == {}
    (statement,) = json.loads(only(document, "aws_ecr_registry_policy")["policy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert as_list(statement["Principal"]["AWS"]) == ["arn:aws:iam::111111111111:root"]
    assert sorted(as_list(statement["Action"])) == sorted(REPLICATION_ACTIONS)
    assert statement["Resource"] == "arn:aws:ecr:us-east-1:333333333333:repository/*"


def test_a_registry_that_neither_builds_nor_receives_has_no_registry_settings() -> None:
    document = synthesized(images_config(replicate_to=()))
    assert resources(document, "aws_ecr_replication_configuration") == {}
    assert resources(document, "aws_ecr_registry_policy") == {}
    assert len(resources(document, "aws_ecr_repository")) == 2


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"replicated_from": "222222222222"}, "replicate_to and replicated_from together"),
        (
            {
                "replicate_to": (
                    ReplicationDestination(account_id="111111111111", region="us-east-1"),
                )
            },
            "names this registry itself",
        ),
        (
            {
                "replicate_to": (
                    ReplicationDestination(account_id="333333333333", region="us-east-1"),
                    ReplicationDestination(account_id="333333333333", region="us-east-1"),
                )
            },
            "twice",
        ),
        ({"replicate_to": (), "replicated_from": "111111111111"}, "this account itself"),
        ({"repositories": ("Phi-ML/steps",)}, "ECR repository name"),
        ({"repositories": ("phi-ml/steps", "phi-ml/steps")}, "listed twice"),
        ({"repositories": ()}, "at least 1"),
    ],
)
def test_an_impossible_images_config_is_refused(overrides: dict[str, Any], rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        images_config(**overrides)


# --- the shipped environments ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_each_environment_creates_the_repositories_its_images_name(name: str) -> None:
    assert set(CONFIGS[name].images.repositories) == named_images(WORKLOADS[name])


def test_replication_and_receiving_agree_across_the_environments() -> None:
    """Every destination is an environment that receives from the sender, in its region, and
    every receiving environment is a destination of the account it names."""
    by_account = {config.images.account_id: config.images for config in CONFIGS.values()}
    senders = [images for images in by_account.values() if images.replicate_to]
    assert senders, "no environment builds and sends images"
    sent_to = set()
    for sender in senders:
        for destination in sender.replicate_to:
            receiver = by_account[destination.account_id]
            assert receiver.replicated_from == sender.account_id
            assert receiver.region == destination.region
            sent_to.add(destination.account_id)
    receivers = {a for a, images in by_account.items() if images.replicated_from}
    assert receivers == sent_to


def _image_elsewhere(data: dict[str, Any]) -> None:
    pipeline = data["ml"]["pipeline"]
    pipeline["processing_image"] = pipeline["processing_image"].replace(
        "111111111111.dkr.ecr.us-east-1", "222222222222.dkr.ecr.us-east-1"
    )


def _image_in_another_region(data: dict[str, Any]) -> None:
    builder = data["ml"]["features"]["builder"]
    builder["image"] = builder["image"].replace(".us-east-1.", ".us-west-2.")


def _both_directions(data: dict[str, Any]) -> None:
    data["ml"]["images"]["replicated_from"] = "222222222222"


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (_image_elsewhere, "ml.pipeline.processing_image", "not in this environment's registry"),
        (_image_in_another_region, "ml.features.builder.image", "us-west-2"),
        (_both_directions, "ml.images", "replicate_to and replicated_from together"),
    ],
    ids=["image-in-another-account", "image-in-another-region", "both-directions"],
)
def test_images_the_account_cannot_pull_are_refused_at_load(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], field: str, rule: str
) -> None:
    with pytest.raises(EnvironmentFileError) as raised:
        environment = load_changed(tmp_path, "dev", change)
        assert isinstance(environment, WorkloadEnvironment)
        layer_configs(environment)
    assert raised.value.field == field, raised.value.field
    assert rule in raised.value.rule, raised.value.rule


def test_the_twin_the_shipped_dev_file_loads_with_its_repositories(tmp_path: Path) -> None:
    environment = load_changed(tmp_path, "dev", lambda data: None)
    assert isinstance(environment, WorkloadEnvironment)
    assert layer_configs(environment).images.repositories == CONFIGS["dev"].images.repositories
