"""Open-loop pacing of Locust users: schedules inside the window at the asked rate, latency from
the scheduled arrival, unanswered arrivals counted as errors."""

from __future__ import annotations

import random
import time

import pytest

from loadtests.pacing import (
    UNFINISHED,
    PoissonSchedule,
    ScheduledLatencies,
    Window,
    read_result,
    write_result,
)


def test_schedules_of_many_users_add_up_to_the_rate_inside_the_window():
    window = Window(start=100.0, seconds=20.0)
    rng = random.Random(1)
    arrivals = []
    for _ in range(50):  # 50 users at 2/s each: 100/s in all
        schedule = PoissonSchedule(2.0, window, rng)
        while (arrival := schedule.take()) is not None:
            arrivals.append(arrival)
    assert all(window.start <= a < window.end for a in arrivals)
    assert len(arrivals) == pytest.approx(2000, rel=0.1)
    gaps = sorted(arrivals)
    mean_gap = (gaps[-1] - gaps[0]) / (len(gaps) - 1)
    assert mean_gap == pytest.approx(0.01, rel=0.1)


def test_a_schedule_is_fixed_in_advance_whatever_the_caller_does():
    first = PoissonSchedule(5.0, Window(0.0, 10.0), random.Random(7))
    second = PoissonSchedule(5.0, Window(0.0, 10.0), random.Random(7))
    taken = [first.take() for _ in range(10)]
    time.sleep(0.01)  # a slow answer between arrivals does not move the next one
    assert taken == [second.take() for _ in range(10)]


def test_latency_runs_from_the_scheduled_arrival_and_unanswered_arrivals_are_errors():
    now = time.monotonic()
    record = ScheduledLatencies(Window(now - 1.0, 10.0))
    record.begin(1, now - 0.5)  # sent half a second late
    record.end(1, "ok")
    record.begin(2, now)
    result = record.close()
    assert result.outcomes == {"ok": 1, UNFINISHED: 1}
    assert result.latencies_s[0] >= 0.5
    assert result.elapsed_s == pytest.approx(1.0, abs=0.1)  # the window so far, not 10 s


def test_without_a_window_requests_cut_off_by_the_stop_are_not_counted():
    record = ScheduledLatencies(Window(time.monotonic()))
    record.begin(1, time.monotonic())
    assert record.close().outcomes == {}


def test_results_round_trip_through_json(tmp_path):
    record = ScheduledLatencies(Window(time.monotonic(), 2.0))
    record.begin(1, time.monotonic())
    record.end(1, "status 503")
    path = tmp_path / "arrivals.json"
    write_result(record.close(), path)
    back = read_result(path)
    assert back.outcomes == {"status 503": 1}
    assert len(back.latencies_s) == 1
