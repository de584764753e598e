"""Clients under load, as the fault tests use them against a served Bento or a container: each
request with its own id, when it was sent, how long it took and how it ended; closed or open
loop from a thread of its own, so a test can act on the server meanwhile; and the check that
the prediction log holds exactly the answered ids."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import requests

from monitoring.prediction_log import read_predictions

CLIENTS = 16
CLIENT_TIMEOUT_S = 10.0  # far above any bound asserted here: a slow answer is seen, not cut
GOOD = {"200"}
SHED = "503"  # only with Retry-After; a 503 without it is reported as its own kind
RETRY_AFTER_S = 1.0  # what the service asks for
UNSENT = "unsent"  # an arrival the generator could not send: not an answer of the server
DRAINING = b"shutting down, retry later"  # the body of a stopping worker's refusal


@dataclass
class Sent:
    """One request as its client saw it: when (seconds since the load began), how long,
    and its outcome (status, ``503-no-retry-after``, or the client exception's name)."""

    request_id: str
    at_s: float
    took_s: float
    outcome: str
    draining: bool = False  # a 503 from a stopping worker's gate: the request was never accepted


@dataclass
class Load:
    """Clients posting one application each, with unique request ids, from a thread of their
    own so the test can act on the server meanwhile. Closed loop (``clients`` each sending back
    to back; with ``honour_retry_after``, a 503 makes a client wait its ``Retry-After`` plus up
    to as much again at random, as well-behaved clients do so as not to return in step) or
    open loop (Poisson arrivals at ``rate`` per second, whatever the answers)."""

    url: str
    record: dict[str, object]
    prefix: str
    clients: int = CLIENTS
    honour_retry_after: bool = False
    connections: int = 0  # open loop: at most this many at once (0: no limit) ...
    backlog: int = 10**9  # ... and at most this many waiting for one; later arrivals unsent
    sent: list[Sent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what the client exceptions said
    started: float = 0.0
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def now(self) -> float:
        return time.monotonic() - self.started

    def start_closed(self) -> Load:
        return self._start(self._closed_loop())

    def start_open(self, rate: float, duration_s: float) -> Load:
        return self._start(self._open_loop(rate, duration_s))

    def stop(self) -> list[Sent]:
        self.stopping.set()
        assert self.thread is not None
        self.thread.join(timeout=60)
        return self.sent

    def _start(self, main: object) -> Load:
        self.started = time.monotonic()
        self.thread = threading.Thread(target=asyncio.run, args=(main,), daemon=True)
        self.thread.start()
        return self

    async def _post(self, session: aiohttp.ClientSession, number: int) -> Sent:
        request_id = f"{self.prefix}-{number}"
        body = json.dumps({"applications": [dict(self.record, request_id=request_id)]})
        at = self.now()
        draining = False
        try:
            async with session.post(self.url, data=body) as response:
                draining = DRAINING in await response.read()
                outcome = str(response.status)
                if response.status == 503 and "retry-after" not in response.headers:
                    outcome = "503-no-retry-after"
        except aiohttp.ClientConnectorError:
            outcome = "refused"  # nothing listening: the server has stopped, nothing was cut
        except (TimeoutError, aiohttp.ClientError) as error:
            outcome = type(error).__name__
            self.errors.append(f"{at:.3f}s {error!r}")
        sent = Sent(request_id, at, self.now() - at, outcome, draining)
        self.sent.append(sent)
        return sent

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            headers={"content-type": "application/json"},
            connector=aiohttp.TCPConnector(limit=self.connections),
            # the server's slowness times out, not a wait for one of our own connections
            timeout=aiohttp.ClientTimeout(
                sock_connect=CLIENT_TIMEOUT_S, sock_read=CLIENT_TIMEOUT_S
            ),
        )

    async def _closed_loop(self) -> None:
        numbers = iter(range(10**9))
        jitter = random.Random(7)
        async with self._session() as session:

            async def client() -> None:
                while not self.stopping.is_set():
                    sent = await self._post(session, next(numbers))
                    if sent.outcome == SHED and self.honour_retry_after:
                        await asyncio.sleep(RETRY_AFTER_S * (1 + jitter.random()))
                    elif sent.outcome == "refused":
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(client() for _ in range(self.clients)))

    async def _open_loop(self, rate: float, duration_s: float) -> None:
        gaps = np.random.default_rng(7).exponential(1 / rate, size=int(rate * duration_s * 2))
        arrivals = np.cumsum(gaps)
        arrivals = arrivals[arrivals < duration_s]
        async with self._session() as session:
            tasks: set[asyncio.Task[Sent]] = set()
            for number, offset in enumerate(arrivals):
                delay = offset - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(tasks) >= self.connections + self.backlog:  # the generator is saturated
                    self.sent.append(Sent(f"{self.prefix}-{number}", offset, 0.0, UNSENT))
                    continue
                task = asyncio.create_task(self._post(session, number))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)


def outcomes(sent: list[Sent], start_s: float = 0.0, end_s: float = float("inf")) -> Counter[str]:
    return Counter(s.outcome for s in sent if start_s <= s.at_s < end_s)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def secs(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


def latency(sent: list[Sent]) -> str:
    took = sorted(s.took_s for s in sent)
    if not took:
        return "no requests"
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return f"p50 {ms(statistics.median(took))}, p99 {ms(p99)}, max {ms(took[-1])}"


def ready(url: str) -> bool:
    """As a Kubernetes probe sees it (1 s timeout): a slow answer counts as not ready."""
    try:
        return requests.get(f"{url}/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until(condition, timeout_s: float, step_s: float = 0.05) -> float | None:
    """Seconds until ``condition()`` held, or None if it never did within ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(step_s)
    return None


def logged_ids(log_url: str, prefix: str) -> Counter[str]:
    return Counter(
        row["request_id"]
        for row in read_predictions(log_url)
        if row["request_id"].startswith(f"{prefix}-")
    )


def answered_ids(sent: list[Sent]) -> Counter[str]:
    return Counter(s.request_id for s in sent if s.outcome == "200")


def assert_log_matches(log_url: str, sent: list[Sent], prefix: str, wait_s: float = 10) -> str:
    """Every answered id logged exactly once, nothing else logged; waits for the log writer."""
    answered = answered_ids(sent)
    wait_until(lambda: logged_ids(log_url, prefix) == answered, wait_s, step_s=0.25)
    logged = logged_ids(log_url, prefix)
    assert set(logged) == set(answered), (
        f"answered not logged: {len(set(answered) - set(logged))}, "
        f"logged not answered: {len(set(logged) - set(answered))}"
    )
    assert max(logged.values(), default=1) == 1, "an id logged twice"
    return f"rows answered {sum(answered.values())}, logged {sum(logged.values())}"
