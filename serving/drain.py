"""How a serving worker stops without failing what it accepted.

BentoML's arbiter (circus) sends SIGTERM to every worker at once, API and runner alike, and
uvicorn reacts by closing its copy of the listener. Measured with 16 clients sending, that
lost work three ways: the runner went away while the API still had requests needing it (503),
new connections queued on the listener the arbiter still held open were reset when it finally
closed it, and idle keep-alive connections were closed under clients about to reuse them.

So uvicorn's SIGTERM handler is deferred until the worker has drained:

1. on SIGTERM the worker keeps listening; new requests on ``refuse_paths`` get 503 with
   ``Retry-After`` (the API's scoring route), everything else is still served (the runner
   serves its API to the end), and with ``close_connections`` (the API) every response says
   ``Connection: close``, so no idle keep-alive connection is left to be cut at the end. The
   runner keeps its connections: BentoML's arbiter deletes the runner's Unix socket file as
   soon as it is told to stop, before it stops any worker, so the API can open no new
   connection to a local runner while it drains, only reuse the ones it has;
2. it waits until nothing is in flight, at least ``min_s`` has passed since the signal and
   ``quiet_s`` since the last admitted request (the runner's quiet period outlasts the API's
   drain, so the API's last calls, its shadow flush included, still find it), never longer
   than ``timeout_s``;
3. it shuts down the listening socket itself, which the arbiter shares (so new connections
   are refused at once instead of queueing unanswered), and only then lets uvicorn stop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from serving.asgi import ASGIApp, Message, Receive, Scope, Send, answered, error_json, respond

log = logging.getLogger(__name__)

SHUTTING_DOWN = error_json("shutting down, retry later")
POLL_S = 0.05


@dataclass
class Drain:
    """One worker's drain: its rules, and the requests it has in flight."""

    min_s: float
    quiet_s: float
    timeout_s: float
    clock: Callable[[], float] = time.monotonic
    draining: bool = False
    in_flight: int = 0
    signalled_at: float = 0.0
    last_request_at: float = field(default=0.0)

    def begin(self) -> bool:
        """Start draining; False when it had already started (a second SIGTERM)."""
        if self.draining:
            return False
        self.draining = True
        self.signalled_at = self.clock()
        return True

    def admitted(self) -> None:
        self.in_flight += 1
        self.last_request_at = self.clock()

    def finished(self) -> None:
        self.in_flight -= 1
        self.last_request_at = self.clock()

    def done(self) -> bool:
        """Whether the worker may stop now."""
        now = self.clock()
        if now - self.signalled_at >= self.timeout_s:
            return True
        return (
            self.in_flight == 0
            and now - self.signalled_at >= self.min_s
            and now - self.last_request_at >= self.quiet_s
        )

    async def wait(self) -> None:
        while not self.done():
            await asyncio.sleep(POLL_S)
        if self.in_flight:
            log.warning("drain timed out after %.1fs, %d in flight", self.timeout_s, self.in_flight)


class DrainGate:
    """ASGI middleware feeding ``drain``: counts requests in flight; while draining, refuses
    new requests on ``refuse_paths`` (503 + ``Retry-After``) and, with ``close_connections``,
    closes every connection after its response.

    The first of the service's own layers, right inside BentoML's timeout, so every request it
    admits, BentoML's routes included, ends answered or with its client gone
    (``serving.asgi.answered``): none is held to the timeout and left unanswered."""

    def __init__(
        self,
        app: ASGIApp,
        drain: Drain,
        refuse_paths: Sequence[str] = (),
        close_connections: bool = False,
    ) -> None:
        self.app = app
        self.drain = drain
        self.refuse_paths = frozenset(refuse_paths)
        self.close_connections = close_connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain.draining and scope["path"] in self.refuse_paths:
            await refuse(send)
            return
        self.drain.admitted()
        try:
            await answered(
                self.app, scope, receive, self.closing(send) if self.close_connections else send
            )
        finally:
            self.drain.finished()

    def closing(self, send: Send) -> Send:
        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.drain.draining:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        return send_closing


async def refuse(send: Send) -> None:
    await respond(send, 503, SHUTTING_DOWN, [(b"retry-after", b"1"), (b"connection", b"close")])


def stop_after_drain(drain: Drain) -> None:
    """Defer uvicorn's SIGTERM handling until ``drain`` is done. Call from an on_startup hook:
    uvicorn has installed its handler by then, and this runs on the serving loop. Does nothing
    outside a served worker's main thread (a test client), where there is no handler to defer."""
    stop = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(stop):
        return
    loop = asyncio.get_running_loop()
    finishing: set[asyncio.Task[None]] = set()

    async def finish(signum: int) -> None:
        await drain.wait()
        close_listener(sys.argv)
        stop(signum, None)

    def begin(signum: int) -> None:
        if drain.begin():
            log.info("SIGTERM: draining before stopping")
            finishing.add(loop.create_task(finish(signum)))

    def on_sigterm(signum: int, _frame: object) -> None:
        # on the loop, after what is already queued: a request whose bytes were read before
        # the signal has its task queued, so it is admitted, not refused
        loop.call_soon_threadsafe(begin, signum)

    signal.signal(signal.SIGTERM, on_sigterm)


def listener_fd(argv: Sequence[str]) -> int | None:
    """The listening socket BentoML hands its worker (``--fd N`` on the command line)."""
    for flag, value in itertools.pairwise(argv):
        if flag == "--fd" and value.isdigit():
            return int(value)
    return None


def close_listener(argv: Sequence[str]) -> None:
    """Stop listening for every process sharing the socket, the arbiter included. Closing this
    worker's descriptor alone would leave the arbiter's copy listening: connections would queue
    there unanswered and be reset when the arbiter exits."""
    fd = listener_fd(argv)
    if fd is None:
        return
    try:
        with socket.socket(fileno=os.dup(fd)) as listener:
            listener.shutdown(socket.SHUT_RD)
    except OSError as error:  # already shut by a sibling worker
        log.info("listener already closed: %s", error)
