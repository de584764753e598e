"""Open-loop pacing for Locust users: the one open-loop generator of the load tools. The sizing
and the benchmark once had a second one (an aiohttp Poisson source for bodies the scenario did
not speak: the runner's matrix API, `mlflow models serve`); the scenario's ``--body`` mode posts
those now, so every capacity comes from one generator with one meaning of latency, late send
and saturation, and the Locust load tests are what right-size the deployment.

Locust times a request from when it is sent, and counts every request of the run, connection
set-up included. For sizing both hide or add tail latency: a user that falls behind its
schedule sends late and the wait is not counted, and with one user per few req/s the first
request of each user (a new TCP connection, all of them in the first second) is several percent
of a short step, enough to move p99 on its own. Here every user opens its connection during a
warm-up, follows a Poisson schedule inside one measured window shared by all users, and each
arrival's latency runs from its scheduled time; an arrival still unanswered when the run stops
counts as an error.

Distributed (a master and worker processes, on one machine or several): every user paces
``user_rate`` = the total rate / the total users, whichever worker runs it and however unevenly
the users fall on the workers, so the workers' Poisson sources add up to the total rate. Each
worker keeps its own window on its own clock (no clock is shared between machines), measures
its own CPU over it (``CpuClock``), and sends the master its arrivals; the master merges them
(``Reports``). Kept free of Locust imports so the arithmetic is unit-tested.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.load.load_result import LoadResult, ProcessCpu

OK = "ok"  # the outcome of an arrival answered as the scenario expects
UNFINISHED = "unfinished"  # the outcome of an arrival still unanswered when the run stopped
# A free user woken this long after its arrival's time was held up by its own process (a busy
# or CPU-starved event loop), not by the server: such a send counts as late.
LATE_S = 0.02


def user_rate(rate: float, users: int) -> float:
    """Each paced user's share of the total ``rate`` when ``users`` users run in all, on every
    worker together: a worker with k of them offers k x this, so the workers sum to ``rate``.
    (Dividing by a worker's own user count, or giving each worker ``rate``, would multiply the
    load by the number of workers.)"""
    if users < 1:
        raise ValueError(f"a paced run needs at least one user, got {users}")
    return rate / users


@dataclass(frozen=True)
class Window:
    """The measured stretch of a run, on the ``time.monotonic`` clock."""

    start: float
    seconds: float = math.inf

    @property
    def end(self) -> float:
        return self.start + self.seconds


class PoissonSchedule:
    """One user's arrival times: Poisson at ``rate`` per second, inside ``window`` only."""

    def __init__(self, rate: float, window: Window, rng: random.Random) -> None:
        self.rate = rate
        self.window = window
        self.rng = rng
        self.upcoming = window.start + rng.expovariate(rate)

    def take(self) -> float | None:
        """The next arrival time, or None once the schedule has left the window."""
        if self.upcoming >= self.window.end:
            return None
        arrival = self.upcoming
        self.upcoming += self.rng.expovariate(self.rate)
        return arrival


@dataclass
class ScheduledLatencies:
    """Outcome and latency from the scheduled arrival, for every arrival in the window."""

    window: Window
    result: LoadResult = field(default_factory=lambda: LoadResult(ok_outcome=OK))
    in_flight: dict[int, float] = field(default_factory=dict)  # request key -> arrival time

    def begin(self, key: int, arrival: float, woke: float | None = None) -> None:
        """The arrival's request leaves now. ``woke``: when its user, free and asleep until the
        arrival, woke for it (None: the user was still busy with its previous request, a late
        send the server caused). Woken later than ``LATE_S`` is the generator's own delay."""
        self.in_flight[key] = arrival
        if woke is not None and woke - arrival > LATE_S:
            self.result.sent_late += 1

    def end(self, key: int, outcome: str) -> None:
        arrival = self.in_flight.pop(key)
        self.result.outcomes[outcome] += 1
        self.result.latencies_s.append(time.monotonic() - arrival)

    def close(self) -> LoadResult:
        """Arrivals of a window still in flight become errors, late by the time waited so far;
        without a window the run's own stop cut them off, so they are not counted."""
        for key in list(self.in_flight):
            if math.isinf(self.window.seconds):
                del self.in_flight[key]
            else:
                self.end(key, UNFINISHED)
        self.result.elapsed_s = min(self.window.seconds, time.monotonic() - self.window.start)
        return self.result


@dataclass
class CpuClock:
    """This process's CPU time (all its threads: gevent's loop, the ZeroMQ link to the master)
    against the wall clock, from ``start`` on."""

    cpu_s: float = field(default_factory=time.process_time)
    wall_s: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.cpu_s, self.wall_s = time.process_time(), time.monotonic()

    def read(self, name: str) -> ProcessCpu:
        return ProcessCpu(name, time.process_time() - self.cpu_s, time.monotonic() - self.wall_s)


def result_to_dict(result: LoadResult) -> dict[str, Any]:
    """A result as plain data, for a file or a message from a worker to the master."""
    return {
        "outcomes": dict(result.outcomes),
        "latencies_s": result.latencies_s,
        "elapsed_s": result.elapsed_s,
        "sent_late": result.sent_late,
        "generator": [asdict(process) for process in result.generator],
    }


def result_from_dict(data: Mapping[str, Any]) -> LoadResult:
    result = LoadResult(
        latencies_s=list(data["latencies_s"]),
        elapsed_s=data["elapsed_s"],
        ok_outcome=OK,
        sent_late=data["sent_late"],
        generator=[ProcessCpu(**process) for process in data["generator"]],
    )
    result.outcomes.update(data["outcomes"])
    return result


def merge(results: list[LoadResult]) -> LoadResult:
    """Several processes' arrivals as one source: outcomes, latencies, late sends and the
    processes added up; the window is the longest of theirs (they all ran the same one)."""
    merged = LoadResult(ok_outcome=OK)
    for result in results:
        merged.outcomes.update(result.outcomes)
        merged.latencies_s.extend(result.latencies_s)
        merged.sent_late += result.sent_late
        merged.generator.extend(result.generator)
        merged.elapsed_s = max(merged.elapsed_s, result.elapsed_s)
    return merged


@dataclass
class Reports:
    """The master's collection of its workers' results: ``expected`` of them (the workers
    connected when the run started, or 1 without a master), each over a whole window of
    ``window_s`` (a worker stopped before its window ended, by ``-t`` or by the master losing
    it, reports a part of it: such a result counts as missing)."""

    expected: int
    window_s: float = math.inf
    received: list[LoadResult] = field(default_factory=list)

    def add(self, result: LoadResult) -> bool:
        """Keep one worker's result; True once every expected worker has reported a whole
        window."""
        self.received.append(result)
        return self.missing == 0

    @property
    def missing(self) -> int:
        whole = sum(
            r.elapsed_s >= self.window_s or math.isinf(self.window_s) for r in self.received
        )
        return max(0, self.expected - whole)


def write_result(result: LoadResult, path: Path, missing_reports: int = 0) -> None:
    path.write_text(json.dumps(result_to_dict(result) | {"missing_reports": missing_reports}))


def read_result(path: Path) -> LoadResult:
    """The arrivals a run wrote; raises if a generator process never reported its own (its
    arrivals would be silently missing from every figure)."""
    data = json.loads(path.read_text())
    if data["missing_reports"]:
        raise RuntimeError(
            f"{data['missing_reports']} Locust worker(s) did not report a whole window ({path})"
        )
    return result_from_dict(data)
