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

import json
import logging
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

LOOPBACK = "127.0.0.1"
# Resource types moto cannot create, with the reason. A stack that has to be applied (another
# stack reads its outputs) is applied without them, and the run says so; planning is unaffected.
NOT_EMULATED_RESOURCE_TYPES = {
    "aws_dx_gateway": "moto 5.2.5 has no Direct Connect gateways",
    "aws_dx_gateway_association": "moto 5.2.5 has no Direct Connect gateways",
    "aws_controltower_landing_zone": "moto 5.2.5 has no Control Tower",
    "aws_controltower_control": "moto 5.2.5 has no Control Tower",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 60.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class EmulatorError(RuntimeError):
    """The emulator did not start."""


@dataclass(frozen=True)
class Emulator:
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


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
