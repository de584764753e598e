"""The API→runner hop over real HTTP: ``MatrixClient`` against ``MatrixEndpoint`` served by
uvicorn on a Unix socket (as a spawned local runner is) and on TCP (as a deployed one is).
BentoML's own routes behind the endpoint are stood in for by a plain ASGI app: the endpoint must
answer its content type itself and pass everything else through untouched."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import uvicorn
from bentoml.exceptions import NotFound, ServiceUnavailable

from api.runner_client import MatrixClient, RunnerCallError
from api.scorer import RemoteScorer, RunnerUnreachable
from api.settings import RunnerClientSettings
from runners.matrix_endpoint import MatrixEndpoint, ModelRoute
from serving import matrix_wire
from serving.coalesce import coalesced

WIDTH = 5


class Models:
    """Stands in for ``ServedModels``: counts calls and rows, scores the first column."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows: list[int] = []

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.rows.append(len(matrix))
        time.sleep(0.002)  # a model call long enough for others to queue behind it
        return matrix[:, 0] * 2

    def explain(self, matrix: np.ndarray) -> np.ndarray:
        return matrix * -1

    def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        raise LookupError("no challenger is configured")


class Service:
    def __init__(self, models: Models) -> None:
        self.model_routes = {
            "/predict": ModelRoute(coalesced(models.predict, 256), WIDTH),
            "/explain": ModelRoute(coalesced(models.explain, 256), WIDTH),
            "/predict_challenger": ModelRoute(coalesced(models.predict_challenger, 256), None),
        }


async def bentoml_route(scope, receive, send) -> None:
    """What BentoML would answer: here a marker, or a 503 on /shed."""
    while (await receive()).get("more_body", False):
        pass
    status = 503 if scope["path"] == "/shed" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"bentoml route"})


def serve(app, **where) -> Iterator[uvicorn.Server]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **where))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield server
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def models() -> Models:
    return Models()


@pytest.fixture(params=["unix", "tcp"])
def runner_url(request, models, tmp_path) -> Iterator[str]:
    service = Service(models)
    endpoint = MatrixEndpoint(bentoml_route, service=lambda: service, max_rows=1024)
    if request.param == "unix":
        socket = tmp_path / "runner.sock"
        for _ in serve(endpoint, uds=str(socket)):
            yield Path(socket).as_uri()
    else:
        for server in serve(endpoint, host="127.0.0.1", port=0):
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"tcp://127.0.0.1:{port}"


def run(coroutine_function):
    return asyncio.run(coroutine_function())


def test_probabilities_and_attributions_cross_the_hop_bit_for_bit(runner_url):
    matrix = np.random.default_rng(0).normal(size=(7, WIDTH)).astype(np.float32)

    async def main():
        client = MatrixClient(runner_url, max_rows=1024)
        try:
            return await client.call("predict", matrix), await client.call("explain", matrix)
        finally:
            await client.close()

    probabilities, attributions = run(main)
    np.testing.assert_array_equal(probabilities, matrix[:, 0] * 2)
    np.testing.assert_array_equal(attributions, -matrix)
    assert probabilities.dtype == attributions.dtype == np.float32


def test_concurrent_calls_share_model_calls_on_the_runner(runner_url, models):
    rows = [np.full((1, WIDTH), i, dtype=np.float32) for i in range(64)]

    async def main():
        client = MatrixClient(runner_url, max_rows=1024)
        try:
            return await asyncio.gather(*(client.call("predict", row) for row in rows))
        finally:
            await client.close()

    answers = run(main)
    assert [float(answer[0]) for answer in answers] == [2.0 * i for i in range(64)]
    assert sum(models.rows) == 64
    assert models.calls < 64  # calls that arrived during a model call rode the next one


def test_a_matrix_of_the_wrong_width_is_refused_alone(runner_url, models):
    """Checked before it can join the model call it would break for every caller in it."""
    rows = [np.full((1, WIDTH), i, dtype=np.float32) for i in range(16)]

    async def main():
        client = MatrixClient(runner_url, max_rows=1024)
        try:
            wrong = client.call("predict", np.zeros((1, WIDTH + 1), np.float32))
            calls = [wrong, *(client.call("predict", row) for row in rows)]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.close()

    refused, *answers = run(main)
    assert isinstance(refused, RunnerCallError)
    assert "answered 400" in str(refused)
    assert [float(answer[0]) for answer in answers] == [2.0 * i for i in range(16)]
    assert sum(models.rows) == 16


def test_runner_errors_map_to_what_the_api_retries_or_reports(runner_url):
    async def main():
        client = MatrixClient(runner_url, max_rows=1024)
        try:
            with pytest.raises(NotFound, match="no challenger is configured"):
                await client.call("predict_challenger", np.zeros((1, WIDTH), np.float32))
            with pytest.raises(ServiceUnavailable, match="bentoml route"):
                await client.call("shed", np.zeros((1, WIDTH), np.float32))
        finally:
            await client.close()

    run(main)


def test_malformed_calls_get_a_400_naming_the_problem(runner_url):
    async def post(headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        client = MatrixClient(runner_url, max_rows=1024)
        try:
            async with client.connect().post("/predict", data=body, headers=headers) as response:
                return response.status, json.loads(await response.read())
        finally:
            await client.close()

    matrix = {"content-type": matrix_wire.MEDIA_TYPE}
    cases = [
        (matrix, b"\0" * 8, "header x-matrix-shape is missing"),
        (matrix | {"x-matrix-shape": "2,x"}, b"", "must be 'rows' or 'rows,columns'"),
        (matrix | {"x-matrix-shape": "2,5"}, b"\0" * 39, "body has 39 bytes"),
        (matrix | {"x-matrix-shape": "2,5"}, b"\0" * 4000, "body longer than shape (2, 5)"),
        (matrix | {"x-matrix-shape": "2000,5"}, b"", "2000 rows, at most 1024"),
        (matrix | {"x-matrix-shape": "2,4"}, b"\0" * 32, "/predict takes rows x 5 columns"),
        (matrix | {"x-matrix-shape": "10"}, b"\0" * 40, "not shape (10,)"),
    ]
    for headers, body, reason in cases:
        status, answer = run(lambda h=headers, b=body: post(h, b))
        assert status == 400
        assert reason in answer["error"]


def test_other_content_types_reach_bentomls_route(runner_url):
    async def main():
        client = MatrixClient(runner_url, max_rows=1024)
        try:
            session = client.connect()
            async with session.post("/predict", json={"matrix": [[0.0] * WIDTH]}) as response:
                return response.status, await response.read()
        finally:
            await client.close()

    assert run(main) == (200, b"bentoml route")


def test_a_runner_that_is_not_there_is_unreachable_within_the_deadline(tmp_path):
    async def main():
        client = MatrixClient((tmp_path / "gone.sock").as_uri(), max_rows=1024)

        class Proxy:
            async def is_ready(self, timeout: float) -> bool:
                return False

        settings = RunnerClientSettings(runner_deadline_s=0.5, runner_probe_interval_s=0.05)
        scorer = RemoteScorer(Proxy(), client, 256, settings)
        try:
            with pytest.raises(RunnerUnreachable, match="unreachable"):
                await scorer.predict(np.zeros((1, WIDTH), np.float32))
            assert not scorer.available
        finally:
            await scorer.close()

    run(main)


def test_connection_errors_are_aiohttps_own(tmp_path):
    async def main():
        client = MatrixClient((tmp_path / "gone.sock").as_uri(), max_rows=1024)
        try:
            await client.call("predict", np.zeros((1, WIDTH), np.float32))
        finally:
            await client.close()

    with pytest.raises(aiohttp.ClientConnectionError):
        run(main)
