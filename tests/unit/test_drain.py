"""A stopping worker: refuses new scoring with 503 + Retry-After, answers what it accepted,
stops only once drained, and then stops listening for every process sharing its socket.
(Against a real server under load: tests/e2e/test_faults.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket

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
