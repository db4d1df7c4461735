"""Run every runtime check against one deployed environment and return policies.findings.

    findings = run_runtime_checks("dev", boto3.Session(), endpoint_url="http://127.0.0.1:PORT")

Against the emulator (`endpoint_url` given), a session whose credentials are not in the
environment's account is switched to it by assuming the environment's deployment role, the way
terraform reached it when it applied the stacks. Against AWS, credentials for any other account
are refused (AccountMismatchError): the checks never reach into an account by themselves.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from environments.loader import ENVIRONMENTS_DIR, load_environments
from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from policies.catalog import Catalog, load_catalog
from policies.findings import Finding, Findings, Source
from policies.runtime import (
    audit,
    compute,
    detection,
    features,
    fhir,
    images,
    keys,
    ml,
    model_loop,
    network,
    storage,
)
from policies.runtime.clients import (
    CONNECTION_ERRORS,
    AccountMismatchError,
    ClientFactory,
    RuntimeChecksError,
    credentials_error,
    is_credentials_problem,
    unreachable_error,
)
from policies.runtime.controls import controls_by_check
from policies.runtime.expected import ExpectedResources, expected_resources
from policies.runtime.model import RUNTIME_CHECK_ID, CheckContext, RuntimeCheck

CHECKS: tuple[RuntimeCheck, ...] = (
    *storage.CHECKS,
    *keys.CHECKS,
    *network.CHECKS,
    *audit.CHECKS,
    *detection.CHECKS,
    *ml.CHECKS,
    *images.CHECKS,
    *fhir.CHECKS,
    *compute.CHECKS,
    *features.CHECKS,
    *model_loop.CHECKS,
)
SESSION_NAME = "phi-ml-runtime-checks"


def _check_ids_are_stable(checks: Iterable[RuntimeCheck]) -> None:
    seen: set[str] = set()
    for check in checks:
        if not re.match(RUNTIME_CHECK_ID, check.id) or check.id in seen:
            raise ValueError(f"runtime check id {check.id!r} is malformed or repeated")
        seen.add(check.id)


_check_ids_are_stable(CHECKS)


def run_runtime_checks(
    environment: str,
    session: boto3.Session,
    *,
    environments_dir: Path = ENVIRONMENTS_DIR,
    endpoint_url: str | None = None,
    region: str | None = None,
    catalog: Catalog | None = None,
) -> Findings:
    """Every runtime check against the deployed `environment`, read-only.

    `endpoint_url` (loopback only) means the local emulator. Raises CredentialsError (no usable
    credentials), AccountMismatchError (credentials of another account, against AWS),
    UnreachableError, RuntimeChecksError or EnvironmentFileError (bad input).
    """
    if endpoint_url is not None:
        _only_loopback(endpoint_url)
    selected, organization = _load(environment, environments_dir)
    where = region or selected.region
    if where not in selected.allowed_regions:
        raise RuntimeChecksError(
            f"region {where} is outside {environment}'s allowed_regions "
            f"({', '.join(selected.allowed_regions)})"
        )
    expected = expected_resources(selected, organization, region=where)
    emulated = endpoint_url is not None
    account_session = _session_in_account(
        ClientFactory(session, where, endpoint_url, emulated=emulated), expected
    )
    clients = ClientFactory(account_session, where, endpoint_url, emulated=emulated)
    return run_checks(expected, clients, catalog=catalog or load_catalog())


def run_checks(
    expected: ExpectedResources,
    clients: ClientFactory,
    *,
    catalog: Catalog,
    only: Collection[str] | None = None,
) -> Findings:
    """The checks (all, or those whose ids are in `only`) with clients already in the right
    account: the part of run_runtime_checks that tests drive directly."""
    context = CheckContext(expected, clients)
    controls = controls_by_check(catalog)
    findings: list[Finding] = []
    for check in CHECKS:
        if (only is not None and check.id not in only) or not check.applies_to(expected):
            continue
        # Only a check that declares content reads gets clients allowed to make them.
        seen_by = replace(context, content_reads=check.content_reads)
        for outcome in check.evaluate(seen_by):
            findings.append(
                Finding(
                    check_id=check.id,
                    check_name=check.name,
                    status=outcome.status,
                    source=Source.RUNTIME,
                    stack=expected.stack,
                    resource=outcome.resource,
                    controls=controls.get(check.id, ()),
                    detail=outcome.detail,
                )
            )
    return Findings(source=Source.RUNTIME, target=expected.stack, findings=tuple(findings))


def _load(
    name: str, environments_dir: Path
) -> tuple[WorkloadEnvironment | OrganizationEnvironment, OrganizationEnvironment]:
    # All environments, as synthesis loads them: the workload checks need the organization's
    # trail, and what was validated for synthesis is what is checked here.
    environments = load_environments(None, environments_dir)
    organization = next(e for e in environments if isinstance(e, OrganizationEnvironment))
    selected = next((e for e in environments if e.name == name), None)
    if selected is None:
        known = ", ".join(sorted(e.name for e in environments))
        raise RuntimeChecksError(f"no environment {name!r} in {environments_dir} (known: {known})")
    return selected, organization


def caller_account(clients: ClientFactory) -> str:
    """The account of the clients' credentials (sts:GetCallerIdentity, which needs no
    permission); CredentialsError or UnreachableError when there is none to be had."""
    try:
        return str(clients.client("sts").get_caller_identity()["Account"])
    except CONNECTION_ERRORS as problem:
        raise unreachable_error(problem, clients.endpoint_url) from problem
    except (BotoCoreError, ClientError) as problem:
        if is_credentials_problem(problem):
            raise credentials_error(problem) from problem
        raise RuntimeChecksError(f"sts:GetCallerIdentity failed: {problem}") from problem


def _session_in_account(clients: ClientFactory, expected: ExpectedResources) -> boto3.Session:
    account = caller_account(clients)
    if account == expected.account_id:
        return clients.session
    if clients.endpoint_url is None:
        raise AccountMismatchError(
            f"the credentials are for account {account}, but environment {expected.environment} "
            f"is account {expected.account_id}: refusing to check another account (choose its "
            "profile with --profile or AWS_PROFILE)"
        )
    return _emulator_session_in(clients.session, expected, clients.endpoint_url)


def _only_loopback(endpoint_url: str) -> None:
    """An endpoint URL means the local emulator, whose findings read "not emulated" where it
    falls short and whose account is reached by assuming a role: never a remote host."""
    host = urlsplit(endpoint_url).hostname or ""
    if host != "localhost" and not (_is_ip(host) and ip_address(host).is_loopback):
        raise RuntimeChecksError(
            f"endpoint_url {endpoint_url} is not a loopback address: it is for the local "
            "emulator only (omit it to check real AWS)"
        )


def _is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _emulator_session_in(
    session: boto3.Session, expected: ExpectedResources, endpoint_url: str
) -> boto3.Session:
    """On the emulator, the account terraform deployed into: the only non-read call of a run
    (sts:AssumeRole, which changes nothing), made on loopback only."""
    sts = session.client("sts", region_name=expected.region, endpoint_url=endpoint_url)
    credentials = sts.assume_role(
        RoleArn=expected.deployment_role_arn, RoleSessionName=SESSION_NAME
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=expected.region,
    )
