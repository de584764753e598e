"""The served Bento logging to a real PostgreSQL server that is killed mid-load and started
again: every request id the service answered ends up in the log exactly once, and while the
database is away /metrics shows the backlog and its age."""

from __future__ import annotations

import re
import threading
import time

import requests
import sqlalchemy as sa
from tests_support import serving_env

from loadtests.load.server import NO_CHALLENGER, Server


class Clients:
    """``connections`` threads posting two applications per request, each with its own
    request id; ``answered`` holds the ids of every 200 answer, ``statuses`` every status."""

    def __init__(self, url: str, record: dict, connections: int = 6) -> None:
        self.url, self.record = url, record
        self.answered: list[str] = []
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(connections)]

    def _run(self, connection: int) -> None:
        session = requests.Session()
        sent = 0
        while not self._stop.is_set():
            ids = [f"c{connection}-{sent}-{k}" for k in range(2)]
            sent += 1
            body = {"applications": [dict(self.record, request_id=i) for i in ids]}
            response = session.post(f"{self.url}/score", json=body, timeout=30)
            with self._lock:
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    self.answered += [r["request_id"] for r in response.json()["results"]]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def gauge(url: str, name: str) -> float:
    """A prediction-log gauge on /metrics, summed over the API's workers."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    values = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert values, f"{name} not on /metrics"
    return sum(float(value) for value in values)


def logged_ids(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(sa.text("SELECT request_id FROM predictions")))
    finally:
        engine.dispose()


def test_every_answer_is_logged_once_though_postgres_dies_mid_load(
    bento_tag, postgres, tmp_path, make_record
):
    log_url = postgres.create_database("served_log")
    env = serving_env(
        CREDIT_RISK_PREDICTION_LOG_URL=log_url,
        CREDIT_RISK_PREDICTION_LOG_SPOOL_DIR=str(tmp_path / "spool"),
        CREDIT_RISK_RUNNER_MODE="inprocess",
        CREDIT_RISK_API_WORKERS="2",  # two workers, two spools
        **NO_CHALLENGER,
    )
    server = Server(bento_tag, tmp_path / "serve.log", env).wait_ready()
    try:
        with Clients(server.url, make_record()) as clients:
            time.sleep(2)
            postgres.stop("immediate")
            postgres.wait_down()
            time.sleep(3)
            backlog = gauge(server.url, "credit_risk_prediction_log_backlog_rows")
            age = gauge(server.url, "credit_risk_prediction_log_oldest_unshipped_age_seconds")
            postgres.start()
            time.sleep(2)
        assert server.stop() == 0  # SIGTERM: the shutdown hook ships what is left
    finally:
        if server.process.poll() is None:
            server.stop()
        if not (postgres.data / "postmaster.pid").exists():
            postgres.start()
    logged = logged_ids(log_url)
    print(
        f"statuses={clients.statuses} answered={len(clients.answered)} logged={len(logged)} "
        f"backlog_while_down={backlog:.0f} oldest_age_while_down_s={age:.1f}"
    )
    assert clients.statuses.get(200, 0) > 100
    assert set(clients.statuses) <= {200, 503}
    assert sorted(logged) == sorted(clients.answered)  # every answer, none twice
    assert backlog > 0
    assert age > 1.0
    assert "retried" in server.log.read_text()  # the outage was noticed and ridden out
    assert not list((tmp_path / "spool").rglob("*.spool"))  # all shipped, spools deleted
