"""Open-loop pacing for Locust users, measured the way the aiohttp open-loop generator measures.

Locust times a request from when it is sent, and counts every request of the run, connection
set-up included. For sizing both hide or add tail latency: a user that falls behind its
schedule sends late and the wait is not counted, and with one user per few req/s the first
request of each user (a new TCP connection, all of them in the first second) is several percent
of a short step, enough to move p99 on its own. Here every user opens its connection during a
warm-up, follows a Poisson schedule inside one measured window shared by all users, and each
arrival's latency runs from its scheduled time; an arrival still unanswered when the run stops
counts as an error. Kept free of Locust imports so the arithmetic is unit-tested.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.load_result import LoadResult

OK = "ok"  # the outcome of an arrival answered as the scenario expects
UNFINISHED = "unfinished"  # the outcome of an arrival still unanswered when the run stopped


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

    def begin(self, key: int, arrival: float) -> None:
        self.in_flight[key] = arrival

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


def write_result(result: LoadResult, path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "outcomes": dict(result.outcomes),
                "latencies_s": result.latencies_s,
                "elapsed_s": result.elapsed_s,
            }
        )
    )


def read_result(path: Path) -> LoadResult:
    data = json.loads(path.read_text())
    result = LoadResult(latencies_s=data["latencies_s"], elapsed_s=data["elapsed_s"], ok_outcome=OK)
    result.outcomes.update(data["outcomes"])
    return result
