"""The Locust scenario itself, headless against the served Bento: zero failures, and every
bad request answered 4xx (the locustfile marks anything else a failure)."""

from __future__ import annotations

from loadtests.locust_run import run_locust


def test_locust_smoke_run_has_no_failures(server):
    rows = run_locust(server.url, 8, 8, "--bad-share", "0.2", "--exit-code-on-error", "1")
    total = rows["Aggregated"]
    assert total["exit_code"] == "0"
    assert int(total["Request Count"]) > 100
    assert int(total["Failure Count"]) == 0
    assert any(name.startswith("/score [bad:") for name in rows)
