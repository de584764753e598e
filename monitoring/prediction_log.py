"""The prediction log: every answered prediction, keyed by request id, so outcomes observed
later can be joined to what the model saw and said.

Writes are queued by the request and inserted in batches by one background thread, so the
request path never waits on the database; ``close()`` drains the queue (the service calls it
on shutdown), so a clean stop loses nothing. The store is any SQLAlchemy URL: SQLite by
default, e.g. ``postgresql+psycopg://user:pass@host/db`` in production (install the driver).

The log holds personal data. The writer deletes rows older than the retention
(``CREDIT_RISK_PREDICTION_LOG_RETENTION_DAYS``) at start-up and every hour;
``python -m monitoring.prediction_log delete-expired`` does the same once (e.g. from a CronJob).
The URL carries the database password: it is never logged, raised or answered as given, only
with the password as ``***`` (``monitoring/credentials.py``); SQLAlchemy is told to keep
statement parameters (the applications) out of its error messages too.
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from monitoring.credentials import hide_passwords, redact_url, redacted_errors, url_secrets
from monitoring.metrics import LOG_BACKLOG
from monitoring.settings import MonitoringSettings

log = logging.getLogger(__name__)

DAY_S = 86_400.0
PURGE_INTERVAL_S = 3_600.0  # how often the writer deletes expired rows (and once at start-up)
PURGE_CHUNK_ROWS = 10_000  # rows per DELETE: short transactions, never one huge lock

METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    # indexed: the retention's DELETE selects on it
    sa.Column("logged_at", sa.Float, nullable=False, index=True, doc="Unix time of the answer."),
    sa.Column("role", sa.String(16), nullable=False, doc="champion (answered) or challenger."),
    sa.Column("model_tag", sa.String(128), nullable=False),
    sa.Column("probability_default", sa.Float, nullable=False),
    sa.Column("decision", sa.String(16)),
    sa.Column("reasons", sa.String(256)),
    sa.Column("features", sa.JSON, nullable=False, doc="The application as received."),
    sa.Column("principal_reasons", sa.JSON, doc="Reason codes with contributions, if given."),
)
INSERTED = tuple(column.name for column in PREDICTIONS.columns if column.name != "id")
_STOP = object()


class PredictionLog:
    """Batched, asynchronous inserts into the ``predictions`` table, and the retention."""

    def __init__(
        self,
        url: str,
        batch_rows: int = 500,
        flush_interval_s: float = 1.0,
        retention_days: int | None = None,
        purge_interval_s: float = PURGE_INTERVAL_S,
    ) -> None:
        """``retention_days``: rows older than this are deleted (0: kept forever); ``None``
        takes ``CREDIT_RISK_PREDICTION_LOG_RETENTION_DAYS`` from the environment."""
        self.location = redact_url(url)  # the only form of the URL this object ever shows
        self._secrets = url_secrets(url)
        with redacted_errors(url, "cannot be opened"):
            self.engine = open_engine(url)
            METADATA.create_all(self.engine)
            add_missing_columns(self.engine)
            add_missing_indexes(self.engine)
        if retention_days is None:
            retention_days = MonitoringSettings().prediction_log_retention_days
        self.retention_days = retention_days
        self.purge_interval_s = purge_interval_s
        self.backlog = 0  # rows queued and not yet inserted (or dropped)
        self._backlog_lock = threading.Lock()  # the request thread adds, the writer removes
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        log.info(
            "prediction log %s, rows kept %s",
            self.location,
            f"{retention_days} days" if retention_days > 0 else "forever",
        )
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue rows for insertion; returns at once."""
        self._queue.put(list(rows))
        self._count_backlog(len(rows))

    def close(self) -> None:
        """Insert everything queued so far, then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join()
        self.engine.dispose()

    def _run(self) -> None:
        """Insert when a batch is full or the flush interval has passed; drain on stop. Expired
        rows are deleted first (start-up) and then every ``purge_interval_s``."""
        self._purge()
        next_purge = time.monotonic() + self.purge_interval_s
        pending: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_interval_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                if pending:
                    self._insert(pending)
                return
            if item:
                pending += item
            now = time.monotonic()
            due = now >= deadline
            if pending and (due or len(pending) >= self.batch_rows):
                self._insert(pending)
                pending = []
            if due:
                deadline = time.monotonic() + self.flush_interval_s
            if now >= next_purge:
                self._purge()
                next_purge = time.monotonic() + self.purge_interval_s

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        # one statement for the batch takes its columns from the first row, so every row
        # carries every column: one that lacks an optional one (a challenger's reasons) is null
        complete = [{column: row.get(column) for column in INSERTED} for row in rows]
        try:
            with self.engine.begin() as connection:
                connection.execute(PREDICTIONS.insert(), complete)
        except Exception as error:  # a failed batch is dropped, never the writer
            self._log_failure(f"{len(rows)} rows could not be written", error)
        self._count_backlog(-len(rows))

    def _purge(self) -> None:
        if self.retention_days <= 0:
            return
        try:
            deleted = delete_expired(self.engine, self.retention_days)
        except Exception as error:  # tried again at the next period
            self._log_failure("expired rows could not be deleted", error)
            return
        if deleted:
            log.info(
                "prediction log %s: deleted %d rows older than %d days",
                self.location,
                deleted,
                self.retention_days,
            )

    def _log_failure(self, what: str, error: BaseException) -> None:
        """The error with its traceback, every password in it hidden (a driver may echo its
        connection string); statement parameters are kept out by ``hide_parameters``."""
        text = hide_passwords("".join(traceback.format_exception(error)), *self._secrets)
        log.error("prediction log %s: %s\n%s", self.location, what, text.rstrip())

    def _count_backlog(self, change: int) -> None:
        with self._backlog_lock:
            self.backlog += change
            LOG_BACKLOG.set(self.backlog)


def open_engine(url: str) -> sa.Engine:
    """An engine for the log; SQLite's folder made first (SQLite makes none). Statement
    parameters (applicants' data) stay out of SQLAlchemy's error messages."""
    location = sa.engine.make_url(url)
    database = location.database
    on_disk = database is not None and database not in ("", ":memory:")
    if location.get_backend_name() == "sqlite" and on_disk:
        Path(str(database)).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(url, hide_parameters=True)


def delete_expired(
    engine: sa.Engine,
    retention_days: int,
    now: float | None = None,
    chunk_rows: int = PURGE_CHUNK_ROWS,
) -> int:
    """Delete the rows logged more than ``retention_days`` before ``now`` (default: the time),
    ``chunk_rows`` per transaction; return how many. ``retention_days`` 0 deletes nothing."""
    if retention_days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - retention_days * DAY_S
    expired = sa.select(PREDICTIONS.c.id).where(PREDICTIONS.c.logged_at < cutoff).limit(chunk_rows)
    deleted = 0
    while True:
        with engine.begin() as connection:
            result = connection.execute(PREDICTIONS.delete().where(PREDICTIONS.c.id.in_(expired)))
        deleted += result.rowcount
        if result.rowcount < chunk_rows:
            return deleted


def add_missing_columns(engine: sa.Engine) -> None:
    """A log created by an older release lacks newer (nullable) columns: add them, so an
    upgraded service writes into the same table instead of failing every insert."""
    present = {column["name"] for column in sa.inspect(engine).get_columns(PREDICTIONS.name)}
    with engine.begin() as connection:
        for column in PREDICTIONS.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(
                    sa.text(f"ALTER TABLE {PREDICTIONS.name} ADD COLUMN {column.name} {kind}")
                )


def add_missing_indexes(engine: sa.Engine) -> None:
    """A log created before an index existed (``logged_at``, for the retention) gains it."""
    present = {index["name"] for index in sa.inspect(engine).get_indexes(PREDICTIONS.name)}
    for index in PREDICTIONS.indexes:
        if index.name not in present:
            index.create(engine)


def read_predictions(url: str, role: str = "champion") -> list[dict[str, Any]]:
    """All logged rows of one role, oldest first (for outcome joins and tests)."""
    with redacted_errors(url, "cannot be read"):
        engine = sa.create_engine(url, hide_parameters=True)
        try:
            with engine.connect() as connection:
                query = (
                    sa.select(PREDICTIONS)
                    .where(PREDICTIONS.c.role == role)
                    .order_by(PREDICTIONS.c.id)
                )
                return [dict(row._mapping) for row in connection.execute(query)]
        finally:
            engine.dispose()


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.prediction_log",
        description="Delete prediction-log rows older than the retention, once (the service's "
        "writer does it at start-up and every hour).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    purge = commands.add_parser("delete-expired", help="delete rows older than the retention")
    purge.add_argument(
        "--retention-days",
        type=int,
        default=None,
        help="days kept (default: CREDIT_RISK_PREDICTION_LOG_RETENTION_DAYS; 0 deletes nothing)",
    )
    args = parser.parse_args(argv)
    settings = MonitoringSettings()
    url = settings.prediction_log_url  # from the environment only: never on a command line
    days = (
        settings.prediction_log_retention_days
        if args.retention_days is None
        else args.retention_days
    )
    with redacted_errors(url, "cannot be cleaned"):
        engine = open_engine(url)
        try:
            has_log = sa.inspect(engine).has_table(PREDICTIONS.name)
            deleted = delete_expired(engine, days) if has_log else 0
        finally:
            engine.dispose()
    print(f"deleted={deleted} retention_days={days} log={redact_url(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
