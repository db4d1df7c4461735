"""The parent service on the Graviton host: tokens to the endpoint, re-identification by the
enclave.

    python3 parent.pyz serve --key-alias ARN --endpoint-name NAME --region R
        [--wrapped-data-key FILE] [--port 8443]
    python3 parent.pyz mint-data-key --key-alias ARN --region R --out FILE

For each clinical request (`POST /predict`, JSON `{"records": [{"patient_id": "...",
"features": [...]}]}`) the parent asks the enclave for the patients' tokens, forgets the
identifiers, invokes the SageMaker endpoint once per record with the token as InferenceId (so
captured data carries the token, never the identifier) and the features as a CSV row, and
has the enclave re-identify the tokens of the answers under the exchange's ticket. The
endpoint, its captures and its logs see tokens only.

The parent holds no key: it imports nothing of the enclave's cryptography (only the protocol),
carries the wrapped data key as ciphertext, and passes the host role's temporary credentials
to the enclave, which needs them to sign its KMS requests (an enclave has no instance
metadata). Those credentials alone decrypt nothing: the patient-token key requires the
enclave's attestation document.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Protocol

from ml.enclave import contract
from ml.enclave.protocol import RemoteError, Transport, VsockTransport, b64, call, unb64

JSON: Final = "application/json"
MAX_REQUEST_BYTES: Final = 1024 * 1024
MAX_RECORDS: Final = 100

Credentials = Mapping[str, str]


class RequestError(ValueError):
    """A clinical request this service will not answer; the message carries no value."""


class EnclaveClient:
    """The parent's side of the protocol."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def unlock(self, credentials: Credentials, key_alias: str, wrapped_data_key: bytes) -> None:
        call(
            self.transport,
            {
                "op": "unlock",
                "credentials": dict(credentials),
                "key_alias": key_alias,
                "wrapped_data_key": b64(wrapped_data_key),
            },
        )

    def mint_data_key(self, credentials: Credentials, key_alias: str) -> bytes:
        answer = call(
            self.transport,
            {"op": "mint-data-key", "credentials": dict(credentials), "key_alias": key_alias},
        )
        return unb64(answer["wrapped_data_key"])

    def pseudonymize(self, identifiers: Sequence[str]) -> tuple[str, list[str]]:
        answer = call(self.transport, {"op": "pseudonymize", "identifiers": list(identifiers)})
        return str(answer["ticket"]), [str(token) for token in answer["tokens"]]

    def reidentify(self, ticket: str, tokens: Sequence[str]) -> list[str]:
        answer = call(
            self.transport, {"op": "reidentify", "ticket": ticket, "tokens": list(tokens)}
        )
        return [str(identifier) for identifier in answer["identifiers"]]


class Endpoint(Protocol):
    def score(self, token: str, row: bytes) -> float:
        """The model's answer for one CSV row, the request identified by `token` only."""
        ...


class SageMakerEndpoint:
    def __init__(self, runtime: Any, endpoint_name: str) -> None:
        self.runtime = runtime
        self.endpoint_name = endpoint_name

    def score(self, token: str, row: bytes) -> float:
        answer = self.runtime.invoke_endpoint(
            EndpointName=self.endpoint_name,
            ContentType="text/csv",
            Accept="text/csv",
            Body=row,
            # Data capture records it: ground truth joins the captured request by token.
            InferenceId=token,
        )
        return float(answer["Body"].read().decode().strip())


def csv_row(features: object) -> bytes:
    """One row of the model's features, an empty field for a missing value (ml/serve.py)."""
    if not isinstance(features, list) or not features:
        raise RequestError("features must be a non-empty list of numbers or null")
    fields = []
    for value in features:
        if value is None:
            fields.append("")
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            fields.append(repr(float(value)))
        else:
            raise RequestError("features must be numbers or null")
    return (",".join(fields) + "\n").encode()


@dataclass(frozen=True)
class _Tokenized:
    token: str
    row: bytes


class TokenGateway:
    """Wraps inference: identifiers never pass this point towards the endpoint."""

    def __init__(self, enclave: EnclaveClient, endpoint: Endpoint) -> None:
        self.enclave = enclave
        self.endpoint = endpoint

    def predict(self, request: object) -> dict[str, Any]:
        records = request.get("records") if isinstance(request, dict) else None
        if not isinstance(records, list) or not records:
            raise RequestError('a request is {"records": [{"patient_id": ..., "features": [...]}]}')
        if len(records) > MAX_RECORDS:
            raise RequestError(f"at most {MAX_RECORDS} records per request")
        identifiers, rows = [], []
        for record in records:
            if not isinstance(record, dict) or set(record) != {"patient_id", "features"}:
                raise RequestError("each record has exactly patient_id and features")
            if not isinstance(record["patient_id"], str):
                raise RequestError("patient_id must be a string")
            identifiers.append(record["patient_id"])
            rows.append(csv_row(record["features"]))
        try:
            ticket, tokens = self.enclave.pseudonymize(identifiers)
        except RemoteError as refusal:
            raise RequestError(str(refusal)) from None
        # From here on the request holds tokens only.
        tokenized = [_Tokenized(token, row) for token, row in zip(tokens, rows, strict=True)]
        del identifiers, records
        scored = [(item.token, self.endpoint.score(item.token, item.row)) for item in tokenized]
        reidentified = self.enclave.reidentify(ticket, [token for token, _ in scored])
        return {
            "predictions": [
                {"patient_id": identifier, "readmission_probability": score}
                for identifier, (_, score) in zip(reidentified, scored, strict=True)
            ]
        }


def handler_for(gateway: TokenGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "phi-ml-token-parent"
        sys_version = ""

        def _answer(self, status: HTTPStatus, body: object) -> None:
            encoded = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", JSON)
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._answer(HTTPStatus.OK, {"ok": True})
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "only /ping and /predict"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._answer(HTTPStatus.NOT_FOUND, {"error": "only /ping and /predict"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
                return
            try:
                request = json.loads(self.rfile.read(length))
                self._answer(HTTPStatus.OK, gateway.predict(request))
            except RequestError as problem:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": str(problem)})
            except ValueError:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "the request is not JSON"})

        def log_message(self, format: str, *args: object) -> None:
            # Method, path and status: never a body.
            sys.stderr.write(f"parent: {self.command} {self.path.split('?')[0]} {args[1]}\n")

    return Handler


def host_credentials() -> dict[str, str]:  # pragma: no cover - needs instance metadata
    """The host role's temporary credentials (IMDSv2), in the names the enclave expects."""
    import boto3  # noqa: PLC0415 - the host's python3-boto3

    frozen = boto3.Session().get_credentials().get_frozen_credentials()
    return {
        "AccessKeyId": frozen.access_key,
        "SecretAccessKey": frozen.secret_key,
        "Token": frozen.token,
    }


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="parent.pyz", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "mint-data-key"):
        command = commands.add_parser(name)
        command.add_argument("--key-alias", required=True)
        command.add_argument("--region", required=True)
        command.add_argument("--enclave-cid", type=int, default=contract.ENCLAVE_CID)
        command.add_argument("--enclave-port", type=int, default=contract.ENCLAVE_PORT)
        if name == "serve":
            command.add_argument("--endpoint-name", required=True)
            command.add_argument(
                "--wrapped-data-key", type=Path, default=Path(str(contract.HOST_WRAPPED_DATA_KEY))
            )
            command.add_argument("--port", type=int, default=contract.PARENT_LISTEN_PORT)
        else:
            command.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    credentials: Callable[[], dict[str, str]] = host_credentials,
) -> int:  # pragma: no cover - the host's service
    arguments = parse_arguments(argv)
    enclave = EnclaveClient(VsockTransport(arguments.enclave_cid, arguments.enclave_port))
    if arguments.command == "mint-data-key":
        wrapped = enclave.mint_data_key(credentials(), arguments.key_alias)
        arguments.out.write_bytes(wrapped)
        print(
            f"parent: wrapped data key written to {arguments.out}; upload it to the artifacts "
            f"bucket at {contract.WRAPPED_DATA_KEY_OBJECT}",
            file=sys.stderr,
        )
        return 0
    enclave.unlock(credentials(), arguments.key_alias, arguments.wrapped_data_key.read_bytes())
    import boto3  # noqa: PLC0415

    runtime = boto3.client("sagemaker-runtime", region_name=arguments.region)
    gateway = TokenGateway(enclave, SageMakerEndpoint(runtime, arguments.endpoint_name))
    address = (contract.PARENT_LISTEN_HOST, arguments.port)
    server = ThreadingHTTPServer(address, handler_for(gateway))
    print(f"parent: serving on {contract.PARENT_LISTEN_HOST}:{arguments.port}", file=sys.stderr)
    server.serve_forever()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
