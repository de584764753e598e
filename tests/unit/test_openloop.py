"""Capacity search: the highest arrival rate that held the SLO and the error budget."""

from __future__ import annotations

from collections import Counter

from loadtests.burst import BurstResult
from loadtests.openloop import capacity_at_slo


def fake_server(limit: float):
    """Latency 10 ms below ``limit`` req/s, 500 ms above it."""

    def run(rate: float, seed: int) -> BurstResult:
        latency = 0.010 if rate <= limit else 0.5
        return BurstResult(Counter({"200": 100}), [latency] * 100, 1.0)

    return run


def test_capacity_is_the_last_rate_that_held():
    capacity, steps = capacity_at_slo(fake_server(300), p99_ms=100, start_rate=50, factor=2)
    assert capacity == 200
    assert [rate for rate, _ in steps] == [50, 100, 200, 400]


def test_errors_beyond_budget_break_the_search():
    def failing(rate: float, seed: int) -> BurstResult:
        return BurstResult(Counter({"200": 90, "503": 10}), [0.01] * 100, 1.0)

    capacity, steps = capacity_at_slo(failing, p99_ms=100)
    assert capacity == 0
    assert len(steps) == 1


def test_a_one_off_stall_is_confirmed_away_but_a_real_break_is_not():
    calls = []

    def stall_once(rate: float, seed: int) -> BurstResult:
        calls.append((rate, seed))
        stalled = rate == 100 and seed == 0  # 2 slow requests of 100: p99 breaks alone
        latencies = [0.01] * 98 + [0.5] * 2 if stalled else [0.01] * 100
        if rate > 200:
            latencies = [0.5] * 100
        return BurstResult(Counter({"200": 100}), latencies, 1.0)

    capacity, _ = capacity_at_slo(stall_once, p99_ms=100, start_rate=50, factor=2)
    assert capacity == 200  # the stalled 100 req/s step held on its rerun
    assert (100, 1) in calls
    assert calls[-2:] == [(400, 0), (400, 1)]
