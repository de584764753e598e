"""The Locust scenario itself, headless against the served Bento, distributed as `make smoke`
and `make size` run it (a master and worker processes): zero failures with every bad request
answered 4xx (the locustfile marks anything else a failure); a sizing step paced open-loop over
a measured window, at the total rate asked whatever the workers, with the generator's CPU beside
the server's; one fixed body paced the same way on workers (how the runner alone and the
benchmark's other servers are measured); and the master and workers started apart, as on
several machines."""

from __future__ import annotations

import subprocess

from loadtests.load.locust_run import (
    LOCUST,
    LOCUSTFILE,
    FixedRequest,
    paced_options,
    paced_seconds,
    paced_users,
    run_locust,
)
from loadtests.load.pacing import OK
from loadtests.load.server import free_port
from loadtests.sizing.measure import locust_load, run_step, score_body

WORKERS = 2
WORKER_OF = ("--master-host", "127.0.0.1", "--master-port")  # + the master's port


def test_locust_smoke_run_on_workers_has_no_failures(server):
    run = run_locust(
        server.url, 8, 8, "--bad-share", "0.2", "--exit-code-on-error", "1", processes=WORKERS
    )
    assert run.exit_code == 0
    assert int(run.total["Request Count"]) > 50
    assert int(run.total["Failure Count"]) == 0
    assert any(name.startswith("/score [bad:") for name in run.stats)
    assert set(run.arrivals.outcomes) == {OK}
    # every worker's arrivals reached the master (it refuses a result missing some)
    assert run.arrivals.requests == int(run.total["Request Count"])
    names = sorted(process.name.split()[0] for process in run.arrivals.generator)
    assert names == ["master", "worker", "worker"]


def test_a_sizing_step_on_workers_offers_the_total_rate_and_measures_the_generator(server):
    """100 req/s over a 4 s window on two workers: 400 arrivals expected (sd 20); a worker
    pacing the whole rate, or one worker's users pacing it alone, would offer 800."""
    step = run_step(server, locust_load(server.url, WORKERS), 100, 4)
    assert 320 <= step.requests <= 480
    assert step.errors == 0
    assert step.window_s == 4
    assert step.generator_processes == WORKERS + 1
    assert 0 < step.generator_peak_cpu_percent < step.generator_cpu_percent
    assert step.server_cpu_percent > 0
    assert not step.generator_saturated  # 100 req/s is far below what two workers drive
    assert step.p99_ms < 1000


def test_a_fixed_body_on_workers_is_paced_at_the_total_rate(server):
    """The ``--body`` option reaches the workers with the spawn message, as ``--rate`` does:
    every arrival posts that body (one application, 200 expected), 50 req/s over 4 s in all."""
    request = FixedRequest("/score", score_body(), "/readyz")
    step = run_step(server, locust_load(server.url, WORKERS, request), 50, 4)
    assert 140 <= step.requests <= 260
    assert step.errors == 0
    assert step.generator_processes == WORKERS + 1


def test_workers_started_apart_as_on_other_machines_follow_the_master(server, tmp_path):
    """`--master --expect-workers 2` and two `--worker --master-host` processes (docs/sizing.md):
    the workers never see `-u`, yet pace the master's total rate, and report to it."""
    port = str(free_port())
    workers = [
        subprocess.Popen(
            [LOCUST, "-f", str(LOCUSTFILE), "--worker", *WORKER_OF, port],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(WORKERS)
    ]
    try:
        run = run_locust(
            server.url,
            paced_users(100),
            paced_seconds(4),
            *("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port),
            *("--expect-workers", str(WORKERS), "--expect-workers-max-wait", "30"),
            *paced_options(100, 4, bad_share=0),
            processes=0,
        )
        assert all(worker.wait(timeout=30) == 0 for worker in workers)  # the master ended them
    finally:
        for worker in workers:
            worker.kill()
    assert 320 <= run.arrivals.requests <= 480
    assert set(run.arrivals.outcomes) == {OK}
    assert run.stats["connect (before the window)"]["Request Count"] == str(paced_users(100))
    assert len(run.arrivals.generator) == WORKERS + 1
