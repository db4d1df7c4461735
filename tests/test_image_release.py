"""tools/image_release.py against moto's ECR (in-process): what an environment file names can be
deployed only when ECR holds it, the images built here carry the tag the images workflow gives
a digest after its scan passed, and AWS's images resolve by the digest named; promote.yml asks
before every workload apply, with the account's credentials."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from tests.test_images import environment_data, get_field, set_field
from tests.test_workflows import jobs, load, steps
from tools import image_release, images

REPO = Path(__file__).resolve().parent.parent
PROMOTE = REPO / ".github" / "workflows" / "promote.yml"
IMAGES_WORKFLOW = REPO / ".github" / "workflows" / "images.yml"
RELEASED = "scanned-1234-1"
QUARANTINED = "quarantine-1234-1"


def manifest(name: str) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": f"sha256:{'0' * 64}", "size": 1, "mediaType": name},
            "layers": [],
        }
    )


@pytest.fixture
def ecr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("ecr", region_name="us-east-1")


def push(ecr: Any, value: str, *tags: str) -> str:
    """Puts an image where `value` (an environment field) points; returns the field by digest."""
    repository_uri = images.without_tag(value)
    account, repository = repository_uri.split(".", 1)[0], repository_uri.split("/", 1)[1]
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repository, registryId=account)
    digest = ""
    for tag in tags:
        answer = ecr.put_image(
            repositoryName=repository, imageManifest=manifest(repository), imageTag=tag
        )
        digest = answer["image"]["imageId"]["imageDigest"]
    return f"{repository_uri}@{digest}"


def deployable_dev(
    ecr: Any, *, built_tags: tuple[str, ...] = (QUARANTINED, RELEASED)
) -> dict[str, Any]:
    """dev's file naming, by digest, images ECR holds: built ones released by CI."""
    data = environment_data()
    for image in images.IMAGES:
        if image.delivery == "eif":
            continue
        for field in image.fields:
            value = get_field(data, field)
            tags = built_tags if image.delivery == "ecr" else (str(image.upstream_tag),)
            set_field(data, field, push(ecr, value, *tags))
    return data


def run(tmp_path: Path, data: dict[str, Any]) -> int:
    path = tmp_path / "dev" / "environment.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return image_release.main(["--environment", str(path)])


def test_released_images_can_be_deployed(
    tmp_path: Path, ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, deployable_dev(ecr)) == 0
    assert "every image is in its registry and was released by CI" in capsys.readouterr().out


def test_a_quarantined_image_is_refused_naming_every_field(
    tmp_path: Path, ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, deployable_dev(ecr, built_tags=(QUARANTINED,))) == 1
    out = capsys.readouterr().out
    built = [f for i in images.IMAGES if i.delivery == "ecr" for f in i.fields]
    for field in built:
        assert f"environment.yaml: {field}: " in out and QUARANTINED in out
    assert out.count("carries no scanned-* tag") == len(built)


def test_an_image_not_replicated_into_the_account_is_refused(
    tmp_path: Path, ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = deployable_dev(ecr)
    value = get_field(data, "ml.pipeline.inference_image")
    set_field(data, "ml.pipeline.inference_image", value[:-8] + "deadbeef")
    assert run(tmp_path, data) == 1
    out = capsys.readouterr().out
    assert "ml.pipeline.inference_image: " in out
    assert "is not in the registry" in out


def test_an_aws_image_that_does_not_resolve_by_its_digest_is_refused(
    tmp_path: Path, ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = deployable_dev(ecr)
    value = get_field(data, "ml.pipeline.training_image")
    set_field(data, "ml.pipeline.training_image", value[:-8] + "deadbeef")
    assert run(tmp_path, data) == 1
    assert "ml.pipeline.training_image: " in capsys.readouterr().out


def test_an_image_named_by_tag_is_refused_without_asking_ecr(
    tmp_path: Path, ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # dev names AWS's images by tag today: `check` and this both refuse them.
    data = deployable_dev(ecr)
    set_field(
        data,
        "ml.monitoring.monitor_image",
        get_field(environment_data(), "ml.monitoring.monitor_image"),
    )
    assert run(tmp_path, data) == 1
    assert "ml.monitoring.monitor_image: names the tag :latest" in capsys.readouterr().out


def test_the_organization_file_holds_no_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org = REPO / "environments" / "org" / "environment.yaml"
    assert image_release.main(["--environment", str(org)]) == 0
    assert "organization environment, no images" in capsys.readouterr().out


def test_without_credentials_it_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    data = environment_data()
    value = get_field(data, "ml.pipeline.training_image")
    set_field(data, "ml.pipeline.training_image", f"{images.without_tag(value)}@sha256:{'a' * 64}")
    set_field(
        data,
        "ml.monitoring.monitor_image",
        f"{images.without_tag(get_field(data, 'ml.monitoring.monitor_image'))}@sha256:{'b' * 64}",
    )
    assert run(tmp_path, data) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no AWS credentials" in err


def test_the_released_tag_is_the_one_the_images_workflow_gives_a_scanned_digest() -> None:
    scanned = jobs(load(IMAGES_WORKFLOW))["push"]["env"]["SCANNED_TAG"]
    quarantine = jobs(load(IMAGES_WORKFLOW))["push"]["env"]["QUARANTINE_TAG"]
    assert scanned.startswith(image_release.SCANNED_TAG_PREFIX)
    assert not quarantine.startswith(image_release.SCANNED_TAG_PREFIX)


def promote_workload_jobs() -> dict[str, dict[str, Any]]:
    return {
        name: job
        for name, job in jobs(load(PROMOTE)).items()
        if any("make apply ENV=" in str(step.get("run", "")) for step in steps(job))
        and "ENV=org" not in " ".join(str(step.get("run", "")) for step in steps(job))
    }


def release_order_problems(job: dict[str, Any]) -> list[str]:
    """Whether the job asks ECR after taking the account's credentials and before applying."""
    runs = [str(step.get("run", "")) + str(step.get("uses", "")) for step in steps(job)]
    credentials = next((i for i, r in enumerate(runs) if "configure-aws-credentials" in r), None)
    apply = next((i for i, r in enumerate(runs) if "make apply ENV=" in r), None)
    asked = next((i for i, r in enumerate(runs) if "make images-released" in r), None)
    if asked is None or credentials is None or apply is None:
        return ["no image release check"]
    if not credentials < asked < apply:
        return ["the image release check is not between the credentials and the apply"]
    return []


def test_every_workload_apply_is_preceded_by_the_release_check() -> None:
    workload = promote_workload_jobs()
    assert sorted(workload) == ["dev", "eu-research", "production", "staging"]
    assert {name: release_order_problems(job) for name, job in workload.items()} == {
        name: [] for name in workload
    }


def test_the_order_checker_sees_a_missing_or_late_check() -> None:
    job = promote_workload_jobs()["dev"]
    without = {
        **job,
        "steps": [s for s in steps(job) if "make images-released" not in str(s.get("run", ""))],
    }
    assert release_order_problems(without) == ["no image release check"]
    check = next(s for s in steps(job) if "make images-released" in str(s.get("run", "")))
    late = {**job, "steps": [s for s in steps(job) if s is not check] + [check]}
    assert release_order_problems(late) != []
