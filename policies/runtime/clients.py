"""Read-only boto3 clients for one account and region, pagination, and what an error means.

A run targets either real AWS (the usual credentials chain) or the local emulator (moto on
loopback, `endpoint_url`). The difference matters in one place only: an API or attribute the
emulator does not implement is reported as "not emulated" there, and as an error or a failure
against AWS, never as a pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from policies.runtime.guard import refuse_mutating_calls

# Error codes that mean the caller's credentials are missing, expired or not valid: no check
# can run, so the whole run stops with one message instead of an error per resource.
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidToken",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AuthFailure",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
        "Forbidden",
    }
)
# How moto says it lacks an operation: "404 Not yet implemented" for a whole service or
# operation, "NotImplemented" from the platform's emulator (tools/emulator.py).
NOT_IMPLEMENTED_CODES = frozenset({"404", "NotImplemented", "NotImplementedException"})


class RuntimeChecksError(Exception):
    """The checks cannot run at all; the message says why and what to do."""


class CredentialsError(RuntimeChecksError):
    """No usable AWS credentials (missing, expired, invalid, SSO session over)."""


class AccountMismatchError(RuntimeChecksError):
    """The credentials belong to another account than the environment's."""


class UnreachableError(RuntimeChecksError):
    """The AWS (or emulator) endpoint does not answer."""


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    message = str(error.response.get("Error", {}).get("Message", ""))
    if message.lstrip().startswith("<"):
        # An HTML error page (a proxy's, or a moto server's 500) says nothing a reader needs.
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"HTTP {status} with no AWS error message"
    return message or str(error)


# Raised by botocore while resolving credentials, before any request is sent.
CREDENTIAL_RESOLUTION_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
SSO_ERRORS = (SSOTokenLoadError, TokenRetrievalError, UnauthorizedSSOTokenError)


def is_credentials_problem(error: BaseException) -> bool:
    if isinstance(error, CREDENTIAL_RESOLUTION_ERRORS):
        return True
    return isinstance(error, ClientError) and error_code(error) in CREDENTIAL_ERROR_CODES


def is_access_denied(error: ClientError) -> bool:
    return error_code(error) in ACCESS_DENIED_CODES


def is_not_implemented(error: BaseException) -> bool:
    """True for moto's ways of saying an operation does not exist (server or in-process)."""
    if isinstance(error, NotImplementedError):
        return True
    return isinstance(error, ClientError) and error_code(error) in NOT_IMPLEMENTED_CODES


def credentials_error(error: BaseException) -> CredentialsError:
    if isinstance(error, NoCredentialsError):
        return CredentialsError(
            "no AWS credentials found: pass --profile, set AWS_PROFILE or the AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY variables, or sign in with `aws sso login`"
        )
    if isinstance(error, SSO_ERRORS):
        return CredentialsError(f"the SSO session is over ({error}): run `aws sso login` again")
    detail = error_message(error) if isinstance(error, ClientError) else str(error)
    code = error_code(error) if isinstance(error, ClientError) else type(error).__name__
    return CredentialsError(
        f"the AWS credentials are expired or not valid ({code}: {detail}): refresh them "
        "(e.g. `aws sso login`) and run again"
    )


def unreachable_error(error: BaseException, endpoint_url: str | None) -> UnreachableError:
    where = endpoint_url or "AWS"
    return UnreachableError(f"cannot reach {where}: {error}")


CONNECTION_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)


@dataclass
class ClientFactory:
    """Read-only clients for one account and region, created once per service."""

    session: boto3.Session
    region: str
    endpoint_url: str | None = None
    # The local emulator rather than AWS: what it lacks is "not emulated", not an error.
    emulated: bool = False
    _clients: dict[str, Any] = field(default_factory=dict)
    _regions: dict[str, ClientFactory] = field(default_factory=dict)

    def in_region(self, region: str) -> ClientFactory:
        """Clients of the same account (and emulator) in another region, created once."""
        if region == self.region:
            return self
        if region not in self._regions:
            self._regions[region] = ClientFactory(
                self.session, region, self.endpoint_url, emulated=self.emulated
            )
        return self._regions[region]

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = refuse_mutating_calls(
                self.session.client(
                    service,
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=self._config(),
                )
            )
        return self._clients[service]

    def content_client(self, service: str, operations: frozenset[str]) -> Any:
        """A client that may also call `operations`, reads of data the guard otherwise refuses
        (guard.CONTENT_READS): only for a check that declares them (RuntimeCheck.content_reads).
        A client of its own, so every other check's client keeps refusing them."""
        key = f"{service}+{','.join(sorted(operations))}"
        if key not in self._clients:
            self._clients[key] = refuse_mutating_calls(
                self.session.client(
                    service,
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=self._config(),
                ),
                also_allowed=operations,
            )
        return self._clients[key]

    def _config(self) -> Config:
        if self.emulated:
            # The emulator answers at once or not at all: a stopped emulator must give an error
            # within seconds, not after minutes of retries.
            return Config(
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
                user_agent_extra="phi-ml-runtime-checks",
            )
        return Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="phi-ml-runtime-checks",
        )


def pages(client: Any, operation: str, result_key: str, **parameters: Any) -> Iterator[Any]:
    """Every item under `result_key` of every page of a list/describe operation."""
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**parameters):
            yield from page.get(result_key, [])
        return
    call = getattr(client, operation)
    token: str | None = None
    while True:
        page = call(**parameters, **({"NextToken": token} if token else {}))
        yield from page.get(result_key, [])
        token = page.get("NextToken")
        if not token:
            return
