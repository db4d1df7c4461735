"""Runtime evidence checks (policies/runtime) against moto and, where moto 5.2.5 lacks the API
or drops the attribute, against botocore's Stubber answering in AWS's documented shapes.

A correct deployment is built the way the platform builds it (same names, keys, policies from
the modules' own functions); every misconfiguration case first shows its check passing on that
deployment, then breaks one thing and shows the matching check fail with the mapped controls.
"""

from __future__ import annotations

import io
import json
import os
import socket
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.iam.access_control import IAMPolicyStatement
from moto.server import ThreadedMotoServer

import main
from environments.loader import load_environments
from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from modules.network import (
    dynamodb_gateway_endpoint_policy,
    interface_endpoint_policy,
    s3_gateway_endpoint_policy,
)
from modules.policy import policy_document, statement
from modules.registry import RegistryConfig, production_read_policy
from modules.storage import bucket_policy_statements
from policies.catalog import load_catalog
from policies.findings import Finding, Findings, Status
from policies.runtime import (
    CHECKS,
    AccountMismatchError,
    ReadOnlyViolation,
    RuntimeChecksError,
    UnreachableError,
    run_checks,
    run_runtime_checks,
)
from policies.runtime.clients import ClientFactory
from policies.runtime.controls import controls_by_check
from policies.runtime.expected import ExpectedBucket, ExpectedResources, expected_resources
from policies.runtime.guard import is_read_only
from tests.feature_data import consent, stay, write_export, write_records
from tests.model_versions import lineage, register
from tools.emulator import _apply_conditional_denies_only_when_provable

ENVIRONMENTS = {e.name: e for e in load_environments()}
_dev, _org = ENVIRONMENTS["dev"], ENVIRONMENTS["org"]
assert isinstance(_dev, WorkloadEnvironment) and isinstance(_org, OrganizationEnvironment)
DEV: WorkloadEnvironment = _dev
ORG: OrganizationEnvironment = _org
CATALOG = load_catalog()
MAPPING = controls_by_check(CATALOG)

# What moto 5.2.5 cannot show for a correct workload deployment, and why (each check says so in
# its detail): no Security Hub standards API, no GetModelPackageGroupPolicy, no HealthLake; it
# drops a function's DeadLetterConfig and a feature group's OnlineStoreConfig; the organization
# trail lives in another account and a workload account's recorder is Control Tower's.
NOT_EMULATED_ON_MOTO = {
    "RT_PHI_SECURITY_HUB_STANDARDS",
    "RT_PHI_MODEL_PACKAGE_GROUP_NOT_PUBLIC",
    "RT_PHI_HEALTHLAKE_CMK",
    "RT_PHI_LAMBDA_DEAD_LETTER_QUEUE",
    "RT_PHI_FEATURE_GROUP_ENCRYPTION",
    "RT_PHI_CLOUDTRAIL_LOG_VALIDATION",
    "RT_PHI_CONFIG_RECORDING",
    "RT_PHI_MODEL_MONITOR_RAN",  # moto has no ListMonitoringExecutions
}
# Shown in part: the consent check judges the export and the offline records, but in-process moto
# has no GetRecord, so the patient-keyed group's online store is "not emulated" (never a pass).
PARTLY_EMULATED_ON_MOTO = {"RT_PHI_FEATURES_CONSENT_OPT_OUT"}


# --- a deployment in moto, built as the platform builds it ----------------------------------


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Fake credentials and nothing from the machine's AWS settings (profiles, endpoints)."""
    for name in [n for n in os.environ if n.startswith("AWS_") or n.startswith("MOTO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def aws(fake_credentials: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """moto in-process."""
    with mock_aws():
        yield fake_credentials


class Deployment:
    """One environment deployed into moto in its own account, as the modules configure it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, expected: ExpectedResources) -> None:
        self.expected = expected
        self.monkeypatch = monkeypatch
        # moto files every request under this account (terraform reaches it by assume-role).
        monkeypatch.setenv("MOTO_ACCOUNT_ID", expected.account_id)
        self.session = boto3.Session(region_name=expected.region)
        # Alias -> key ARN in the environment's region; other regions' (a FHIR datastore's
        # region: aliases are regional, the same alias names another key there) apart.
        self.key_arns: dict[str, str] = {}
        self.key_arns_elsewhere: dict[str, dict[str, str]] = {}
        self.vpc_id = ""
        self.subnet_id = ""
        self.security_group_id = ""

    def client(self, service: str, region: str | None = None) -> Any:
        return self.session.client(service, region_name=region or self.expected.region)

    def regions(self) -> list[tuple[str, tuple[str, ...], tuple[ExpectedBucket, ...]]]:
        expected = self.expected
        return [
            (expected.region, expected.key_aliases, expected.buckets),
            *((r.region, r.key_aliases, r.buckets) for r in expected.elsewhere),
        ]

    def keys_in(self, region: str) -> dict[str, str]:
        if region == self.expected.region:
            return self.key_arns
        return self.key_arns_elsewhere.setdefault(region, {})

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.expected.region}:{self.expected.account_id}:{resource}"

    @property
    def tags(self) -> list[dict[str, str]]:
        return [{"Key": "environment", "Value": self.expected.environment}]

    def keys(self) -> None:
        for region, aliases, _ in self.regions():
            kms = self.client("kms", region)
            for alias in aliases:
                tags = [{"TagKey": "environment", "TagValue": "x"}]
                key = kms.create_key(Tags=tags)["KeyMetadata"]
                kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
                kms.enable_key_rotation(KeyId=key["KeyId"])
                self.keys_in(region)[alias] = key["Arn"]

    def buckets(self) -> None:
        for region, _, buckets in self.regions():
            self._buckets_in(region, buckets)

    def _buckets_in(self, region: str, buckets: tuple[ExpectedBucket, ...]) -> None:
        s3 = self.client("s3", region)
        location = (
            {}
            if region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket.name, **location)
            self.encrypt(bucket.name, self.keys_in(region)[bucket.key_alias], region)
            s3.put_bucket_versioning(
                Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"}
            )
            s3.put_public_access_block(
                Bucket=bucket.name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
            s3.put_bucket_policy(
                Bucket=bucket.name, Policy=policy_document(*bucket_policy_statements(bucket.arn))
            )

    def encrypt(self, bucket: str, key_arn: str, region: str | None = None) -> None:
        by_default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
        self.client("s3", region).put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": by_default}]
            },
        )

    def network(self) -> None:
        ec2 = self.client("ec2")
        self.vpc_id = ec2.create_vpc(
            CidrBlock="10.10.0.0/16",
            TagSpecifications=[{"ResourceType": "vpc", "Tags": self.tags}],
        )["Vpc"]["VpcId"]
        self.subnet_id = ec2.create_subnet(VpcId=self.vpc_id, CidrBlock="10.10.0.0/24")["Subnet"][
            "SubnetId"
        ]
        self.security_group_id = ec2.create_security_group(
            GroupName="endpoints", Description="HTTPS from the VPC", VpcId=self.vpc_id
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=self.security_group_id,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 443,
                    "ToPort": 443,
                    "IpRanges": [{"CidrIp": "10.10.0.0/16"}],
                }
            ],
        )
        route_table = ec2.create_route_table(VpcId=self.vpc_id)["RouteTable"]["RouteTableId"]
        for service in self.expected.vpc_endpoint_services:
            self.endpoint(service, route_table)
        self.client("logs").create_log_group(logGroupName="/phi-ml/dev/vpc-flow-logs")
        ec2.create_flow_logs(
            ResourceIds=[self.vpc_id],
            ResourceType="VPC",
            TrafficType="ALL",
            LogDestinationType="cloud-watch-logs",
            LogGroupName="/phi-ml/dev/vpc-flow-logs",
            DeliverLogsPermissionArn=f"arn:aws:iam::{self.expected.account_id}:role/flow-logs",
        )

    def endpoint(self, service: str, route_table: str, *, policy: str | None = None) -> str:
        account, region = self.expected.account_id, self.expected.region
        short = service.removeprefix(f"com.amazonaws.{region}.")
        if short in ("s3", "dynamodb"):
            gateway_policy = (
                s3_gateway_endpoint_policy(account, region)
                if short == "s3"
                else dynamodb_gateway_endpoint_policy(account)
            )
            settings: dict[str, Any] = {
                "VpcEndpointType": "Gateway",
                "RouteTableIds": [route_table],
                "PolicyDocument": policy or gateway_policy,
            }
        else:
            settings = {
                "VpcEndpointType": "Interface",
                "SubnetIds": [self.subnet_id],
                "SecurityGroupIds": [self.security_group_id],
                "PolicyDocument": policy or interface_endpoint_policy(account),
            }
        created = self.client("ec2").create_vpc_endpoint(
            VpcId=self.vpc_id, ServiceName=service, **settings
        )
        return str(created["VpcEndpoint"]["VpcEndpointId"])

    def detection(self) -> None:
        self.client("guardduty").create_detector(
            Enable=True,
            Features=[
                {"Name": name, "Status": "ENABLED"} for name in self.expected.guardduty_features
            ],
        )
        self.client("securityhub").enable_security_hub(EnableDefaultStandards=False)

    def ml(self) -> None:
        sagemaker = self.client("sagemaker")
        role = f"arn:aws:iam::{self.expected.account_id}:role/model"
        sagemaker.create_model(
            ModelName="model", ExecutionRoleArn=role, PrimaryContainer={"Image": "image"}
        )
        self.endpoint_config("v1")
        ml_key = self.key_arns[str(self.expected.ml_key_alias)]
        feature_key = self.key_arns[str(self.expected.feature_key_alias)]
        for group in self.expected.feature_groups:
            self.feature_group(group, offline_key=feature_key)
        for group in self.expected.model_package_groups:
            sagemaker.create_model_package_group(ModelPackageGroupName=group)
        assert ml_key

    def images(self) -> None:
        for name in self.expected.image_repositories:
            self.repository(name)

    def repository(self, name: str, *, encryption: str = "KMS") -> str:
        """As modules/images.py creates it; returns its ARN."""
        self.client("ecr").create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": encryption},
        )
        return self.arn("ecr", f"repository/{name}")

    def endpoint_config(
        self, version: str, *, kms: bool = True, capture: dict[str, Any] | None = None
    ) -> str:
        ml_key = self.key_arns[str(self.expected.ml_key_alias)]
        name = f"{self.expected.endpoint_config_prefix}{version}"
        settings: dict[str, Any] = {
            "DataCaptureConfig": capture
            if capture is not None
            else {
                "EnableCapture": True,
                "InitialSamplingPercentage": 25,
                "DestinationS3Uri": "s3://acme-phi-dev-ml-artifacts/data-capture/readmission/",
                "KmsKeyId": ml_key,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            }
        }
        if kms:
            settings["KmsKeyId"] = ml_key
        if capture == {}:
            del settings["DataCaptureConfig"]
        self.client("sagemaker").create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "primary",
                    "ModelName": "model",
                    "InstanceType": "ml.m5.xlarge",  # moto knows no Graviton ML types
                    "InitialInstanceCount": 1,
                }
            ],
            **settings,
        )
        return self.arn("sagemaker", f"endpoint-config/{name}")

    def feature_group(self, name: str, *, offline_key: str) -> str:
        self.client("sagemaker").create_feature_group(
            FeatureGroupName=name,
            RecordIdentifierFeatureName="id",
            EventTimeFeatureName="event_time",
            FeatureDefinitions=[
                {"FeatureName": "id", "FeatureType": "String"},
                {"FeatureName": "event_time", "FeatureType": "String"},
            ],
            OnlineStoreConfig={"EnableOnlineStore": True, "SecurityConfig": {"KmsKeyId": "x"}},
            OfflineStoreConfig={
                "S3StorageConfig": {
                    "S3Uri": "s3://acme-phi-dev-feature-offline/feature-store/",
                    "KmsKeyId": offline_key,
                }
            },
            RoleArn=f"arn:aws:iam::{self.expected.account_id}:role/phi-ml-dev-feature-store",
        )
        return self.arn("sagemaker", f"feature-group/{name}")

    def compute(self) -> None:
        for name in self.expected.launch_templates:
            self.launch_template(name)
        for name in self.expected.functions:
            self.function(name)

    def launch_template(self, name: str, *, enclave: bool = True, tokens: str = "required") -> str:
        created = self.client("ec2").create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={
                "ImageId": "ami-12345678",
                "InstanceType": "c7g.xlarge",
                "EnclaveOptions": {"Enabled": enclave},
                "MetadataOptions": {
                    "HttpTokens": tokens,
                    "HttpEndpoint": "enabled",
                    "HttpPutResponseHopLimit": 1,
                },
            },
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": self.tags}],
        )
        template_id = created["LaunchTemplate"]["LaunchTemplateId"]
        return self.arn("ec2", f"launch-template/{template_id}")

    def function(self, name: str, *, in_vpc: bool = True) -> str:
        role = self.client("iam").create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
        )["Role"]["Arn"]
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("handler.py", "def handle(event, context):\n    return None\n")
        vpc = {"SubnetIds": [self.subnet_id], "SecurityGroupIds": [self.security_group_id]}
        created = self.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handle",
            Code={"ZipFile": package.getvalue()},
            VpcConfig=vpc if in_vpc else {},
            DeadLetterConfig={"TargetArn": self.arn("sqs", name)},
            Tags={"environment": self.expected.environment},
        )
        return str(created["FunctionArn"])

    def audit(self) -> None:
        """The organization trail and recorder (the org environment only)."""
        archive = self.expected.buckets[2].name
        cloudtrail = self.client("cloudtrail")
        trail_name = self.expected.trail.arn.rsplit("/", 1)[1]
        cloudtrail.create_trail(
            Name=trail_name,
            S3BucketName=archive,
            IsMultiRegionTrail=True,
            IsOrganizationTrail=True,
            EnableLogFileValidation=True,
            IncludeGlobalServiceEvents=True,
        )
        cloudtrail.start_logging(Name=trail_name)
        config = self.client("config")
        recorder = str(self.expected.config_recorder)
        config.put_configuration_recorder(
            ConfigurationRecorder={
                "name": recorder,
                "roleARN": f"arn:aws:iam::{self.expected.account_id}:role/config",
                "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True},
            }
        )
        config.put_delivery_channel(
            DeliveryChannel={"name": recorder, "s3BucketName": self.expected.buckets[4].name}
        )
        config.start_configuration_recorder(ConfigurationRecorderName=recorder)

    def feature_data(self) -> None:
        """What the FHIR -> features flow leaves (tests/feature_data.py): an export with one
        opt-out in the raw bucket, and records of the other patient in every feature group."""
        data = self.expected.feature_data
        assert data is not None
        s3, sagemaker = self.client("s3"), self.client("sagemaker")
        phi_key = self.key_arns[str(self.expected.phi_key_alias)]
        feature_key = self.key_arns[str(self.expected.feature_key_alias)]
        # moto applies a Deny whose condition it cannot evaluate (aws:SecureTransport) to every
        # object request; the emulator server's workaround, undone when the test ends.
        self.monkeypatch.setattr(
            IAMPolicyStatement, "is_action_permitted", IAMPolicyStatement.is_action_permitted
        )
        _apply_conditional_denies_only_when_provable()
        consents = [consent("p-out", "deny"), consent("p-in", "permit")]
        write_export(s3, data.export_bucket, data.export_prefix, consents, key_arn=phi_key)
        for group in self.expected.feature_groups:
            row = stay("e-1", "p-in", data.processing_basis)
            write_records(s3, sagemaker, group, [row], key_arn=feature_key)

    def model_loop(self) -> None:
        """What the model loop leaves: a traceable version per group, approved by a person."""
        for group in self.expected.model_package_groups:
            register(self.client("sagemaker"), group, approve=APPROVAL_COMMENT)

    def deploy(self, *layers: str) -> Deployment:
        """Every layer of the environment, or only the named ones (in this order)."""
        every = WORKLOAD_LAYERS if self.expected.is_workload else ORGANIZATION_LAYERS
        for layer in every:
            if not layers or layer in layers:
                getattr(self, layer)()
        return self

    def check(self, *check_ids: str, emulated: bool = False) -> Findings:
        clients = ClientFactory(self.session, self.expected.region, emulated=emulated)
        return run_checks(self.expected, clients, catalog=CATALOG, only=check_ids or None)


WORKLOAD_LAYERS = (
    "keys",
    "buckets",
    "network",
    "detection",
    "ml",
    "images",
    "compute",
    "feature_data",
    "model_loop",
)
APPROVAL_COMMENT = "AUC 0.81 on held-out patients meets the PCCP acceptance criterion (>= 0.75)"
ORGANIZATION_LAYERS = ("keys", "buckets", "audit")
# What each check needs deployed (by id prefix), so a case builds only that.
LAYERS_OF_CHECK = {
    "RT_PHI_FEATURES_": ("keys", "buckets", "ml", "feature_data"),
    "RT_PHI_S3_": ("keys", "buckets"),
    "RT_PHI_KMS_": ("keys",),
    "RT_PHI_VPC_": ("network",),
    "RT_PHI_GUARDDUTY_": ("detection",),
    "RT_PHI_SAGEMAKER_": ("keys", "ml"),
    "RT_PHI_IMAGE_": ("images",),
    "RT_PHI_MODEL_": ("keys", "ml", "model_loop"),
    "RT_PHI_LAUNCH_TEMPLATE_": ("network", "compute"),
    "RT_PHI_LAMBDA_": ("network", "compute"),
}


def layers_of(check_id: str, expected: ExpectedResources) -> tuple[str, ...]:
    if not expected.is_workload:
        return ORGANIZATION_LAYERS
    return next(layers for prefix, layers in LAYERS_OF_CHECK.items() if check_id.startswith(prefix))


def dev_expected() -> ExpectedResources:
    return expected_resources(DEV, ORG)


def org_expected() -> ExpectedResources:
    return expected_resources(ORG, ORG)


def of_check(findings: Findings, check_id: str) -> dict[str, Finding]:
    return {f.resource: f for f in findings.findings if f.check_id == check_id}


def statuses(findings: Findings) -> dict[str, set[Status]]:
    found: dict[str, set[Status]] = {}
    for finding in findings.findings:
        found.setdefault(finding.check_id, set()).add(finding.status)
    return found


@pytest.fixture
def dev(aws: pytest.MonkeyPatch) -> Deployment:
    return Deployment(aws, dev_expected()).deploy()


@pytest.fixture
def org(aws: pytest.MonkeyPatch) -> Deployment:
    return Deployment(aws, org_expected()).deploy()


# --- whole deployments ----------------------------------------------------------------------


def test_a_correct_workload_deployment_passes_every_check_moto_can_show(dev: Deployment) -> None:
    findings = dev.check(emulated=True)
    by_check = statuses(findings)
    workload_checks = {c.id for c in CHECKS}
    assert set(by_check) == workload_checks
    for check_id, seen in by_check.items():
        expected = {Status.NOT_EMULATED} if check_id in NOT_EMULATED_ON_MOTO else {Status.PASSED}
        if check_id in PARTLY_EMULATED_ON_MOTO:
            expected = {Status.PASSED, Status.NOT_EMULATED}
        details = [f.detail for f in findings.findings if f.check_id == check_id]
        assert seen == expected, (check_id, details)
    assert all(f.stack == "111111111111/us-east-1" for f in findings.findings)
    assert not findings.failed()


def test_what_moto_cannot_show_is_never_a_pass_against_aws_semantics(dev: Deployment) -> None:
    findings = dev.check(emulated=False)
    # Read as AWS's answer, moto's feature group has no online store: nothing unencrypted there.
    for check_id in NOT_EMULATED_ON_MOTO - {"RT_PHI_FEATURE_GROUP_ENCRYPTION"}:
        seen = statuses(findings)[check_id]
        assert Status.PASSED not in seen and Status.NOT_EMULATED not in seen, check_id
        assert seen <= {Status.FAILED, Status.ERROR}
    # What moto could not show of a check shown in part is an error there, not "not emulated".
    for check_id in PARTLY_EMULATED_ON_MOTO:
        assert Status.NOT_EMULATED not in statuses(findings)[check_id]
        assert Status.ERROR in statuses(findings)[check_id]


def test_a_correct_organization_deployment_passes_every_check_that_applies(
    org: Deployment,
) -> None:
    findings = org.check()
    assert statuses(findings) == {
        "RT_PHI_S3_CMK_ENCRYPTION": {Status.PASSED},
        "RT_PHI_S3_VERSIONING": {Status.PASSED},
        "RT_PHI_S3_PUBLIC_ACCESS_BLOCKED": {Status.PASSED},
        "RT_PHI_S3_TLS_ONLY": {Status.PASSED},
        "RT_PHI_KMS_KEY_ROTATION": {Status.PASSED},
        "RT_PHI_CLOUDTRAIL_LOG_VALIDATION": {Status.PASSED},
        "RT_PHI_CONFIG_RECORDING": {Status.PASSED},
    }
    assert len(of_check(findings, "RT_PHI_S3_CMK_ENCRYPTION")) == 5


def test_an_empty_account_fails_instead_of_passing(aws: pytest.MonkeyPatch) -> None:
    # DescribeFeatureGroup of a missing group crashes in-process moto (KeyError) instead of
    # answering ResourceNotFound, so that check is left out here.
    every_other = {c.id for c in CHECKS} - {
        "RT_PHI_FEATURE_GROUP_ENCRYPTION",
        "RT_PHI_FEATURES_PROCESSING_BASIS",
    }
    findings = Deployment(aws, dev_expected()).check(*every_other, emulated=True)
    assert Status.PASSED not in {f.status for f in findings.findings}
    raw = of_check(findings, "RT_PHI_S3_CMK_ENCRYPTION")["arn:aws:s3:::acme-phi-dev-raw"]
    assert raw.status is Status.FAILED and "does not exist" in raw.detail
    vpcs = next(iter(of_check(findings, "RT_PHI_VPC_FLOW_LOGS").values()))
    assert vpcs.status is Status.FAILED and "no VPC tagged environment=dev" in vpcs.detail


# --- each misconfiguration fails its check (after the same check passed) --------------------


@dataclass(frozen=True)
class Misconfiguration:
    check: str
    # Breaks one thing in a correct deployment; returns the resource the check must fail.
    apply: Callable[[Deployment], str]
    reason: str  # a part of the failed finding's detail
    environment: str = "dev"
    # A new resource the check did not see before: only the failure is shown for it.
    adds_resource: bool = False


def _unencrypted(d: Deployment) -> str:
    d.client("s3").delete_bucket_encryption(Bucket="acme-phi-dev-raw")
    return "arn:aws:s3:::acme-phi-dev-raw"


def _s3_managed_keys(d: Deployment) -> str:
    d.client("s3").put_bucket_encryption(
        Bucket="acme-phi-dev-raw",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return "arn:aws:s3:::acme-phi-dev-raw"


def _wrong_key(d: Deployment) -> str:
    d.encrypt("acme-phi-dev-curated", d.key_arns["alias/phi-ml/dev/logs"])
    return "arn:aws:s3:::acme-phi-dev-curated"


def _versioning_suspended(d: Deployment) -> str:
    d.client("s3").put_bucket_versioning(
        Bucket="acme-phi-dev-raw", VersioningConfiguration={"Status": "Suspended"}
    )
    return "arn:aws:s3:::acme-phi-dev-raw"


def _public_policy_allowed(d: Deployment) -> str:
    d.client("s3").put_public_access_block(
        Bucket="acme-phi-dev-ml-artifacts",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    return "arn:aws:s3:::acme-phi-dev-ml-artifacts"


def _tls_floor_missing(d: Deployment) -> str:
    arn = "arn:aws:s3:::acme-phi-dev-raw"
    only_https = [s for s in bucket_policy_statements(arn) if s["Sid"] != "DenyTlsOlderThan12"]
    d.client("s3").put_bucket_policy(Bucket="acme-phi-dev-raw", Policy=policy_document(*only_https))
    return arn


def _plain_http_allowed(d: Deployment) -> str:
    arn = "arn:aws:s3:::acme-phi-dev-curated"
    tls_only = [s for s in bucket_policy_statements(arn) if s["Sid"] != "DenyInsecureTransport"]
    d.client("s3").put_bucket_policy(
        Bucket="acme-phi-dev-curated", Policy=policy_document(*tls_only)
    )
    return arn


def _tls_floor_too_low(d: Deployment) -> str:
    arn = "arn:aws:s3:::acme-phi-dev-raw"
    statements = bucket_policy_statements(arn)
    for item in statements:
        if item["Sid"] == "DenyTlsOlderThan12":
            item["Condition"] = {"NumericLessThan": {"s3:TlsVersion": "1.0"}}
    d.client("s3").put_bucket_policy(Bucket="acme-phi-dev-raw", Policy=policy_document(*statements))
    return arn


def _policy_deleted(d: Deployment) -> str:
    d.client("s3").delete_bucket_policy(Bucket="acme-phi-dev-feature-offline")
    return "arn:aws:s3:::acme-phi-dev-feature-offline"


def _rotation_off(d: Deployment) -> str:
    key = d.key_arns["alias/phi-ml/dev/phi-data"]
    d.client("kms").disable_key_rotation(KeyId=key)
    return key


def _internet_gateway(d: Deployment) -> str:
    ec2 = d.client("ec2")
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=d.vpc_id)
    return d.arn("ec2", f"vpc/{d.vpc_id}")


def _nat_gateway(d: Deployment) -> str:
    ec2 = d.client("ec2")
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.create_nat_gateway(SubnetId=d.subnet_id, AllocationId=allocation)
    return d.arn("ec2", f"vpc/{d.vpc_id}")


def _egress_only_gateway(d: Deployment) -> str:
    d.client("ec2").create_egress_only_internet_gateway(VpcId=d.vpc_id)
    return d.arn("ec2", f"vpc/{d.vpc_id}")


def _open_security_group(d: Deployment) -> str:
    d.client("ec2").authorize_security_group_ingress(
        GroupId=d.security_group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    return d.arn("ec2", f"vpc/{d.vpc_id}")


def _flow_log_deleted(d: Deployment) -> str:
    ec2 = d.client("ec2")
    logs = ec2.describe_flow_logs()["FlowLogs"]
    ec2.delete_flow_logs(FlowLogIds=[log["FlowLogId"] for log in logs])
    return d.arn("ec2", f"vpc/{d.vpc_id}")


def _endpoint_deleted(d: Deployment) -> str:
    ec2 = d.client("ec2")
    kms = "com.amazonaws.us-east-1.kms"
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "service-name", "Values": [kms]}])
    ec2.delete_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"] for e in endpoints["VpcEndpoints"]])
    return d.arn("ec2", f"vpc/{d.vpc_id}")


def _endpoint_policy_full_access(d: Deployment) -> str:
    ec2 = d.client("ec2")
    sts = "com.amazonaws.us-east-1.sts"
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "service-name", "Values": [sts]}])
    ec2.delete_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"] for e in endpoints["VpcEndpoints"]])
    anyone = policy_document(
        statement("Default", effect="Allow", principal="*", actions="*", resources="*")
    )
    d.endpoint(sts, "", policy=anyone)
    return d.arn("ec2", f"vpc/{d.vpc_id}")


def _guardduty_disabled(d: Deployment) -> str:
    guardduty = d.client("guardduty")
    (detector,) = guardduty.list_detectors()["DetectorIds"]
    guardduty.update_detector(DetectorId=detector, Enable=False)
    return d.arn("guardduty", f"detector/{detector}")


def _guardduty_plan_off(d: Deployment) -> str:
    guardduty = d.client("guardduty")
    (detector,) = guardduty.list_detectors()["DetectorIds"]
    guardduty.update_detector(
        DetectorId=detector, Features=[{"Name": "EBS_MALWARE_PROTECTION", "Status": "DISABLED"}]
    )
    return d.arn("guardduty", f"detector/{detector}")


def _endpoint_config_without_kms(d: Deployment) -> str:
    return d.endpoint_config("v2-no-kms", kms=False)


def _first_repository(d: Deployment) -> str:
    return d.expected.image_repositories[0]


def _tags_mutable(d: Deployment) -> str:
    name = _first_repository(d)
    d.client("ecr").put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE")
    return d.arn("ecr", f"repository/{name}")


def _scan_on_push_off(d: Deployment) -> str:
    name = _first_repository(d)
    d.client("ecr").put_image_scanning_configuration(
        repositoryName=name, imageScanningConfiguration={"scanOnPush": False}
    )
    return d.arn("ecr", f"repository/{name}")


def _repository_encrypted_with_s3_keys(d: Deployment) -> str:
    name = _first_repository(d)
    d.client("ecr").delete_repository(repositoryName=name)
    return d.repository(name, encryption="AES256")


def _repository_deleted(d: Deployment) -> str:
    name = _first_repository(d)
    d.client("ecr").delete_repository(repositoryName=name)
    return d.arn("ecr", f"repository/{name}")


def _first_group(d: Deployment) -> str:
    return d.expected.model_package_groups[0]


def _version_without_baseline(d: Deployment) -> str:
    return register(d.client("sagemaker"), _first_group(d), DriftCheckBaselines=None)


def _version_served_by_tag(d: Deployment) -> str:
    containers = [{"Image": "111111111111.dkr.ecr.us-east-1.amazonaws.com/serving:latest"}]
    specification = {
        "Containers": containers,
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    return register(d.client("sagemaker"), _first_group(d), InferenceSpecification=specification)


def _version_without_manifest(d: Deployment) -> str:
    return register(d.client("sagemaker"), _first_group(d), CustomerMetadataProperties=None)


def _version_without_a_commit(d: Deployment) -> str:
    metadata = {**lineage()["MetadataProperties"], "CommitId": "unrecorded"}
    return register(d.client("sagemaker"), _first_group(d), MetadataProperties=metadata)


def _version_whose_steps_ran_from_a_tag(d: Deployment) -> str:
    customer = {
        **lineage()["CustomerMetadataProperties"],
        "processing-image": "111111111111.dkr.ecr.us-east-1.amazonaws.com/model-steps:latest",
    }
    return register(d.client("sagemaker"), _first_group(d), CustomerMetadataProperties=customer)


def _approval_without_comment(d: Deployment) -> str:
    return register(d.client("sagemaker"), _first_group(d), approve="")


def _data_capture_off(d: Deployment) -> str:
    return d.endpoint_config("v2-no-capture", capture={})


def _capture_without_responses(d: Deployment) -> str:
    return d.endpoint_config(
        "v2-input-only",
        capture={
            "EnableCapture": True,
            "InitialSamplingPercentage": 25,
            "DestinationS3Uri": "s3://acme-phi-dev-ml-artifacts/data-capture/readmission/",
            "KmsKeyId": d.key_arns["alias/phi-ml/dev/ml-artifacts"],
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
    )


def _capture_without_kms(d: Deployment) -> str:
    return d.endpoint_config(
        "v2-plain-capture",
        capture={
            "EnableCapture": True,
            "InitialSamplingPercentage": 25,
            "DestinationS3Uri": "s3://acme-phi-dev-ml-artifacts/data-capture/readmission/",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    )


def _launch_template_without_enclave(d: Deployment) -> str:
    return d.launch_template("phi-ml-dev-other-host", enclave=False)


def _launch_template_with_imdsv1(d: Deployment) -> str:
    return d.launch_template("phi-ml-dev-legacy-host", tokens="optional")


def _enclave_template_deleted(d: Deployment) -> str:
    d.client("ec2").delete_launch_template(LaunchTemplateName="phi-ml-dev-readmission-enclave")
    return d.arn("ec2", "launch-template/phi-ml-dev-readmission-enclave")


def _function_outside_vpc(d: Deployment) -> str:
    return d.function("phi-ml-dev-outside", in_vpc=False)


def _function_deleted(d: Deployment) -> str:
    d.client("lambda").delete_function(FunctionName="phi-ml-dev-readmission-rollback")
    return d.arn("lambda", "function:phi-ml-dev-readmission-rollback")


def _trail_without_validation(d: Deployment) -> str:
    d.client("cloudtrail").update_trail(Name=d.expected.trail.arn, EnableLogFileValidation=False)
    return d.expected.trail.arn


def _trail_stopped(d: Deployment) -> str:
    d.client("cloudtrail").stop_logging(Name=d.expected.trail.arn)
    return d.expected.trail.arn


def _recorder_stopped(d: Deployment) -> str:
    recorder = str(d.expected.config_recorder)
    d.client("config").stop_configuration_recorder(ConfigurationRecorderName=recorder)
    return d.arn("config", f"configuration-recorder/{recorder}")


def _org_bucket_unversioned(d: Deployment) -> str:
    bucket = d.expected.buckets[0].name
    d.client("s3").put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}
    )
    return f"arn:aws:s3:::{bucket}"


MISCONFIGURATIONS = {
    "bucket without default encryption": Misconfiguration(
        "RT_PHI_S3_CMK_ENCRYPTION", _unencrypted, "no default encryption"
    ),
    "bucket encrypted with S3-managed keys": Misconfiguration(
        "RT_PHI_S3_CMK_ENCRYPTION", _s3_managed_keys, "AES256, not SSE-KMS"
    ),
    "bucket encrypted with another environment key": Misconfiguration(
        "RT_PHI_S3_CMK_ENCRYPTION", _wrong_key, "not with alias/phi-ml/dev/phi-data"
    ),
    "versioning suspended": Misconfiguration(
        "RT_PHI_S3_VERSIONING", _versioning_suspended, "versioning is Suspended"
    ),
    "public policies allowed": Misconfiguration(
        "RT_PHI_S3_PUBLIC_ACCESS_BLOCKED", _public_policy_allowed, "BlockPublicPolicy"
    ),
    "no TLS floor": Misconfiguration(
        "RT_PHI_S3_TLS_ONLY", _tls_floor_missing, "s3:TlsVersion < 1.2"
    ),
    "plain HTTP allowed": Misconfiguration(
        "RT_PHI_S3_TLS_ONLY", _plain_http_allowed, "aws:SecureTransport"
    ),
    "TLS floor of 1.0": Misconfiguration(
        "RT_PHI_S3_TLS_ONLY", _tls_floor_too_low, "lowest version denied below: 1.0"
    ),
    "bucket policy deleted": Misconfiguration("RT_PHI_S3_TLS_ONLY", _policy_deleted, "no policy"),
    "key rotation off": Misconfiguration(
        "RT_PHI_KMS_KEY_ROTATION", _rotation_off, "automatic rotation is off"
    ),
    "internet gateway": Misconfiguration(
        "RT_PHI_VPC_NO_INTERNET_GATEWAY", _internet_gateway, "internet path through igw-"
    ),
    "NAT gateway": Misconfiguration(
        "RT_PHI_VPC_NO_INTERNET_GATEWAY", _nat_gateway, "internet path through nat-"
    ),
    "egress-only internet gateway": Misconfiguration(
        "RT_PHI_VPC_NO_INTERNET_GATEWAY", _egress_only_gateway, "internet path through eigw-"
    ),
    "open security group": Misconfiguration(
        "RT_PHI_VPC_NO_OPEN_INGRESS", _open_security_group, "ingress from anywhere"
    ),
    "flow log deleted": Misconfiguration("RT_PHI_VPC_FLOW_LOGS", _flow_log_deleted, "no flow log"),
    "KMS endpoint missing": Misconfiguration(
        "RT_PHI_VPC_ENDPOINTS", _endpoint_deleted, "com.amazonaws.us-east-1.kms"
    ),
    "endpoint with the default full-access policy": Misconfiguration(
        "RT_PHI_VPC_ENDPOINTS",
        _endpoint_policy_full_access,
        "full-access endpoint policy on com.amazonaws.us-east-1.sts",
    ),
    "GuardDuty disabled": Misconfiguration(
        "RT_PHI_GUARDDUTY_ENABLED", _guardduty_disabled, "the detector is DISABLED"
    ),
    "GuardDuty malware protection off": Misconfiguration(
        "RT_PHI_GUARDDUTY_ENABLED", _guardduty_plan_off, "EBS_MALWARE_PROTECTION"
    ),
    "image tags mutable": Misconfiguration(
        "RT_PHI_IMAGE_REPOSITORIES_HARDENED", _tags_mutable, "tags are MUTABLE"
    ),
    "image pushes not scanned": Misconfiguration(
        "RT_PHI_IMAGE_REPOSITORIES_HARDENED", _scan_on_push_off, "pushes are not scanned"
    ),
    "image repository with S3-managed keys": Misconfiguration(
        "RT_PHI_IMAGE_REPOSITORIES_HARDENED",
        _repository_encrypted_with_s3_keys,
        "encrypted with AES256, not KMS",
    ),
    "image repository deleted": Misconfiguration(
        "RT_PHI_IMAGE_REPOSITORIES_HARDENED", _repository_deleted, "no repository"
    ),
    "endpoint configuration without KMS": Misconfiguration(
        "RT_PHI_SAGEMAKER_ENDPOINT_KMS",
        _endpoint_config_without_kms,
        "no KMS key is configured",
        adds_resource=True,
    ),
    "model version without a monitoring baseline": Misconfiguration(
        "RT_PHI_MODEL_VERSION_TRACEABLE",
        _version_without_baseline,
        "DriftCheckBaselines.ModelDataQuality.Constraints",
        adds_resource=True,
    ),
    "model version served by a tag": Misconfiguration(
        "RT_PHI_MODEL_VERSION_TRACEABLE",
        _version_served_by_tag,
        "Containers[0].Image is not pinned by digest",
        adds_resource=True,
    ),
    "model version without its dataset manifest": Misconfiguration(
        "RT_PHI_MODEL_VERSION_TRACEABLE",
        _version_without_manifest,
        "CustomerMetadataProperties['dataset-manifest-sha256']",
        adds_resource=True,
    ),
    "model version synthesized without a commit": Misconfiguration(
        "RT_PHI_MODEL_VERSION_TRACEABLE",
        _version_without_a_commit,
        "MetadataProperties.CommitId is unrecorded",
        adds_resource=True,
    ),
    "model version whose steps ran from a tag": Misconfiguration(
        "RT_PHI_MODEL_VERSION_TRACEABLE",
        _version_whose_steps_ran_from_a_tag,
        "['processing-image'] is not pinned by digest",
        adds_resource=True,
    ),
    "approval without a comment": Misconfiguration(
        "RT_PHI_MODEL_APPROVAL_RECORDED",
        _approval_without_comment,
        "carries no comment",
        adds_resource=True,
    ),
    "data capture off": Misconfiguration(
        "RT_PHI_SAGEMAKER_DATA_CAPTURE",
        _data_capture_off,
        "data capture is off",
        adds_resource=True,
    ),
    "data capture of requests only": Misconfiguration(
        "RT_PHI_SAGEMAKER_DATA_CAPTURE",
        _capture_without_responses,
        "does not capture Output",
        adds_resource=True,
    ),
    "captured data not encrypted with the ML key": Misconfiguration(
        "RT_PHI_SAGEMAKER_DATA_CAPTURE",
        _capture_without_kms,
        "captured data: no KMS key is configured",
        adds_resource=True,
    ),
    "launch template without Nitro Enclaves": Misconfiguration(
        "RT_PHI_LAUNCH_TEMPLATE_NITRO_ENCLAVE",
        _launch_template_without_enclave,
        "Nitro Enclaves not enabled",
        adds_resource=True,
    ),
    "launch template allowing IMDSv1": Misconfiguration(
        "RT_PHI_LAUNCH_TEMPLATE_IMDSV2",
        _launch_template_with_imdsv1,
        "IMDSv1 allowed (HttpTokens optional)",
        adds_resource=True,
    ),
    "enclave launch template missing": Misconfiguration(
        "RT_PHI_LAUNCH_TEMPLATE_NITRO_ENCLAVE",
        _enclave_template_deleted,
        "no launch template phi-ml-dev-readmission-enclave",
        adds_resource=True,
    ),
    "function outside the VPC": Misconfiguration(
        "RT_PHI_LAMBDA_IN_VPC", _function_outside_vpc, "outside any VPC", adds_resource=True
    ),
    "rollback function missing": Misconfiguration(
        "RT_PHI_LAMBDA_IN_VPC",
        _function_deleted,
        "no function phi-ml-dev-readmission-rollback",
        adds_resource=True,
    ),
    "trail without log file validation": Misconfiguration(
        "RT_PHI_CLOUDTRAIL_LOG_VALIDATION",
        _trail_without_validation,
        "log file validation is off",
        environment="org",
    ),
    "trail not logging": Misconfiguration(
        "RT_PHI_CLOUDTRAIL_LOG_VALIDATION", _trail_stopped, "not logging", environment="org"
    ),
    "Config recorder stopped": Misconfiguration(
        "RT_PHI_CONFIG_RECORDING", _recorder_stopped, "not recording", environment="org"
    ),
    "state bucket unversioned": Misconfiguration(
        "RT_PHI_S3_VERSIONING", _org_bucket_unversioned, "Suspended", environment="org"
    ),
}


@pytest.mark.parametrize("case", MISCONFIGURATIONS.values(), ids=MISCONFIGURATIONS.keys())
def test_a_misconfiguration_fails_its_check(
    aws: pytest.MonkeyPatch, case: Misconfiguration
) -> None:
    expected = dev_expected() if case.environment == "dev" else org_expected()
    deployment = Deployment(aws, expected).deploy(*layers_of(case.check, expected))
    before = deployment.check(case.check)
    assert before.findings and all(f.status is Status.PASSED for f in before.findings), [
        f.detail for f in before.findings
    ]

    resource = case.apply(deployment)

    after = of_check(deployment.check(case.check), case.check)
    assert resource in after, sorted(after)
    if not case.adds_resource:
        assert resource in of_check(before, case.check)
    broken = after[resource]
    assert broken.status is Status.FAILED, broken.detail
    assert case.reason in broken.detail
    assert broken.controls == MAPPING[case.check] and broken.controls
    untouched = [f for r, f in after.items() if r != resource]
    assert all(f.status is Status.PASSED for f in untouched), [f.detail for f in untouched]


# --- what moto lacks, in AWS's documented response shapes (botocore Stubber) ---------------


def stubbed(
    deployment: Deployment, service: str, *, emulated: bool = False
) -> tuple[ClientFactory, Stubber]:
    """A client factory whose `service` client is answered by a Stubber (the others by moto);
    the Stubber validates every response against the service model."""
    clients = ClientFactory(deployment.session, deployment.expected.region, emulated=emulated)
    stubber = Stubber(clients.client(service))
    stubber.activate()
    return clients, stubber


def checked(deployment: Deployment, clients: ClientFactory, check_id: str) -> list[Finding]:
    findings = run_checks(deployment.expected, clients, catalog=CATALOG, only={check_id})
    return list(findings.findings)


@pytest.fixture
def keys_only(aws: pytest.MonkeyPatch) -> Deployment:
    deployment = Deployment(aws, dev_expected())
    deployment.keys()
    return deployment


def _standards(*states: tuple[str, str]) -> dict[str, Any]:
    return {
        "StandardsSubscriptions": [
            {
                "StandardsSubscriptionArn": f"{arn}/subscription",
                "StandardsArn": arn,
                "StandardsInput": {},
                "StandardsStatus": state,
            }
            for arn, state in states
        ]
    }


def _hub() -> dict[str, Any]:
    return {"HubArn": "arn:aws:securityhub:us-east-1:111111111111:hub/default"}


def test_security_hub_with_every_standard_ready_passes(keys_only: Deployment) -> None:
    clients, stubber = stubbed(keys_only, "securityhub")
    stubber.add_response("describe_hub", _hub())
    ready = [(arn, "READY") for arn in keys_only.expected.security_hub_standards]
    stubber.add_response("get_enabled_standards", _standards(*ready))
    (finding,) = checked(keys_only, clients, "RT_PHI_SECURITY_HUB_STANDARDS")
    assert finding.status is Status.PASSED, finding.detail
    stubber.assert_no_pending_responses()


def test_security_hub_missing_or_incomplete_standard_fails(keys_only: Deployment) -> None:
    fsbp, cis, _nist = keys_only.expected.security_hub_standards
    clients, stubber = stubbed(keys_only, "securityhub")
    stubber.add_response("describe_hub", _hub())
    stubber.add_response("get_enabled_standards", _standards((fsbp, "READY"), (cis, "INCOMPLETE")))
    (finding,) = checked(keys_only, clients, "RT_PHI_SECURITY_HUB_STANDARDS")
    assert finding.status is Status.FAILED
    assert f"{cis} is INCOMPLETE" in finding.detail
    assert "nist-800-53/v/5.0.0 not enabled" in finding.detail


def test_security_hub_not_enabled_fails(keys_only: Deployment) -> None:
    clients, stubber = stubbed(keys_only, "securityhub")
    stubber.add_client_error(
        "describe_hub",
        service_error_code="InvalidAccessException",
        service_message="Account 111111111111 is not subscribed to AWS Security Hub",
        http_status_code=401,
    )
    (finding,) = checked(keys_only, clients, "RT_PHI_SECURITY_HUB_STANDARDS")
    assert finding.status is Status.FAILED and "not enabled" in finding.detail


def _group_check(deployment: Deployment, policy: str | None) -> Finding:
    clients, stubber = stubbed(deployment, "sagemaker")
    arn = "arn:aws:sagemaker:us-east-1:111111111111:model-package-group/readmission-risk"
    stubber.add_response(
        "describe_model_package_group",
        {
            "ModelPackageGroupName": "readmission-risk",
            "ModelPackageGroupArn": arn,
            "CreationTime": "2025-01-01T00:00:00Z",
            "CreatedBy": {},
            "ModelPackageGroupStatus": "Completed",
        },
    )
    if policy is None:
        stubber.add_client_error(
            "get_model_package_group_policy",
            service_error_code="ValidationException",
            service_message=f"Cannot find resource policy for: {arn}",
        )
    else:
        stubber.add_response("get_model_package_group_policy", {"ResourcePolicy": policy})
    (finding,) = checked(deployment, clients, "RT_PHI_MODEL_PACKAGE_GROUP_NOT_PUBLIC")
    stubber.assert_no_pending_responses()
    return finding


def _production_read() -> str:
    config = RegistryConfig(
        environment="dev",
        account_id="111111111111",
        region="us-east-1",
        model_package_groups=("readmission-risk",),
        production_account_id="333333333333",
    )
    return production_read_policy(config, "readmission-risk")


def test_model_package_group_readable_by_the_production_account_only_passes(
    keys_only: Deployment,
) -> None:
    assert _group_check(keys_only, _production_read()).status is Status.PASSED
    without_policy = _group_check(keys_only, None)
    assert without_policy.status is Status.PASSED and "no resource policy" in without_policy.detail


@pytest.mark.parametrize(
    ("principal", "reason"),
    [
        ("*", "allows any principal"),
        ({"AWS": "*"}, "allows any principal"),
        ({"AWS": "arn:aws:iam::555555555555:root"}, "other accounts: 555555555555"),
    ],
)
def test_a_public_or_foreign_model_package_group_policy_fails(
    keys_only: Deployment, principal: Any, reason: str
) -> None:
    policy = json.loads(_production_read())
    policy["Statement"][0]["Principal"] = principal
    finding = _group_check(keys_only, json.dumps(policy))
    assert finding.status is Status.FAILED and reason in finding.detail


def _datastore(
    key: str,
    cmk_type: str = "CUSTOMER_MANAGED_KMS_KEY",
    *,
    name: str = "acme-phi-dev-fhir",
    where: str = "us-east-1:111111111111",
) -> dict[str, Any]:
    region = where.split(":", maxsplit=1)[0]
    return {
        "DatastorePropertiesList": [
            {
                "DatastoreId": "a" * 32,
                "DatastoreArn": f"arn:aws:healthlake:{where}:datastore/fhir/" + "a" * 32,
                "DatastoreName": name,
                "DatastoreStatus": "ACTIVE",
                "DatastoreTypeVersion": "R4",
                "DatastoreEndpoint": f"https://healthlake.{region}.amazonaws.com/datastore/x/r4/",
                "SseConfiguration": {"KmsEncryptionConfig": {"CmkType": cmk_type, "KmsKeyId": key}},
            }
        ]
    }


def test_healthlake_datastore_with_the_phi_key_passes(keys_only: Deployment) -> None:
    clients, stubber = stubbed(keys_only, "healthlake")
    stubber.add_response(
        "list_fhir_datastores", _datastore(keys_only.key_arns["alias/phi-ml/dev/phi-data"])
    )
    (finding,) = checked(keys_only, clients, "RT_PHI_HEALTHLAKE_CMK")
    assert finding.status is Status.PASSED, finding.detail


@pytest.mark.parametrize(
    ("alias", "cmk_type", "reason"),
    [
        ("alias/phi-ml/dev/phi-data", "AWS_OWNED_KMS_KEY", "not a customer key"),
        ("alias/phi-ml/dev/logs", "CUSTOMER_MANAGED_KMS_KEY", "not with alias/phi-ml/dev/phi-data"),
    ],
)
def test_healthlake_datastore_without_the_phi_key_fails(
    keys_only: Deployment, alias: str, cmk_type: str, reason: str
) -> None:
    clients, stubber = stubbed(keys_only, "healthlake")
    stubber.add_response("list_fhir_datastores", _datastore(keys_only.key_arns[alias], cmk_type))
    (finding,) = checked(keys_only, clients, "RT_PHI_HEALTHLAKE_CMK")
    assert finding.status is Status.FAILED and reason in finding.detail


def test_healthlake_on_the_emulator_is_not_emulated_and_elsewhere_an_error(
    keys_only: Deployment,
) -> None:
    # moto answers HealthLake with "404 Not yet implemented" (in-process and as a server).
    emulated = keys_only.check("RT_PHI_HEALTHLAKE_CMK", emulated=True).findings
    against_aws = keys_only.check("RT_PHI_HEALTHLAKE_CMK", emulated=False).findings
    assert [f.status for f in emulated] == [Status.NOT_EMULATED]
    assert "HealthLake is not emulated" in emulated[0].detail
    assert [f.status for f in against_aws] == [Status.ERROR]


def test_access_denied_is_an_error_naming_the_call(keys_only: Deployment) -> None:
    clients, stubber = stubbed(keys_only, "healthlake")
    stubber.add_client_error(
        "list_fhir_datastores",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: healthlake:ListFHIRDatastores",
        http_status_code=403,
    )
    (finding,) = checked(keys_only, clients, "RT_PHI_HEALTHLAKE_CMK")
    assert finding.status is Status.ERROR
    assert "access denied to ListFHIRDatastores" in finding.detail


def _function(name: str, *, dead_letter: bool) -> dict[str, Any]:
    function: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": f"arn:aws:lambda:us-east-1:111111111111:function:{name}",
        "VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"], "VpcId": "vpc-1"},
    }
    if dead_letter:
        function["DeadLetterConfig"] = {"TargetArn": f"arn:aws:sqs:us-east-1:111111111111:{name}"}
    return function


def _functions_check(deployment: Deployment, *, dead_letter: bool, emulated: bool) -> list[Finding]:
    clients, stubber = stubbed(deployment, "lambda", emulated=emulated)
    names = deployment.expected.functions
    stubber.add_response(
        "list_functions", {"Functions": [_function(n, dead_letter=dead_letter) for n in names]}
    )
    for _ in names:
        stubber.add_response("list_tags", {"Tags": {"environment": "dev"}})
    return checked(deployment, clients, "RT_PHI_LAMBDA_DEAD_LETTER_QUEUE")


def test_functions_with_a_dead_letter_queue_pass(keys_only: Deployment) -> None:
    findings = _functions_check(keys_only, dead_letter=True, emulated=False)
    assert len(findings) == 3 and all(f.status is Status.PASSED for f in findings)


def test_functions_without_a_dead_letter_queue_fail(keys_only: Deployment) -> None:
    findings = _functions_check(keys_only, dead_letter=False, emulated=False)
    assert len(findings) == 3 and all(f.status is Status.FAILED for f in findings)
    # On the emulator the same answer cannot be told from moto dropping the attribute.
    emulated = _functions_check(keys_only, dead_letter=False, emulated=True)
    assert all(f.status is Status.NOT_EMULATED for f in emulated)


def _feature_group(online_key: str, offline_key: str) -> dict[str, Any]:
    return {
        "FeatureGroupArn": "arn:aws:sagemaker:us-east-1:111111111111:feature-group/patient-vitals",
        "FeatureGroupName": "patient-vitals",
        "RecordIdentifierFeatureName": "patient_id",
        "EventTimeFeatureName": "event_time",
        "FeatureDefinitions": [{"FeatureName": "patient_id", "FeatureType": "String"}],
        "CreationTime": "2025-01-01T00:00:00Z",
        "OnlineStoreConfig": {
            "EnableOnlineStore": True,
            "SecurityConfig": {"KmsKeyId": online_key},
        },
        "OfflineStoreConfig": {
            "S3StorageConfig": {
                "S3Uri": "s3://acme-phi-dev-feature-offline/",
                "KmsKeyId": offline_key,
            }
        },
        "NextToken": "",
    }


FEATURE_KEY = "alias/phi-ml/dev/feature-store"
LOGS_KEY = "alias/phi-ml/dev/logs"


@pytest.mark.parametrize(
    ("online", "offline", "reason"),
    [
        (FEATURE_KEY, FEATURE_KEY, None),
        (LOGS_KEY, FEATURE_KEY, "online store encrypted with"),
        (FEATURE_KEY, LOGS_KEY, "offline store encrypted with"),
    ],
)
def test_feature_group_stores_must_use_the_feature_store_key(
    keys_only: Deployment, online: str, offline: str, reason: str | None
) -> None:
    clients, stubber = stubbed(keys_only, "sagemaker")
    answer = _feature_group(keys_only.key_arns[online], keys_only.key_arns[offline])
    for _ in keys_only.expected.feature_groups:
        stubber.add_response("describe_feature_group", answer)
    findings = checked(keys_only, clients, "RT_PHI_FEATURE_GROUP_ENCRYPTION")
    assert len(findings) == len(keys_only.expected.feature_groups)
    if reason is None:
        assert {f.status for f in findings} == {Status.PASSED}, findings[0].detail
    else:
        assert {f.status for f in findings} == {Status.FAILED}
        assert reason in findings[0].detail and f"not with {FEATURE_KEY}" in findings[0].detail


# --- read-only, always -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    ["DescribeKey", "GetBucketPolicy", "ListFunctions", "HeadBucket", "LookupEvents"],
)
def test_reads_of_configuration_are_allowed(operation: str) -> None:
    assert is_read_only(operation)


@pytest.mark.parametrize(
    "operation",
    [
        "PutBucketVersioning",
        "DeleteBucket",
        "CreateTrail",
        "UpdateDetector",
        "StopLogging",
        "AssumeRole",
        "TagResource",
        "GetObject",
        "GetSecretValue",
        "GetRecord",
    ],
)
def test_writes_and_content_reads_are_refused(operation: str) -> None:
    assert not is_read_only(operation)
    assert is_read_only(operation, also_allowed={operation})


def test_a_mutating_call_is_refused_before_it_is_sent(dev: Deployment) -> None:
    s3 = ClientFactory(dev.session, "us-east-1").client("s3")
    with pytest.raises(ReadOnlyViolation, match="s3:PutBucketVersioning"):
        s3.put_bucket_versioning(
            Bucket="acme-phi-dev-raw", VersioningConfiguration={"Status": "Suspended"}
        )
    with pytest.raises(ReadOnlyViolation, match="s3:GetObject"):
        s3.get_object(Bucket="acme-phi-dev-raw", Key="incoming/patient.json")
    # Nothing reached the bucket: it is still versioned.
    assert s3.get_bucket_versioning(Bucket="acme-phi-dev-raw")["Status"] == "Enabled"


def test_the_read_only_refusal_comes_before_a_stubbed_answer(keys_only: Deployment) -> None:
    clients, stubber = stubbed(keys_only, "kms")
    stubber.add_response("schedule_key_deletion", {})
    with pytest.raises(ReadOnlyViolation):
        clients.client("kms").schedule_key_deletion(KeyId="x")
    with pytest.raises(AssertionError):
        stubber.assert_no_pending_responses()  # the stubbed answer was never consumed


# --- check ids and the control mapping ------------------------------------------------------


def test_every_check_has_a_stable_id_and_evidences_catalog_controls() -> None:
    ids = [check.id for check in CHECKS]
    assert len(ids) == len(set(ids))
    known = {control.id for control in CATALOG.controls}
    for check in CHECKS:
        assert check.id.startswith("RT_PHI_") and check.id.upper() == check.id
        assert MAPPING.get(check.id), f"{check.id} evidences no control"
        assert set(MAPPING[check.id]) <= known
    # Both ways: the catalog names no runtime check that does not exist.
    assert set(CATALOG.runtime_check_ids()) == set(ids)


def test_the_catalog_decides_once_its_controls_list_runtime_checks() -> None:
    def control(id_: str, *checks: str) -> SimpleNamespace:
        return SimpleNamespace(id=id_, runtime_evidence=SimpleNamespace(runtime_checks=checks))

    catalog: Any = SimpleNamespace(
        controls=(
            control("HIPAA-164.312(b)", "RT_PHI_VPC_FLOW_LOGS"),
            control("GDPR-32", "RT_PHI_VPC_FLOW_LOGS", "RT_PHI_S3_VERSIONING"),
            control("GDPR-44"),
        )
    )
    assert controls_by_check(catalog) == {
        "RT_PHI_VPC_FLOW_LOGS": ("HIPAA-164.312(b)", "GDPR-32"),
        "RT_PHI_S3_VERSIONING": ("GDPR-32",),
    }
    # Twin: a check no control lists evidences nothing (and the id test above then fails).
    silent: Any = SimpleNamespace(controls=(control("GDPR-32"), control("HIPAA-164.312(b)")))
    assert controls_by_check(silent) == {}


# --- the expected names are the ones the platform synthesizes --------------------------------


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    outdir = tmp_path_factory.mktemp("synth") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["dev"], outdir)
    return {
        stack.name: json.loads((stack / "cdk.tf.json").read_text())
        for stack in (outdir / "stacks").iterdir()
    }


def _resources(stack: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return dict(stack.get("resource", {}).get(type_, {}))


def _bucket_keys(stack: dict[str, Any]) -> dict[str, str]:
    """Bucket name -> alias of the key in its default encryption, read from the Terraform."""
    buckets = {
        f"${{aws_s3_bucket.{n}.id}}": b["bucket"]
        for n, b in _resources(stack, "aws_s3_bucket").items()
    }
    aliases = {
        alias["target_key_id"].replace(".key_id}", ".arn}"): alias["name"]
        for alias in _resources(stack, "aws_kms_alias").values()
    }
    found = {}
    for encryption in _resources(
        stack, "aws_s3_bucket_server_side_encryption_configuration"
    ).values():
        key = encryption["rule"][0]["apply_server_side_encryption_by_default"]["kms_master_key_id"]
        found[buckets[encryption["bucket"]]] = aliases[key]
    return found


def test_expected_buckets_and_keys_are_the_synthesized_ones(
    synthesized: dict[str, dict[str, Any]],
) -> None:
    dev, org = dev_expected(), org_expected()
    assert _bucket_keys(synthesized["dev-data"]) == {b.name: b.key_alias for b in dev.buckets}
    organization = {
        **_bucket_keys(synthesized["bootstrap"]),
        **_bucket_keys(synthesized["org-audit"]),
    }
    assert organization == {b.name: b.key_alias for b in org.buckets}
    dev_aliases = {a["name"] for a in _resources(synthesized["dev-data"], "aws_kms_alias").values()}
    assert dev_aliases == set(dev.key_aliases)
    org_aliases = {
        a["name"]
        for stack in ("bootstrap", "org-audit")
        for a in _resources(synthesized[stack], "aws_kms_alias").values()
    }
    assert org_aliases == set(org.key_aliases)


def test_expected_names_are_the_synthesized_ones(synthesized: dict[str, dict[str, Any]]) -> None:
    dev, org = dev_expected(), org_expected()
    network, ml, security = (synthesized[f"dev-{s}"] for s in ("network", "ml", "security"))
    endpoints = {e["service_name"] for e in _resources(network, "aws_vpc_endpoint").values()}
    assert endpoints == set(dev.vpc_endpoint_services)
    templates = {t["name"] for t in _resources(ml, "aws_launch_template").values()}
    assert templates == set(dev.launch_templates)
    functions = {
        f["function_name"]
        for stack in (ml, security)
        for f in _resources(stack, "aws_lambda_function").values()
    }
    assert functions == set(dev.functions)
    # The deployer names each version's configuration <endpoint>-v<n>: the prefix it is given.
    (deployer,) = [
        f
        for f in _resources(ml, "aws_lambda_function").values()
        if "MODEL_PACKAGE_GROUP" in f["environment"]["variables"]
    ]
    endpoint = deployer["environment"]["variables"]["ENDPOINT_NAME"]
    assert f"{endpoint}-v1".startswith(str(dev.endpoint_config_prefix))
    groups = {
        g["feature_group_name"]
        for g in _resources(synthesized["dev-data"], "aws_sagemaker_feature_group").values()
    }
    assert groups == set(dev.feature_groups)
    packages = {
        g["model_package_group_name"]
        for g in _resources(ml, "aws_sagemaker_model_package_group").values()
    }
    assert packages == set(dev.model_package_groups)
    (trail,) = _resources(synthesized["org-audit"], "aws_cloudtrail").values()
    assert dev.trail.arn.endswith(f":trail/{trail['name']}") and dev.trail == org.trail
    (recorder,) = _resources(synthesized["org-audit"], "aws_config_configuration_recorder").values()
    assert recorder["name"] == org.config_recorder
    (datastore,) = [
        s for s in _resources(synthesized["dev-fhir"], "aws_cloudformation_stack").values()
    ]
    assert dev.fhir_datastore and dev.fhir_datastore in json.dumps(datastore)


def test_each_datastore_is_expected_in_its_own_region() -> None:
    research = research_expected()
    assert (research.fhir_datastore, research.fhir_region) == ("acme-eu-research-fhir", "eu-west-1")
    assert research.region == "eu-central-1"
    (regional,) = research.elsewhere
    assert regional.region == "eu-west-1"
    assert {b.name: b.key_alias for b in regional.buckets} == {
        "acme-eu-research-fhir-eu-west-1": "alias/phi-ml/eu-research/phi-data",
        "acme-eu-research-access-logs-eu-west-1": "alias/phi-ml/eu-research/logs",
    }
    assert set(regional.key_aliases) == {
        "alias/phi-ml/eu-research/phi-data",
        "alias/phi-ml/eu-research/logs",
    }
    # Twin: dev's datastore is at home, with nothing expected elsewhere.
    dev = dev_expected()
    assert (dev.fhir_datastore, dev.fhir_region, dev.elsewhere) == (
        "acme-phi-dev-fhir",
        "us-east-1",
        (),
    )


def test_expected_datastore_region_resources_are_the_synthesized_ones(tmp_path: Path) -> None:
    outdir = tmp_path / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize(["eu-research"], outdir)
    stack = json.loads((outdir / "stacks" / "eu-research-fhir" / "cdk.tf.json").read_text())
    research = research_expected()
    (regional,) = research.elsewhere
    assert stack["provider"]["aws"][0]["region"] == regional.region == research.fhir_region
    assert _bucket_keys(stack) == {b.name: b.key_alias for b in regional.buckets}
    aliases = {a["name"] for a in _resources(stack, "aws_kms_alias").values()}
    assert aliases == set(regional.key_aliases)
    (datastore,) = _resources(stack, "aws_cloudformation_stack").values()
    assert str(research.fhir_datastore) in datastore["template_body"]


# --- eu-research: the datastore's region is checked in that region ----------------------------

EU_WEST = "eu-west-1"
EU_FHIR_BUCKET = "arn:aws:s3:::acme-eu-research-fhir-eu-west-1"
EU_PHI_ALIAS = "alias/phi-ml/eu-research/phi-data"
STORAGE_AND_KEY_CHECKS = (
    "RT_PHI_S3_CMK_ENCRYPTION",
    "RT_PHI_S3_VERSIONING",
    "RT_PHI_S3_PUBLIC_ACCESS_BLOCKED",
    "RT_PHI_S3_TLS_ONLY",
    "RT_PHI_KMS_KEY_ROTATION",
)


def research_expected() -> ExpectedResources:
    return expected_resources(ENVIRONMENTS["eu-research"], ORG)


@pytest.fixture
def research(aws: pytest.MonkeyPatch) -> Deployment:
    deployment = Deployment(aws, research_expected())
    deployment.keys()
    deployment.buckets()
    return deployment


def test_buckets_and_keys_of_the_datastore_region_pass_there(research: Deployment) -> None:
    findings = research.check(*STORAGE_AND_KEY_CHECKS, emulated=True)
    assert {f.status for f in findings.findings} == {Status.PASSED}, [
        (f.resource, f.detail) for f in findings.findings if f.status is not Status.PASSED
    ]
    for check_id in STORAGE_AND_KEY_CHECKS[:4]:
        assert EU_FHIR_BUCKET in of_check(findings, check_id)
    rotated = {
        (f.resource.split(":")[3], f.detail.split(":")[0])
        for f in of_check(findings, "RT_PHI_KMS_KEY_ROTATION").values()
    }
    assert {(EU_WEST, EU_PHI_ALIAS), ("eu-central-1", EU_PHI_ALIAS)} <= rotated
    assert research.keys_in(EU_WEST)[EU_PHI_ALIAS] in of_check(findings, "RT_PHI_KMS_KEY_ROTATION")


@pytest.mark.parametrize("key_region", ["eu-west-1", "eu-central-1"])
def test_the_fhir_bucket_with_another_key_than_its_regions_phi_key_fails(
    research: Deployment, key_region: str
) -> None:
    """Its region's logs key, or the PHI key of eu-central-1 (same alias, other region): each
    is another key than the one the alias names in eu-west-1."""
    alias = "alias/phi-ml/eu-research/logs" if key_region == EU_WEST else EU_PHI_ALIAS
    research.encrypt(
        EU_FHIR_BUCKET.removeprefix("arn:aws:s3:::"), research.keys_in(key_region)[alias], EU_WEST
    )
    finding = of_check(research.check("RT_PHI_S3_CMK_ENCRYPTION"), "RT_PHI_S3_CMK_ENCRYPTION")[
        EU_FHIR_BUCKET
    ]
    assert finding.status is Status.FAILED
    assert f"not with {EU_PHI_ALIAS}" in finding.detail


def test_a_missing_key_of_the_datastore_region_fails(aws: pytest.MonkeyPatch) -> None:
    """Twin of the passing deployment: the same keys in eu-central-1 only."""
    deployment = Deployment(aws, research_expected())
    home = deployment.expected
    deployment.expected = replace(home, elsewhere=())
    deployment.keys()
    deployment.expected = home
    rotation = of_check(deployment.check("RT_PHI_KMS_KEY_ROTATION"), "RT_PHI_KMS_KEY_ROTATION")
    missing = rotation[f"arn:aws:kms:{EU_WEST}:444444444444:{EU_PHI_ALIAS}"]
    assert missing.status is Status.FAILED and "no key has the alias" in missing.detail


def _eu_datastore_check(research: Deployment, key_arn: str) -> Finding:
    clients = ClientFactory(research.session, research.expected.region)
    # The environment's region has no HealthLake: a call there would find no stubbed answer.
    Stubber(clients.client("healthlake")).activate()
    stubber = Stubber(clients.in_region(EU_WEST).client("healthlake"))
    stubber.activate()
    stubber.add_response(
        "list_fhir_datastores",
        _datastore(key_arn, name="acme-eu-research-fhir", where=f"{EU_WEST}:444444444444"),
    )
    (finding,) = checked(research, clients, "RT_PHI_HEALTHLAKE_CMK")
    stubber.assert_no_pending_responses()
    return finding


def test_the_eu_datastore_is_found_in_eu_west_1_with_that_regions_phi_key(
    research: Deployment,
) -> None:
    finding = _eu_datastore_check(research, research.keys_in(EU_WEST)[EU_PHI_ALIAS])
    assert finding.status is Status.PASSED, finding.detail
    assert finding.resource.startswith(f"arn:aws:healthlake:{EU_WEST}:444444444444:")


def test_the_eu_datastore_with_the_eu_central_1_phi_key_fails(research: Deployment) -> None:
    """Twin: the environment's PHI key of its own region is not the datastore region's."""
    finding = _eu_datastore_check(research, research.keys_in("eu-central-1")[EU_PHI_ALIAS])
    assert finding.status is Status.FAILED
    assert f"not with {EU_PHI_ALIAS}" in finding.detail


# --- against a moto server, the way `make e2e` calls it -------------------------------------


@pytest.mark.emulator
def test_run_runtime_checks_on_the_emulator_switches_to_the_environment_account(
    fake_credentials: pytest.MonkeyPatch,
) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        session = boto3.Session(region_name="us-east-1")
        before = run_runtime_checks("dev", session, endpoint_url=endpoint)
        assert before.target == "111111111111/us-east-1"
        raw = of_check(before, "RT_PHI_S3_VERSIONING")["arn:aws:s3:::acme-phi-dev-raw"]
        assert raw.status is Status.FAILED and "does not exist" in raw.detail
        healthlake = of_check(before, "RT_PHI_HEALTHLAKE_CMK")
        assert {f.status for f in healthlake.values()} == {Status.NOT_EMULATED}

        # The bucket, created where terraform creates it (the deployment role's account).
        credentials = session.client("sts", endpoint_url=endpoint).assume_role(
            RoleArn="arn:aws:iam::111111111111:role/phi-ml-terraform", RoleSessionName="test"
        )["Credentials"]
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        s3.create_bucket(Bucket="acme-phi-dev-raw")
        s3.put_bucket_versioning(
            Bucket="acme-phi-dev-raw", VersioningConfiguration={"Status": "Enabled"}
        )
        after = run_runtime_checks("dev", session, endpoint_url=endpoint)
        raw = of_check(after, "RT_PHI_S3_VERSIONING")["arn:aws:s3:::acme-phi-dev-raw"]
        assert raw.status is Status.PASSED, raw.detail
    finally:
        server.stop()


def test_an_emulator_that_does_not_answer_stops_the_run_with_a_clear_error(
    fake_credentials: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UnreachableError, match=f"cannot reach http://127.0.0.1:{port}"):
        run_runtime_checks("dev", boto3.Session(), endpoint_url=f"http://127.0.0.1:{port}")


def test_an_endpoint_url_must_be_the_local_emulator(fake_credentials: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeChecksError, match="not a loopback address"):
        run_runtime_checks("dev", boto3.Session(), endpoint_url="https://sts.amazonaws.com")


def test_against_aws_credentials_of_another_account_are_refused(
    aws: pytest.MonkeyPatch,
) -> None:
    # moto's default account, 123456789012, is not dev's 111111111111.
    with pytest.raises(AccountMismatchError, match="account 123456789012"):
        run_runtime_checks("dev", boto3.Session(region_name="us-east-1"))


def test_client_errors_other_than_not_found_are_errors(keys_only: Deployment) -> None:
    clients, stubber = stubbed(keys_only, "s3")
    for _ in keys_only.expected.buckets:
        stubber.add_client_error("get_bucket_versioning", service_error_code="SlowDown")
    findings = checked(keys_only, clients, "RT_PHI_S3_VERSIONING")
    assert {f.status for f in findings} == {Status.ERROR}
    assert "GetBucketVersioning failed (SlowDown" in findings[0].detail


# --- the model loop: not demonstrated until it ran ------------------------------------------


def datetime_now(minutes: int = 0) -> datetime:
    return datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=minutes)


def test_a_loop_that_never_ran_is_not_demonstrated_never_a_pass(aws: pytest.MonkeyPatch) -> None:
    deployment = Deployment(aws, dev_expected()).deploy("keys", "ml")
    findings = deployment.check("RT_PHI_MODEL_VERSION_TRACEABLE", "RT_PHI_MODEL_APPROVAL_RECORDED")
    assert findings.findings
    assert {f.status for f in findings.findings} == {Status.NOT_DEMONSTRATED}
    details = " ".join(f.detail for f in findings.findings)
    assert "no model version is registered" in details
    assert "no model version is approved" in details
    assert not findings.failed()


def test_a_version_awaiting_approval_is_traceable_but_no_approval_is_shown(
    aws: pytest.MonkeyPatch,
) -> None:
    deployment = Deployment(aws, dev_expected()).deploy("keys", "ml")
    register(deployment.client("sagemaker"), _first_group(deployment))
    statuses_seen = statuses(
        deployment.check("RT_PHI_MODEL_VERSION_TRACEABLE", "RT_PHI_MODEL_APPROVAL_RECORDED")
    )
    assert statuses_seen["RT_PHI_MODEL_VERSION_TRACEABLE"] == {Status.PASSED}
    assert statuses_seen["RT_PHI_MODEL_APPROVAL_RECORDED"] == {Status.NOT_DEMONSTRATED}


def test_an_approval_by_the_pipelines_role_is_not_a_persons(aws: pytest.MonkeyPatch) -> None:
    deployment = Deployment(aws, dev_expected()).deploy("keys", "ml")
    clients, stubber = stubbed(deployment, "sagemaker")
    group = _first_group(deployment)
    arn = f"arn:aws:sagemaker:us-east-1:111111111111:model-package/{group}/1"
    role = deployment.expected.automation_role_names[0]
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": [
        {"ModelPackageArn": arn, "CreationTime": datetime_now(), "ModelPackageStatus": "Completed"}
    ]}, {"ModelPackageGroupName": group})  # fmt: skip
    stubber.add_response("describe_model_package", {
        "ModelPackageName": group, "ModelPackageArn": arn, "CreationTime": datetime_now(),
        "ModelPackageStatus": "Completed", "ModelApprovalStatus": "Approved",
        "ApprovalDescription": "auto", "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "LastModifiedBy": {"IamIdentity": {
            "Arn": f"arn:aws:sts::111111111111:assumed-role/{role}/SageMaker"}},
    })  # fmt: skip
    (finding,) = [
        f
        for f in checked(deployment, clients, "RT_PHI_MODEL_APPROVAL_RECORDED")
        if "/1" in f.resource
    ]
    assert finding.status is Status.FAILED
    assert "automation role" in finding.detail


MISSING_BASELINE = "baseline constraints.json not found"


def _runs(*statuses_of_runs: str) -> dict[str, Any]:
    return {
        "MonitoringExecutionSummaries": [
            {
                "MonitoringScheduleName": "s",
                "ScheduledTime": datetime_now(minutes=index),
                "CreationTime": datetime_now(minutes=index),
                "LastModifiedTime": datetime_now(minutes=index),
                "MonitoringExecutionStatus": status,
                **({"FailureReason": MISSING_BASELINE} if status == "Failed" else {}),
            }
            for index, status in enumerate(statuses_of_runs)
        ]
    }  # fmt: skip


@pytest.mark.parametrize(
    ("runs", "status", "detail"),
    [
        ((), Status.NOT_DEMONSTRATED, "no monitoring run yet"),
        (("Completed", "CompletedWithViolations"), Status.PASSED, "2 of 2 runs completed"),
        (("Completed", "Failed"), Status.FAILED, "baseline constraints.json not found"),
        (("InProgress",), Status.NOT_DEMONSTRATED, "is InProgress"),
    ],
    ids=["none", "completed", "latest-failed", "first-in-progress"],
)
def test_monitoring_is_judged_by_its_runs(
    keys_only: Deployment, runs: tuple[str, ...], status: Status, detail: str
) -> None:
    clients, stubber = stubbed(keys_only, "sagemaker")
    (schedule,) = keys_only.expected.monitoring_schedules
    stubber.add_response(
        "list_monitoring_executions", _runs(*runs), {"MonitoringScheduleName": schedule}
    )
    (finding,) = checked(keys_only, clients, "RT_PHI_MODEL_MONITOR_RAN")
    assert finding.status is status, finding.detail
    assert detail in finding.detail


# --- the runtime twins of the README's guarantees (issue 14) -----------------------------------

# Runtime checks that are not the runtime side of a clause of the README's layer table, and why.
NOT_A_LAYER_TABLE_GUARANTEE = {
    "RT_PHI_FEATURES_CONSENT_OPT_OUT": "what the data did (opt-outs left out), not a resource",
    "RT_PHI_FEATURES_PROCESSING_BASIS": "what the data did (each record's basis), not a resource",
    "RT_PHI_MODEL_APPROVAL_RECORDED": "what the model loop did (a person approved), not a resource",
    "RT_PHI_MODEL_VERSION_TRACEABLE": "what the model loop did (its lineage), not a resource",
    "RT_PHI_MODEL_MONITOR_RAN": "what the model loop did (the schedule ran), not a resource",
    "RT_PHI_IMAGE_REPOSITORIES_HARDENED": "README's Images section, not the layer table",
    "RT_PHI_SAGEMAKER_ENDPOINT_KMS": "endpoints the deployer creates at run time; the static "
    "side judges the deployer's settings (CKV_PHI_6), twinned with data capture",
}


# What moto does not emulate (or drops) is broken in botocore-stubbed answers instead: each of
# these tests turns its check from pass to fail on the same guarantee.
STUBBED_TWINS = {
    "test_healthlake_datastore_without_the_phi_key_fails": "RT_PHI_HEALTHLAKE_CMK",
    "test_feature_group_stores_must_use_the_feature_store_key": "RT_PHI_FEATURE_GROUP_ENCRYPTION",
    "test_a_public_or_foreign_model_package_group_policy_fails": (
        "RT_PHI_MODEL_PACKAGE_GROUP_NOT_PUBLIC"
    ),
    "test_security_hub_missing_or_incomplete_standard_fails": "RT_PHI_SECURITY_HUB_STANDARDS",
    "test_functions_without_a_dead_letter_queue_fail": "RT_PHI_LAMBDA_DEAD_LETTER_QUEUE",
}


def test_every_guarantee_a_runtime_check_covers_has_its_twin_case() -> None:
    """Each mutant's runtime twin is a case here that breaks the same guarantee on an emulator
    deployment and sees its check go from pass to fail: a MISCONFIGURATIONS case (checked by
    test_a_misconfiguration_fails_its_check) or, for what moto lacks, a stubbed test of it."""
    from tools.mutants.corpus import MUTANTS  # noqa: PLC0415

    twins = {mutant.runtime for mutant in MUTANTS if mutant.runtime}
    for twin in twins:
        if twin.case in MISCONFIGURATIONS:
            assert MISCONFIGURATIONS[twin.case].check == twin.check_id, twin
        else:
            assert STUBBED_TWINS.get(twin.case) == twin.check_id, twin
            assert callable(globals().get(twin.case)), twin
    runtime_checks = {
        check for c in CATALOG.controls for check in c.runtime_evidence.runtime_checks
    }
    twinned = {twin.check_id for twin in twins}
    assert not twinned & set(NOT_A_LAYER_TABLE_GUARANTEE)
    assert twinned | set(NOT_A_LAYER_TABLE_GUARANTEE) == runtime_checks, sorted(
        runtime_checks - twinned - set(NOT_A_LAYER_TABLE_GUARANTEE)
    )
