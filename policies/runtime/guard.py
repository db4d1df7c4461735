"""The runtime checks may read configuration and nothing else.

Every client the checks use carries a botocore `before-call` hook that refuses, before any
request is signed or sent, an operation that is not a read: its name must start with one of
READ_PREFIXES (Describe, Get, List, Head, Lookup) or be in the caller's explicit allow-list.
Reads of *content* rather than configuration (an object's bytes, a secret, a log event) are
refused too, though their names start with Get: no check reads data by accident.

The one exception is declared, not inherited: a check that cannot judge without reading data
names the content reads it needs (RuntimeCheck.content_reads), and only its own content
clients (ClientFactory.content_client) allow those, and still nothing that writes. Only the
feature-record checks do (policies/runtime/features.py: GetObject of feature records and of the
FHIR export's Consents, GetRecord of opted-out patients); their findings carry counts, never an
identifier. tests/test_runtime_features.py fixes that list.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup")

# Reads of data, not of configuration. The checks judge how resources are configured; reading
# what they hold (PHI in objects, feature records, log events, secrets) is refused unless a
# check declares it (see above).
CONTENT_READS = frozenset(
    {
        "GetObject",
        "GetObjectTorrent",
        "GetRecord",
        "GetLogEvents",
        "GetLogRecord",
        "GetQueryResults",
        "GetSecretValue",
        "GetParameter",
        "GetParameters",
        "GetParametersByPath",
    }
)


class ReadOnlyViolation(Exception):  # noqa: N818 (it is a refusal, raised on purpose)
    """A check tried to call an operation that may change or read data; nothing was sent."""

    def __init__(self, service: str, operation: str) -> None:
        self.service = service
        self.operation = operation
        super().__init__(
            f"refused {service}:{operation}: the runtime checks make read-only calls only "
            f"(operations starting with {', '.join(READ_PREFIXES)}, never content reads)"
        )


def is_read_only(operation: str, *, also_allowed: Collection[str] = ()) -> bool:
    if operation in also_allowed:
        return True
    return operation.startswith(READ_PREFIXES) and operation not in CONTENT_READS


def refuse_mutating_calls(client: Any, *, also_allowed: Collection[str] = ()) -> Any:
    """Install the read-only hook on `client` (a botocore client) and return it."""
    allowed = frozenset(also_allowed)
    service = client.meta.service_model.service_name

    def refuse_unless_read(model: Any, **_: Any) -> None:
        if not is_read_only(model.name, also_allowed=allowed):
            raise ReadOnlyViolation(service, model.name)

    # `before-call.<service>.<operation>` fires for every operation, after parameter validation
    # and before the request is signed or sent. Registered first at the most specific level a
    # handler can answer from, so no other handler (e.g. a botocore Stubber) answers before it.
    client.meta.events.register_first("before-call.*.*", refuse_unless_read)
    return client
