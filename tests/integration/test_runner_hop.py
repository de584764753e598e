"""The API→runner hop over real HTTP: ``MatrixClient`` against ``MatrixEndpoint`` served by
uvicorn on a Unix socket (as a spawned local runner is) and on TCP (as a deployed one is).
BentoML's own routes behind the endpoint are stood in for by a plain ASGI app: the endpoint must
answer its content type itself and pass everything else through untouched. Raw requests (bad
ones, other content types) go through aiohttp, as any other HTTP client's would; the client's
own connection handling meets a hand-written server that misbehaves on purpose."""

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

from api.runner_client import Address, MatrixClient, RunnerCallError, RunnerConnectionError
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
            # connections first (as an API worker's are, long before its busy second), so the
            # calls below leave the client together instead of as each connect completes
            await asyncio.gather(*(client.call("predict", row) for row in rows))
            models.calls, models.rows = 0, []
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


def http_session(runner_url: str) -> aiohttp.ClientSession:
    """A general HTTP client for the runner's address."""
    address = Address.parse(runner_url)
    base = f"http://{address.host_header}"
    if address.unix_path is not None:
        return aiohttp.ClientSession(base, connector=aiohttp.UnixConnector(path=address.unix_path))
    return aiohttp.ClientSession(base)


def test_malformed_calls_get_a_400_naming_the_problem(runner_url):
    async def post(headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        async with (
            http_session(runner_url) as session,
            session.post("/predict", data=body, headers=headers) as response,
        ):
            return response.status, json.loads(await response.read())

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
        async with (
            http_session(runner_url) as session,
            session.post("/predict", json={"matrix": [[0.0] * WIDTH]}) as response,
        ):
            return response.status, await response.read()

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


def test_a_runner_that_is_not_there_is_a_connection_error(tmp_path):
    async def main():
        client = MatrixClient((tmp_path / "gone.sock").as_uri(), max_rows=1024)
        try:
            await client.call("predict", np.zeros((1, WIDTH), np.float32))
        finally:
            await client.close()

    with pytest.raises(RunnerConnectionError, match="cannot connect to the runner"):
        run(main)


class RawRunner:
    """A hand-written HTTP/1.1 runner on a Unix socket that answers each matrix call with its
    own first column: ``hold_s`` delays the answer to rows whose value is negative, ``close``
    closes each connection after its answer without saying so, ``garbage`` answers non-HTTP."""

    def __init__(self, hold_s: float = 0.0, close: bool = False, garbage: bool = False) -> None:
        self.hold_s, self.close, self.garbage = hold_s, close, garbage
        self.connections = 0

    async def serve(self, socket: Path) -> asyncio.AbstractServer:
        return await asyncio.start_unix_server(self.connection, str(socket))

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                headers = dict(
                    line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if line
                )
                shape = matrix_wire.parse_shape(headers["x-matrix-shape"], 1024)
                body = await reader.readexactly(int(headers["content-length"]))
                column = matrix_wire.decode(body, shape)[:, 0].copy()
                if self.garbage:
                    writer.write(b"not http at all\r\n\r\n")
                    await writer.drain()
                    continue
                if column[0] < 0:
                    await asyncio.sleep(self.hold_s)
                answer, answer_shape = matrix_wire.encode(column)
                writer.write(
                    f"HTTP/1.1 200 OK\r\ncontent-length: {len(answer)}\r\n"
                    f"x-matrix-shape: {answer_shape}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def rows(value: float) -> np.ndarray:
    return np.full((2, WIDTH), value, dtype=np.float32)


def test_a_call_cut_off_by_its_deadline_never_hands_its_answer_to_the_next(tmp_path):
    """The cancelled call's answer is still on its way: its connection must not be reused."""
    runner = RawRunner(hold_s=0.3)

    async def main():
        server = await runner.serve(tmp_path / "runner.sock")
        client = MatrixClient((tmp_path / "runner.sock").as_uri(), max_rows=1024)
        try:
            answers = [await client.call("predict", rows(5.0))]  # the connection the cut call takes
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.call("predict", rows(-1.0)), 0.1)
            answers += [await client.call("predict", rows(float(i))) for i in range(3)]
            await asyncio.sleep(0.4)  # the held answer arrives on a connection nobody reads
            answers.append(await client.call("predict", rows(7.0)))
            return answers
        finally:
            await client.close()
            server.close()

    answers = run(main)
    assert [answer.tolist() for answer in answers] == [[5, 5], [0, 0], [1, 1], [2, 2], [7, 7]]
    assert runner.connections == 2  # the one the cut call closed, then one for the rest


def test_a_connection_the_runner_closed_while_idle_is_replaced(tmp_path):
    runner = RawRunner(close=True)

    async def main():
        server = await runner.serve(tmp_path / "runner.sock")
        client = MatrixClient((tmp_path / "runner.sock").as_uri(), max_rows=1024)
        try:
            answers = []
            for i in range(3):
                answers.append(await client.call("predict", rows(float(i))))
                await asyncio.sleep(0.05)  # the runner's close reaches the client
            return answers
        finally:
            await client.close()
            server.close()

    assert [answer.tolist() for answer in run(main)] == [[0, 0], [1, 1], [2, 2]]
    assert runner.connections == 3


def test_an_answer_that_is_not_http_is_a_connection_error(tmp_path):
    async def main():
        server = await RawRunner(garbage=True).serve(tmp_path / "runner.sock")
        client = MatrixClient((tmp_path / "runner.sock").as_uri(), max_rows=1024)
        try:
            await client.call("predict", rows(1.0))
        finally:
            await client.close()
            server.close()

    with pytest.raises(RunnerConnectionError, match="not HTTP"):
        run(main)


def test_runner_urls_name_where_it_listens():
    assert Address.parse("file:///tmp/r.sock") == Address("127.0.0.1:3000", unix_path="/tmp/r.sock")
    assert Address.parse("tcp://runner:3000") == Address("runner:3000", host="runner", port=3000)
    assert Address.parse("https://runner.example") == Address(
        "runner.example", host="runner.example", port=443, tls=True
    )
    with pytest.raises(ValueError, match="expected file://"):
        Address.parse("ftp://runner")
