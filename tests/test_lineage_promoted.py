"""tools/lineage.py on a promoted version (tools/promote_model.py, staging -> prod in moto with
two accounts): the training side lives in staging, so from prod alone it is named with the
command that reads it and nothing is read across accounts; with staging's credentials it is
read there, and the source's findings, its approval and its model digest judge the promoted
version. Twins: a staging version traced in staging reads its own manifest; an approved source
/ one rejected after the promotion; the same archive digest / another; an account named by an
environment file / one no file names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from requirements.model_lineage import DATASET_MANIFEST_URI, MODEL_ARCHIVE_SHA256, PROMOTED_FROM
from tests.test_promote_model import (
    STAGING_ENV,
    World,
    promoted,
    recorded_calls,
)
from tests.test_promote_model import world as two_accounts  # noqa: F401 (a fixture)
from tools import lineage


@pytest.fixture(name="world")
def promoted_world(two_accounts: World) -> World:  # noqa: F811 (the fixture imported above)
    """test_promote_model's staging and prod accounts in moto."""
    return two_accounts


def traced(
    tmp_path: Path,
    environment: str,
    session: boto3.Session,
    package: str,
    *,
    source: boto3.Session | None = None,
) -> tuple[int, dict[str, Any]]:
    output = tmp_path / f"{environment}-lineage.json"
    code = lineage.main(
        [environment, "--package", package, "--format", "json", "--output", str(output)],
        session=session,
        source_session=source,
    )
    return code, json.loads(output.read_text(encoding="utf-8"))


def recorded_in_prod(world: World, package: dict[str, Any], key: str, value: str) -> None:
    """The promoted version in prod's registry, one customer metadata value changed."""
    customer = {**package["CustomerMetadataProperties"], key: value}
    world.client(world.prod, "sagemaker").update_model_package(
        ModelPackageArn=package["ModelPackageArn"], CustomerMetadataProperties=customer
    )


def manifest_reads(calls: list[tuple[str, str, str]]) -> list[str]:
    return [key for service, operation, key in calls if (service, operation) == ("s3", "GetObject")]


def test_from_prod_alone_the_training_side_is_named_and_not_read(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = promoted(world, capsys)
    calls = recorded_calls(world.prod)
    _, document = traced(tmp_path, "prod", world.prod, package["ModelPackageArn"])
    promotion = document["promotion"]
    source_arn = world.versions["v1"]
    assert promotion["from"] == source_arn and promotion["environment"] == "staging"
    assert promotion["followed"] is False
    assert f"make lineage ENV=staging PACKAGE={source_arn}" in promotion["note"]
    manifest = document["dataset_manifest"]
    assert manifest["uri"] == package["CustomerMetadataProperties"][DATASET_MANIFEST_URI]
    assert "computed_sha256" not in manifest
    # Nothing of staging's is asked of prod's account: no manifest read, no execution, no job.
    operations = {operation for _, operation, _ in calls}
    assert not {"DescribePipelineExecution", "DescribeTrainingJob"} & operations
    assert manifest["uri"].partition("://")[2].partition("/")[2] not in manifest_reads(calls)
    assert (
        document["training"]["model_archive"]
        == (package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"])
    )
    assert not any("staging" in finding for finding in document["findings"])


def test_the_twin_a_version_traced_where_it_was_trained_reads_its_manifest(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    promoted(world, capsys)
    calls = recorded_calls(world.staging)
    _, document = traced(tmp_path, "staging", world.staging, world.versions["v1"])
    assert document["promotion"] is None
    key = document["dataset_manifest"]["uri"].partition("://")[2].partition("/")[2]
    assert key in manifest_reads(calls)


def test_with_the_source_account_the_training_side_is_read_there(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = promoted(world, capsys)
    staging_calls = recorded_calls(world.staging)
    _, document = traced(
        tmp_path, "prod", world.prod, package["ModelPackageArn"], source=world.staging
    )
    promotion = document["promotion"]
    assert promotion["followed"] is True
    assert promotion["source_approval"]["status"] == "Approved"
    assert promotion["source_approval"]["comment"] == "reviewed"
    key = document["dataset_manifest"]["uri"].partition("://")[2].partition("/")[2]
    assert key in manifest_reads(staging_calls)
    # The staging run this test registered has no pipeline execution in moto: staging's own
    # lineage finds that, and so the promoted version's lineage carries it, named.
    assert any(
        f.startswith("staging: ") and "pipeline execution" in f for f in document["findings"]
    )
    assert not any("Rejected in staging" in f or "differs from" in f for f in document["findings"])
    assert document["training"]["model_archive"].startswith("s3://")
    assert "promoted-from-staging" in document["training"]["model_archive"]


def test_a_source_rejected_after_the_promotion_is_a_finding(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = promoted(world, capsys)
    source = world.client(world.staging, "sagemaker")
    metadata = source.describe_model_package(ModelPackageName=world.versions["v1"])[
        "CustomerMetadataProperties"
    ]
    source.update_model_package(
        ModelPackageArn=world.versions["v1"],
        ModelApprovalStatus="Rejected",
        ApprovalDescription="withdrawn",
        CustomerMetadataProperties=metadata,
    )
    code, document = traced(
        tmp_path, "prod", world.prod, package["ModelPackageArn"], source=world.staging
    )
    assert code == 1
    assert any("which is Rejected in staging" in f for f in document["findings"])


def test_a_promoted_version_recording_another_model_digest_is_a_finding(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = promoted(world, capsys)
    recorded_in_prod(world, package, MODEL_ARCHIVE_SHA256, "f" * 64)
    code, document = traced(
        tmp_path, "prod", world.prod, package["ModelPackageArn"], source=world.staging
    )
    assert code == 1
    assert any("differs from the source version's" in f for f in document["findings"])


def test_a_version_promoted_from_an_account_no_environment_names_is_a_finding(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = promoted(world, capsys)
    foreign = world.versions["v1"].replace(STAGING_ENV.account_id, "999988887777")
    recorded_in_prod(world, package, PROMOTED_FROM, foreign)
    code, document = traced(tmp_path, "prod", world.prod, package["ModelPackageArn"])
    assert code == 1
    assert document["promotion"]["followed"] is False
    assert any("in no environment file's account" in f for f in document["findings"])
