"""The prediction log: every answered prediction, keyed by request id and role, so outcomes
observed later can be joined to what the model saw and said.

An answered row travels memory -> spool -> database, each step in batches on its own thread,
so the request only appends to a queue and never waits on a disk or a database:

1. the request queues its rows (``write``);
2. every ``CREDIT_RISK_PREDICTION_LOG_FLUSH_S`` (0.2 s) or ``…_BATCH_ROWS`` rows, the spooler
   thread commits them to this worker's spool file on local disk (``monitoring/spool.py``);
3. the shipper thread inserts the spool's oldest rows into the database and deletes them from
   the spool only once the database has committed them. A database that is down, slow or
   refusing connections is retried with exponential backoff (0.25 s doubling to 30 s, with
   jitter); the rows wait in the spool meanwhile. The insert ignores a (request id, role)
   already there, so a batch written twice (the worker died between the database's commit and
   the spool's) is stored once.

What a hard kill (SIGKILL, OOM kill, power cut) can lose is step 1: the rows answered in the
last flush interval. Spooled rows survive it: the next worker of the same log adopts the spool
files of dead ones. ``close()`` (the service's shutdown hook) spools everything and gives the
database ``CREDIT_RISK_PREDICTION_LOG_DRAIN_S`` to take the spool; what it has not taken stays
on disk for the next start. Memory is bounded: ``accepting`` turns false when the rows not yet
spooled reach ``…_MEMORY_ROWS`` or the spool ``…_SPOOL_MAX_ROWS``, and the API refuses work
(503) rather than answer what it could not log. A row the database refuses on its own (a
value it cannot store) is set aside in the spool file, counted and logged, never dropped.

The store is any SQLAlchemy URL: SQLite by default, e.g. ``postgresql+psycopg://user:pass@host/
db`` in production; insert-or-ignore is PostgreSQL's and SQLite's ``ON CONFLICT DO NOTHING``.
The table is created (and missing columns and indexes added) on the first contact with the
database, not in the constructor, so a worker starts and answers while the database is away.

The log holds personal data. The shipper deletes rows older than the retention
(``CREDIT_RISK_PREDICTION_LOG_RETENTION_DAYS``) at start-up and every hour;
``python -m monitoring.prediction_log delete-expired`` does the same once (e.g. from a CronJob).
The URL carries the database password: it is never logged, raised or answered as given, only
with the password as ``***`` (``monitoring/credentials.py``); SQLAlchemy is told to keep
statement parameters (the applications) out of its error messages too.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import queue
import random
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from monitoring.credentials import hide_passwords, redact_url, redacted_errors, url_secrets
from monitoring.metrics import LOG_BACKLOG, LOG_OLDEST_AGE, LOG_SHIP_RETRIES, LOG_UNWRITABLE
from monitoring.settings import MonitoringSettings
from monitoring.spool import COLUMNS, Spool, decode

log = logging.getLogger(__name__)

DAY_S = 86_400.0
PURGE_INTERVAL_S = 3_600.0  # how often the writer deletes expired rows (and once at start-up)
PURGE_CHUNK_ROWS = 10_000  # rows per DELETE: short transactions, never one huge lock
RETRY_FIRST_S = 0.25  # backoff after the first failed write, doubled per failure ...
RETRY_MAX_S = 30.0  # ... up to this
ADOPT_INTERVAL_S = 30.0  # how often the shipper looks for spools of dead workers
PUBLISH_S = 1.0  # the gauges' refresh, also while the shipper waits
CONNECT_TIMEOUT_S = 10  # PostgreSQL: an unreachable host fails the attempt, not hangs it
FAILURE_LOG_INTERVAL_S = 30.0  # a failure that repeats is logged at most once per this
SHIP_BATCHES = 10  # a database transaction takes up to this many spool batches

METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    # indexed: the retention's DELETE selects on it
    sa.Column("logged_at", sa.Float, nullable=False, index=True, doc="Unix time of the answer."),
    sa.Column("role", sa.String(16), nullable=False, doc="champion (answered) or challenger."),
    sa.Column("model_tag", sa.String(128), nullable=False),
    sa.Column("probability_default", sa.Float, nullable=False),
    sa.Column("decision", sa.String(16)),
    sa.Column("reasons", sa.String(256)),
    sa.Column("features", sa.JSON, nullable=False, doc="The application as received."),
    sa.Column("principal_reasons", sa.JSON, doc="Reason codes with contributions, if given."),
    # one row per answer and role: a batch shipped twice is stored once (and outcome joins on
    # request_id use its leading column)
    sa.Index("uq_predictions_request_role", "request_id", "role", unique=True),
)
INSERTED = tuple(column.name for column in PREDICTIONS.columns if column.name != "id")
assert INSERTED == COLUMNS, "the spool holds the table's columns, in its order"
# PostgreSQL's fast path: COPY a batch into this session's staging table (text, no
# constraints), then one INSERT … SELECT … ON CONFLICT DO NOTHING into the log
STAGING = "prediction_log_incoming"
STAGING_TABLE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} ("
    " request_id text, logged_at double precision, role text, model_tag text,"
    " probability_default double precision, decision text, reasons text, features text,"
    " principal_reasons text) ON COMMIT DELETE ROWS"
)
STAGING_COPY = f"COPY {STAGING} ({', '.join(INSERTED)}) FROM STDIN"
STAGING_INSERT = (
    f"INSERT INTO {PREDICTIONS.name} ({', '.join(INSERTED)})"
    " SELECT request_id, logged_at, role, model_tag, probability_default, decision, reasons,"
    f" features::json, principal_reasons::json FROM {STAGING} ON CONFLICT DO NOTHING"
)
SQLITE_INSERT = (
    f"INSERT INTO {PREDICTIONS.name} ({', '.join(INSERTED)})"
    f" VALUES ({', '.join('?' * len(INSERTED))}) ON CONFLICT DO NOTHING"
)
_STOP = object()


class DatabaseUnavailableError(Exception):
    """The database, or the way to it, failed a write: the same rows are tried again later."""


class PredictionLog:
    """Answered rows, memory -> spool on local disk -> database; see the module docstring."""

    def __init__(
        self,
        url: str,
        batch_rows: int | None = None,
        flush_interval_s: float | None = None,
        retention_days: int | None = None,
        purge_interval_s: float = PURGE_INTERVAL_S,
        settings: MonitoringSettings | None = None,
    ) -> None:
        """Every option not given comes from ``settings`` (default: the environment);
        ``retention_days`` 0 keeps rows forever."""
        settings = settings or MonitoringSettings()
        self.location = redact_url(url)  # the only form of the URL this object ever shows
        self._secrets = url_secrets(url)
        with redacted_errors(url, "cannot be opened"):
            self.engine = open_engine(url)  # parses the URL, loads the driver; no connection
        self._insert = insert_ignoring_duplicates(self.engine.dialect.name)
        self.batch_rows = batch_rows or settings.prediction_log_batch_rows
        # rows per database transaction: as many as SHIP_BATCHES spool commits hold, so a
        # backlog ships in few large transactions (a commit, a round trip each)
        self.ship_rows = self.batch_rows * SHIP_BATCHES
        self.flush_interval_s = flush_interval_s or settings.prediction_log_flush_s
        self.retention_days = (
            settings.prediction_log_retention_days if retention_days is None else retention_days
        )
        self.purge_interval_s = purge_interval_s
        self.memory_bound = settings.prediction_log_memory_rows
        self.spool_bound = settings.prediction_log_spool_max_rows
        self.drain_s = settings.prediction_log_drain_s
        self.fsync = settings.prediction_log_spool_fsync
        self.spool_folder = spool_folder(settings.prediction_log_spool_dir, url)
        self.spool = Spool.create(self.spool_folder, self.fsync)
        self.memory_rows = 0  # queued by requests, not yet committed to the spool
        self._memory_lock = threading.Lock()  # the request thread adds, the spooler removes
        self._memory_oldest: float | None = None  # logged_at of the oldest of them
        self._adopting: Spool | None = None  # a dead worker's spool being shipped
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # set by a write that fills a batch, or by close(): the spooler otherwise wakes on its
        # timer, not once per request (a wake-up per write cost the request thread the GIL)
        self._wake = threading.Event()
        self._spooled = threading.Event()  # the spooler committed rows: wake the shipper
        self._spooler_done = threading.Event()
        self._drain_deadline = math.inf  # set by close()
        self._prepared = False  # table, columns and indexes checked since the last failure
        self._closed = False
        # repeated failures, per kind: when last logged and how many since (_repeated_failure)
        self._failures: dict[str, tuple[float, int]] = {}
        self._failure_lock = threading.Lock()
        log.info(
            "prediction log %s, rows kept %s, spool %s",
            self.location,
            f"{self.retention_days} days" if self.retention_days > 0 else "forever",
            self.spool_folder,
        )
        self._spooler = threading.Thread(
            target=self._spool_loop, name="prediction-log-spool", daemon=True
        )
        self._shipper = threading.Thread(
            target=self._ship_loop, name="prediction-log-ship", daemon=True
        )
        self._spooler.start()
        self._shipper.start()

    # --- the request's side ------------------------------------------------------------------

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue rows for the log; returns at once (no disk, no database)."""
        self._queue.put(list(rows))
        with self._memory_lock:
            self.memory_rows += len(rows)
            full = self.memory_rows >= self.batch_rows
        if full:
            self._wake.set()

    @property
    def accepting(self) -> bool:
        """Whether the log can take more rows within its bounds: false once the rows not yet
        spooled reach ``memory_bound`` (the disk is failing or slower than the traffic) or the
        spool holds ``spool_bound`` (the database has been away too long). The API then
        answers 503 + Retry-After rather than answer what it could not log."""
        return self.memory_rows < self.memory_bound and self.spool.rows < self.spool_bound

    @property
    def backlog(self) -> int:
        """Answered rows not yet in the database: in memory, in the spool, in an adopted one."""
        adopting = self._adopting
        return self.memory_rows + self.spool.rows + (adopting.rows if adopting else 0)

    def close(self) -> None:
        """Spool everything queued, then give the database up to ``drain_s`` to take the
        spool; what it has not taken by then stays in the spool file for the next start.
        Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._drain_deadline = time.monotonic() + self.drain_s
        self._queue.put(_STOP)
        self._wake.set()
        self._spooler.join()
        self._spooler_done.set()
        self._spooled.set()
        self._shipper.join(timeout=max(0.0, self._drain_deadline - time.monotonic()) + 5.0)
        if self._shipper.is_alive():  # stuck in a database call: its spool stays locked
            log.warning(
                "prediction log %s: the database did not answer in time; %d rows stay in %s "
                "for the next start",
                self.location,
                self.spool.rows,
                self.spool.path,
            )
            return
        if self.spool.rows:
            log.warning(
                "prediction log %s: %d rows not written yet stay in %s for the next start",
                self.location,
                self.spool.rows,
                self.spool.path,
            )
        self._publish()
        self.spool.close()
        self.engine.dispose()

    # --- memory -> spool ---------------------------------------------------------------------

    def _spool_loop(self) -> None:
        """Commit queued rows to the spool when ``batch_rows`` are waiting or the flush
        interval has passed; on stop, everything queued. A spool that fails (disk full, I/O
        error) or is full keeps the rows in memory and is tried again after a backoff."""
        pending: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_interval_s
        retry_at = 0.0
        failures = 0
        stopping = False
        while True:
            if not stopping:
                self._wake.wait(max(0.0, deadline - time.monotonic()))
                self._wake.clear()
                for item in drained(self._queue):
                    if item is _STOP:
                        stopping = True
                    else:
                        pending += item
            now = time.monotonic()
            due = stopping or now >= deadline
            ready = due or len(pending) >= self.batch_rows
            # a full spool is no failure: tried again every flush interval as it drains
            if pending and ready and now >= retry_at and self.spool.rows < self.spool_bound:
                if self._spool_rows(pending):
                    pending, failures = [], 0
                else:
                    failures += 1
                    retry_at = now + backoff(failures)
            self._memory_oldest = pending[0]["logged_at"] if pending else None
            if due:
                deadline = now + self.flush_interval_s
            if stopping and pending and now < self._drain_deadline:
                time.sleep(min(self.flush_interval_s, self._drain_deadline - now))
            elif stopping:
                if pending:
                    self._count_unwritable(len(pending), "could not be spooled before the stop")
                return

    def _spool_rows(self, rows: list[dict[str, Any]]) -> bool:
        """Commit ``rows`` to the spool; false (rows kept in memory) when it fails."""
        try:
            unserialisable = self.spool.append(rows)
        except Exception as error:  # the disk, not the rows: kept in memory, tried again
            self._repeated_failure(
                f"rows could not be spooled to {self.spool.path}; kept in memory, retried", error
            )
            return False
        with self._memory_lock:
            self.memory_rows -= len(rows)
        if unserialisable:
            self._count_unwritable(unserialisable, f"could not be serialised ({self.spool.path})")
        self._spooled.set()
        return True

    # --- spool -> database -------------------------------------------------------------------

    def _ship_loop(self) -> None:
        """Insert the spool's oldest rows, a batch at a time, while there are any; back off
        while the database is unavailable; adopt dead workers' spools at start-up and every
        ``ADOPT_INTERVAL_S``; delete expired rows at start-up and every ``purge_interval_s``.
        Ends once the spooler has stopped and the spool is empty, or the drain time is up."""
        next_adoption = time.monotonic()
        next_purge = time.monotonic()
        failures = 0
        while not (self._spooler_done.is_set() and time.monotonic() >= self._drain_deadline):
            self._publish()
            try:
                self._prepare()
                if time.monotonic() >= next_purge:
                    self._purge()
                    next_purge = time.monotonic() + self.purge_interval_s
                if time.monotonic() >= next_adoption:
                    self._adopt_orphans()
                    next_adoption = time.monotonic() + ADOPT_INTERVAL_S
                shipped = self._ship_batch(self.spool)
            except DatabaseUnavailableError as error:
                self._prepared = False  # a lost table or connection: checked again first
                failures += 1
                LOG_SHIP_RETRIES.inc()
                self._repeated_failure(
                    "rows could not be written; they stay in the spool and are retried",
                    error.__cause__ or error,
                )
                self._pause(backoff(failures))
                continue
            if failures:
                log.info("prediction log %s: written after %d retries", self.location, failures)
                failures = 0
                with self._failure_lock:
                    self._failures.clear()  # the next outage is told with its traceback
            if shipped:
                continue
            self._spooled.clear()
            if self.spool.rows:
                continue
            if self._spooler_done.is_set():
                self._publish()
                return
            self._spooled.wait(PUBLISH_S)

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, the gauges kept current; cut short when the drain time is up."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._spooler_done.is_set() and time.monotonic() >= self._drain_deadline:
                return
            time.sleep(min(left, PUBLISH_S))
            self._publish()

    def _prepare(self) -> None:
        """The table, its missing columns and indexes, once per contact with the database.
        Workers starting together on one database run this at the same moment: a step a
        sibling took first is no failure (``create_table``)."""
        if self._prepared:
            return
        try:
            create_table(self.engine)
            add_missing_columns(self.engine)
            add_missing_indexes(self.engine)
        except Exception as error:
            raise DatabaseUnavailableError from error
        self._prepared = True

    def _adopt_orphans(self) -> None:
        """Ship the spools that workers of this log left when they died, then delete them."""
        for orphan in Spool.orphans(self.spool_folder, self.fsync):
            self._adopting = orphan
            try:
                if orphan.rows:
                    log.info(
                        "prediction log %s: shipping %d rows from %s, left by a stopped worker",
                        self.location,
                        orphan.rows,
                        orphan.path,
                    )
                while self._ship_batch(orphan):
                    self._publish()
            finally:
                self._adopting = None
                orphan.close()

    def _ship_batch(self, spool: Spool) -> int:
        """Insert the oldest ``ship_rows`` of ``spool``, then forget them there; how many."""
        batch = spool.head(self.ship_rows)
        if batch:
            self._insert_isolating(spool, batch)
            spool.remove_through(batch[-1][0])
        return len(batch)

    def _insert_isolating(self, spool: Spool, batch: Sequence[tuple[Any, ...]]) -> None:
        """One transaction for the batch (``(seq, *columns)`` rows). When the database refuses
        the rows (a value, a constraint) rather than the connection, halve until each refused
        row is found and set aside in the spool, so one bad row never holds back the rest."""
        try:
            with self.engine.begin() as connection:
                self._write_rows(connection, [row[1:] for row in batch])
        except Exception as error:
            if database_unavailable(error, self.engine.dialect.dbapi):
                raise DatabaseUnavailableError from error
            if len(batch) > 1:
                middle = len(batch) // 2
                self._insert_isolating(spool, batch[:middle])
                self._insert_isolating(spool, batch[middle:])
                return
            reason = hide_passwords(f"{type(error).__name__}: {error}", *self._secrets)
            spool.set_aside(batch[0][0], reason)
            self._count_unwritable(1, f"refused by the database (kept in {spool.path}): {reason}")

    def _write_rows(self, connection: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Rows as the spool holds them (``INSERTED`` columns, JSON ones as text) into the
        table, a (request id, role) already there skipped: PostgreSQL by COPY into a staging
        table and one INSERT … SELECT; SQLite by one prepared INSERT run over the rows, in C;
        any other database through SQLAlchemy's insert."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            connection.exec_driver_sql(STAGING_TABLE)
            cursor: Any = connection.connection.cursor()  # psycopg's, for its COPY
            with cursor, cursor.copy(STAGING_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
            connection.exec_driver_sql(STAGING_INSERT)
        elif dialect == "sqlite":
            connection.exec_driver_sql(SQLITE_INSERT, rows)
        else:
            connection.execute(self._insert, [decode(row) for row in rows])

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

    # --- reporting ---------------------------------------------------------------------------

    def _publish(self) -> None:
        """The backlog and the age of its oldest row, as gauges."""
        adopting = self._adopting
        times = [
            self._memory_oldest,
            self.spool.oldest_logged_at(),
            adopting.oldest_logged_at() if adopting else None,
        ]
        known = [moment for moment in times if moment is not None]
        LOG_BACKLOG.set(self.backlog)
        LOG_OLDEST_AGE.set(max(0.0, time.time() - min(known)) if known else 0.0)

    def _count_unwritable(self, rows: int, why: str) -> None:
        LOG_UNWRITABLE.inc(rows)
        log.error("prediction log %s: %d rows %s", self.location, rows, why)

    def _repeated_failure(self, what: str, error: BaseException) -> None:
        """A failure that repeats while a database or a disk is away: the first one of a kind
        with its traceback, then one line per ``FAILURE_LOG_INTERVAL_S`` with how many times it
        happened since and the last reason (the metrics keep every try)."""
        with self._failure_lock:
            now = time.monotonic()
            last, count = self._failures.get(what, (None, 0))
            if last is None:
                self._failures[what] = (now, 0)
                self._log_failure(what, error)
            elif now - last >= FAILURE_LOG_INTERVAL_S:
                self._failures[what] = (now, 0)
                reason = hide_passwords(f"{type(error).__name__}: {error}", *self._secrets)
                log.error(
                    "prediction log %s: %s (x%d in the last %.0f s; last: %s)",
                    self.location,
                    what,
                    count + 1,
                    now - last,
                    reason.splitlines()[0] if reason else "",
                )
            else:
                self._failures[what] = (last, count + 1)

    def _log_failure(self, what: str, error: BaseException) -> None:
        """The error with its traceback, every password in it hidden (a driver may echo its
        connection string); statement parameters are kept out by ``hide_parameters``."""
        text = hide_passwords("".join(traceback.format_exception(error)), *self._secrets)
        log.error("prediction log %s: %s\n%s", self.location, what, text.rstrip())


def drained(waiting: queue.SimpleQueue[Any]) -> Iterator[Any]:
    """Everything queued now, without waiting."""
    while True:
        try:
            yield waiting.get_nowait()
        except queue.Empty:
            return


def backoff(failures: int) -> float:
    """Seconds before the next try after ``failures`` in a row: doubling from
    ``RETRY_FIRST_S`` to ``RETRY_MAX_S``, jittered so workers do not retry in step."""
    doubled = RETRY_FIRST_S * 2.0 ** min(failures - 1, 20)  # capped: no float overflow
    return min(RETRY_MAX_S, doubled) * random.uniform(0.5, 1.0)


def database_unavailable(error: BaseException, dbapi: Any = None) -> bool:
    """Whether a failed write is the database's (or the network's) fault, so the same rows
    are tried again later, rather than the rows' own (a value the column cannot hold, a
    constraint), so the refused row is set aside. Lost or refused connections, timeouts, a
    read-only, full or shutting-down server, a missing table or privilege are the former.
    ``dbapi``: the driver's module, whose own errors (raised by its COPY, outside SQLAlchemy)
    are read the same way."""
    if isinstance(error, sa.exc.DBAPIError):
        refused_rows = isinstance(error, sa.exc.DataError | sa.exc.IntegrityError)
        return error.connection_invalidated or not refused_rows
    if dbapi is not None and isinstance(error, dbapi.Error):
        return not isinstance(error, dbapi.DataError | dbapi.IntegrityError)
    return isinstance(error, sa.exc.DisconnectionError | sa.exc.TimeoutError | OSError)


def insert_ignoring_duplicates(dialect: str) -> sa.Insert:
    """An insert that skips a row whose (request id, role) is already logged, where the
    dialect has one (PostgreSQL, SQLite: ``ON CONFLICT DO NOTHING``); elsewhere a plain insert,
    whose duplicate is refused and set aside in the spool."""
    if dialect == "postgresql":
        return postgresql.insert(PREDICTIONS).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(PREDICTIONS).on_conflict_do_nothing()
    return PREDICTIONS.insert()


def spool_folder(root: str | Path, url: str) -> Path:
    """This log's spool folder under ``root``: one per database (by its password-less URL),
    so a worker adopts only spools bound for its own database."""
    return Path(root).expanduser() / hashlib.sha256(redact_url(url).encode()).hexdigest()[:16]


def open_engine(url: str) -> sa.Engine:
    """An engine for the log; SQLite's folder made first (SQLite makes none). Statement
    parameters (applicants' data) stay out of SQLAlchemy's error messages."""
    location = sa.engine.make_url(url)
    database = location.database
    on_disk = database is not None and database not in ("", ":memory:")
    if location.get_backend_name() == "sqlite" and on_disk:
        Path(str(database)).parent.mkdir(parents=True, exist_ok=True)
    # a pooled connection that a database restart cut is noticed before a batch is sent on it
    options: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": True}
    if location.get_backend_name() == "postgresql":
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = sa.create_engine(url, **options)
    if location.get_backend_name() == "sqlite" and on_disk:
        sa.event.listen(engine, "connect", sqlite_write_ahead)
    return engine


def sqlite_write_ahead(connection: Any, _record: Any) -> None:
    """A SQLite log in WAL mode: a commit is one sync of the journal (not three of journal and
    file), and the workers' writers do not block readers (an outcome join, a query). The mode
    stays with the file; ``synchronous=FULL`` keeps each commit on the device before the spool
    forgets its rows."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")


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


def create_table(engine: sa.Engine, table: sa.Table = PREDICTIONS) -> None:
    """The log's table (or another beside it), where it is missing (the log's indexes:
    ``add_missing_indexes``).

    API workers starting together on one database each find the table missing and create it.
    A plain ``CREATE TABLE`` (SQLAlchemy's ``create_all``: look, then create) failed for all
    but the first ("table predictions already exists"), logged at ERROR as rows that could not
    be written although the retry wrote them. ``IF NOT EXISTS`` settles it in the database;
    PostgreSQL can still refuse the loser of two concurrent creations (a duplicate row in its
    catalog), so a failure after which the table is there is a sibling's creation."""
    try:
        with engine.begin() as connection:
            connection.execute(sa.schema.CreateTable(table, if_not_exists=True))
    except sa.exc.DBAPIError:
        if not sa.inspect(engine).has_table(table.name):
            raise


def add_missing_columns(engine: sa.Engine) -> None:
    """A log created by an older release lacks newer (nullable) columns: add them, so an
    upgraded service writes into the same table instead of failing every insert. One
    transaction per column, and a column a sibling worker added meanwhile is no failure."""
    present = {column["name"] for column in sa.inspect(engine).get_columns(PREDICTIONS.name)}
    for column in PREDICTIONS.columns:
        if column.name in present:
            continue
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as connection:
                connection.execute(
                    sa.text(f"ALTER TABLE {PREDICTIONS.name} ADD COLUMN {column.name} {kind}")
                )
        except sa.exc.DBAPIError:
            columns = sa.inspect(engine).get_columns(PREDICTIONS.name)
            if column.name not in {added["name"] for added in columns}:
                raise


def add_missing_indexes(engine: sa.Engine) -> None:
    """A log created before an index existed gains it: ``logged_at`` for the retention, the
    unique (request_id, role) that makes a second delivery of a batch a no-op. ``IF NOT
    EXISTS``: workers starting together race for it. A table that already holds duplicate
    keys cannot take the unique index: said once per start, and the log keeps working without
    it (a batch delivered twice is then stored twice) until the duplicates are removed."""
    present = {index["name"] for index in sa.inspect(engine).get_indexes(PREDICTIONS.name)}
    for index in PREDICTIONS.indexes:
        if index.name in present:
            continue
        try:
            with engine.begin() as connection:
                connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        except sa.exc.DBAPIError as error:
            # PostgreSQL can refuse the loser of two concurrent creations (a duplicate row in
            # its catalog, an IntegrityError too): the index a sibling made is no failure
            indexes = sa.inspect(engine).get_indexes(PREDICTIONS.name)
            if index.name in {made["name"] for made in indexes}:
                continue
            if not isinstance(error, sa.exc.IntegrityError):
                raise
            log.error(
                "prediction log: index %s not created, the table holds duplicate keys; find "
                "them with SELECT request_id, role, COUNT(*) FROM %s GROUP BY 1, 2 HAVING "
                "COUNT(*) > 1",
                index.name,
                PREDICTIONS.name,
            )


def read_predictions(url: str, role: str = "champion") -> list[dict[str, Any]]:
    """All logged rows of one role, oldest first (for outcome joins and tests); none before
    the service's first contact with the database has created the table."""
    with redacted_errors(url, "cannot be read"):
        engine = sa.create_engine(url, hide_parameters=True)
        try:
            with engine.connect() as connection:
                if not sa.inspect(connection).has_table(PREDICTIONS.name):
                    return []
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
