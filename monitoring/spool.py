"""The prediction log's outbox on local disk: answered rows wait here until the database has
them, so a database that is down or slow, or a worker that stops, loses none.

One SQLite file per process instance (``<pid>-<random>.spool``), held through an exclusive
``flock`` on its ``.lock`` file for the life of the process. The kernel drops that lock when the
process dies, however it dies (SIGKILL included), so a file whose lock can be taken belongs to
nobody: another worker of the same service adopts it, ships its rows and deletes it. A file is
appended in transactions (WAL journal; with ``fsync`` each commit is on the device before it
returns, otherwise only in the kernel's cache, which a killed process does not lose but a power
cut may); rows leave it only once the database has committed them.

Rows are stored as the database's columns (``COLUMNS``), the two JSON ones (the application,
the reasons) as JSON text encoded once, here: shipping reads them back as tuples (SQLite, in C)
and hands them to the database as they are, with no decoding, re-encoding or per-row objects
on the way. A file written by an older release (one JSON document per row, table ``rows``) is
converted when it is opened.

Rows the database refuses one by one (a value it cannot store) are never dropped: they move to
the file's ``unwritable`` table with the error, for an operator, and the file is kept.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SPOOL_SUFFIX = ".spool"
LOCK_SUFFIX = ".lock"
# The database's columns, in the order a spooled row holds them (the prediction log's table
# has these, plus its own id). The JSON ones are stored as text.
COLUMNS = (
    "request_id",
    "logged_at",
    "role",
    "model_tag",
    "probability_default",
    "decision",
    "reasons",
    "features",
    "principal_reasons",
)
JSON_COLUMNS = frozenset({"features", "principal_reasons"})
# compact, and no cycle check: rows are plain JSON-like values (a cycle would still fail, as
# RecursionError); about a quarter cheaper than json.dumps per row
ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
SCALARS = (str, int, float)  # what SQLite stores as given (bool is an int)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS pending ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id, logged_at, role, model_tag,"
    " probability_default, decision, reasons, features, principal_reasons)",
    "CREATE TABLE IF NOT EXISTS unwritable ("
    " seq INTEGER PRIMARY KEY, failed_at REAL NOT NULL, error TEXT NOT NULL, row TEXT NOT NULL)",
)
SELECT_HEAD = f"SELECT seq, {', '.join(COLUMNS)} FROM pending ORDER BY seq LIMIT ?"
INSERT = f"INSERT INTO pending ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
LEGACY = "rows"  # an older release's table: one JSON document per row


def encode(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """``row`` as the database's columns (``COLUMNS``), JSON ones as text; a column it lacks is
    null (the database refuses a required one). A value SQLite would not store as given (a
    numpy scalar, a set in the features) raises ``TypeError`` or ``ValueError``."""
    features = row.get("features")
    principal = row.get("principal_reasons")
    columns = (
        row.get("request_id"),
        row.get("logged_at"),
        row.get("role"),
        row.get("model_tag"),
        row.get("probability_default"),
        row.get("decision"),
        row.get("reasons"),
        None if features is None else ENCODE(features),
        None if principal is None else ENCODE(principal),
    )
    for value in columns:
        if value is not None and not isinstance(value, SCALARS):
            raise TypeError(f"{type(value).__name__} is not a column value")
    return columns


def decode(columns: Sequence[Any]) -> dict[str, Any]:
    """A spooled row as the dict it was given as (JSON columns decoded)."""
    return {
        name: json.loads(value) if name in JSON_COLUMNS and value is not None else value
        for name, value in zip(COLUMNS, columns, strict=True)
    }


def lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive ``flock`` on ``path`` (created if missing), or
    None when another process holds it. A lock taken on a file that its holder deleted
    meanwhile (the path now names another file, or none) is given up: it guards nothing."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    try:
        same = os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        os.close(descriptor)
        return None
    return descriptor


class Spool:
    """Rows waiting for the database, oldest first, in one SQLite file this process owns.

    Used by two threads (the one that appends, the one that ships), one statement at a time
    under a lock; ``rows`` is kept in memory (SQLite's ``COUNT(*)`` scans the table)."""

    def __init__(self, path: Path, lock_descriptor: int, fsync: bool) -> None:
        self.path = path
        self._lock_descriptor = lock_descriptor
        self._mutex = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        for statement in SCHEMA:
            self._db.execute(statement)
        self._convert_legacy()
        self.rows: int = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]

    @classmethod
    def create(cls, folder: Path, fsync: bool) -> Spool:
        """A new spool file of this process in ``folder`` (made if missing, readable by this
        user only: the rows are personal data)."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            name = f"{os.getpid()}-{secrets.token_hex(4)}"
            descriptor = lock(folder / f"{name}{LOCK_SUFFIX}")
            if descriptor is not None:
                return cls(folder / f"{name}{SPOOL_SUFFIX}", descriptor, fsync)

    @classmethod
    def orphans(cls, folder: Path, fsync: bool) -> Iterator[Spool]:
        """The spool files in ``folder`` whose process is gone, each locked for the caller,
        who must ``close()`` it."""
        for lock_path in sorted(folder.glob(f"*{LOCK_SUFFIX}")):
            descriptor = lock(lock_path)
            if descriptor is not None:
                yield cls(lock_path.with_suffix(SPOOL_SUFFIX), descriptor, fsync)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store ``rows`` in one transaction; return how many could not be serialised (those
        go to ``unwritable`` as their ``repr``, never silently away)."""
        stored, failed = [], []
        for row in rows:
            try:
                stored.append(encode(row))
            except (TypeError, ValueError, RecursionError) as error:
                failed.append((time.time(), f"{type(error).__name__}: {error}", repr(row)))
        with self._mutex:
            with self._transaction():
                self._db.executemany(INSERT, stored)
                if failed:
                    self._db.executemany(
                        "INSERT INTO unwritable (failed_at, error, row) VALUES (?, ?, ?)", failed
                    )
            self.rows += len(stored)
        return len(failed)

    def head(self, limit: int) -> list[tuple[Any, ...]]:
        """The oldest ``limit`` rows, each ``(seq, *COLUMNS)``: the JSON columns as text, as
        the database takes them."""
        with self._mutex:
            return self._db.execute(SELECT_HEAD, (limit,)).fetchall()

    def remove_through(self, seq: int) -> None:
        """Forget every row up to ``seq``: the database has them."""
        with self._mutex:
            with self._transaction():
                removed = self._db.execute("DELETE FROM pending WHERE seq <= ?", (seq,)).rowcount
            self.rows -= removed

    def set_aside(self, seq: int, error: str) -> None:
        """Move one row the database refused to ``unwritable``, with the reason (the row as
        one JSON document, as it was given)."""
        with self._mutex:
            found = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM pending WHERE seq = ?", (seq,)
            ).fetchone()
            if found is None:
                return
            with self._transaction():
                self._db.execute(
                    "INSERT INTO unwritable (failed_at, error, row) VALUES (?, ?, ?)",
                    (time.time(), error, ENCODE(decode(found))),
                )
                self._db.execute("DELETE FROM pending WHERE seq = ?", (seq,))
            self.rows -= 1

    def oldest_logged_at(self) -> float | None:
        with self._mutex:
            found = self._db.execute(
                "SELECT logged_at FROM pending ORDER BY seq LIMIT 1"
            ).fetchone()
        return None if found is None else float(found[0])

    def unwritable(self) -> list[tuple[str, str]]:
        """The rows set aside, as ``(error, row)``, oldest first."""
        with self._mutex:
            return list(self._db.execute("SELECT error, row FROM unwritable ORDER BY seq"))

    def close(self) -> None:
        """Close the file and give up its lock; an empty file (nothing to ship, nothing set
        aside) is deleted first, so the folder holds only spools with something in them."""
        with self._mutex:
            empty = (
                self.rows == 0
                and not self._db.execute("SELECT 1 FROM unwritable LIMIT 1").fetchone()
            )
            self._db.close()
        if empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self.path.with_suffix(LOCK_SUFFIX).unlink(missing_ok=True)
        os.close(self._lock_descriptor)

    def _convert_legacy(self) -> None:
        """An older release's file (one JSON document per row in ``rows``): its rows move to
        ``pending``, in order, in one transaction; one that does not convert is set aside."""
        legacy = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (LEGACY,)
        ).fetchone()
        if legacy is None:
            return
        with self._transaction():
            stored, failed = [], []
            for (text,) in self._db.execute(f"SELECT row FROM {LEGACY} ORDER BY seq"):
                try:
                    stored.append(encode(json.loads(text)))
                except (TypeError, ValueError, RecursionError, AttributeError) as error:
                    failed.append((time.time(), f"{type(error).__name__}: {error}", text))
            self._db.executemany(INSERT, stored)
            self._db.executemany(
                "INSERT INTO unwritable (failed_at, error, row) VALUES (?, ?, ?)", failed
            )
            self._db.execute(f"DROP TABLE {LEGACY}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): one commit, one sync."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
