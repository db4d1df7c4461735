"""A moto server on loopback that stands in for AWS while terraform plans and applies.

    with running_emulator() as emulator:
        ...  # point AWS_ENDPOINT_URL at emulator.endpoint_url

The server runs in a child process (`python -m tools.emulator`) rather than a thread of the
caller, so that every run starts from empty state (moto keeps its backends in module globals)
and stopping it cannot be blocked by a busy request. It binds 127.0.0.1 only, on a port the
kernel picks, and reports that port on its first line of stdout. It exits when its stdin
closes, so a caller that dies without cleaning up does not leave a server behind.

Before serving, the server process mends the moto 5.2.5 gaps the platform's Terraform runs into
(each function below says which, why, and what AWS does instead). Resource types moto cannot
create at all are listed in NOT_EMULATED_RESOURCE_TYPES for the runner to leave out of applies.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from tools.emulator_featurestore import emulate_feature_store_runtime

LOOPBACK = "127.0.0.1"
# Resource types moto cannot create, with the reason. A stack that has to be applied (another
# stack reads its outputs) is applied without them, and the run says so; planning is unaffected.
NOT_EMULATED_RESOURCE_TYPES = {
    "aws_dx_gateway": "moto 5.2.5 has no Direct Connect gateways",
    "aws_dx_gateway_association": "moto 5.2.5 has no Direct Connect gateways",
    "aws_controltower_landing_zone": "moto 5.2.5 has no Control Tower",
    "aws_controltower_control": "moto 5.2.5 has no Control Tower",
    "aws_config_conformance_pack": "moto 5.2.5 has no AWS Config conformance packs",
}
# CloudFormation resource types moto's CloudFormation cannot create. moto skips an unknown type
# with a warning and still reports CREATE_COMPLETE, so an `aws_cloudformation_stack` holding one
# would "apply" without creating anything: it is left out like the types above.
NOT_EMULATED_CLOUDFORMATION_TYPES = {
    "AWS::HealthLake::FHIRDatastore": "moto 5.2.5 has no HealthLake",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 60.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


def not_emulated_reason(resource_type: str, configuration: dict[str, Any]) -> str | None:
    """Why the emulator cannot create this resource, or None when it can."""
    if resource_type in NOT_EMULATED_RESOURCE_TYPES:
        return NOT_EMULATED_RESOURCE_TYPES[resource_type]
    if resource_type == "aws_cloudformation_stack":
        template = str(configuration.get("template_body", ""))
        missing = sorted(t for t in NOT_EMULATED_CLOUDFORMATION_TYPES if f'"{t}"' in template)
        if missing:
            reasons = sorted({NOT_EMULATED_CLOUDFORMATION_TYPES[t] for t in missing})
            return f"{'; '.join(reasons)} (template holds {', '.join(missing)})"
    return None


class EmulatorError(RuntimeError):
    """The emulator did not start."""


@dataclass(frozen=True)
class Emulator:
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def is_serving(self) -> bool:
        """Whether something still accepts connections on the emulator's port."""
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex((LOOPBACK, self.port)) == 0


@contextmanager
def running_emulator(log_path: Path | None = None) -> Iterator[Emulator]:
    """Start a moto server on a free loopback port; stop it when the block ends, however."""
    log: IO[bytes] | int = subprocess.DEVNULL
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.emulator"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        yield Emulator(port=_read_port(process))
    finally:
        _stop(process)
        if not isinstance(log, int):
            log.close()


def _read_port(process: subprocess.Popen[bytes]) -> int:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_SECONDS)
    line = process.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        raise EmulatorError(
            f"the moto server did not report its port within {STARTUP_TIMEOUT_SECONDS:.0f}s "
            f"(exit code {process.poll()}, output {line!r})"
        )
    return int(line)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Closing stdin is the polite request; terminate and kill are for a server that hangs.
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tolerate_wildcard_principals_in_log_target_policy() -> None:
    """Work around moto 5.2.5 failing PutBucketLogging with HTTP 500.

    moto checks that the target bucket's policy lets logging.s3.amazonaws.com write, but reads
    every statement's Principal as a mapping: the platform's `"Principal": "*"` deny statements
    (TLS only, KMS only) make it raise AttributeError, which the AWS provider retries for
    minutes. AWS accepts such policies, so the check is given only the statements it can read.
    """
    from moto.s3.models import FakeBucket  # noqa: PLC0415  (moto only in the server process)

    check = FakeBucket._log_permissions_enabled_policy

    def check_readable_statements(target_bucket: Any, target_prefix: str | None) -> bool:
        if not target_bucket.policy:
            return False
        policy = json.loads(target_bucket.policy.decode())
        readable = [s for s in policy.get("Statement", []) if isinstance(s.get("Principal"), dict)]
        view: Any = SimpleNamespace(
            policy=json.dumps({**policy, "Statement": readable}).encode(),
            partition=target_bucket.partition,
            name=target_bucket.name,
        )
        return bool(check(view, target_prefix))

    FakeBucket._log_permissions_enabled_policy = staticmethod(  # type: ignore[method-assign]
        check_readable_statements
    )


def _apply_conditional_denies_only_when_provable() -> None:
    """Work around moto 5.2.5 denying every object request to a bucket with a conditional Deny.

    moto evaluates bucket policies without request context (no aws:SecureTransport, no
    s3:TlsVersion, no encryption headers) and treats a condition it cannot evaluate as met. A
    Deny statement with such a condition therefore applies to every request: the platform's
    TLS-only and KMS-only statements deny each GetObject/PutObject/HeadObject, the S3 backend's
    state reads included. In IAM a condition on a key missing from the request context does not
    hold, so here a Deny applies only if moto can evaluate all of its conditions. The emulator
    then answers like AWS does a caller on TLS 1.2 that encrypts with KMS; Allow statements and
    unconditional Denies are evaluated by moto unchanged.
    """
    from moto.iam.access_control import (  # noqa: PLC0415  (moto only in the server process)
        IAMPolicyStatement,
        PermissionResult,
    )
    from moto.iam.policy_conditions import CONDITION_OPERATIONS  # noqa: PLC0415

    evaluate = IAMPolicyStatement.is_action_permitted

    def evaluable(conditions: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
        return all(
            operator in CONDITION_OPERATIONS and all(key in context for key in keys)
            for operator, keys in conditions.items()
        )

    def evaluate_applicable(
        self: IAMPolicyStatement,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> PermissionResult:
        statement = self._statement
        conditions = statement.get("Condition")
        if (
            statement.get("Effect") == "Deny"
            and conditions
            and not evaluable(conditions, incoming_condition_values or {})
        ):
            return PermissionResult.NEUTRAL
        return evaluate(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = evaluate_applicable  # type: ignore[method-assign]


def _emulate_vgw_route_propagation() -> None:
    """Add EnableVgwRoutePropagation and DisableVgwRoutePropagation, missing from moto 5.2.5.

    moto answers both with HTTP 500 (NotImplementedError), which the AWS provider retries for
    many minutes, so `aws_vpn_gateway_route_propagation` (the ingest layer's on-premises routes)
    could never be applied. The route table records the gateway, and DescribeRouteTables reports
    it under PropagatingVgws (moto serializes the attribute of that name), which is what the
    provider waits for.
    """
    from moto.core.responses import EmptyResult  # noqa: PLC0415  (moto only in the server)
    from moto.ec2.responses import EC2Response  # noqa: PLC0415

    def propagation_change(response: Any, propagating: bool) -> EmptyResult:
        table = response.ec2_backend.get_route_table(response._get_param("RouteTableId"))
        gateway = response._get_param("GatewayId")
        others = [v for v in getattr(table, "propagating_vgws", []) if v["GatewayId"] != gateway]
        table.propagating_vgws = [*others, {"GatewayId": gateway}] if propagating else others
        return EmptyResult()

    def enable_vgw_route_propagation(self: Any) -> EmptyResult:
        return propagation_change(self, propagating=True)

    def disable_vgw_route_propagation(self: Any) -> EmptyResult:
        return propagation_change(self, propagating=False)

    EC2Response.enable_vgw_route_propagation = enable_vgw_route_propagation  # type: ignore[attr-defined]
    EC2Response.disable_vgw_route_propagation = disable_vgw_route_propagation  # type: ignore[attr-defined]


def _keep_feature_group_store_configuration() -> None:
    """Keep a feature group's online store configuration and its own Glue table, as AWS does.

    moto 5.2.5 drops OnlineStoreConfig (so nobody can read the online store's KMS key back)
    and replaces the offline store's DataCatalogConfig with a table of its own invention, so
    the AWS provider sees a different catalog after every apply and plans to replace the group.
    AWS keeps the caller's DataCatalogConfig when one is given, and reports OnlineStoreConfig.
    """
    from moto.sagemaker.models import FeatureGroup  # noqa: PLC0415
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415

    create = SageMakerResponse.create_feature_group

    def create_keeping_configuration(self: Any) -> Any:
        requested = copy.deepcopy(self._get_param("OfflineStoreConfig") or {})
        created = create(self)
        name = self._get_param("FeatureGroupName")
        group = next(
            g
            for g in self.sagemaker_backend.feature_groups.values()
            if g.feature_group_name == name
        )
        group.online_store_config = self._get_param("OnlineStoreConfig")
        if "DataCatalogConfig" in requested:
            group.offline_store_config["DataCatalogConfig"] = requested["DataCatalogConfig"]
        return created

    describe = FeatureGroup.describe

    def describe_with_online_store(self: FeatureGroup) -> dict[str, Any]:
        described = dict(describe(self))
        online = getattr(self, "online_store_config", None)
        return {**described, "OnlineStoreConfig": online} if online else described

    SageMakerResponse.create_feature_group = create_keeping_configuration  # type: ignore[method-assign]
    FeatureGroup.describe = describe_with_online_store  # type: ignore[method-assign]


def _list_and_disable_security_hub_organization_admins() -> None:
    """Add ListOrganizationAdminAccounts and DisableOrganizationAdminAccount to moto 5.2.5's
    Security Hub, which implements only the Enable call and routes neither path (404).

    `aws_securityhub_organization_admin_account` waits for the delegated administrator to
    be listed as ENABLED after enabling it, and disables it on destroy. The administrator is
    the one moto's Enable call records for the organization.
    """
    from moto.securityhub import urls  # noqa: PLC0415
    from moto.securityhub.responses import SecurityHubResponse  # noqa: PLC0415

    urls.url_paths["{0}/organization/admin$"] = SecurityHubResponse.dispatch
    urls.url_paths["{0}/organization/admin/disable$"] = SecurityHubResponse.dispatch

    def list_organization_admin_accounts(self: SecurityHubResponse) -> str:
        admin = self.securityhub_backend._get_org_config()["admin_account_id"]
        listed = [{"AccountId": admin, "Status": "ENABLED"}] if admin else []
        return json.dumps({"AdminAccounts": listed})

    def disable_organization_admin_account(self: SecurityHubResponse) -> str:
        configuration = self.securityhub_backend._get_org_config()
        wanted = json.loads(self.body or "{}").get("AdminAccountId")
        if configuration["admin_account_id"] == wanted:
            configuration["admin_account_id"] = None
        return "{}"

    SecurityHubResponse.list_organization_admin_accounts = list_organization_admin_accounts  # type: ignore[attr-defined]
    SecurityHubResponse.disable_organization_admin_account = disable_organization_admin_account  # type: ignore[attr-defined]


def _disable_guardduty_organization_admins() -> None:
    """Add GuardDuty's DisableOrganizationAdminAccount, which moto 5.2.5 neither routes (404)
    nor implements; `aws_guardduty_organization_admin_account` calls it on destroy."""
    from moto.guardduty import urls  # noqa: PLC0415
    from moto.guardduty.responses import GuardDutyResponse  # noqa: PLC0415

    urls.url_paths["{0}/admin/disable$"] = GuardDutyResponse.dispatch

    def disable_organization_admin_account(self: GuardDutyResponse) -> str:
        admin = self._get_param("adminAccountId")
        admins = self.guardduty_backend.admin_account_ids
        admins[:] = [account for account in admins if account != admin]
        return "{}"

    GuardDutyResponse.disable_organization_admin_account = disable_organization_admin_account  # type: ignore[attr-defined]


def _delete_trails_by_arn() -> None:
    """Let DeleteTrail take the trail's ARN, as AWS does; moto 5.2.5 matches names only and
    silently keeps a trail named by ARN, which is how the AWS provider deletes one (its id is
    the ARN): `terraform destroy` reported the organization trail gone while it stayed."""
    from moto.cloudtrail.models import CloudTrailBackend  # noqa: PLC0415

    delete = CloudTrailBackend.delete_trail

    def delete_by_name_or_arn(self: CloudTrailBackend, name: str) -> None:
        delete(self, self.get_trail(name).trail_name)

    CloudTrailBackend.delete_trail = delete_by_name_or_arn  # type: ignore[method-assign]


def _know_current_organization_service_principals() -> None:
    """Accept the Organizations service principals AWS accepts that moto 5.2.5 does not know.

    Trusted access for GuardDuty Malware Protection (malware-protection.guardduty.amazonaws.com)
    and delegated administration of AWS Config (config.amazonaws.com) are both in AWS's list
    of services integrated with Organizations; moto's lists predate them and refuse the
    organization stack with "You specified an unrecognized service principal."
    """
    from moto.organizations.models import (  # noqa: PLC0415
        FakeDelegatedAdministrator,
        FakeServiceAccess,
    )

    FakeServiceAccess.TRUSTED_SERVICES.append("malware-protection.guardduty.amazonaws.com")
    FakeDelegatedAdministrator.SUPPORTED_SERVICES.append("config.amazonaws.com")


def _keep_model_network_isolation() -> None:
    """Keep a SageMaker model's EnableNetworkIsolation, which moto 5.2.5 always reports false.

    Network isolation is one of the controls on the inference path (the model container gets
    no network at all); an emulator that reads it back as off would under-report it, and the
    AWS provider would replace the model after every apply.
    """
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415

    create = SageMakerResponse.create_model

    def create_keeping_isolation(self: Any) -> Any:
        created = create(self)
        model = self.sagemaker_backend.describe_model(self._get_param("ModelName"))
        model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation"))
        return created

    SageMakerResponse.create_model = create_keeping_isolation  # type: ignore[method-assign]


def update_endpoint_as_sagemaker_does(response: Any) -> Any:
    """UpdateEndpoint, which moto 5.2.5 does not implement, for a moto SageMakerResponse: the
    configuration and the endpoint must exist (a ValidationException otherwise, as SageMaker
    answers), then the endpoint serves the configuration."""
    from moto.core.responses import ActionResult  # noqa: PLC0415
    from moto.sagemaker.exceptions import ValidationError  # noqa: PLC0415

    name = response._get_param("EndpointName")
    configuration = response._get_param("EndpointConfigName")
    backend = response.sagemaker_backend
    backend.describe_endpoint_config(configuration)
    if name not in backend.endpoints:
        raise ValidationError(message=f"Could not find endpoint {name}.")
    endpoint = backend.endpoints[name]
    endpoint.endpoint_config_name = configuration
    return ActionResult({"EndpointArn": endpoint.arn})


def _emulate_update_endpoint() -> None:
    """The deployer switches an endpoint to each newly approved version and the rollback
    function switches it back; without UpdateEndpoint the emulator could show neither
    (`make ml-demo`)."""
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415

    SageMakerResponse.update_endpoint = update_endpoint_as_sagemaker_does  # type: ignore[attr-defined]


def _merge_customer_metadata_on_update() -> None:
    """UpdateModelPackage adds or replaces the CustomerMetadataProperties it is given and keeps
    the others (removal is CustomerMetadataPropertiesToRemove); moto 5.2.5 replaces the whole
    map, and with None when none is given, so approving a version would erase its lineage."""
    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415

    update = SageMakerModelBackend.update_model_package

    # moto's response handler passes every argument by keyword.
    def update_merging(self: Any, model_package_arn: str, **arguments: Any) -> str:
        name = self.model_package_name_mapping.get(model_package_arn, model_package_arn)
        existing = self.model_packages.get(name)
        before = getattr(existing, "customer_metadata_properties", None) or {}
        given = arguments.get("customer_metadata_properties") or {}
        arguments["customer_metadata_properties"] = {**before, **given} or None
        return str(update(self, model_package_arn, **arguments))

    SageMakerModelBackend.update_model_package = update_merging  # type: ignore[assignment,method-assign]


def _emulate_test_event_pattern() -> None:
    """TestEventPattern, which moto 5.2.5 leaves unimplemented, answered by the matcher moto's
    own event buses route with: whether the deployed rule's pattern matches an event is then
    the emulator's judgement, not the caller's (`make ml-demo` asks it of the trigger rule)."""
    from moto.events.models import EventPattern  # noqa: PLC0415
    from moto.events.responses import EventsHandler  # noqa: PLC0415

    def test_event_pattern(self: Any) -> str:
        pattern = EventPattern.load(self._get_param("EventPattern"))
        event = json.loads(self._get_param("Event"))
        return json.dumps({"Result": bool(pattern.matches_event(event))})

    EventsHandler.test_event_pattern = test_event_pattern  # type: ignore[assignment,method-assign]


def _keep_key_rotation_periods() -> None:
    """Keep the rotation period EnableKeyRotation sets and report it, as AWS does.

    moto 5.2.5 ignores RotationPeriodInDays and leaves it out of GetKeyRotationStatus, so the
    AWS provider reads 0 back for every key and plans to set it to 365 after every apply:
    the platform's stacks would never converge. AWS defaults the period to 365 days.
    """
    from moto.kms.responses import KmsResponse  # noqa: PLC0415

    enable = KmsResponse.enable_key_rotation
    status = KmsResponse.get_key_rotation_status

    def key(response: KmsResponse) -> Any:
        backend = response.kms_backend
        return backend.keys[backend.get_key_id(response._get_param("KeyId"))]

    def enable_with_period(self: KmsResponse) -> str:
        enabled = enable(self)
        key(self).rotation_period_in_days = self._get_param("RotationPeriodInDays") or 365
        return str(enabled)

    def status_with_period(self: KmsResponse) -> str:
        reported = json.loads(status(self))
        if reported.get("KeyRotationEnabled"):
            reported["RotationPeriodInDays"] = getattr(key(self), "rotation_period_in_days", 365)
        return json.dumps(reported)

    KmsResponse.enable_key_rotation = enable_with_period  # type: ignore[method-assign]
    KmsResponse.get_key_rotation_status = status_with_period  # type: ignore[method-assign]


def _keep_lambda_dead_letter_queues() -> None:
    """Store and report a Lambda function's DeadLetterConfig, which moto 5.2.5 ignores.

    The functions (quarantine, rollback) send failed events to an encrypted dead-letter
    queue; without this GetFunctionConfiguration never shows it, so neither the AWS provider
    nor the runtime evidence check can read it back.
    """
    from moto.awslambda.models import LambdaFunction  # noqa: PLC0415

    initialize = LambdaFunction.__init__
    update = LambdaFunction.update_configuration
    configuration = LambdaFunction.get_configuration

    signature = inspect.signature(initialize)

    def initialize_with_dead_letters(self: Any, *args: Any, **kwargs: Any) -> None:
        initialize(self, *args, **kwargs)
        spec = signature.bind(self, *args, **kwargs).arguments["spec"]
        self.dead_letter_config = spec.get("DeadLetterConfig")

    def update_with_dead_letters(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "DeadLetterConfig" in config_updates:
            self.dead_letter_config = config_updates["DeadLetterConfig"]
        return dict(update(self, config_updates))

    def configuration_with_dead_letters(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        reported = dict(configuration(self, *args, **kwargs))
        target = (getattr(self, "dead_letter_config", None) or {}).get("TargetArn")
        return {**reported, "DeadLetterConfig": {"TargetArn": target}} if target else reported

    LambdaFunction.__init__ = initialize_with_dead_letters  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_with_dead_letters  # type: ignore[method-assign]
    LambdaFunction.get_configuration = configuration_with_dead_letters  # type: ignore[method-assign]


def _list_and_delete_feature_groups() -> None:
    """Add ListFeatureGroups and DeleteFeatureGroup, missing from moto 5.2.5 (which stores the
    groups, by ARN), and answer DescribeFeatureGroup of an unknown group with ResourceNotFound.

    Without them nothing can enumerate the feature groups of an account (the runtime evidence
    checks, the sweep for what a destroy left behind) and `terraform destroy` cannot delete
    one; moto's KeyError on an unknown name is an HTTP 500, where AWS says ResourceNotFound,
    which is what the AWS provider waits for after a delete.
    """
    from moto.core.responses import ActionResult, EmptyResult  # noqa: PLC0415
    from moto.sagemaker.exceptions import ResourceNotFound  # noqa: PLC0415
    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415

    def arn_of(backend: SageMakerModelBackend, name: str) -> str:
        for arn, group in backend.feature_groups.items():
            if name in (group.feature_group_name, arn):
                return str(arn)
        raise ResourceNotFound(message=f"Resource Not Found: Feature Group {name} not found")

    describe = SageMakerModelBackend.describe_feature_group

    def describe_known_feature_group(
        self: SageMakerModelBackend, feature_group_name: str
    ) -> dict[str, Any]:
        arn_of(self, feature_group_name)
        return dict(describe(self, feature_group_name))

    def delete_feature_group(self: Any) -> EmptyResult:
        backend = self.sagemaker_backend
        del backend.feature_groups[arn_of(backend, self._get_param("FeatureGroupName"))]
        return EmptyResult()

    SageMakerModelBackend.describe_feature_group = describe_known_feature_group  # type: ignore[method-assign]
    SageMakerResponse.delete_feature_group = delete_feature_group  # type: ignore[attr-defined]

    def list_feature_groups(self: Any) -> ActionResult:
        summaries = [
            {
                "FeatureGroupName": group.feature_group_name,
                "FeatureGroupArn": group.arn,
                "CreationTime": group.creation_time,
                "FeatureGroupStatus": "Created",  # as moto describes every group
            }
            for group in self.sagemaker_backend.feature_groups.values()
        ]
        return ActionResult({"FeatureGroupSummaries": summaries})

    SageMakerResponse.list_feature_groups = list_feature_groups  # type: ignore[attr-defined]


def _tag_feature_groups() -> None:
    """Let moto 5.2.5 find SageMaker feature groups by ARN for the tagging API.

    Its ARN-to-resource table lacks `feature-group`, so ListTags on a feature group fails with
    HTTP 500 (AttributeError), which the AWS provider retries for many minutes after every
    CreateFeatureGroup. Feature groups are already stored by ARN.
    """
    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415

    resolve = SageMakerModelBackend._get_resource_from_arn

    def resolve_feature_groups_too(self: SageMakerModelBackend, arn: str) -> Any:
        if ":feature-group/" in arn and arn in self.feature_groups:
            return self.feature_groups[arn]
        return resolve(self, arn)

    SageMakerModelBackend._get_resource_from_arn = resolve_feature_groups_too  # type: ignore[method-assign]


def _load_aws_managed_policies() -> None:
    """Give every emulated account the AWS managed IAM policies, as AWS does.

    moto 5 leaves them out unless asked (they cost memory), so attaching one, such as the
    enclave hosts' AmazonSSMManagedInstanceCore, fails with NoSuchEntity. Read when an
    account's IAM backend is created, so setting it before serving is enough.
    """
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"


def _validate_endpoint_instance_types_as_aws_does() -> None:
    """Check endpoint configuration instance types against SageMaker's current list.

    moto 5.2.5 validates them against a list of its own from before Graviton endpoints, so
    `ml.c7g.xlarge` is refused. botocore ships the API's own enumeration
    (ProductionVariantInstanceType); AWS validates against that, so the emulator does too.
    """
    import botocore.session  # noqa: PLC0415
    from moto.sagemaker.exceptions import ValidationError  # noqa: PLC0415
    from moto.sagemaker.models import FakeEndpointConfig  # noqa: PLC0415

    model = botocore.session.get_session().get_service_model("sagemaker")
    valid = frozenset(model.shape_for("ProductionVariantInstanceType").enum)

    def validate_instance_type(self: Any, instance_type: str) -> None:
        if instance_type not in valid:
            raise ValidationError(
                message=f"Value '{instance_type}' at 'instanceType' failed to satisfy "
                f"constraint: Member must satisfy enum value set: {sorted(valid)}"
            )

    FakeEndpointConfig.validate_instance_type = validate_instance_type  # type: ignore[method-assign]


def _emulate_model_package_group_policies() -> None:
    """Add Put/Get/DeleteModelPackageGroupPolicy and DeleteModelPackageGroup, missing from
    moto 5.2.5.

    The registry grants the production account read access to approved models with a group
    policy (`aws_sagemaker_model_package_group_policy`); moto does not implement the calls.
    The policy is kept on the group, as AWS keeps it; asking for the policy of a group that
    does not exist, or has none, gives SageMaker's ValidationException ("Cannot find Model
    Package Group: ARN", "Cannot find resource policy for: ARN"), which the AWS provider
    treats as "not found".
    """
    from moto.core.exceptions import ServiceException  # noqa: PLC0415
    from moto.core.responses import ActionResult, EmptyResult  # noqa: PLC0415
    from moto.sagemaker.exceptions import ValidationError  # noqa: PLC0415
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415

    class ConflictError(ServiceException):
        code = "ConflictException"

    def group(response: Any) -> Any:
        name = response._get_param("ModelPackageGroupName")
        backend = response.sagemaker_backend
        found = backend.model_package_groups.get(name)
        if found is None:
            arn = f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}"
            raise ValidationError(
                message=f"Cannot find Model Package Group: {arn}:model-package-group/{name}"
            )
        return found

    def put_model_package_group_policy(self: Any) -> ActionResult:
        found = group(self)
        found.resource_policy = self._get_param("ResourcePolicy")
        return ActionResult({"ModelPackageGroupArn": found.arn})

    def get_model_package_group_policy(self: Any) -> ActionResult:
        found = group(self)
        policy = getattr(found, "resource_policy", None)
        if policy is None:
            raise ValidationError(message=f"Cannot find resource policy for: {found.arn}")
        return ActionResult({"ResourcePolicy": policy})

    def delete_model_package_group_policy(self: Any) -> EmptyResult:
        group(self).resource_policy = None
        return EmptyResult()

    def delete_model_package_group(self: Any) -> EmptyResult:
        # AWS refuses to delete a group that still holds model versions; so does this.
        found = group(self)
        backend = self.sagemaker_backend
        if any(
            package.model_package_group_name == found.model_package_group_name
            for package in backend.model_packages.values()
        ):
            raise ConflictError(
                f"Model Package Group {found.model_package_group_name} still has model packages"
            )
        del backend.model_package_groups[found.model_package_group_name]
        return EmptyResult()

    SageMakerResponse.put_model_package_group_policy = put_model_package_group_policy  # type: ignore[attr-defined]
    SageMakerResponse.get_model_package_group_policy = get_model_package_group_policy  # type: ignore[attr-defined]
    SageMakerResponse.delete_model_package_group_policy = delete_model_package_group_policy  # type: ignore[attr-defined]
    SageMakerResponse.delete_model_package_group = delete_model_package_group  # type: ignore[attr-defined]


def _emulate_monitoring_schedules() -> None:
    """Add SageMaker Model Monitor schedules, missing from moto 5.2.5.

    The monitoring layer schedules a data-quality job hourly (`aws_sagemaker_monitoring_schedule`)
    and routes its violations to the rollback function through an EventBridge rule naming the
    schedule; without the schedule that whole path could not be applied. Create, Describe,
    List, Update and Delete behave as in AWS for one schedule per job definition: the job
    definition must exist, the schedule is `Scheduled` at once (AWS: within seconds), an
    unknown name is ResourceNotFound (what the AWS provider waits for after a delete), and
    its ARN works with the tagging API.
    """
    from moto.core.responses import ActionResult, EmptyResult  # noqa: PLC0415
    from moto.core.utils import utcnow  # noqa: PLC0415
    from moto.sagemaker.exceptions import ResourceNotFound, ValidationError  # noqa: PLC0415
    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415

    class MonitoringSchedule:
        def __init__(self, backend: Any, name: str, config: dict[str, Any], tags: Any) -> None:
            self.name = name
            self.arn = (
                f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}"
                f":monitoring-schedule/{name}"
            )
            self.tags: list[dict[str, str]] = list(tags or [])
            self.creation_time = utcnow()
            self.configure(backend, config)

        def configure(self, backend: Any, config: dict[str, Any]) -> None:
            definition_name = config.get("MonitoringJobDefinitionName")
            definition = backend.data_quality_job_definitions.get(definition_name)
            if definition_name and definition is None:
                raise ResourceNotFound(message=f"Job definition {definition_name} not found")
            self.config = config
            self.endpoint_name = (
                (definition.data_quality_job_input.get("EndpointInput") or {}).get("EndpointName")
                if definition is not None
                else None
            )
            self.last_modified_time = utcnow()

        def summary(self) -> dict[str, Any]:
            return {
                "MonitoringScheduleName": self.name,
                "MonitoringScheduleArn": self.arn,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "MonitoringScheduleStatus": "Scheduled",
                "EndpointName": self.endpoint_name,
                "MonitoringJobDefinitionName": self.config.get("MonitoringJobDefinitionName"),
                "MonitoringType": self.config.get("MonitoringType"),
            }

    def schedules(backend: Any) -> dict[str, MonitoringSchedule]:
        found: dict[str, MonitoringSchedule] = backend.__dict__.setdefault(
            "monitoring_schedules", {}
        )
        return found

    def named(response: Any) -> MonitoringSchedule:
        name = response._get_param("MonitoringScheduleName")
        schedule = schedules(response.sagemaker_backend).get(name)
        if schedule is None:
            raise ResourceNotFound(message=f"Monitoring schedule {name} does not exist")
        return schedule

    def create_monitoring_schedule(self: Any) -> ActionResult:
        backend = self.sagemaker_backend
        name = self._get_param("MonitoringScheduleName")
        if name in schedules(backend):
            raise ValidationError(message=f"Monitoring schedule {name} already exists")
        schedule = MonitoringSchedule(
            backend, name, self._get_param("MonitoringScheduleConfig"), self._get_param("Tags")
        )
        schedules(backend)[name] = schedule
        return ActionResult({"MonitoringScheduleArn": schedule.arn})

    def describe_monitoring_schedule(self: Any) -> ActionResult:
        schedule = named(self)
        described = schedule.summary()
        described.pop("MonitoringJobDefinitionName")
        return ActionResult({**described, "MonitoringScheduleConfig": schedule.config})

    def list_monitoring_schedules(self: Any) -> ActionResult:
        listed = [s.summary() for s in schedules(self.sagemaker_backend).values()]
        return ActionResult({"MonitoringScheduleSummaries": listed})

    def update_monitoring_schedule(self: Any) -> ActionResult:
        schedule = named(self)
        schedule.configure(self.sagemaker_backend, self._get_param("MonitoringScheduleConfig"))
        return ActionResult({"MonitoringScheduleArn": schedule.arn})

    def delete_monitoring_schedule(self: Any) -> EmptyResult:
        del schedules(self.sagemaker_backend)[named(self).name]
        return EmptyResult()

    for action in (
        create_monitoring_schedule,
        describe_monitoring_schedule,
        list_monitoring_schedules,
        update_monitoring_schedule,
        delete_monitoring_schedule,
    ):
        setattr(SageMakerResponse, action.__name__, action)

    resolve = SageMakerModelBackend._get_resource_from_arn

    def resolve_monitoring_schedules_too(self: SageMakerModelBackend, arn: str) -> Any:
        if ":monitoring-schedule/" in arn:
            return schedules(self).get(arn.rsplit("/", 1)[1]) or resolve(self, arn)
        return resolve(self, arn)

    SageMakerModelBackend._get_resource_from_arn = resolve_monitoring_schedules_too  # type: ignore[method-assign]


def _deliver_flow_logs_to_log_groups_named_by_arn() -> None:
    """Check a flow log's CloudWatch Logs destination when it is given by ARN, as AWS does.

    moto 5.2.5 looks the log group up by LogGroupName only; the network layer names it by
    LogDestination (the group's ARN), so moto marks every such flow log FAILED, "Access error",
    although the group exists. The group name is taken from the ARN for that check; a group
    that does not exist still fails delivery.
    """
    from moto.ec2.models.flow_logs import FlowLogsBackend  # noqa: PLC0415

    create = FlowLogsBackend.create_flow_logs
    signature = inspect.signature(create)

    def create_with_destination_group(self: FlowLogsBackend, *args: Any, **kwargs: Any) -> Any:
        request = signature.bind(self, *args, **kwargs).arguments
        destination = request.get("log_destination") or ""
        if (
            request.get("log_destination_type") in (None, "cloud-watch-logs")
            and request.get("log_group_name") is None
            and ":log-group:" in destination
        ):
            request["log_group_name"] = destination.split(":log-group:", 1)[1].removesuffix(":*")
        return create(**request)

    FlowLogsBackend.create_flow_logs = create_with_destination_group  # type: ignore[method-assign]


def _merge_guardduty_features() -> None:
    """Let UpdateDetector change only the features it names, as AWS does.

    moto 5.2.5 replaces the detector's whole feature list with the request's, so the AWS
    provider's one-feature-per-resource updates (`aws_guardduty_detector_feature` for S3 data
    events, then EBS malware protection) undo each other and the first never reads back
    ("empty result").
    """
    from moto.guardduty.models import Detector  # noqa: PLC0415

    update = Detector.update

    def update_named_features(
        self: Detector,
        enable: bool,
        finding_publishing_frequency: str,
        data_sources: dict[str, Any],
        features: list[dict[str, Any]],
    ) -> None:
        if features is not None:
            named = {feature["name"]: feature for feature in self.features}
            named |= {feature["name"]: feature for feature in features}
            features = list(named.values())
        update(self, enable, finding_publishing_frequency, data_sources, features)

    Detector.update = update_named_features  # type: ignore[method-assign]


def _emulate_security_hub_configuration_and_standards() -> None:
    """Add UpdateSecurityHubConfiguration and the standards calls, missing from moto 5.2.5.

    `aws_securityhub_account` sets AutoEnableControls and ControlFindingGenerator after
    enabling the hub, and `aws_securityhub_standards_subscription` (FSBP, CIS, NIST 800-53)
    calls BatchEnableStandards, GetEnabledStandards and BatchDisableStandards. moto routes
    none of the standards paths and implements none of the four actions. Subscriptions are
    READY at once (AWS takes minutes); the subscription ARN is AWS's: the standard's path
    under `subscription/` in the account and region.
    """
    from moto.securityhub import urls  # noqa: PLC0415
    from moto.securityhub.models import SecurityHubBackend  # noqa: PLC0415
    from moto.securityhub.responses import SecurityHubResponse  # noqa: PLC0415

    for path in ("{0}/standards/register$", "{0}/standards/deregister$", "{0}/standards/get$"):
        urls.url_paths[path] = SecurityHubResponse.dispatch

    def subscriptions(backend: SecurityHubBackend) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = backend.__dict__.setdefault("standards", {})
        return found

    def request(response: SecurityHubResponse) -> dict[str, Any]:
        return dict(json.loads(response.body)) if response.body else {}

    def update_security_hub_configuration(self: SecurityHubResponse) -> str:
        backend = self.securityhub_backend
        backend.describe_hub()  # refuses an account that has not enabled the hub
        backend.__dict__.setdefault("configuration", {}).update(request(self))
        return "{}"

    describe_hub = SecurityHubBackend.describe_hub

    def describe_configured_hub(self: SecurityHubBackend, hub_arn: str | None = None) -> Any:
        return {**describe_hub(self, hub_arn), **self.__dict__.get("configuration", {})}

    def batch_enable_standards(self: SecurityHubResponse) -> str:
        backend = self.securityhub_backend
        backend.describe_hub()
        enabled = []
        for wanted in request(self).get("StandardsSubscriptionRequests", []):
            standard = wanted["StandardsArn"]
            path = standard.split(":", 5)[5].split("/", 1)[1]
            account = f"{backend.region_name}:{backend.account_id}"
            arn = f"arn:aws:securityhub:{account}:subscription/{path}"
            subscription = {
                "StandardsSubscriptionArn": arn,
                "StandardsArn": standard,
                "StandardsInput": wanted.get("StandardsInput", {}),
                "StandardsStatus": "READY",
            }
            subscriptions(backend)[arn] = subscription
            enabled.append(subscription)
        return json.dumps({"StandardsSubscriptions": enabled})

    def get_enabled_standards(self: SecurityHubResponse) -> str:
        wanted = request(self).get("StandardsSubscriptionArns")
        found = [
            subscription
            for arn, subscription in subscriptions(self.securityhub_backend).items()
            if not wanted or arn in wanted
        ]
        return json.dumps({"StandardsSubscriptions": found})

    def batch_disable_standards(self: SecurityHubResponse) -> str:
        known = subscriptions(self.securityhub_backend)
        removed = [
            {**known.pop(arn), "StandardsStatus": "DELETING"}
            for arn in request(self).get("StandardsSubscriptionArns", [])
            if arn in known
        ]
        return json.dumps({"StandardsSubscriptions": removed})

    SecurityHubResponse.update_security_hub_configuration = update_security_hub_configuration  # type: ignore[attr-defined]
    SecurityHubResponse.batch_enable_standards = batch_enable_standards  # type: ignore[attr-defined]
    SecurityHubResponse.get_enabled_standards = get_enabled_standards  # type: ignore[attr-defined]
    SecurityHubResponse.batch_disable_standards = batch_disable_standards  # type: ignore[attr-defined]
    SecurityHubBackend.describe_hub = describe_configured_hub  # type: ignore[method-assign]


def _refuse_unimplemented_actions_at_once() -> None:
    """Answer an action moto does not implement with a 400 error instead of HTTP 500.

    moto raises NotImplementedError, which becomes a 500 that the AWS provider retries 25
    times with backoff: a quarter of an hour before terraform reports anything. A 400 names
    the missing action in terraform's error at once.
    """
    from moto.core.exceptions import ServiceException  # noqa: PLC0415
    from moto.core.responses import ActionResult, BaseResponse  # noqa: PLC0415

    class NotEmulated(ServiceException):
        code = "NotImplemented"

    call_action = BaseResponse.call_action

    def call_action_or_refuse(self: BaseResponse) -> Any:
        try:
            return call_action(self)
        except NotImplementedError as missing:
            return self.serialized(ActionResult(NotEmulated(f"{missing} in the moto emulator")))

    BaseResponse.call_action = call_action_or_refuse  # type: ignore[method-assign]


def serve() -> None:
    """Run the server until stdin closes (the parent's request to stop, or its death)."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415  (callers never load moto)

    _tolerate_wildcard_principals_in_log_target_policy()
    _apply_conditional_denies_only_when_provable()
    _emulate_vgw_route_propagation()
    _tag_feature_groups()
    _list_and_delete_feature_groups()
    _keep_feature_group_store_configuration()
    _keep_lambda_dead_letter_queues()
    _keep_key_rotation_periods()
    _keep_model_network_isolation()
    _emulate_update_endpoint()
    _emulate_test_event_pattern()
    _merge_customer_metadata_on_update()
    _know_current_organization_service_principals()
    _list_and_disable_security_hub_organization_admins()
    _delete_trails_by_arn()
    _disable_guardduty_organization_admins()
    _load_aws_managed_policies()
    _validate_endpoint_instance_types_as_aws_does()
    _emulate_model_package_group_policies()
    _emulate_monitoring_schedules()
    emulate_feature_store_runtime()
    _merge_guardduty_features()
    _deliver_flow_logs_to_log_groups_named_by_arn()
    _emulate_security_hub_configuration_and_standards()
    _refuse_unimplemented_actions_at_once()
    # One line per request would bury the tracebacks that explain a failed terraform call.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    if host != LOOPBACK:
        raise SystemExit(f"refusing to serve on {host}: the emulator is loopback only")
    print(port, flush=True)
    try:
        sys.stdin.buffer.read()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    serve()
