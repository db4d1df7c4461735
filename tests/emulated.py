"""Helpers for tests that run against the moto emulator on loopback."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from botocore.config import Config

from tools import terraform as runner
from tools.emulator import Emulator

REGION = "us-east-1"


def aws_client(emulator: Emulator, service: str) -> Any:
    """A boto3 client on the emulator, as its default account, path-style S3 as terraform."""
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint_url,
        region_name=REGION,
        aws_access_key_id=runner.EMULATOR_CREDENTIAL,
        aws_secret_access_key=runner.EMULATOR_CREDENTIAL,
        config=Config(s3={"addressing_style": "path"}),
    )


def terraform_on(emulator: Emulator) -> runner.Terraform:
    """terraform (provider mirror as configured) with every AWS call sent to the emulator."""
    return runner.Terraform.from_environment(os.environ).on_emulator(emulator.endpoint_url)


def service_trust(service: str) -> dict[str, Any]:
    """A role trust policy that lets one AWS service assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def service_trust_json(service: str) -> str:
    return json.dumps(service_trust(service))
