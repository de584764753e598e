"""Open-loop pacing of Locust users: schedules inside the window at the asked rate, split over
workers so they add up to it, latency from the scheduled arrival, unanswered arrivals counted as
errors, the generator's own late sends and CPU, and the workers' results merged on the master;
and the paced source posting one fixed body (what measures the runner alone and the benchmark's
other servers) against a real HTTP server."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from loadtests.load.load_result import LoadResult, ProcessCpu
from loadtests.load.locust_run import FixedRequest, paced_run
from loadtests.load.pacing import (
    LATE_S,
    OK,
    UNFINISHED,
    CpuClock,
    PoissonSchedule,
    Reports,
    ScheduledLatencies,
    Window,
    merge,
    read_result,
    result_from_dict,
    result_to_dict,
    user_rate,
    write_result,
)
from loadtests.load.server import free_port


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
    result = record.close()
    result.sent_late = 2
    result.generator.append(ProcessCpu("worker a", 0.5, 2.0))
    path = tmp_path / "arrivals.json"
    write_result(result, path)
    back = read_result(path)
    assert back.outcomes == {"status 503": 1}
    assert len(back.latencies_s) == 1
    assert (back.sent_late, back.generator) == (2, [ProcessCpu("worker a", 0.5, 2.0)])


def test_the_total_rate_is_split_per_user_so_uneven_workers_add_up_to_it():
    """75 users fall 19/19/19/18 on four workers: each user paces rate / 75 wherever it runs,
    so the four workers together offer the total (rate / 4 per worker, or rate / its own
    users per user, would be wrong on uneven workers or four times too much)."""
    window = Window(0.0, 40.0)
    rng = random.Random(3)
    share = user_rate(300.0, 75)
    total = 0
    for users in (19, 19, 19, 18):
        arrivals = 0
        for _ in range(users):
            schedule = PoissonSchedule(share, window, rng)
            while schedule.take() is not None:
                arrivals += 1
        expected = 300 * 40 * users / 75  # each worker offers its users' share
        assert abs(arrivals - expected) < 4 * expected**0.5  # 4 sd of a Poisson count
        total += arrivals
    assert total == pytest.approx(300 * 40, rel=0.04)
    with pytest.raises(ValueError, match="at least one user"):
        user_rate(300.0, 0)


def test_only_the_generators_own_delay_counts_as_a_late_send():
    now = time.monotonic()
    record = ScheduledLatencies(Window(now - 1.0, 10.0))
    record.begin(1, now - 0.5)  # its user was busy with a slow answer: the server's doing
    record.begin(2, now - 0.5, woke=now - 0.5 + LATE_S / 2)  # woke on time
    record.begin(3, now - 0.5, woke=now - 0.5 + 3 * LATE_S)  # the event loop woke it late
    assert record.result.sent_late == 1


def test_the_cpu_clock_tells_a_busy_process_from_an_idle_one():
    clock = CpuClock()
    while time.process_time() - clock.cpu_s < 0.1:  # spin for 0.1 s of CPU, however long
        pass
    busy = clock.read("busy")
    clock.start()
    time.sleep(0.2)
    idle = clock.read("idle")
    assert busy.cpu_s >= 0.1
    assert idle.cpu_s < 0.05
    assert idle.wall_s >= 0.2
    assert busy.percent > 2 * idle.percent


def worker_result(outcomes: dict[str, int], latency_s: float, late: int, name: str) -> LoadResult:
    result = LoadResult(ok_outcome=OK, elapsed_s=6.0, sent_late=late)
    result.outcomes.update(outcomes)
    result.latencies_s = [latency_s] * sum(outcomes.values())
    result.generator = [ProcessCpu(name, 1.2, 6.0)]
    return result


def test_the_master_merges_its_workers_results_once_all_have_reported(tmp_path):
    reports = Reports(expected=2, window_s=6.0)
    first = worker_result({OK: 300}, 0.01, 1, "worker a")
    assert not reports.add(result_from_dict(result_to_dict(first)))  # as a message carries it
    assert reports.missing == 1
    path = tmp_path / "arrivals.json"
    write_result(merge(reports.received), path, reports.missing)
    with pytest.raises(RuntimeError, match="1 Locust worker"):
        read_result(path)  # half the arrivals would pass for all of them
    assert reports.add(worker_result({OK: 290, UNFINISHED: 2}, 0.03, 4, "worker b"))
    assert Reports(1, 6.0).add(first)
    assert Reports(1).add(worker_result({OK: 9}, 0.01, 0, "closed loop"))  # no window to end
    stopped_early = worker_result({}, 0.0, 0, "worker c")
    stopped_early.elapsed_s = 1.5  # a worker the master lost and stopped inside its window
    assert not Reports(1, 6.0).add(stopped_early)
    merged = merge(reports.received)
    assert merged.outcomes == {OK: 590, UNFINISHED: 2}
    assert merged.errors == 2
    assert len(merged.latencies_s) == 592
    assert merged.percentile_ms(99) == pytest.approx(30)
    assert (merged.sent_late, merged.elapsed_s) == (5, 6.0)
    assert [p.name for p in merged.generator] == ["worker a", "worker b"]
    assert merged.generator_cpu_percent == pytest.approx(40)
    assert merged.generator_peak_cpu_percent == pytest.approx(20)


@pytest.fixture
def host() -> Iterator[str]:
    """A local HTTP server answering 200 to every POST to /echo (and GET /up), on a loop of its
    own."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/echo", answer)
    app.router.add_get("/up", answer)
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(runner.setup())
    port = free_port()
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.mark.slow
def test_a_fixed_request_is_paced_at_the_rate_and_answered(host):
    """100 req/s over a 2 s window from one Locust process: 200 arrivals expected (sd 14)."""
    run = paced_run(host, 100, 2, 0, processes=0, request=FixedRequest("/echo", b"{}", "/up"))
    assert 140 <= run.arrivals.requests <= 260
    assert set(run.arrivals.outcomes) == {OK}
    assert run.stats["connect (before the window)"]["Failure Count"] == "0"
    assert not any(name.startswith("/score") for name in run.stats)  # the body alone went out


@pytest.mark.slow
def test_a_fixed_request_without_an_answer_counts_by_its_exception():
    gone = f"http://127.0.0.1:{free_port()}"
    run = paced_run(gone, 50, 1, 0, processes=0, request=FixedRequest("/echo", b"{}", "/up"))
    assert run.arrivals.requests > 0
    assert run.arrivals.errors == run.arrivals.requests
    assert OK not in run.arrivals.outcomes
