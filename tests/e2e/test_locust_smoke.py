"""The Locust scenario itself, headless against the served Bento: zero failures, and every
bad request answered 4xx (the locustfile marks anything else a failure); then paced open-loop
over a measured window, as the sizing drives it."""

from __future__ import annotations

from loadtests.locust_run import paced_run, paced_users, run_locust
from loadtests.pacing import OK


def test_locust_smoke_run_has_no_failures(server):
    run = run_locust(server.url, 8, 8, "--bad-share", "0.2", "--exit-code-on-error", "1")
    assert run.exit_code == 0
    assert int(run.total["Request Count"]) > 100
    assert int(run.total["Failure Count"]) == 0
    assert any(name.startswith("/score [bad:") for name in run.stats)
    assert set(run.arrivals.outcomes) == {OK}


def test_paced_run_measures_only_its_window_at_the_asked_rate(server):
    run = paced_run(server.url, 100, 4, bad_share=0)
    arrivals = run.arrivals
    assert arrivals.elapsed_s == 4
    assert 250 <= sum(arrivals.outcomes.values()) <= 550  # Poisson, mean 400
    assert set(arrivals.outcomes) == {OK}
    assert run.stats["connect (before the window)"]["Request Count"] == str(paced_users(100))
    assert arrivals.percentile_ms(99) < 1000
