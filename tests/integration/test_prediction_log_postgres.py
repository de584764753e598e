"""The prediction log and the outcome join against a real PostgreSQL server on loopback
(tests/postgres_server.py, the `postgres` fixture): every answered row arrives exactly once
though the server is killed mid-load and started again, is slow, or the worker holding the
rows is killed; PostgreSQL's own refusals are set aside; the outcome join reads the log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from postgres_server import INSTALL, runs_as_root
from sklearn.metrics import roc_auc_score

from model_artifact.settings import SOURCE_ROOT
from monitoring.metrics import LOG_SHIP_RETRIES, LOG_UNWRITABLE
from monitoring.outcomes import main as outcomes_main
from monitoring.prediction_log import PREDICTIONS, PredictionLog
from monitoring.settings import MonitoringSettings

pytestmark = pytest.mark.slow


def row(request_id: str, probability: float = 0.3) -> dict:
    return {
        "request_id": request_id,
        "logged_at": time.time(),
        "role": "champion",
        "model_tag": "credit-risk:test",
        "probability_default": probability,
        "decision": "review",
        "reasons": "MODERATE_DEFAULT_RISK",
        "features": {"age": 30, "income": None},
        "principal_reasons": [],
    }


def open_log(url: str, spool: Path, **options: object) -> PredictionLog:
    return PredictionLog(
        url,
        flush_interval_s=0.05,
        batch_rows=200,
        retention_days=0,
        settings=MonitoringSettings(prediction_log_spool_dir=str(spool), prediction_log_drain_s=10),
        **options,
    )


def logged_ids(url: str) -> list[str]:
    """Every request id in the table, duplicates included (none before the log made it)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(PREDICTIONS.name):
                return []
            return list(connection.scalars(sa.select(PREDICTIONS.c.request_id)))
    finally:
        engine.dispose()


def wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Traffic:
    """Answers as an API worker logs them: a few rows per request, about 1,500 rows/s, from
    its own thread; ``answered`` holds every id handed to the log."""

    def __init__(self, log: PredictionLog, prefix: str) -> None:
        self.log, self.prefix = log, prefix
        self.answered: list[str] = []
        self.slowest_write_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = [row(f"{self.prefix}-{len(self.answered) + k}") for k in range(3)]
            started = time.perf_counter()
            self.log.write(batch)
            self.slowest_write_s = max(self.slowest_write_s, time.perf_counter() - started)
            self.answered += [r["request_id"] for r in batch]
            time.sleep(0.002)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_postgres_refuses_root_so_the_tests_run_it_unprivileged(postgres):
    if not runs_as_root():
        pytest.skip("the tests do not run as root here")
    refused = subprocess.run(
        [str(INSTALL / "bin" / "initdb"), "-D", "/nonexistent"], capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "cannot be run as root" in refused.stderr
    assert os.stat(f"/proc/{postgres.server_pid()}").st_uid != 0  # yet the server runs


def test_every_row_reaches_postgres_once_though_it_is_killed_mid_load(postgres, tmp_path):
    url = postgres.create_database("killed_mid_load")
    log = open_log(url, tmp_path / "spool")
    retries = LOG_SHIP_RETRIES._value.get()
    try:
        with Traffic(log, "kill") as traffic:
            wait_until(lambda: len(logged_ids(url)) > 300)
            postgres.stop("immediate")  # as a crash: connections cut mid-statement
            postgres.wait_down()
            time.sleep(1.5)
            spooled_while_down = log.spool.rows
            postgres.start()
            time.sleep(1.0)
    finally:
        if not (postgres.data / "postmaster.pid").exists():
            postgres.start()
    started = time.monotonic()
    log.close()
    drain_s = time.monotonic() - started
    logged = logged_ids(url)
    print(
        f"answered={len(traffic.answered)} logged={len(logged)} "
        f"unique_logged={len(set(logged))} spooled_while_down={spooled_while_down} "
        f"retries={LOG_SHIP_RETRIES._value.get() - retries} close_s={drain_s:.2f} "
        f"slowest_write_ms={traffic.slowest_write_s * 1e3:.2f}"
    )
    assert sorted(logged) == sorted(traffic.answered)  # every one, none twice
    assert spooled_while_down > 1000  # the outage was real: rows waited on disk
    assert LOG_SHIP_RETRIES._value.get() > retries


def test_a_slow_postgres_never_slows_the_writer_and_loses_nothing(postgres, tmp_path):
    url = postgres.create_database("slow")
    log = open_log(url, tmp_path / "spool")
    log.write([row("first")])
    wait_until(lambda: logged_ids(url) == ["first"])
    with (
        psycopg.connect(postgres.libpq_url("slow")) as blocker,
        Traffic(log, "slow") as traffic,
    ):
        blocker.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")  # inserts wait
        time.sleep(1.5)
        assert log.spool.rows > 500  # answered meanwhile, on disk, nothing in the database yet
        blocker.rollback()
        time.sleep(0.5)
    log.close()
    assert sorted(logged_ids(url)) == sorted(["first", *traffic.answered])
    assert traffic.slowest_write_s < 0.05


CHILD = """
import sys, time
from monitoring.prediction_log import PredictionLog
from monitoring.settings import MonitoringSettings

url, spool, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = PredictionLog(url, flush_interval_s=0.05, retention_days=0,
                    settings=MonitoringSettings(prediction_log_spool_dir=spool))
log.write([{"request_id": f"worker-{i}", "logged_at": time.time(), "role": "champion",
            "model_tag": "credit-risk:test", "probability_default": 0.5, "features": {}}
           for i in range(rows)])
while log.spool.rows < rows:
    time.sleep(0.01)
print("spooled", flush=True)
time.sleep(600)
"""


def test_rows_of_a_killed_worker_are_shipped_by_the_next_one(postgres, tmp_path):
    """SIGKILL (the OOM killer, a crashed worker) while PostgreSQL is down: the rows wait in
    the dead worker's spool, and the next worker of the same log ships them."""
    url = postgres.create_database("killed_worker")
    spool = tmp_path / "spool"
    open_log(url, spool).close()  # the table exists
    postgres.stop()
    try:
        worker = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(spool), "500"],
            cwd=SOURCE_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "spooled"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        postgres.start()
    assert logged_ids(url) == []
    next_worker = open_log(url, spool)
    wait_until(lambda: len(logged_ids(url)) == 500)
    next_worker.close()
    assert sorted(logged_ids(url)) == sorted(f"worker-{i}" for i in range(500))
    assert not list(spool.rglob("*.spool"))


def test_an_existing_postgres_table_gains_the_unique_key_and_a_redelivery_is_ignored(
    postgres, tmp_path
):
    url = postgres.create_database("upgraded")
    with psycopg.connect(postgres.libpq_url("upgraded")) as connection:  # an older release's
        connection.execute(
            "CREATE TABLE predictions (id SERIAL PRIMARY KEY, request_id VARCHAR(64) NOT NULL,"
            " logged_at FLOAT NOT NULL, role VARCHAR(16) NOT NULL, model_tag VARCHAR(128) NOT"
            " NULL, probability_default FLOAT NOT NULL, decision VARCHAR(16), reasons"
            " VARCHAR(256), features JSON NOT NULL)"
        )
    log = open_log(url, tmp_path / "spool")
    log.write([row("a"), row("b")])
    log.write([row("a"), row("c")])  # a batch shipped twice: a kill between the two commits
    log.close()
    assert sorted(logged_ids(url)) == ["a", "b", "c"]
    engine = sa.create_engine(url)
    try:
        indexes = sa.inspect(engine).get_indexes("predictions")
    finally:
        engine.dispose()
    assert [i["column_names"] for i in indexes if i["unique"]] == [["request_id", "role"]]


def test_rows_postgres_refuses_are_set_aside_and_the_rest_arrive(postgres, tmp_path):
    url = postgres.create_database("refusals")
    log = open_log(url, tmp_path / "spool")
    before = LOG_UNWRITABLE._value.get()
    too_long = row("x" * 65)  # VARCHAR(64): SQLite would take it, PostgreSQL does not
    not_json = row("nan") | {"features": {"income": float("nan")}}  # NaN is no JSON value
    log.write([row("ok-1"), too_long, row("ok-2"), not_json, row("ok-3")])
    log.close()
    assert sorted(logged_ids(url)) == ["ok-1", "ok-2", "ok-3"]
    assert LOG_UNWRITABLE._value.get() == before + 2
    (kept,) = (tmp_path / "spool").rglob("*.spool")  # kept for an operator to look at
    assert kept.stat().st_size > 0


def test_the_outcome_join_reads_a_postgres_log(postgres, tmp_path, capsys):
    url = postgres.create_database("outcomes")
    scores = [0.05 + 0.9 * i / 199 for i in range(200)]
    labels = [int((i * 7919) % 200 < i) for i in range(200)]  # more defaults at higher scores
    log = open_log(url, tmp_path / "spool")
    log.write([row(f"app-{i}", score) for i, score in enumerate(scores)])
    log.close()
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame(
        {"request_id": [f"app-{i}" for i in range(200)] + ["unknown"], "label": [*labels, 1]}
    ).to_csv(outcomes, index=False)
    assert outcomes_main([str(outcomes), "--log-url", url, "--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "rows=200 " in printed
    assert "unmatched=1" in printed
    auc = float(printed.split("roc_auc=")[1].split()[0])
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
