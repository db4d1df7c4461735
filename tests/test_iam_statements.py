"""The IAM statements several layers share: one TLS refusal, one ECR image grammar (the same
in every layer's configuration), and statements that differ between layers only by Sid."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from modules.iam_statements import (
    ECR_IMAGE,
    deny_insecure_transport,
    describe_vpc,
    ecr_authorization_token,
    ecr_pull,
    ecr_pull_statements,
    ecr_repository_arn,
)
from modules.inference import InferenceConfig
from modules.policy import policy_document
from tests.iam import denied_by
from tests.test_inference import SETTINGS
from tests.test_pipelines import pipeline_config

ACCOUNT = "123456789012"
REPOSITORY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/phi-ml/sepsis-risk"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:alerts"


def test_insecure_transport_is_denied_and_tls_is_not() -> None:
    policy = policy_document(deny_insecure_transport(actions="sns:Publish", resources=TOPIC))
    plain = {"aws:SecureTransport": "false"}
    assert denied_by(policy, "sns:Publish", TOPIC, plain) == ["DenyInsecureTransport"]
    # twin: the same request over TLS is not refused
    assert denied_by(policy, "sns:Publish", TOPIC, {"aws:SecureTransport": "true"}) == []
    (refusal,) = json.loads(policy)["Statement"]
    assert refusal["Principal"] == "*" and refusal["Effect"] == "Deny"


IMAGES: dict[str, tuple[str, bool]] = {
    "tag": (f"{REPOSITORY}:1.4.0", True),
    "digest": (f"{REPOSITORY}@sha256:{'0a' * 32}", True),
    "nested-repository": (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/a/b.c_d-e:latest", True),
    "china-partition": (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/model:1", True),
    "public-registry": ("docker.io/library/python:3.11", False),
    "no-tag-or-digest": (REPOSITORY, False),
    "short-account": ("12345.dkr.ecr.eu-west-1.amazonaws.com/model:1", False),
    "upper-case-repository": (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/Model:1", False),
    "trailing-separator": (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/model-:1", False),
    "double-separator": (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/a//b:1", False),
    "non-ascii-tag": (f"{REPOSITORY}:v\u00e9", False),
    "short-digest": (f"{REPOSITORY}@sha256:{'0a' * 31}", False),
}


def accepted_by_every_layer(image: str) -> dict[str, bool]:
    """Whether each layer's configuration (pydantic's regex engine) and the ARN helper (Python's)
    accept the image: one grammar must give one answer everywhere."""
    answers: dict[str, bool] = {"grammar": ECR_IMAGE.match(image) is not None}
    layers: dict[str, Any] = {
        "inference": lambda: InferenceConfig(**{**SETTINGS, "inference_image": image}),
        # The training image: the model-steps image must also be pinned by digest (its own rule).
        "pipelines": lambda: pipeline_config(
            training_image=image, inference_image=f"{REPOSITORY}@sha256:{'ab' * 32}"
        ),
    }
    for layer, build in layers.items():
        try:
            build()
            answers[layer] = True
        except ValidationError:
            answers[layer] = False
    return answers


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_one_ecr_image_grammar_in_every_layer(case: str) -> None:
    image, expected = IMAGES[case]
    assert accepted_by_every_layer(image) == {
        "grammar": expected,
        "inference": expected,
        "pipelines": expected,
    }


@pytest.mark.parametrize(
    ("image", "arn"),
    [
        (f"{REPOSITORY}:1.4.0", f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/phi-ml/sepsis-risk"),
        (
            f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/model@sha256:{'0a' * 32}",
            f"arn:aws-cn:ecr:cn-north-1:{ACCOUNT}:repository/model",
        ),
    ],
)
def test_repository_arn_names_the_partition_region_account_and_repository(
    image: str, arn: str
) -> None:
    assert ecr_repository_arn(image) == arn


def test_repository_arn_refuses_what_is_not_an_ecr_image() -> None:
    with pytest.raises(ValueError, match="is not an ECR image URI"):
        ecr_repository_arn("docker.io/library/python:3.11")


def test_shared_statements_differ_between_layers_by_sid_only() -> None:
    repository = ecr_repository_arn(f"{REPOSITORY}:1.4.0")
    token, pull = ecr_pull_statements(f"{REPOSITORY}:1.4.0")
    for ours, theirs in (
        (token, ecr_authorization_token("EcrLogin")),
        (pull, ecr_pull("PullJobImages", repository)),
        (describe_vpc("DescribeNetworkHasNoResourceLevelPermissions"), describe_vpc("Other")),
    ):
        assert ours["Sid"] != theirs["Sid"]
        assert {**ours, "Sid": ""} == {**theirs, "Sid": ""}
    assert token["Resource"] == "*" and token["Action"] == "ecr:GetAuthorizationToken"
    assert pull["Resource"] == repository
    assert not {"ecr:PutImage", "ecr:*"} & set(pull["Action"])
