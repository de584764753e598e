"""A stopping worker: refuses new scoring with 503 + Retry-After, answers what it accepted,
stops only once drained, and then stops listening for every process sharing its socket.
(Against a real server under load: tests/e2e/test_faults.py.)"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time

import pytest

from serving.drain import Drain, DrainGate, close_listener, listener_fd, stop_after_drain


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_drain_waits_for_its_minimum_its_quiet_period_and_its_requests():
    clock = Clock()
    drain = Drain(min_s=1.0, quiet_s=2.0, timeout_s=10.0, clock=clock)
    assert drain.begin()
    assert not drain.begin()  # a second SIGTERM changes nothing
    drain.admitted()
    clock.now += 5
    assert not drain.done()  # a request in flight
    drain.finished()
    assert not drain.done()  # not quiet for 2 s yet
    clock.now += 2
    assert drain.done()


def test_drain_gives_up_at_its_timeout():
    clock = Clock()
    drain = Drain(min_s=0.0, quiet_s=0.0, timeout_s=10.0, clock=clock)
    drain.begin()
    drain.admitted()
    clock.now += 10
    assert drain.done()


async def score_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def call(gate: DrainGate, path: str) -> list[dict]:
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"{}"}

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    asyncio.run(gate(scope, receive, send))
    return sent


def test_gate_passes_everything_untouched_until_draining():
    drain = Drain(min_s=1, quiet_s=0, timeout_s=5)
    gate = DrainGate(score_app, drain, refuse_paths=("/score",), close_connections=True)
    start = call(gate, "/score")[0]
    assert start["status"] == 200
    assert start["headers"] == []
    assert drain.in_flight == 0


def test_while_draining_scoring_is_refused_and_every_connection_closed():
    drain = Drain(min_s=1, quiet_s=0, timeout_s=5)
    drain.begin()
    gate = DrainGate(score_app, drain, refuse_paths=("/score",), close_connections=True)
    refused = call(gate, "/score")[0]
    assert refused["status"] == 503
    assert (b"retry-after", b"1") in refused["headers"]
    assert (b"connection", b"close") in refused["headers"]
    served = call(gate, "/readyz")[0]
    assert served["status"] == 200
    assert (b"connection", b"close") in served["headers"]


def test_a_draining_runner_serves_and_keeps_its_connections():
    """The API can open no new connection to a local runner while the arbiter stops."""
    drain = Drain(min_s=1, quiet_s=1, timeout_s=5)
    drain.begin()
    start = call(DrainGate(score_app, drain), "/predict")[0]
    assert start["status"] == 200
    assert start["headers"] == []


@pytest.mark.parametrize(
    ("argv", "fd"),
    [
        (["-m", "worker", "--fd", "7", "--service-name", "x"], 7),
        (["-m", "worker", "--fd", "$(circus.sockets.x)"], None),
        (["pytest"], None),
    ],
)
def test_listener_fd_is_read_from_the_worker_command_line(argv, fd):
    assert listener_fd(argv) == fd


def test_closing_the_listener_refuses_new_connections_for_every_holder():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = listener.getsockname()
        close_listener(["--fd", str(listener.fileno())])
        assert listener.fileno() >= 0  # this process's descriptor is still open
        with pytest.raises(ConnectionRefusedError), socket.create_connection(address, 1):
            pass
        close_listener(["--fd", str(listener.fileno())])  # a sibling's second close is harmless


def test_sigterm_is_handed_to_the_server_only_once_drained():
    handed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: handed.append(signum))

    async def main() -> tuple[bool, list[int]]:
        drain = Drain(min_s=0.2, quiet_s=0.0, timeout_s=5)
        stop_after_drain(drain)
        drain.admitted()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.3)
        before = list(handed)  # min_s passed, but a request is still in flight
        drain.finished()
        await asyncio.sleep(0.2)
        return drain.draining, before

    try:
        draining, before = asyncio.run(main())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert draining
    assert before == []
    assert handed == [signal.SIGTERM]


class Unanswered:
    """An app that fails to answer one way: raises, is cancelled by an inner future, returns
    without a word, or raises once its response has started."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def __call__(self, scope, receive, send) -> None:
        await receive()
        if self.how == "started, then raises":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise RuntimeError("after the start")
        if self.how == "raises":
            raise RuntimeError("a probe failed")
        if self.how == "stray cancellation":
            inner = asyncio.get_running_loop().create_future()
            inner.cancel()
            await inner
        # "returns": nothing sent


def gate_call(app, receive_messages: list[dict]) -> list[dict]:
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return receive_messages.pop(0) if receive_messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/readyz", "headers": []}
    asyncio.run(DrainGate(app, Drain(min_s=0, quiet_s=0, timeout_s=5))(scope, receive, send))
    return sent


@pytest.fixture(autouse=True)
def nothing_told_yet(monkeypatch):
    """Each test starts with no unanswered request told (serving.asgi logs each kind once)."""
    monkeypatch.setattr("serving.asgi.TOLD", set())


@pytest.mark.parametrize("how", ["raises", "stray cancellation", "returns"])
def test_a_request_left_unanswered_is_answered_500_and_logged(how, caplog):
    """What BentoML's timeout middleware would hold for its whole timeout and then leave to
    uvicorn ("ASGI callable returned without starting response.") is answered at once."""
    sent = gate_call(Unanswered(how), [{"type": "http.request", "body": b""}])
    assert sent[0]["status"] == 500
    assert (b"connection", b"close") in sent[0]["headers"]
    assert b"server log" in sent[1]["body"]
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage().startswith("GET /readyz ")
    assert "answered 500" in record.getMessage()
    assert (record.exc_info is not None) == (how != "returns")


def test_the_same_failure_again_is_one_line_without_its_traceback(caplog):
    """Every readiness probe fails the same way while the runner is away: one traceback."""
    for _ in range(3):
        sent = gate_call(Unanswered("raises"), [{"type": "http.request", "body": b""}])
        assert sent[0]["status"] == 500
    records = [r for r in caplog.records if r.name == "serving.asgi"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    assert records[1].exc_info is None
    assert records[1].getMessage() == records[0].getMessage()


@pytest.mark.parametrize("how", ["raises", "returns"])
def test_a_request_whose_client_went_away_gets_no_answer_and_no_error(how, caplog):
    sent = gate_call(Unanswered(how), [{"type": "http.disconnect"}])
    assert sent == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_error_after_the_response_started_is_raised_as_before():
    with pytest.raises(RuntimeError, match="after the start"):
        gate_call(Unanswered("started, then raises"), [{"type": "http.request", "body": b""}])


def test_the_requests_own_cancellation_is_not_answered():
    """The cancellation of the request itself (BentoML's timeout, which answers 504) goes on."""
    sent: list[dict] = []
    drain = Drain(min_s=0, quiet_s=0, timeout_s=5)

    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(10)

    async def send(message) -> None:
        sent.append(message)

    async def main() -> None:
        scope = {"type": "http", "method": "POST", "path": "/score", "headers": []}
        task = asyncio.ensure_future(DrainGate(slow, drain)(scope, asyncio.sleep, send))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sent == []
    assert drain.in_flight == 0


def test_behind_bentomls_timeout_a_failed_request_is_answered_at_once(caplog):
    """BentoML's TimeoutMiddleware waits for the first message sent or its timeout: a request
    that raised before answering was held for the timeout, then returned unanswered."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def main() -> float:
        gate = DrainGate(Unanswered("raises"), Drain(min_s=0, quiet_s=0, timeout_s=5))
        scope = {"type": "http", "method": "GET", "path": "/readyz", "headers": []}
        started = time.monotonic()
        await TimeoutMiddleware(gate, timeout=5)(scope, receive, send)
        return time.monotonic() - started

    assert asyncio.run(main()) < 1
    assert sent[0]["status"] == 500
