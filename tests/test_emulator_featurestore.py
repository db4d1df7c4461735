"""The emulator's Feature Store online store (tools/emulator_featurestore.py): PutRecord and
GetRecord as AWS answers them, through a moto server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tools.emulator import running_emulator

pytestmark = pytest.mark.emulator

GROUP = "patient-vitals"


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[Any, Any]]:
    with running_emulator() as emulator:
        options = {
            "endpoint_url": emulator.endpoint_url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        sagemaker = boto3.client("sagemaker", **options)
        sagemaker.create_feature_group(
            FeatureGroupName=GROUP,
            RecordIdentifierFeatureName="patient_id",
            EventTimeFeatureName="event_time",
            FeatureDefinitions=[
                {"FeatureName": "patient_id", "FeatureType": "String"},
                {"FeatureName": "event_time", "FeatureType": "String"},
                {"FeatureName": "spo2", "FeatureType": "Fractional"},
            ],
            OnlineStoreConfig={"EnableOnlineStore": True},
            OfflineStoreConfig={
                "S3StorageConfig": {"S3Uri": f"s3://offline/feature-store/{GROUP}"},
                "DisableGlueTableCreation": True,
            },
            RoleArn="arn:aws:iam::123456789012:role/feature-store",
        )
        yield sagemaker, boto3.client("sagemaker-featurestore-runtime", **options)


def record(patient: str, when: str, spo2: str) -> list[dict[str, str]]:
    return [
        {"FeatureName": "patient_id", "ValueAsString": patient},
        {"FeatureName": "event_time", "ValueAsString": when},
        {"FeatureName": "spo2", "ValueAsString": spo2},
    ]


def test_resolved_offline_uri_has_aws_shape(clients: tuple[Any, Any]) -> None:
    sagemaker, _ = clients
    storage = sagemaker.describe_feature_group(FeatureGroupName=GROUP)["OfflineStoreConfig"][
        "S3StorageConfig"
    ]
    assert storage["ResolvedOutputS3Uri"].startswith(
        f"s3://offline/feature-store/{GROUP}/123456789012/sagemaker/us-east-1/offline-store/{GROUP}-"
    )
    assert storage["ResolvedOutputS3Uri"].endswith("/data")


def test_the_online_store_keeps_the_latest_event_time(clients: tuple[Any, Any]) -> None:
    _, runtime = clients
    runtime.put_record(FeatureGroupName=GROUP, Record=record("p1", "2026-03-02T00:00:00Z", "97.5"))
    # An older record arrives later: the online store keeps the newer one.
    runtime.put_record(FeatureGroupName=GROUP, Record=record("p1", "2026-03-01T00:00:00Z", "90.0"))
    found = runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="p1")
    assert found["Record"] == record("p1", "2026-03-02T00:00:00Z", "97.5")
    # The twin: a newer record replaces it.
    runtime.put_record(FeatureGroupName=GROUP, Record=record("p1", "2026-03-03T00:00:00Z", "95.0"))
    found = runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="p1")
    assert found["Record"] == record("p1", "2026-03-03T00:00:00Z", "95.0")
    assert "Record" not in runtime.get_record(
        FeatureGroupName=GROUP, RecordIdentifierValueAsString="nobody"
    )


@pytest.mark.parametrize(
    ("group", "bad_record", "error"),
    [
        (GROUP, [{"FeatureName": "lactate", "ValueAsString": "1"}], "ValidationException"),
        (GROUP, record("p2", "2026-03-01", "1")[:2], "ValidationException"),  # not ISO-8601 time
        (GROUP, record("p2", "2026-03-01T00:00:00Z", "1")[1:], "ValidationException"),  # no id
        ("no-such-group", record("p2", "2026-03-01T00:00:00Z", "1"), "ResourceNotFound"),
    ],
    ids=["unknown-feature", "bad-event-time", "no-identifier", "no-group"],
)
def test_records_aws_refuses_are_refused(
    clients: tuple[Any, Any], group: str, bad_record: list[dict[str, str]], error: str
) -> None:
    _, runtime = clients
    with pytest.raises(ClientError) as raised:
        runtime.put_record(FeatureGroupName=group, Record=bad_record)
    assert raised.value.response["Error"]["Code"] == error
