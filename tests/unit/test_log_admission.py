"""A request meets a full prediction log: it waits for room (the spooler empties memory within
its next commits) and is refused only when the log stays full for the whole wait."""

from __future__ import annotations

import asyncio
import time

from monitoring.recorder import ServingMonitor
from monitoring.settings import MonitoringSettings


class FillingLog:
    """A log whose memory bound frees up ``free_after_s`` after the start (never: None)."""

    def __init__(self, free_after_s: float | None) -> None:
        self.started = time.monotonic()
        self.free_after_s = free_after_s

    @property
    def accepting(self) -> bool:
        return self.free_after_s is not None and (
            time.monotonic() - self.started >= self.free_after_s
        )


def monitor(log: FillingLog, wait_s: float) -> ServingMonitor:
    watched = object.__new__(ServingMonitor)  # only the log and its settings take part here
    watched.log = log  # type: ignore[assignment]
    watched.settings = MonitoringSettings(prediction_log_admission_wait_s=wait_s)
    return watched


def test_a_surge_waits_for_room_and_is_answered():
    started = time.monotonic()
    assert asyncio.run(monitor(FillingLog(0.15), wait_s=2.0).room_in_log())
    assert 0.15 <= time.monotonic() - started < 1.0


def test_a_log_that_stays_full_is_refused_after_the_wait():
    started = time.monotonic()
    assert not asyncio.run(monitor(FillingLog(None), wait_s=0.2).room_in_log())
    assert 0.2 <= time.monotonic() - started < 1.0


def test_no_wait_when_there_is_room():
    started = time.monotonic()
    assert asyncio.run(monitor(FillingLog(0.0), wait_s=2.0).room_in_log())
    assert time.monotonic() - started < 0.05
