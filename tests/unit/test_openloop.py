"""Open-loop load and the benchmark's capacity search over it: Poisson arrivals at the asked
rate with every outcome counted, and the sizing's knee search on the bench's grid (the highest
rate that held the SLO and the error budget, a one-off stall rerun away)."""

from __future__ import annotations

import asyncio
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

from loadtests import bench, knee
from loadtests.knee import Step
from loadtests.load_result import LoadResult
from loadtests.openloop import open_loop
from loadtests.server import free_port


def bench_capacity(step: Callable[[float], Step]) -> tuple[float, list[Step]]:
    steps = knee.search(step, bench.GRID)
    return knee.capacity(steps, bench.SLO_P99_MS), steps


def fake_server(
    latency_s: Callable[[float], float], outcomes: Counter[str] | None = None
) -> tuple[list[float], Callable[[float], Step]]:
    """A step function with 100 requests per step at ``latency_s(rate)``; records the rates."""
    visits: list[float] = []

    def step(rate: float) -> Step:
        visits.append(round(rate, 1))
        seen = LoadResult(outcomes or Counter({"200": 100}), [latency_s(rate)] * 100, 1.0)
        return Step.of(rate, 1.0, seen, 50.0, 300.0)

    return visits, step


def test_capacity_is_the_last_rate_that_held():
    visits, step = fake_server(lambda rate: 0.010 if rate <= 300 else 0.5)
    capacity, _ = bench_capacity(step)
    assert capacity == 298.0  # 50 x 1.25^8
    assert visits[-4:] == [372.5, 372.5, 333.2, 315.1]  # the break rerun, then two bisections


def test_errors_beyond_budget_break_the_search():
    failing = Counter({"200": 90, "503": 10})
    visits, step = fake_server(lambda rate: 0.01, failing)
    capacity, steps = bench_capacity(step)
    assert capacity == 0
    assert visits == [50, 50]  # broke, and broke again on the rerun
    assert steps[0].error_kinds == {"503": 10}


def test_a_one_off_stall_is_rerun_and_the_ramp_goes_on_but_a_real_break_stops_it():
    stalls = {97.7: [0.5]}  # the first visit of ~98 req/s stalls: p99 breaks alone

    def latency(rate: float) -> float:  # else a curve crossing 100 ms at 300 req/s
        script = stalls.get(round(rate, 1), [])
        return script.pop(0) if script else 0.1 * math.exp((rate - 300) / 110)

    visits, step = fake_server(latency)
    capacity, _ = bench_capacity(step)
    assert visits.count(97.7) == 2  # the stall, and its rerun that held
    assert visits[10:12] == [372.5, 372.5]  # on past the stall; 372.5 broke twice
    assert capacity == pytest.approx(300, abs=2)  # the fit through the steps near 100 ms


def test_the_bench_search_stays_short():
    visits, step = fake_server(lambda rate: 0.010 if rate <= 800 else 0.5)
    bench_capacity(step)
    assert len(visits) * bench.GRID["step_seconds"] <= 120  # seconds per system


@pytest.fixture
def url() -> Iterator[str]:
    """A local HTTP server answering 200 to every POST, on a loop of its own."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/score", answer)
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(runner.setup())
    port = free_port()
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/score"
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_open_loop_sends_poisson_arrivals_at_the_rate(url):
    result = open_loop(url, b"{}", 200, 1.0, seed=3)
    assert 150 <= result.requests <= 250  # Poisson, mean 200
    assert result.outcomes.keys() == {"200"}
    assert result.errors == 0
    assert len(result.latencies_s) == result.requests
    assert result.elapsed_s >= 0.9
    assert open_loop(url, b"{}", 200, 1.0, seed=3).requests == result.requests  # same schedule


def test_open_loop_counts_a_request_without_an_answer_by_its_exception():
    result = open_loop(f"http://127.0.0.1:{free_port()}/score", b"{}", 50, 0.2)
    assert result.requests > 0
    assert result.errors == result.requests
    assert all(kind.endswith("Error") for kind in result.outcomes)
