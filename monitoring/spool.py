"""The prediction log's outbox on local disk: answered rows wait here until the database has
them, so a database that is down or slow, or a worker that stops, loses none.

One SQLite file per process instance (``<pid>-<random>.spool``), held through an exclusive
``flock`` on its ``.lock`` file for the life of the process. The kernel drops that lock when the
process dies, however it dies (SIGKILL included), so a file whose lock can be taken belongs to
nobody: another worker of the same service adopts it, ships its rows and deletes it. A file is
appended in transactions (WAL journal; with ``fsync`` each commit is on the device before it
returns, otherwise only in the kernel's cache, which a killed process does not lose but a power
cut may); rows leave it only once the database has committed them.

Rows the database refuses one by one (a value it cannot store) are never dropped: they move to
the file's ``unwritable`` table with the error, for an operator, and the file is kept.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SPOOL_SUFFIX = ".spool"
LOCK_SUFFIX = ".lock"
RECENT_ROWS = 2_000  # rows kept in memory after appending, for shipping (a few batches)
SEQUENCE = "SELECT seq FROM sqlite_sequence WHERE name = 'rows'"
# compact, and no cycle check: rows are plain JSON-like values (a cycle would still fail, as
# RecursionError); about a quarter cheaper than json.dumps per row
ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rows ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, logged_at REAL NOT NULL, row TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS unwritable ("
    " seq INTEGER PRIMARY KEY, failed_at REAL NOT NULL, error TEXT NOT NULL, row TEXT NOT NULL)",
)


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
        # the newest rows appended, as given: shipped without reading the file back (the
        # file's copy is what survives a crash); the oldest fall out past RECENT_ROWS
        self._recent: deque[tuple[int, Mapping[str, Any]]] = deque(maxlen=RECENT_ROWS)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        for statement in SCHEMA:
            self._db.execute(statement)
        self.rows: int = self._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

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
        kept, stored, failed = [], [], []
        for row in rows:
            try:
                stored.append((row["logged_at"], ENCODE(row)))
                kept.append(row)
            except (TypeError, ValueError, KeyError, RecursionError) as error:
                failed.append((time.time(), f"{type(error).__name__}: {error}", repr(row)))
        with self._mutex:
            with self._transaction():
                self._db.executemany("INSERT INTO rows (logged_at, row) VALUES (?, ?)", stored)
                self._db.executemany(
                    "INSERT INTO unwritable (failed_at, error, row) VALUES (?, ?, ?)", failed
                )
                # AUTOINCREMENT numbers one connection's inserts consecutively
                last = self._db.execute(SEQUENCE).fetchone()
            if kept:
                first = last[0] - len(kept) + 1
                self._recent.extend(zip(range(first, last[0] + 1), kept, strict=True))
            self.rows += len(stored)
        return len(failed)

    def head(self, limit: int) -> list[tuple[int, Mapping[str, Any]]]:
        """The oldest ``limit`` rows with their sequence numbers: from memory when they are the
        ones this object appended last (no read, no JSON decoding), else from the file."""
        with self._mutex:
            oldest = self._db.execute("SELECT seq FROM rows ORDER BY seq LIMIT 1").fetchone()
            if oldest is None:
                return []
            recent = self._recent
            while recent and recent[0][0] < oldest[0]:  # shipped meanwhile
                recent.popleft()
            if recent and recent[0][0] == oldest[0]:  # the file's oldest rows, in memory
                return list(itertools.islice(recent, limit))
            found = self._db.execute("SELECT seq, row FROM rows ORDER BY seq LIMIT ?", (limit,))
            return [(seq, json.loads(text)) for seq, text in found]

    def remove_through(self, seq: int) -> None:
        """Forget every row up to ``seq``: the database has them."""
        with self._mutex:
            with self._transaction():
                removed = self._db.execute("DELETE FROM rows WHERE seq <= ?", (seq,)).rowcount
            self.rows -= removed

    def set_aside(self, seq: int, error: str) -> None:
        """Move one row the database refused to ``unwritable``, with the reason."""
        with self._mutex:
            with self._transaction():
                moved = self._db.execute(
                    "INSERT INTO unwritable (failed_at, error, row)"
                    " SELECT ?, ?, row FROM rows WHERE seq = ?",
                    (time.time(), error, seq),
                ).rowcount
                self._db.execute("DELETE FROM rows WHERE seq = ?", (seq,))
            self.rows -= moved
            self._recent.clear()  # no longer the file's rows one for one: read them back

    def oldest_logged_at(self) -> float | None:
        with self._mutex:
            found = self._db.execute("SELECT logged_at FROM rows ORDER BY seq LIMIT 1").fetchone()
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
