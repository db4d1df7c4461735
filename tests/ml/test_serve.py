"""The endpoint's inference program on SageMaker's hosting contract, served in-process on
loopback: /ping, /invocations with CSV rows of the model's features, probabilities back, and
refusals that never echo the payload. The serving image held to its contract without building
it."""

from __future__ import annotations

import http.client
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from ml import serve
from tests import dockerfiles

FEATURES = 4
DOCKERFILE = dockerfiles.REPO / "ml" / "Dockerfile.serving"


def trained(folder: Path) -> xgb.Booster:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, FEATURES))
    y = (x[:, 0] > 0).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "seed": 1}, xgb.DMatrix(x, label=y), 20)
    (folder / "model").mkdir(parents=True)
    booster.save_model(str(folder / "model" / "xgboost-model"))
    return booster


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, xgb.Booster]]:
    root = tmp_path_factory.mktemp("serve")
    booster = trained(root)
    http_server = serve.server(serve.Model.load(root / "model"), 0, host="127.0.0.1")
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", http_server.server_address[1], booster
    http_server.shutdown()
    http_server.server_close()


def call(
    endpoint: tuple[str, int, xgb.Booster],
    method: str,
    path: str,
    body: bytes = b"",
    **headers: str,
) -> tuple[int, bytes]:
    host, port, _ = endpoint
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def test_ping_answers_200(endpoint: tuple[str, int, xgb.Booster]) -> None:
    assert call(endpoint, "GET", "/ping")[0] == 200


def test_invocations_return_the_models_probabilities(
    endpoint: tuple[str, int, xgb.Booster],
) -> None:
    rows = np.array([[0.5, 1.0, -1.0, 2.0], [-2.0, 0.0, 0.3, np.nan]])
    body = b"0.5,1.0,-1.0,2.0\n-2.0,0.0,0.3,\n"
    status, answer = call(endpoint, "POST", "/invocations", body, **{"Content-Type": "text/csv"})
    assert status == 200
    got = [float(line) for line in answer.decode().splitlines()]
    expected = endpoint[2].predict(xgb.DMatrix(rows, missing=np.nan))
    assert got == pytest.approx(expected.tolist(), abs=1e-7)
    assert got[0] > 0.5 > got[1]  # it learned the signal: feature 0 decides


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"0.5,1.0,-1.0,2.0\n", {"Content-Type": "application/json"}, 415, "text/csv"),
        (b"0.5,1.0\n", {"Content-Type": "text/csv"}, 400, "has 2 fields, expected 4"),
        (b"0.5,1.0,SECRET-MRN-123,2.0\n", {"Content-Type": "text/csv"}, 400, "line 1, field 3"),
        (b"label,a,b,c\n", {"Content-Type": "text/csv"}, 400, "no header"),
    ],
    ids=["json", "short-row", "not-a-number", "header"],
)
def test_a_bad_request_is_refused_without_echoing_it(
    endpoint: tuple[str, int, xgb.Booster],
    body: bytes,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    got, answer = call(endpoint, "POST", "/invocations", body, **headers)
    assert got == status
    text = answer.decode()
    assert reason in text
    assert "SECRET-MRN-123" not in text and text.count("\n") == 1


def test_an_oversized_payload_is_refused(endpoint: tuple[str, int, xgb.Booster]) -> None:
    host, port, _ = endpoint
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Content-Length", str(serve.MAX_PAYLOAD_BYTES + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413


def test_the_model_archive_sagemaker_extracts_is_loaded(tmp_path: Path) -> None:
    booster = trained(tmp_path)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "model" / "xgboost-model", arcname="xgboost-model")
    model = serve.Model.load(tmp_path)
    assert model.features == FEATURES == booster.num_features()


def test_a_missing_model_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve.main(["serve", f"--model-dir={tmp_path}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("serve: error: ")


def test_the_serving_image_runs_this_program_for_arm64() -> None:
    instructions = dockerfiles.instructions(DOCKERFILE)
    assert dockerfiles.entrypoint(DOCKERFILE) == ["python3", "-m", "ml.serve"]
    assert serve.parse_arguments(["serve"]).command == "serve"  # what SageMaker appends
    assert ("COPY", "ml /opt/program/ml") in instructions
    assert ("USER", "10001") in instructions
    assert "--platform linux/arm64" in DOCKERFILE.read_text(encoding="utf-8")
    pins = dockerfiles.pip_pins(DOCKERFILE)
    assert pins == {name: dockerfiles.pyproject_pins()[name] for name in pins}
    assert set(pins) == {"xgboost-cpu", "numpy"}
