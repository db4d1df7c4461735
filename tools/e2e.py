"""End to end on the local emulator: deploy an environment, check it at runtime, tear it down.

    python -m tools.e2e [--out cdktf.out.local] [--results reports/e2e] [--jobs N] [--keep] [ENV]

ENV (default dev) is a workload environment (dev, staging, prod, eu-research) or `org` (the
state bucket, governance and audit stacks). The local-target synthesis in --out is used as it
is; when it holds no stack of ENV, ENV is synthesized there first (PHI_TARGET=local main.py).

The run starts a moto server on a free loopback port and, in a temporary copy of the output:
applies `bootstrap` (the state bucket every S3 backend uses, with native S3 locking; as on AWS,
its first apply has local state, then pushed into the bucket: tools.terraform.deploy_bootstrap);
runs
terraform init, plan and apply for each stack of ENV in dependency order, several at once when
independent (resources the emulator cannot create are planned, left out of the apply and named),
then plans it again: what that plan would still change is listed as "not converged" (a moto
read-back gap or a configuration that never converges; reported, not failed); runs the runtime
evidence checks (policies.runtime) against what was deployed; writes RESULTS/findings.json and
RESULTS/e2e.json; destroys the stacks in reverse order, emptying their buckets first (no bucket
has force_destroy, and access logs keep arriving), and sweeps the emulator's accounts for
anything left behind; stops the server. `bootstrap` is never destroyed (it holds every stack's
state), nor is a resource with `prevent_destroy` (production data stores) or what it uses:
those are reported as kept, by design.

--keep stops after the checks and keeps the server running with everything deployed (the
endpoint and credentials are printed) until Ctrl-C; nothing is destroyed.

Exit status: 0 when every stack applied, every runtime check passed, the destroy succeeded and
the sweep found nothing left (and could look everywhere); 1 otherwise; 2 for a usage error;
130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from environments.loader import (
    EnvironmentFileError,
    load_environment,
)
from environments.schema import WorkloadEnvironment
from policies.findings import Finding, Findings, Source, Status, write_findings
from policies.runtime import RuntimeChecksError, run_runtime_checks
from tools.cli import UsageError, add_jobs_option, run_command
from tools.emulator import Emulator
from tools.feature_flow import E2E_POPULATION, environment_path, flow_features, summary_lines
from tools.terraform import (
    BOOTSTRAP_STACK,
    EMULATOR_CREDENTIAL,
    EMULATOR_REGION,
    REPO_ROOT,
    Outcome,
    Progress,
    Stack,
    StackResult,
    Terraform,
    deploy_bootstrap,
    emulated_targets,
    emulator_dependencies,
    emulator_workspace,
    failed_step,
    load_stacks,
    not_emulated_reasons,
    plan_stack,
    print_table,
    require_local_target,
    run_in_dependency_order,
    with_dependencies,
)

DEFAULT_ENVIRONMENT = "dev"
DEFAULT_OUTDIR = Path("cdktf.out.local")
DEFAULT_RESULTS = Path("reports/e2e")
FINDINGS_FILE = "findings.json"
SUMMARY_FILE = "e2e.json"
FEATURES_FOLDER = "features"
EMULATOR_LOG_FILE = "emulator.log"
RUNTIME_CHECKS_ID = "E2E_RUNTIME_CHECKS"
SWEEP_SESSION_NAME = "phi-ml-e2e-sweep"
NO_STATE = "No state file was found!"
AGAIN_PLAN_FILE = "again.tfplan"


# --- which stacks ----------------------------------------------------------------------------


def stack_environment(stack: Stack) -> str:
    """The environment a stack belongs to: its provider's `environment` default tag."""
    providers = stack.configuration().get("provider", {}).get("aws", [])
    for provider in providers:
        for default_tags in provider.get("default_tags", []):
            name = default_tags.get("tags", {}).get("environment")
            if name:
                return str(name)
    raise UsageError(f"{stack.directory / 'cdk.tf.json'}: no provider tags the environment")


def environment_stacks(stacks: Mapping[str, Stack], environment: str) -> list[Stack]:
    """The stacks of `environment`, every stack they read state from, and bootstrap, in the
    synthesized (alphabetical) order; dependency order is the scheduler's business."""
    own = [stack for stack in stacks.values() if stack_environment(stack) == environment]
    if not own:
        known = sorted({stack_environment(stack) for stack in stacks.values()})
        raise UsageError(
            f"no stack of environment {environment!r} is synthesized (found: {', '.join(known)})"
        )
    return with_dependencies(stacks, own)


def has_environment(outdir: Path, environment: str) -> bool:
    try:
        stacks = load_stacks(outdir)
    except UsageError:
        return False
    return any(stack_environment(stack) == environment for stack in stacks.values())


def synthesize_local(outdir: Path, environment: str) -> None:
    """Synthesize `environment` for the local target into `outdir` (main.py, a child process:
    jsii and the provider bindings stay out of this one)."""
    print(f"synthesizing {environment} for the local target into {outdir}", file=sys.stderr)
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), "--out", str(outdir), environment],
        env={**os.environ, "PHI_TARGET": "local"},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise UsageError(
            f"synthesis of {environment} failed: "
            + (completed.stderr.strip() or completed.stdout.strip())
        )


# --- the identities the stacks deploy as ------------------------------------------------------


@dataclass(frozen=True, order=True)
class Identity:
    """A deployment role and region a stack's provider uses: where its resources land."""

    role_arn: str
    region: str

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]


def provider_identities(stacks: Iterable[Stack]) -> list[Identity]:
    identities = {
        Identity(str(role["role_arn"]), str(provider["region"]))
        for stack in stacks
        for provider in stack.configuration().get("provider", {}).get("aws", [])
        for role in provider.get("assume_role", [])[:1]
    }
    return sorted(identities)


def emulator_session(endpoint_url: str, identity: Identity, session_name: str) -> boto3.Session:
    """A boto3 session on the emulator as `identity` (STS AssumeRole, as the provider does)."""
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint_url,
        region_name=identity.region,
        aws_access_key_id=EMULATOR_CREDENTIAL,
        aws_secret_access_key=EMULATOR_CREDENTIAL,
    )
    credentials = sts.assume_role(RoleArn=identity.role_arn, RoleSessionName=session_name)[
        "Credentials"
    ]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=identity.region,
    )


def emulator_client(session: boto3.Session, service: str, endpoint_url: str) -> Any:
    return session.client(
        service,
        endpoint_url=endpoint_url,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


# --- deploy and destroy one stack -----------------------------------------------------------


class TerraformStepError(Exception):
    """A terraform command failed; `completed` holds its output."""

    def __init__(self, step: str, completed: subprocess.CompletedProcess[str]) -> None:
        super().__init__(step)
        self.step = step
        self.completed = completed


def state_addresses(terraform: Terraform, stack: Stack) -> list[str]:
    """The managed resources in the stack's state (data sources left out)."""
    listed = terraform.run(stack.directory, "state list")
    if listed.returncode != 0 and NO_STATE in listed.stderr:
        return []  # nothing was ever applied (everything of the stack is not emulated)
    if listed.returncode != 0:
        raise TerraformStepError("state list", listed)
    return [line for line in listed.stdout.split() if not line.startswith("data.")]


def deploy_stack(
    terraform: Terraform, stack: Stack, progress: Progress, pending: dict[str, list[str]]
) -> StackResult:
    """init, plan and apply (without what the emulator lacks); count what landed in state;
    plan again and record in `pending` what that plan would still change."""
    applied = plan_stack(terraform, stack, apply=True, progress=progress)
    if applied.outcome is not Outcome.APPLIED:
        return applied
    try:
        in_state = state_addresses(terraform, stack)
        progress.started(stack, "plan again (expect no changes)")
        pending[stack.name] = pending_changes(terraform, stack)
    except TerraformStepError as failed:
        return failed_step(stack, failed.step, failed.completed)
    return StackResult(
        stack.name,
        Outcome.APPLIED,
        resources=len(in_state),
        changes=applied.changes,
        note=applied.note,
    )


def pending_changes(terraform: Terraform, stack: Stack) -> list[str]:
    """What a plan of the emulated resources would still change ("action address"): nothing,
    when the apply converged and the emulator reads back what it was given."""
    targets = emulated_targets(stack)
    if not targets and not_emulated_reasons(stack):
        return []  # nothing of the stack was applied
    planned = terraform.run(
        stack.directory, "plan", "-detailed-exitcode", f"-out={AGAIN_PLAN_FILE}", *targets
    )
    if planned.returncode == 0:
        return []
    if planned.returncode != 2:
        raise TerraformStepError("plan again", planned)
    shown = terraform.run(stack.directory, "show", "-json", AGAIN_PLAN_FILE)
    if shown.returncode != 0:
        raise TerraformStepError("show", shown)
    return [
        f"{'/'.join(change['change']['actions'])} {change['address']}{_changed_attributes(change)}"
        for change in json.loads(shown.stdout).get("resource_changes", [])
        if change["change"]["actions"] not in (["no-op"], ["read"])
    ]


def _changed_attributes(change: Mapping[str, Any]) -> str:
    """The attributes that differ; for a replacement, those that force it."""
    forcing = change["change"].get("replace_paths")
    if forcing:
        return f" (replaced for {', '.join('.'.join(map(str, path)) for path in forcing)})"
    before = change["change"].get("before") or {}
    after = change["change"].get("after") or {}
    if not before or not after:
        return ""
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    unknown = [k for k, v in (change["change"].get("after_unknown") or {}).items() if v is True]
    return f" ({', '.join(sorted({*changed, *unknown}))})"


def protected_addresses(stack: Stack) -> set[str]:
    """Resources `terraform destroy` must leave: those with lifecycle.prevent_destroy, and every
    resource they refer to (destroying a key would destroy the protected bucket using it)."""
    resources = stack.resources()
    protected = {
        address
        for address, body in resources.items()
        if json.loads(body).get("lifecycle", {}).get("prevent_destroy") is True
    }
    pending = list(protected)
    while pending:
        body = resources[pending.pop()]
        for address in resources.keys() - protected:
            if f"{address}." in body or f'"{address}"' in body:
                protected.add(address)
                pending.append(address)
    return protected


def destroy_stack(
    terraform: Terraform, stack: Stack, progress: Progress, *, endpoint_url: str
) -> StackResult:
    """Destroy everything in the stack's state except what prevent_destroy protects; verify
    the state holds nothing else afterwards."""
    try:
        return _destroy_unprotected(terraform, stack, progress, endpoint_url)
    except TerraformStepError as failed:
        return failed_step(stack, failed.step, failed.completed)


def _destroy_unprotected(
    terraform: Terraform, stack: Stack, progress: Progress, endpoint_url: str
) -> StackResult:
    protected = protected_addresses(stack)
    before = set(state_addresses(terraform, stack))
    doomed = sorted(before - protected)
    emptied = ""
    if doomed:
        buckets = [
            str(resource["values"]["bucket"])
            for resource in state_resources(terraform, stack)
            if resource.get("type") == "aws_s3_bucket" and resource.get("address") in doomed
        ]
        if buckets:
            progress.started(stack, f"emptying {len(buckets)} buckets")
            removed = empty_buckets(endpoint_url, provider_identities([stack])[0], buckets)
            emptied = f"emptied before destroy: {removed} object versions from {', '.join(buckets)}"
        progress.started(stack, f"destroy (-{len(doomed)})")
        # Targeting is only needed, and only used, to step around protected resources.
        targets = [f"-target={address}" for address in doomed] if before & protected else []
        destroyed = terraform.run(stack.directory, "destroy", "-auto-approve", *targets)
        if destroyed.returncode != 0:
            raise TerraformStepError("destroy", destroyed)
    after = set(state_addresses(terraform, stack))
    if after - protected:
        return StackResult(
            stack.name,
            Outcome.FAILED,
            resources=len(after),
            problem=f"still in state after destroy: {', '.join(sorted(after - protected))}",
            failed_step="destroy",
        )
    if after:
        kept = f"kept by prevent_destroy (and what it uses): {', '.join(sorted(after))}"
        note = "; ".join(filter(None, (kept, emptied)))
        return StackResult(stack.name, Outcome.KEPT, resources=len(after), note=note)
    return StackResult(stack.name, Outcome.DESTROYED, resources=0, note=emptied)


# DeleteObjects takes at most 1,000 keys a call.
DELETE_BATCH = 1000
EMPTYING_ROUNDS = 5


def empty_buckets(endpoint_url: str, identity: Identity, buckets: Iterable[str]) -> int:
    """Delete every object version and delete marker in `buckets`; return how many.

    The platform's buckets have no force_destroy (emptying a data bucket is a decision, not a
    side effect of destroy), and the emulator, like S3, delivers server access logs into the
    access-log bucket, so `terraform destroy` would stop at BucketNotEmpty. Access logging is
    switched off first: emptying a logged bucket would log the deletions into the next one.
    """
    s3 = emulator_client(
        emulator_session(endpoint_url, identity, "phi-ml-e2e-empty"), "s3", endpoint_url
    )
    buckets = list(buckets)
    for bucket in buckets:
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
    removed = 0
    # Listed whole before deleting (deleting while paging moves the markers and skips
    # versions), in rounds until a listing is empty: the feature flow leaves thousands of
    # offline-store objects, and an access-log delivery can land after its bucket's round.
    for _ in range(EMPTYING_ROUNDS):
        left = 0
        for bucket in buckets:
            versions = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
                for item in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
            ]
            for start in range(0, len(versions), DELETE_BATCH):
                batch = versions[start : start + DELETE_BATCH]
                s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            removed += len(versions)
            left += len(versions)
        if not left:
            break
    return removed


def reverse_dependencies(stacks: Sequence[Stack]) -> dict[str, set[str]]:
    """For destroying: each stack waits for every stack that reads it to be gone."""
    names = {stack.name for stack in stacks}
    return {
        stack.name: {other.name for other in stacks if stack.name in other.dependencies} & names
        for stack in stacks
    }


def state_resources(terraform: Terraform, stack: Stack) -> list[dict[str, Any]]:
    """The resources of the stack's state with their attribute values (`terraform show`)."""
    shown = terraform.run(stack.directory, "show", "-json")
    if shown.returncode != 0:
        raise TerraformStepError("show", shown)
    values = json.loads(shown.stdout).get("values") or {}
    return list(values.get("root_module", {}).get("resources", []))


def state_identifiers(terraform: Terraform, stacks: Iterable[Stack]) -> set[str]:
    """Every string attribute of every resource still in these stacks' state: what the sweep
    expects to find (ids, ARNs, names)."""
    identifiers: set[str] = set()
    for stack in stacks:
        try:
            resources = state_resources(terraform, stack)
        except TerraformStepError:
            continue  # the sweep then reports the stack's resources as left behind
        for resource in resources:
            values = resource.get("values", {}).values()
            identifiers |= {value for value in values if isinstance(value, str)}
    return identifiers


# --- what the emulator still holds after destroy -----------------------------------------------


Lister = Callable[[Callable[[str], Any]], Iterator[tuple[str, tuple[str, ...]]]]


def _pages(client: Any, operation: str, key: str, **arguments: Any) -> Iterator[Any]:
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**arguments):
            yield from page.get(key, [])
    else:
        yield from getattr(client, operation)(**arguments).get(key, [])


def _buckets(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    for bucket in client("s3").list_buckets().get("Buckets", []):
        yield "s3 bucket", (bucket["Name"], f"arn:aws:s3:::{bucket['Name']}")


def _keys(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    kms = client("kms")
    for key in _pages(kms, "list_keys", "Keys"):
        metadata = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        # A destroyed key is scheduled for deletion (the 30-day window): that is AWS's "gone".
        if metadata.get("KeyManager") == "CUSTOMER" and metadata["KeyState"] != "PendingDeletion":
            yield "kms key", (metadata["KeyId"], metadata["Arn"])


GONE = frozenset({"deleted", "deleting", "terminated", "shutting-down"})
# (operation, result key, kind, identifier fields, field whose value GONE means deleted);
# default VPCs and security groups are the account's own, not the stacks'.
EC2_LISTINGS = (
    ("describe_vpcs", "Vpcs", "vpc", ("VpcId",), ""),
    ("describe_security_groups", "SecurityGroups", "security group", ("GroupId",), ""),
    ("describe_vpn_gateways", "VpnGateways", "vpn gateway", ("VpnGatewayId",), "State"),
    (
        "describe_customer_gateways",
        "CustomerGateways",
        "customer gateway",
        ("CustomerGatewayId",),
        "State",
    ),
    ("describe_vpn_connections", "VpnConnections", "vpn connection", ("VpnConnectionId",), "State"),
    ("describe_vpc_endpoints", "VpcEndpoints", "vpc endpoint", ("VpcEndpointId",), "State"),
    (
        "describe_launch_templates",
        "LaunchTemplates",
        "launch template",
        ("LaunchTemplateId", "LaunchTemplateName"),
        "",
    ),
    ("describe_flow_logs", "FlowLogs", "flow log", ("FlowLogId",), ""),
)


def _ec2(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    ec2 = client("ec2")
    for operation, key, kind, identifiers, state in EC2_LISTINGS:
        for item in _pages(ec2, operation, key):
            if item.get("IsDefault") or item.get("GroupName") == "default":
                continue
            if state and str(item.get(state, "")).lower() in GONE:
                continue
            yield f"ec2 {kind}", tuple(str(item[name]) for name in identifiers)
    for reservation in _pages(ec2, "describe_instances", "Reservations"):
        for instance in reservation["Instances"]:
            if instance["State"]["Name"] not in GONE:
                yield "ec2 instance", (instance["InstanceId"],)


def _iam(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    iam = client("iam")
    for role in _pages(iam, "list_roles", "Roles"):
        yield "iam role", (role["RoleName"], role["Arn"])
    for policy in _pages(iam, "list_policies", "Policies", Scope="Local"):
        yield "iam policy", (policy["PolicyName"], policy["Arn"])
    for profile in _pages(iam, "list_instance_profiles", "InstanceProfiles"):
        yield "iam instance profile", (profile["InstanceProfileName"], profile["Arn"])


def _functions_and_messaging(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    for function in _pages(client("lambda"), "list_functions", "Functions"):
        yield "lambda function", (function["FunctionName"], function["FunctionArn"])
    for topic in _pages(client("sns"), "list_topics", "Topics"):
        yield "sns topic", (topic["TopicArn"],)
    for queue in client("sqs").list_queues().get("QueueUrls", []):
        yield "sqs queue", (queue, queue.rsplit("/", 1)[-1])
    events = client("events")
    for bus in events.list_event_buses().get("EventBuses", []):
        if bus["Name"] != "default":
            yield "events bus", (bus["Name"], bus["Arn"])
        for rule in events.list_rules(EventBusName=bus["Name"]).get("Rules", []):
            yield "events rule", (rule["Name"], rule["Arn"])
    for group in _pages(client("logs"), "describe_log_groups", "logGroups"):
        yield "logs group", (group["logGroupName"], group["arn"].removesuffix(":*"))
    for alarm in _pages(client("cloudwatch"), "describe_alarms", "MetricAlarms"):
        yield "cloudwatch alarm", (alarm["AlarmName"], alarm["AlarmArn"])
    for group in _pages(client("autoscaling"), "describe_auto_scaling_groups", "AutoScalingGroups"):
        yield "autoscaling group", (group["AutoScalingGroupName"], group["AutoScalingGroupARN"])
    for database in _pages(client("glue"), "get_databases", "DatabaseList"):
        yield "glue database", (database["Name"],)


SAGEMAKER_LISTINGS = (
    ("list_models", "Models", "ModelName", "ModelArn"),
    ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn"),
    ("list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
    ("list_pipelines", "PipelineSummaries", "PipelineName", "PipelineArn"),
    ("list_feature_groups", "FeatureGroupSummaries", "FeatureGroupName", "FeatureGroupArn"),
    (
        "list_model_package_groups",
        "ModelPackageGroupSummaryList",
        "ModelPackageGroupName",
        "ModelPackageGroupArn",
    ),
    (
        "list_monitoring_schedules",
        "MonitoringScheduleSummaries",
        "MonitoringScheduleName",
        "MonitoringScheduleArn",
    ),
    (
        "list_data_quality_job_definitions",
        "JobDefinitionSummaries",
        "MonitoringJobDefinitionName",
        "MonitoringJobDefinitionArn",
    ),
)


def _sagemaker_listing(operation: str, key: str, name: str, arn: str) -> Lister:
    kind = f"sagemaker {operation.removeprefix('list_').replace('_', ' ')}"

    def lister(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
        for item in _pages(client("sagemaker"), operation, key):
            yield kind, (item[name], item[arn])

    lister.__name__ = kind
    return lister


def _trails(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    for trail in client("cloudtrail").describe_trails().get("trailList", []):
        yield "cloudtrail trail", (trail["Name"], trail["TrailARN"])


def _config(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    config = client("config")
    for recorder in config.describe_configuration_recorders().get("ConfigurationRecorders", []):
        yield "config recorder", (recorder["name"],)
    for channel in config.describe_delivery_channels().get("DeliveryChannels", []):
        yield "config delivery channel", (channel["name"],)


def _guardduty(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    for detector in client("guardduty").list_detectors().get("DetectorIds", []):
        yield "guardduty detector", (detector,)


def _cloudformation(client: Callable[[str], Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    for stack in _pages(client("cloudformation"), "list_stacks", "StackSummaries"):
        if stack["StackStatus"] != "DELETE_COMPLETE":
            yield "cloudformation stack", (stack["StackName"], stack["StackId"])


# Each lister on its own: one the emulator refuses is reported and the others still run.
SWEEPS: tuple[Lister, ...] = (
    _buckets,
    _keys,
    _ec2,
    _iam,
    _functions_and_messaging,
    *(_sagemaker_listing(*listing) for listing in SAGEMAKER_LISTINGS),
    _trails,
    _config,
    _guardduty,
    _cloudformation,
)


@dataclass(frozen=True)
class Sweep:
    leftovers: tuple[str, ...]  # "account/region kind: identifier"
    errors: tuple[str, ...]  # a listing the emulator refused: the sweep could not look there


def sweep(endpoint_url: str, identities: Iterable[Identity], expected: set[str]) -> Sweep:
    """What the emulator holds in the stacks' accounts and regions that is not in `expected`
    (identifiers of resources deliberately kept)."""
    leftovers: list[str] = []
    errors: list[str] = []
    for identity in identities:
        session = emulator_session(endpoint_url, identity, SWEEP_SESSION_NAME)

        def client(service: str, session: boto3.Session = session) -> Any:
            return emulator_client(session, service, endpoint_url)

        where = f"{identity.account}/{identity.region}"
        for lister in SWEEPS:
            try:
                for kind, names in lister(client):
                    if not expected.intersection(names):
                        leftovers.append(f"{where} {kind}: {names[0]}")
            except (ClientError, BotoCoreError) as refused:
                errors.append(f"{where} {lister.__name__.strip('_')}: {refused}")
    return Sweep(tuple(sorted(set(leftovers))), tuple(errors))


# --- runtime checks ------------------------------------------------------------------------


# The environment's name and the emulator's endpoint in; findings out.
RuntimeChecks = Callable[[str, str], Findings]


def policies_runtime_checks(environment: str, endpoint_url: str) -> Findings:
    """policies.runtime's read-only evidence checks, on the emulator (they assume the
    environment's deployment role there themselves, as terraform did)."""
    session = boto3.Session(
        aws_access_key_id=EMULATOR_CREDENTIAL,
        aws_secret_access_key=EMULATOR_CREDENTIAL,
        region_name=EMULATOR_REGION,
    )
    return run_runtime_checks(environment, session, endpoint_url=endpoint_url)


def runtime_findings(checks: RuntimeChecks, environment: str, endpoint_url: str) -> Findings:
    """The checks' findings, or one error finding saying why they could not run."""
    target = f"{environment} (emulator {endpoint_url})"
    try:
        return checks(environment, endpoint_url)
    except (RuntimeChecksError, EnvironmentFileError, ClientError, BotoCoreError) as problem:
        detail = f"the runtime checks could not run: {problem}"
    error = Finding(
        check_id=RUNTIME_CHECKS_ID,
        check_name="runtime evidence checks ran",
        status=Status.ERROR,
        source=Source.RUNTIME,
        stack=target,
        resource=environment,
        detail=detail,
    )
    return Findings(Source.RUNTIME, target, (error,))


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackRow:
    stack: str
    deploy: StackResult
    destroy: StackResult | None
    not_emulated: dict[str, str]
    # What a plan right after the apply would still change: the emulator reading back
    # something else than it was given (a moto gap), or a configuration that never converges.
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class E2EResult:
    environment: str
    endpoint_url: str
    rows: tuple[StackRow, ...]
    findings: Findings
    sweep: Sweep | None  # None with --keep: nothing was destroyed
    seconds: float
    findings_path: Path
    emulator_log: Path
    # --keep: everything stays deployed until Ctrl-C, as asked; not destroying is no failure.
    kept: bool = False

    @property
    def deployed(self) -> bool:
        return all(row.deploy.outcome is Outcome.APPLIED for row in self.rows)

    @property
    def checks_passed(self) -> bool:
        return bool(self.findings.findings) and not self.findings.failed()

    @property
    def torn_down(self) -> bool:
        return (
            self.sweep is not None
            and not self.sweep.leftovers
            and not self.sweep.errors  # a place the sweep could not look is not known empty
            and all(row.destroy is not None and row.destroy.outcome.succeeded for row in self.rows)
        )

    @property
    def succeeded(self) -> bool:
        return self.deployed and self.checks_passed and (self.kept or self.torn_down)


def not_emulated_lines(rows: Iterable[StackRow]) -> tuple[str, ...]:
    return tuple(
        f"{row.stack}: {address} ({reason})"
        for row in rows
        for address, reason in row.not_emulated.items()
    )


def wait_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM (which main turns into KeyboardInterrupt)."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        return


def run_e2e(
    outdir: Path,
    environment: str,
    *,
    results: Path,
    jobs: int,
    keep: bool,
    base_environment: Mapping[str, str],
    checks: RuntimeChecks = policies_runtime_checks,
) -> E2EResult:
    started = time.monotonic()
    if not has_environment(outdir, environment):
        synthesize_local(outdir, environment)
    stacks = environment_stacks(load_stacks(outdir), environment)
    require_local_target(outdir, stacks)
    terraform = Terraform.from_environment(base_environment)
    results.mkdir(parents=True, exist_ok=True)
    emulator_log = results / EMULATOR_LOG_FILE
    progress = Progress(stacks)
    with emulator_workspace(
        outdir, stacks, terraform, log=emulator_log, progress=progress, prefix="phi-ml-e2e-"
    ) as workspace:
        emulator, on_emulator, working = workspace.emulator, workspace.terraform, workspace.stacks
        pending: dict[str, list[str]] = {}
        deployed = deploy_stacks(
            on_emulator, working, emulator, jobs=jobs, progress=progress, pending=pending
        )
        _flow_features(
            environment,
            stacks=working,
            deployed=deployed,
            emulator=emulator,
            results=results,
            progress=progress,
        )
        findings = _check(
            checks,
            environment=environment,
            deployed=deployed,
            emulator=emulator,
            progress=progress,
        )
        not_emulated = {stack.name: not_emulated_reasons(stack) for stack in working}
        rows_without_destroy = [
            StackRow(s.name, deployed[s.name], None, not_emulated[s.name]) for s in working
        ]
        findings_path = results / FINDINGS_FILE
        write_findings(
            findings_path,
            Findings(
                findings.source,
                findings.target,
                findings.findings,
                tuple(sorted({*findings.not_emulated, *not_emulated_lines(rows_without_destroy)})),
            ),
        )
        if keep:
            _announce_kept(emulator, workspace.workdir, progress)
            wait_until_interrupted()
            destroyed: dict[str, StackResult] = {}
            swept = None
        else:
            destroyed = _destroy(on_emulator, working, deployed, emulator, jobs=jobs)
            kept_stacks = [s for s in working if destroyed[s.name].outcome is Outcome.KEPT]
            progress.note("sweep: listing what the emulator still holds")
            swept = sweep(
                emulator.endpoint_url,
                provider_identities(working),
                state_identifiers(on_emulator, kept_stacks),
            )
    rows = tuple(
        StackRow(
            s.name,
            deployed[s.name],
            destroyed.get(s.name),
            not_emulated[s.name],
            tuple(pending.get(s.name, ())),
        )
        for s in working
    )
    result = E2EResult(
        environment=environment,
        endpoint_url=emulator.endpoint_url,
        rows=rows,
        findings=findings,
        sweep=swept,
        seconds=time.monotonic() - started,
        findings_path=findings_path,
        emulator_log=emulator_log,
        kept=keep,
    )
    write_summary(results / SUMMARY_FILE, result)
    return result


def deploy_stacks(
    terraform: Terraform,
    stacks: Sequence[Stack],
    emulator: Emulator,
    *,
    jobs: int,
    progress: Progress,
    pending: dict[str, list[str]],
) -> dict[str, StackResult]:
    def deploy_one(stack: Stack) -> StackResult:
        return deploy_stack(terraform, stack, progress, pending)

    def deploy(stack: Stack) -> StackResult:
        if stack.name == BOOTSTRAP_STACK:
            deployed = deploy_bootstrap(terraform, stack, deploy_one, progress=progress)
        else:
            deployed = deploy_one(stack)
        return explain_emulator_loss(deployed, emulator)

    results = run_in_dependency_order(
        stacks, emulator_dependencies(stacks), deploy, jobs=jobs, progress=progress
    )
    return {result.stack: result for result in results}


def _flow_features(
    environment_name: str,
    *,
    stacks: Sequence[Stack],
    deployed: Mapping[str, StackResult],
    emulator: Emulator,
    results: Path,
    progress: Progress,
) -> None:
    """Data through the applied data layers before the runtime checks, so the checks of
    consent and processing basis judge records that were really written (see
    tools.feature_flow); an environment without a data stack (org) has none."""
    data = next((s for s in stacks if s.name == f"{environment_name}-data"), None)
    path = environment_path(environment_name)
    if data is None or deployed[data.name].outcome is not Outcome.APPLIED or not path.is_file():
        return
    environment = load_environment(path)
    if not isinstance(environment, WorkloadEnvironment):
        return
    identity = next(i for i in provider_identities([data]) if i.account == environment.account_id)
    progress.note("features: synthetic FHIR export -> feature builder -> feature groups")
    summary = flow_features(
        environment,
        emulator_session(emulator.endpoint_url, identity, "phi-ml-e2e-features"),
        endpoint_url=emulator.endpoint_url,
        folder=results / FEATURES_FOLDER,
        population=E2E_POPULATION,
    )
    for line in summary_lines(summary):
        progress.note(line.strip())


def _check(
    checks: RuntimeChecks,
    *,
    environment: str,
    deployed: Mapping[str, StackResult],
    emulator: Emulator,
    progress: Progress,
) -> Findings:
    if not all(result.outcome is Outcome.APPLIED for result in deployed.values()):
        progress.note("runtime checks: not run (a stack did not apply)")
        return Findings(Source.RUNTIME, f"{environment} (emulator {emulator.endpoint_url})", ())
    progress.note(f"runtime checks: {environment}")
    return runtime_findings(checks, environment, emulator.endpoint_url)


def _destroy(
    terraform: Terraform,
    stacks: Sequence[Stack],
    deployed: Mapping[str, StackResult],
    emulator: Emulator,
    *,
    jobs: int,
) -> dict[str, StackResult]:
    # bootstrap holds every stack's state: destroying it would orphan them all. A stack that
    # never started has nothing to destroy (one that failed midway may, and is destroyed).
    doomed = [
        stack
        for stack in stacks
        if stack.name != BOOTSTRAP_STACK and deployed[stack.name].outcome is not Outcome.SKIPPED
    ]
    by_stack = {
        stack.name: StackResult(stack.name, Outcome.SKIPPED, problem="never applied")
        for stack in stacks
        if stack.name != BOOTSTRAP_STACK and stack not in doomed
    }
    if doomed:
        progress = Progress(doomed)
        progress.note("destroy: in reverse dependency order")

        def destroy(stack: Stack) -> StackResult:
            destroyed = destroy_stack(
                terraform, stack, progress, endpoint_url=emulator.endpoint_url
            )
            return explain_emulator_loss(destroyed, emulator)

        results = run_in_dependency_order(
            doomed, reverse_dependencies(doomed), destroy, jobs=jobs, progress=progress
        )
        by_stack |= {result.stack: result for result in results}
    if any(stack.name == BOOTSTRAP_STACK for stack in stacks):
        by_stack[BOOTSTRAP_STACK] = StackResult(
            BOOTSTRAP_STACK, Outcome.KEPT, note="holds the state of every stack (prevent_destroy)"
        )
    return by_stack


def explain_emulator_loss(result: StackResult, emulator: Emulator) -> StackResult:
    """A failure while the emulator no longer answers says so first: terraform only reports
    refused connections."""
    if result.outcome.succeeded or emulator.is_serving():
        return result
    return StackResult(
        result.stack,
        result.outcome,
        result.seconds,
        result.resources,
        result.changes,
        f"the emulator at {emulator.endpoint_url} stopped answering\n{result.problem}",
        result.note,
        result.failed_step,
    )


def _announce_kept(emulator: Emulator, workdir: Path, progress: Progress) -> None:
    progress.note(
        f"--keep: everything stays deployed on {emulator.endpoint_url} until Ctrl-C; "
        "nothing will be destroyed.\n"
        f"  export AWS_ENDPOINT_URL={emulator.endpoint_url} "
        f"AWS_ACCESS_KEY_ID={EMULATOR_CREDENTIAL} AWS_SECRET_ACCESS_KEY={EMULATOR_CREDENTIAL}\n"
        f"  terraform working copies: {workdir}/out/stacks/<stack>"
    )


# --- reporting -------------------------------------------------------------------------------


def _plan_cell(result: StackResult) -> str:
    if result.failed_step in {"init", "plan", "show"}:
        return f"FAILED ({result.failed_step})"
    if result.changes is None:
        return str(result.outcome)
    return f"+{result.changes.add} ~{result.changes.change} -{result.changes.destroy}"


def _apply_cell(result: StackResult) -> str:
    if result.outcome is Outcome.APPLIED:
        return "applied"
    if result.failed_step in {"init", "plan", "show"} or result.outcome is Outcome.SKIPPED:
        return "-"
    return str(result.outcome)


def _again_cell(row: StackRow) -> str:
    """The plan right after the apply: "no changes" is convergence."""
    if row.deploy.outcome is not Outcome.APPLIED:
        return "-"
    count = len(row.pending)
    return f"{count} change{'' if count == 1 else 's'}" if row.pending else "no changes"


def _destroy_cell(result: StackResult | None) -> str:
    return "-" if result is None else str(result.outcome)


def summary_rows(rows: Iterable[StackRow]) -> list[tuple[object, ...]]:
    table: list[tuple[object, ...]] = []
    for row in rows:
        resources = "" if row.deploy.resources is None else str(row.deploy.resources)
        seconds = row.deploy.seconds + (row.destroy.seconds if row.destroy else 0.0)
        table.append(
            (
                row.stack,
                resources,
                len(row.not_emulated) or "",
                _plan_cell(row.deploy),
                _apply_cell(row.deploy),
                _again_cell(row),
                _destroy_cell(row.destroy),
                f"{seconds:.1f}",
            )
        )
    return table


def print_summary(result: E2EResult) -> None:
    print_table(
        ("stack", "resources", "not emulated", "plan", "apply", "plan again", "destroy", "seconds"),
        summary_rows(result.rows),
    )
    lines = not_emulated_lines(result.rows)
    if lines:
        print("\nnot emulated (planned, not applied; moto cannot create them):")
        print("\n".join(f"  {line}" for line in lines))
    for row in result.rows:
        for phase, outcome in (("apply", row.deploy), ("destroy", row.destroy)):
            if outcome is not None and phase == "destroy" and outcome.note:
                print(f"\n{row.stack}: {outcome.note}")
            if outcome is not None and not outcome.outcome.succeeded:
                print(f"\n{row.stack}: {phase} {outcome.outcome}")
                print("\n".join(f"  {line}" for line in outcome.problem.splitlines()))
    unconverged = [row for row in result.rows if row.pending]
    if unconverged:
        print(
            "\nnot converged on the emulator: a plan right after the apply still changes these"
            "\n(moto reading back other values than it was given, or a configuration that never"
            "\nconverges; reported, not counted as a failure):"
        )
        for row in unconverged:
            print("\n".join(f"  {row.stack}: {change}" for change in row.pending))
    _print_findings(result.findings)
    if result.sweep is not None:
        if result.sweep.leftovers:
            print(f"\nleft behind after destroy ({len(result.sweep.leftovers)}):")
            print("\n".join(f"  {line}" for line in result.sweep.leftovers))
        else:
            print("\nsweep: nothing left behind after destroy")
        for error in result.sweep.errors:
            print(f"  sweep could not list {error}")
    print(f"\nfindings: {result.findings_path}   emulator log: {result.emulator_log}")
    verdict = "passed" if result.succeeded else "FAILED"
    if result.kept:
        verdict += " (kept deployed until Ctrl-C, as --keep asked: nothing was destroyed)"
    print(f"e2e {result.environment}: {verdict} in {result.seconds:.0f}s")


def _print_findings(findings: Findings) -> None:
    if not findings.findings:
        print("\nruntime checks: not run")
        return
    counts: dict[str, int] = {}
    for finding in findings.findings:
        counts[finding.status.value] = counts.get(finding.status.value, 0) + 1
    print("\nruntime checks: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for finding in findings.failed():
        print(f"  {finding.status.value.upper()} {finding.check_id} {finding.resource}")
        if finding.detail:
            print(f"    {finding.detail}")


def write_summary(path: Path, result: E2EResult) -> None:
    """The run as JSON beside findings.json: per stack resources, results and seconds."""

    def phase(outcome: StackResult | None) -> dict[str, Any] | None:
        if outcome is None:
            return None
        return {
            "outcome": outcome.outcome.value,
            "seconds": round(outcome.seconds, 1),
            "resources": outcome.resources,
            "problem": outcome.problem,
            "note": outcome.note,
        }

    document = {
        "environment": result.environment,
        "succeeded": result.succeeded,
        "seconds": round(result.seconds, 1),
        "stacks": [
            {
                "stack": row.stack,
                "apply": phase(row.deploy),
                "destroy": phase(row.destroy),
                "not_emulated": row.not_emulated,
                "pending_after_apply": list(row.pending),
            }
            for row in result.rows
        ],
        "runtime_checks": {
            "findings": str(result.findings_path),
            "failed": [f.check_id for f in result.findings.failed()],
        },
        "leftovers": list(result.sweep.leftovers) if result.sweep else None,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


# --- command line --------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.e2e", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "environment",
        nargs="?",
        default=DEFAULT_ENVIRONMENT,
        metavar="ENV",
        help=f"environment to deploy (default {DEFAULT_ENVIRONMENT}; `org` for the org stacks)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUTDIR,
        help=f"local-target synthesis (default {DEFAULT_OUTDIR})",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"where findings.json, e2e.json and the emulator log go (default {DEFAULT_RESULTS})",
    )
    add_jobs_option(parser)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep everything deployed and the emulator running until Ctrl-C (no destroy)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)

    def deploy_check_destroy() -> int:
        result = run_e2e(
            arguments.out,
            arguments.environment,
            results=arguments.results,
            jobs=arguments.jobs,
            keep=arguments.keep,
            base_environment=os.environ,
        )
        print()
        print_summary(result)
        return 0 if result.succeeded else 1

    return run_command(deploy_check_destroy)


if __name__ == "__main__":
    sys.exit(main())
