"""The prediction log: every answered prediction, keyed by request id, so outcomes observed
later can be joined to what the model saw and said.

Writes are queued by the request and inserted in batches by one background thread, so the
request path never waits on the database; ``close()`` drains the queue (the service calls it
on shutdown), so a clean stop loses nothing. The store is any SQLAlchemy URL: SQLite by
default, e.g. ``postgresql+psycopg://user:pass@host/db`` in production (install the driver).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from monitoring.metrics import LOG_BACKLOG

log = logging.getLogger(__name__)

METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("logged_at", sa.Float, nullable=False, doc="Unix time of the answer."),
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
    """Batched, asynchronous inserts into the ``predictions`` table."""

    def __init__(self, url: str, batch_rows: int = 500, flush_interval_s: float = 1.0) -> None:
        location = sa.engine.make_url(url)
        database = location.database
        on_disk = database is not None and database not in ("", ":memory:")
        if location.get_backend_name() == "sqlite" and on_disk:  # SQLite makes no folders
            Path(str(database)).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url)
        METADATA.create_all(self.engine)
        add_missing_columns(self.engine)
        self.backlog = 0  # rows queued and not yet inserted (or dropped)
        self._backlog_lock = threading.Lock()  # the request thread adds, the writer removes
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
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
        """Insert when a batch is full or the flush interval has passed; drain on stop."""
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
            due = time.monotonic() >= deadline
            if pending and (due or len(pending) >= self.batch_rows):
                self._insert(pending)
                pending = []
            if due:
                deadline = time.monotonic() + self.flush_interval_s

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        # one statement for the batch takes its columns from the first row, so every row
        # carries every column: one that lacks an optional one (a challenger's reasons) is null
        complete = [{column: row.get(column) for column in INSERTED} for row in rows]
        try:
            with self.engine.begin() as connection:
                connection.execute(PREDICTIONS.insert(), complete)
        except sa.exc.SQLAlchemyError:
            log.exception("prediction log: %d rows could not be written", len(rows))
        self._count_backlog(-len(rows))

    def _count_backlog(self, change: int) -> None:
        with self._backlog_lock:
            self.backlog += change
            LOG_BACKLOG.set(self.backlog)


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


def read_predictions(url: str, role: str = "champion") -> list[dict[str, Any]]:
    """All logged rows of one role, oldest first (for outcome joins and tests)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = (
                sa.select(PREDICTIONS).where(PREDICTIONS.c.role == role).order_by(PREDICTIONS.c.id)
            )
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()
