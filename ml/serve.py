"""The endpoint's inference program: SageMaker's hosting contract for a container of our own.

    python -m ml.serve serve [--model-dir /opt/ml/model] [--port 8080]

SageMaker runs the image as `docker run <image> serve` (ENTRYPOINT `python3 -m ml.serve`, so
`serve` arrives as the argument), extracts the model version's model.tar.gz into /opt/ml/model,
and talks HTTP on port 8080: `GET /ping` must answer 200 once the model is loaded (the health
check), `POST /invocations` carries the request. Requests are `text/csv`: one row per patient
stay, the model's features in the dataset manifest's order, without the label and without a
header, an empty field for a missing value (the same columns the monitoring baseline names
_c0, _c1, ...). The answer is `text/csv`, one probability of 30-day readmission per row.

What a client gets back never echoes what it sent: a refused request says why in one line
(wrong content type 415, more than SageMaker's 6 MB payload 413, a row that is not the model's
columns 400), without the offending values, because the payload is patient data. The image is
built for arm64 (the Graviton endpoint, ml/Dockerfile.serving) and runs as an unprivileged user.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

import numpy as np
import xgboost as xgb

from ml.dataset_splits import SplitError, parse_csv
from ml.sagemaker_paths import MODEL_DIR
from ml.xgboost_model import ModelError, load_booster

PORT: Final = 8080
CSV: Final = "text/csv"
# SageMaker's limit on a real-time request's payload.
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
EXIT_BAD_INPUT: Final = 2


class RequestError(ValueError):
    """The request cannot be answered; status and a message without the payload's values."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Model:
    """The loaded Booster and what a request must look like for it."""

    def __init__(self, booster: xgb.Booster) -> None:
        self.booster = booster
        self.features = booster.num_features()

    @classmethod
    def load(cls, model_dir: Path) -> Model:
        booster, _ = load_booster(model_dir)
        return cls(booster)

    def predict_csv(self, body: bytes) -> bytes:
        """Probabilities, one per line, for CSV rows of the model's features."""
        try:
            rows = parse_csv(Path("request"), body, self.features)
        except SplitError as problem:
            # parse_csv names line and field; its value is cut so no payload value leaves.
            reason = str(problem).split(": '", 1)[0].removeprefix("request: ")
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"{reason}: each row holds the model's {self.features} features, numbers or "
                "empty (missing), no label, no header",
            ) from None
        scores = self.booster.predict(xgb.DMatrix(rows, missing=np.nan), validate_features=False)
        return "".join(f"{float(score)!r}\n" for score in scores).encode()


def handler_for(model: Model) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "phi-ml-serve"
        sys_version = ""

        def _answer(self, status: HTTPStatus, body: bytes, content_type: str = CSV) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, problem: RequestError) -> None:
            self._answer(problem.status, f"{problem}\n".encode(), "text/plain; charset=utf-8")

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._answer(HTTPStatus.OK, b"", "text/plain")
            else:
                self._refuse(RequestError(HTTPStatus.NOT_FOUND, "only /ping and /invocations"))

        def do_POST(self) -> None:
            try:
                if self.path != "/invocations":
                    raise RequestError(HTTPStatus.NOT_FOUND, "only /ping and /invocations")
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
                if content_type != CSV:
                    raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"requests must be {CSV}")
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_PAYLOAD_BYTES:
                    raise RequestError(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"payload of {length} bytes exceeds {MAX_PAYLOAD_BYTES}",
                    )
                self._answer(HTTPStatus.OK, model.predict_csv(self.rfile.read(length)))
            except RequestError as problem:
                self._refuse(problem)
            except ValueError:
                self._refuse(RequestError(HTTPStatus.BAD_REQUEST, "malformed request"))

        def log_message(self, format: str, *args: object) -> None:
            # Access lines without bodies or query strings: the path and status only.
            sys.stderr.write(f"serve: {self.command} {self.path.split('?')[0]} {args[1]}\n")

    return Handler


def server(model: Model, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    # 0.0.0.0 in the container: SageMaker reaches it on the container's interface.
    return ThreadingHTTPServer((host, port), handler_for(model))


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml.serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["serve"], help="what SageMaker passes")
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--port", type=int, default=PORT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        model = Model.load(arguments.model_dir)
    except ModelError as problem:
        print(f"serve: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"serve: model of {model.features} features on port {arguments.port}", file=sys.stderr)
    with server(model, arguments.port) as http, contextlib.suppress(KeyboardInterrupt):
        http.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
