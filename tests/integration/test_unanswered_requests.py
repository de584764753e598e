"""Against a real uvicorn server (httptools and uvloop, as BentoML runs it): every request is
answered or its client is gone, and uvicorn never logs "ASGI callable returned without starting
response." (reported at ERROR, about twice per run, under closed-loop load of 64 applications
per request on a 16-core host).

The app is the API's request path as ``service.py`` builds it (the drain gate, then the
``/score`` handler, then the routes), behind BentoML's own ``TimeoutMiddleware``, which sits
outside every user middleware. uvicorn logs that line only when the app returns without
starting a response while the connection is still up (``RequestResponseCycle.run_asgi``); a
client that went away is no such case. BentoML's timeout made one out of any request that
raised before answering: it waits only for the first message sent or its timeout, so the
error was held for the whole timeout and then dropped (``serving.asgi.answered``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import requests
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from api.score_handler import ScoreHandler
from credit_risk.contract import Application, ScoreRequest, ScoreResponse, ScoreResult
from loadtests.load.server import Server
from model_artifact.settings import SOURCE_ROOT
from serving.asgi import ASGIApp, Receive, Scope, Send, respond
from serving.drain import Drain, DrainGate

pytestmark = pytest.mark.slow

UVICORN_UNANSWERED = "ASGI callable returned without starting response"
TIMEOUT_S = 3.0  # BentoML's traffic.timeout here (the API's is 15 s)
APPLICATIONS = 64


class Input(ScoreRequest):
    """The fields BentoML generates from ``CreditRiskAPI.score``'s parameters."""

    explain: bool = False


class Pipeline:
    """Answers after a few milliseconds, as a runner hop does, so requests overlap."""

    async def answer(self, applications: list[Application], explain: bool) -> ScoreResponse:
        await asyncio.sleep(0.005)
        return ScoreResponse(
            results=[
                ScoreResult(
                    request_id=application.request_id or "new",
                    probability_default=0.2,
                    decision="approve",
                    reasons=[],
                    model_tag="m:1",
                )
                for application in applications
            ]
        )


async def routes(scope: Scope, receive: Receive, send: Send) -> None:
    """BentoML's routes, in short. ``/readyz`` raises before answering, as BentoML's own does
    when its probe of the runner raises (``RemoteProxy.is_ready`` catches only timeouts: a
    refused connection escapes); ``/silent`` returns without a word; ``/livez`` answers."""
    if scope["path"] == "/readyz":
        raise ConnectionRefusedError("the runner's port is closed")
    if scope["path"] == "/livez":
        await respond(send, 200, b"{}")
    elif scope["path"] != "/silent":
        await respond(send, 404, b"{}")


def serving_stack() -> ASGIApp:
    """What uvicorn serves (``--factory``): service.py's order, inside BentoML's timeout."""
    pipeline = Pipeline()
    handler = ScoreHandler(routes, Input, lambda: pipeline, dict, max_in_flight=64)
    drain = Drain(min_s=0.0, quiet_s=0.0, timeout_s=5.0)
    gate = DrainGate(handler, drain, refuse_paths=("/score",), close_connections=True)
    return TimeoutMiddleware(gate, timeout=TIMEOUT_S)


@pytest.fixture
def uvicorn(tmp_path) -> Iterator[Server]:
    """``uvicorn --factory`` of ``serving_stack`` on loopback, its output in a file."""
    here = Path(__file__).parent
    command = [
        sys.executable, "-m", "uvicorn", "--factory", f"{Path(__file__).stem}:serving_stack",
        "--host", "127.0.0.1", "--port", "{port}", "--lifespan", "off", "--no-access-log",
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": os.pathsep.join((str(SOURCE_ROOT), str(here)))}
    server = Server(
        "", tmp_path / "uvicorn.log", env, cwd=here, command=command, ready_path="/livez"
    )
    try:
        yield server.wait_ready(60)
    finally:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture
def score_body(make_record) -> bytes:
    records = [make_record(request_id=f"a-{n}") for n in range(APPLICATIONS)]
    return json.dumps({"applications": records}).encode()


async def closed_loop(url: str, body: bytes, connections: int, seconds: float) -> Counter[str]:
    """``connections`` clients posting back to back; every fourth request is given up after a
    random 1-30 ms (cut while it is sent, queued or answered)."""
    outcomes: Counter[str] = Counter()
    end = time.monotonic() + seconds
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def client(number: int) -> None:
            rng = random.Random(number)
            while time.monotonic() < end:
                impatient = rng.random() < 0.25
                timeout = aiohttp.ClientTimeout(total=rng.uniform(0.001, 0.03) if impatient else 30)
                try:
                    async with session.post(f"{url}/score", data=body, timeout=timeout) as answer:
                        await answer.read()
                        outcomes[str(answer.status)] += 1
                except (TimeoutError, aiohttp.ClientError) as error:
                    outcomes[type(error).__name__] += 1

        await asyncio.gather(*(client(number) for number in range(connections)))
    return outcomes


def cut_short(port: int, body: bytes, requests_per_way: int) -> None:
    """Raw connections that go away: mid-body (FIN or RST), or once the body is sent."""
    head = (
        b"POST /score HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    rng = random.Random(0)
    for _ in range(requests_per_way):
        for sent, reset in ((rng.randrange(len(body)), False), (rng.randrange(len(body)), True)):
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(head + body[:sent])
                time.sleep(0.002)
                if reset:  # RST instead of FIN
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(head + body)


def test_closed_loop_load_with_clients_that_give_up_logs_no_error(uvicorn, score_body):
    async def load() -> Counter[str]:
        cutting = asyncio.to_thread(cut_short, uvicorn.port, score_body, 40)
        outcomes, _ = await asyncio.gather(closed_loop(uvicorn.url, score_body, 16, 3.0), cutting)
        return outcomes

    outcomes = asyncio.run(load())
    time.sleep(TIMEOUT_S + 0.5)  # every held request reaches BentoML's timeout
    uvicorn.stop()
    stderr = uvicorn.log.read_text()
    assert outcomes["200"] > 50, outcomes
    assert outcomes["TimeoutError"] > 10, outcomes  # requests were cut short
    assert set(outcomes) <= {"200", "TimeoutError"}, outcomes
    assert UVICORN_UNANSWERED not in stderr
    assert "ERROR" not in stderr, stderr


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/readyz", "GET /readyz raised ConnectionRefusedError before answering: answered 500"),
        ("/silent", "GET /silent returned before answering: answered 500"),
    ],
)
def test_a_request_the_app_leaves_unanswered_is_answered_at_once(uvicorn, path, logged):
    started = time.monotonic()
    answer = requests.get(f"{uvicorn.url}{path}", timeout=TIMEOUT_S * 4)
    elapsed = time.monotonic() - started
    uvicorn.stop()
    stderr = uvicorn.log.read_text()
    assert UVICORN_UNANSWERED not in stderr
    assert elapsed < TIMEOUT_S / 2  # not held for BentoML's timeout
    assert answer.status_code == 500
    assert answer.json()["error"].endswith("see the server log")
    assert logged in stderr
