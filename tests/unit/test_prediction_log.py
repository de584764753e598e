"""The prediction log: batched off the request path; every answered row reaches the database
once, through a spool on local disk that outlives a database that is away, a bound that is
hit, a row the database refuses, a restart; rows kept no longer than the retention.

The database here is SQLite; "away" is another connection holding its exclusive lock (every
write fails with "database is locked"), as real as a busy database gets. The same behaviour
against a PostgreSQL server that is stopped and started again is in
tests/integration/test_prediction_log_postgres.py."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from monitoring.metrics import (
    LOG_BACKLOG,
    LOG_OLDEST_AGE,
    LOG_SHIP_RETRIES,
    LOG_UNWRITABLE,
    REJECTIONS,
    observe_rejection,
)
from monitoring.prediction_log import (
    DAY_S,
    PREDICTIONS,
    PredictionLog,
    backoff,
    delete_expired,
    main,
    read_predictions,
    spool_folder,
)
from monitoring.settings import MonitoringSettings
from monitoring.spool import COLUMNS, Spool, decode


def row(request_id: str, role: str = "champion", logged_at: float | None = None) -> dict:
    return {
        "request_id": request_id,
        "logged_at": time.time() if logged_at is None else logged_at,
        "role": role,
        "model_tag": "credit-risk:test",
        "probability_default": 0.3,
        "decision": "review",
        "reasons": "MODERATE_DEFAULT_RISK",
        "features": {"age": 30, "income": None},
    }


def settings(tmp_path: Path, **fields: object) -> MonitoringSettings:
    """The log's settings with its spool in the test's own folder; ``fields`` without the
    ``prediction_log_`` prefix."""
    given = {f"prediction_log_{name}": value for name, value in fields.items()}
    return MonitoringSettings(prediction_log_spool_dir=str(tmp_path / "spool"), **given)


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def database_away(database: Path) -> Iterator[None]:
    """Another connection holds the SQLite file's exclusive lock: every write of the log fails
    ("database is locked") until it lets go."""
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def locked_url(database: Path) -> str:
    """A URL whose connections give up on a lock after 50 ms (SQLite's default is 5 s)."""
    return f"sqlite:///{database}?timeout=0.05"


def request_ids(url: str, role: str = "champion") -> list[str]:
    """Logged ids, read with SQLite's default 5 s patience (the log may be writing)."""
    return [r["request_id"] for r in read_predictions(url.split("?")[0], role)]


def test_close_flushes_every_queued_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, batch_rows=1000, flush_interval_s=60)
    for batch in range(50):
        log.write([row(f"r{batch}-{i}") for i in range(7)])
    log.close()
    rows = read_predictions(url)
    assert len(rows) == 350
    assert rows[0]["features"] == {"age": 30, "income": None}
    assert len({r["request_id"] for r in rows}) == 350


def test_rows_appear_after_the_flush_interval_without_close(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, batch_rows=1000, flush_interval_s=0.05)
    log.write([row("a"), row("b", role="challenger")])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(read_predictions(url)) < 1:
        time.sleep(0.05)
    assert [r["request_id"] for r in read_predictions(url)] == ["a"]
    assert [r["request_id"] for r in read_predictions(url, role="challenger")] == ["b"]
    log.close()


def test_write_does_not_wait_for_the_disk_or_the_database(tmp_path):
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", batch_rows=20_000, flush_interval_s=60)
    rows = [row(str(i)) for i in range(100)]
    start = time.perf_counter()
    for _ in range(100):
        log.write(rows)
    assert time.perf_counter() - start < 0.2  # 10,000 rows queued, none spooled or written yet
    assert log.memory_rows == 10_000
    log.close()


def test_rejections_are_counted_by_field_and_type():
    before = REJECTIONS.labels("age", "int_type")._value.get()
    observe_rejection([{"loc": ["applications", 0, "age"], "type": "int_type"}])
    assert REJECTIONS.labels("age", "int_type")._value.get() == before + 1


def test_champion_and_challenger_rows_share_one_batch(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, batch_rows=1000, flush_interval_s=60)
    shadow = row("a", role="challenger") | {"decision": None, "reasons": None, "features": {}}
    log.write([row("a"), shadow, row("b")])
    log.close()
    assert len(read_predictions(url)) == 2
    assert read_predictions(url, role="challenger")[0]["decision"] is None


def test_a_sqlite_log_creates_its_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'folder' / 'log.db'}"
    log = PredictionLog(url)
    log.write([row("r1")])
    log.close()
    assert [r["request_id"] for r in read_predictions(url)] == ["r1"]


def test_the_default_log_is_an_absolute_path():
    from monitoring.settings import MonitoringSettings

    default = MonitoringSettings.model_fields["prediction_log_url"].default
    assert default.startswith("sqlite:////")  # same file whatever the working directory


def test_rows_without_an_optional_column_share_a_batch_with_rows_that_have_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, batch_rows=1000, flush_interval_s=60)
    reasons = [{"code": "records", "contribution": 0.2, "text": "Records"}]
    log.write([row("champion") | {"principal_reasons": reasons}, row("shadow", "challenger")])
    log.close()
    rows = {r["request_id"]: r for r in read_predictions(url, "champion")}
    assert rows["champion"]["principal_reasons"] == reasons
    assert [r["principal_reasons"] for r in read_predictions(url, "challenger")] == [None]


def test_a_log_table_from_an_older_release_gains_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # the table as the release before reason codes made it
        connection.execute(
            sa.text(
                "CREATE TABLE predictions (id INTEGER PRIMARY KEY, request_id VARCHAR(64) NOT NULL,"
                " logged_at FLOAT NOT NULL, role VARCHAR(16) NOT NULL, model_tag VARCHAR(128) NOT"
                " NULL, probability_default FLOAT NOT NULL, decision VARCHAR(16), reasons"
                " VARCHAR(256), features JSON NOT NULL)"
            )
        )
    engine.dispose()
    log = PredictionLog(url)
    log.write([row("after-upgrade") | {"principal_reasons": []}])
    log.close()
    assert [r["request_id"] for r in read_predictions(url)] == ["after-upgrade"]
    assert "logged_at" in indexed_columns(url)  # the retention's index, added on upgrade
    assert unique_keys(url) == [["request_id", "role"]]  # and the key that makes it idempotent


# --- retention -------------------------------------------------------------------------------


def indexed_columns(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        indexes = sa.inspect(engine).get_indexes(PREDICTIONS.name)
    finally:
        engine.dispose()
    return {column for index in indexes for column in index["column_names"]}


def unique_keys(url: str) -> list[list[str]]:
    engine = sa.create_engine(url)
    try:
        indexes = sa.inspect(engine).get_indexes(PREDICTIONS.name)
    finally:
        engine.dispose()
    return [index["column_names"] for index in indexes if index["unique"]]


def fill(url: str, ages_days: dict[str, float], now: float) -> None:
    """Rows logged ``age`` days before ``now``, written by a log that keeps everything."""
    log = PredictionLog(url, retention_days=0)
    log.write(
        [row(request_id, logged_at=now - age * DAY_S) for request_id, age in ages_days.items()]
    )
    log.close()


def logged_ids(url: str) -> set[str]:
    return {
        r["request_id"] for role in ("champion", "challenger") for r in read_predictions(url, role)
    }


def test_rows_older_than_the_retention_are_deleted_and_newer_ones_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    now = 2_000_000_000.0
    fill(url, {"ancient": 900, "expired": 365.01, "kept": 364.99, "today": 0}, now)
    engine = sa.create_engine(url)
    try:
        assert delete_expired(engine, 365, now=now) == 2
        assert delete_expired(engine, 365, now=now) == 0  # idempotent
    finally:
        engine.dispose()
    assert logged_ids(url) == {"kept", "today"}


def test_a_retention_of_zero_keeps_everything(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    now = time.time()
    fill(url, {"ancient": 10_000, "today": 0}, now)
    engine = sa.create_engine(url)
    try:
        assert delete_expired(engine, 0, now=now) == 0
    finally:
        engine.dispose()
    assert logged_ids(url) == {"ancient", "today"}


def test_expired_rows_are_deleted_in_short_chunks_until_none_is_left(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    now = time.time()
    fill(url, {f"old-{i}": 40 for i in range(23)} | {"new": 1}, now)
    engine = sa.create_engine(url)
    try:
        assert delete_expired(engine, 30, now=now, chunk_rows=5) == 23
    finally:
        engine.dispose()
    assert logged_ids(url) == {"new"}


def test_the_writer_deletes_expired_rows_at_start_up(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill(url, {"old-champion": 31, "new": 29}, time.time())
    shadow = row("old-challenger", role="challenger", logged_at=time.time() - 31 * DAY_S)
    keeper = PredictionLog(url, retention_days=0)
    keeper.write([shadow])  # challenger rows expire too
    keeper.close()
    assert logged_ids(url) == {"old-champion", "old-challenger", "new"}
    log = PredictionLog(url, retention_days=30)
    log.close()  # the start-up deletion runs before the writer takes its first batch
    assert logged_ids(url) == {"new"}


def test_the_writer_deletes_expired_rows_periodically(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, flush_interval_s=0.02, retention_days=1, purge_interval_s=0.05)
    # rows logged two days ago (a clock that went wrong, a backlog): gone at the next period
    log.write([row("stale", logged_at=time.time() - 2 * DAY_S), row("fresh")])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and logged_ids(url) != {"fresh"}:
        time.sleep(0.05)
    log.close()
    assert logged_ids(url) == {"fresh"}


def test_the_retention_comes_from_the_settings_unless_given(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    monkeypatch.setenv("CREDIT_RISK_PREDICTION_LOG_RETENTION_DAYS", "7")
    log = PredictionLog(url)
    log.close()
    assert log.retention_days == 7
    assert "logged_at" in indexed_columns(url)
    monkeypatch.delenv("CREDIT_RISK_PREDICTION_LOG_RETENTION_DAYS")
    assert MonitoringSettings().prediction_log_retention_days == 365
    with pytest.raises(ValidationError):
        MonitoringSettings(prediction_log_retention_days=-1)


def test_the_command_deletes_expired_rows_once(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill(url, {"old": 100, "new": 1}, time.time())
    monkeypatch.setenv("CREDIT_RISK_PREDICTION_LOG_URL", url)
    monkeypatch.setenv("CREDIT_RISK_PREDICTION_LOG_RETENTION_DAYS", "1000")
    assert main(["delete-expired"]) == 0
    assert logged_ids(url) == {"old", "new"}
    assert main(["delete-expired", "--retention-days", "30"]) == 0
    assert logged_ids(url) == {"new"}
    assert "deleted=1 retention_days=30" in capsys.readouterr().out


# --- durability ------------------------------------------------------------------------------


def test_rows_wait_in_the_spool_while_the_database_is_away_and_arrive_once(tmp_path):
    database = tmp_path / "log.db"
    url = locked_url(database)
    log = PredictionLog(url, flush_interval_s=0.02, settings=settings(tmp_path))
    log.write([row("before")])
    wait_until(lambda: request_ids(url) == ["before"])
    retries = LOG_SHIP_RETRIES._value.get()
    with database_away(database):
        log.write([row(f"away-{i}") for i in range(300)])
        wait_until(lambda: log.spool.rows == 300)  # on disk, not in memory
        assert log.memory_rows == 0
        wait_until(lambda: LOG_SHIP_RETRIES._value.get() >= retries + 2)  # tried, backing off
        wait_until(lambda: LOG_OLDEST_AGE._value.get() > 0.2)
        wait_until(lambda: LOG_BACKLOG._value.get() == 300)
        assert log.accepting
    wait_until(lambda: log.backlog == 0)
    log.close()
    assert sorted(request_ids(url)) == sorted(["before", *(f"away-{i}" for i in range(300))])
    assert LOG_BACKLOG._value.get() == 0
    assert LOG_OLDEST_AGE._value.get() == 0
    assert not list((tmp_path / "spool").rglob("*.spool"))  # an empty spool is deleted


def test_a_clean_stop_while_the_database_is_away_keeps_the_rows_for_the_next_start(tmp_path):
    database = tmp_path / "log.db"
    url = locked_url(database)
    PredictionLog(url, settings=settings(tmp_path)).close()  # the table exists
    with database_away(database):
        log = PredictionLog(url, settings=settings(tmp_path, drain_s=0.3))
        log.write([row(f"r{i}") for i in range(50)])
        started = time.monotonic()
        log.close()  # gives the database drain_s, then leaves the rows on disk
        assert time.monotonic() - started < 5
        (left,) = (tmp_path / "spool").rglob("*.spool")
    assert request_ids(url) == []
    PredictionLog(url, settings=settings(tmp_path)).close()  # the next start ships them
    assert sorted(request_ids(url)) == sorted(f"r{i}" for i in range(50))
    assert not left.exists()


def test_a_row_delivered_twice_is_stored_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, settings=settings(tmp_path))
    log.write([row("a"), row("a", role="challenger"), row("b")])
    log.close()
    again = PredictionLog(url, settings=settings(tmp_path))  # e.g. after a kill between the
    again.write([row("a"), row("b"), row("c")])  # database's commit and the spool's
    again.close()
    assert request_ids(url) == ["a", "b", "c"]
    assert request_ids(url, "challenger") == ["a"]


def test_a_table_with_duplicate_keys_is_still_written_without_the_unique_index(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # an older release logged the same id twice
        connection.execute(
            sa.text(
                "CREATE TABLE predictions (id INTEGER PRIMARY KEY, request_id VARCHAR(64) NOT NULL,"
                " logged_at FLOAT NOT NULL, role VARCHAR(16) NOT NULL, model_tag VARCHAR(128) NOT"
                " NULL, probability_default FLOAT NOT NULL, decision VARCHAR(16), reasons"
                " VARCHAR(256), features JSON NOT NULL, principal_reasons JSON)"
            )
        )
        for _ in range(2):
            connection.execute(
                sa.text(
                    "INSERT INTO predictions (request_id, logged_at, role, model_tag,"
                    " probability_default, features) VALUES ('dup', 1, 'champion', 't', 0.1, '{}')"
                )
            )
    engine.dispose()
    log = PredictionLog(url, retention_days=0, settings=settings(tmp_path))
    log.write([row("new")])
    log.close()
    assert request_ids(url) == ["dup", "dup", "new"]
    assert unique_keys(url) == []
    assert "uq_predictions_request_role not created" in caplog.text


def test_a_row_the_database_refuses_is_set_aside_and_counted_never_dropped(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, flush_interval_s=60, settings=settings(tmp_path))
    before = LOG_UNWRITABLE._value.get()
    refused = row("refused") | {"probability_default": None}  # NOT NULL in the table
    unserialisable = row("unserialisable") | {"features": {"age": {30}}}  # a set: no JSON
    log.write([row(f"ok-{i}") for i in range(5)] + [refused, unserialisable, row("ok-5")])
    spool_path = log.spool.path
    log.close()
    assert request_ids(url) == [f"ok-{i}" for i in range(6)]  # the rest of the batch went in
    assert LOG_UNWRITABLE._value.get() == before + 2
    kept = Spool.orphans(spool_path.parent, fsync=False)
    spool = next(kept)  # the file stays, for an operator, with both rows and the reasons
    try:
        (serialise_error, unserialisable_text), (insert_error, refused_text) = spool.unwritable()
    finally:
        spool.close()
    assert "set is not JSON serializable" in serialise_error
    assert "'unserialisable'" in unserialisable_text
    assert "IntegrityError" in insert_error
    assert "NOT NULL" in insert_error
    assert '"request_id":"refused"' in refused_text


def test_memory_and_spool_are_bounded_and_the_log_says_when_it_is_not_accepting(tmp_path):
    database = tmp_path / "log.db"
    url = locked_url(database)
    PredictionLog(url, settings=settings(tmp_path)).close()
    log = PredictionLog(
        url,
        flush_interval_s=0.02,
        settings=settings(tmp_path, spool_max_rows=100, memory_rows=50),
    )
    with database_away(database):
        log.write([row(f"s{i}") for i in range(100)])
        wait_until(lambda: log.spool.rows == 100)
        assert not log.accepting  # the spool is full: the API answers 503
        log.write([row(f"m{i}") for i in range(40)])
        time.sleep(0.2)
        assert log.memory_rows == 40  # held in memory, not spooled past the bound
        wait_until(lambda: LOG_BACKLOG._value.get() == 140)  # refreshed every second
    wait_until(lambda: log.backlog == 0)
    assert log.accepting
    log.close()
    assert len(request_ids(url)) == 140


def test_a_memory_bound_reached_refuses_until_the_spool_catches_up(tmp_path):
    log = PredictionLog(
        f"sqlite:///{tmp_path / 'log.db'}",
        batch_rows=1_000,
        flush_interval_s=60,
        settings=settings(tmp_path, memory_rows=30),
    )
    log.write([row(f"r{i}") for i in range(29)])
    assert log.accepting
    log.write([row("r29")])
    assert not log.accepting  # 30 rows in memory: the bound
    log.close()
    assert log.memory_rows == 0


def test_spools_of_workers_that_died_are_adopted_and_deleted(tmp_path):
    """A lock that can be taken means its process is gone: the next log ships the rows."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    folder = spool_folder(tmp_path / "spool", url)
    left = Spool.create(folder, fsync=False)
    left.append([row(f"left-{i}") for i in range(7)])
    assert list(Spool.orphans(folder, fsync=False)) == []  # its lock is still held
    os.close(left._lock_descriptor)  # what the kernel does when its process dies
    log = PredictionLog(url, settings=settings(tmp_path))
    wait_until(lambda: len(request_ids(url)) == 7)
    log.close()
    assert sorted(request_ids(url)) == sorted(f"left-{i}" for i in range(7))
    assert list(folder.iterdir()) == []


def test_each_database_has_its_own_spool_folder(tmp_path):
    a = spool_folder(tmp_path, "postgresql+psycopg://u:secret@db-a/credit")
    assert a == spool_folder(tmp_path, "postgresql+psycopg://u:rotated@db-a/credit")
    assert a != spool_folder(tmp_path, "postgresql+psycopg://u:secret@db-b/credit")


def test_the_backoff_doubles_up_to_its_cap_with_jitter():
    assert [round(backoff(1) / 0.25, 1) <= 1.0 for _ in range(5)] == [True] * 5
    assert all(0.125 <= backoff(1) <= 0.25 for _ in range(50))
    assert all(1.0 <= backoff(4) <= 2.0 for _ in range(50))
    assert all(15.0 <= backoff(10_000) <= 30.0 for _ in range(50))


def test_the_spool_settings_are_validated():
    with pytest.raises(ValidationError):
        MonitoringSettings(prediction_log_memory_rows=0)
    with pytest.raises(ValidationError):
        MonitoringSettings(prediction_log_spool_max_rows=0)
    default = Path(MonitoringSettings.model_fields["prediction_log_spool_dir"].default)
    assert default.is_absolute()  # the same folder whatever the working directory
    assert default.parts[-2:] == (".credit-risk", "spool")


@pytest.mark.parametrize(("fsync", "synchronous"), [(True, 2), (False, 1)])
def test_spool_commits_reach_the_device_unless_fsync_is_off(tmp_path, fsync, synchronous):
    """SQLite's synchronous=FULL (2) syncs the WAL at each commit; NORMAL (1) leaves it to the
    kernel (still safe from a killed process, not from a power cut)."""
    spool = Spool.create(tmp_path, fsync)
    try:
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        spool.close()
    assert list(tmp_path.iterdir()) == []  # an empty spool leaves nothing behind


def test_closing_twice_is_harmless(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, settings=settings(tmp_path))
    log.write([row("once")])
    log.close()
    log.close()
    assert request_ids(url) == ["once"]


def test_the_spool_holds_the_database_columns_and_gives_back_what_it_was_given(tmp_path):
    """Rows are spooled as the table's columns, the JSON ones as text encoded once, so shipping
    passes them on as they are; decoded, each is the row it was given (a missing optional
    column null); ``head`` is always the file's oldest rows, in order."""
    spool = Spool.create(tmp_path, fsync=False)
    given = [row(f"a{i}") | {"principal_reasons": [{"code": "age", "text": "é"}]} for i in range(3)]
    try:
        spool.append([*given, row("b0")])
        head = spool.head(10)
        assert [r[0] for r in head] == sorted(r[0] for r in head)
        assert [decode(r[1:]) for r in head] == [
            *given,
            row("b0") | {"principal_reasons": None, "logged_at": head[3][2]},
        ]
        assert head[0][COLUMNS.index("features") + 1] == '{"age":30,"income":null}'
        spool.remove_through(head[1][0])
        assert [r[1] for r in spool.head(10)] == ["a2", "b0"]
        spool.set_aside(spool.head(1)[0][0], "refused")
        assert [r[1] for r in spool.head(10)] == ["b0"]
        assert spool.rows == 1
        ((error, text),) = spool.unwritable()
        assert error == "refused"
        assert json.loads(text)["request_id"] == "a2"
    finally:
        spool.close()


def test_a_spool_file_of_an_older_release_is_converted_and_shipped(tmp_path):
    """One JSON document per row (the previous format): converted in order when opened."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    folder = spool_folder(tmp_path / "spool", url)
    folder.mkdir(parents=True)
    old = sqlite3.connect(folder / "1-dead.spool")
    old.execute(
        "CREATE TABLE rows (seq INTEGER PRIMARY KEY AUTOINCREMENT, logged_at REAL NOT NULL,"
        " row TEXT NOT NULL)"
    )
    old.execute(
        "CREATE TABLE unwritable (seq INTEGER PRIMARY KEY, failed_at REAL NOT NULL,"
        " error TEXT NOT NULL, row TEXT NOT NULL)"
    )
    kept = [row(f"old-{i}") for i in range(4)]
    old.executemany(
        "INSERT INTO rows (logged_at, row) VALUES (?, ?)",
        [(r["logged_at"], json.dumps(r)) for r in kept],
    )
    old.commit()
    old.close()
    (folder / "1-dead.lock").touch()
    log = PredictionLog(url, settings=settings(tmp_path))
    wait_until(lambda: len(request_ids(url)) == 4)
    log.close()
    assert request_ids(url) == [f"old-{i}" for i in range(4)]
    assert list(folder.iterdir()) == []


def test_a_value_sqlite_would_not_store_as_given_is_set_aside_not_spooled(tmp_path):
    spool = Spool.create(tmp_path, fsync=False)
    try:
        assert spool.append([row("ok"), row("odd") | {"probability_default": object()}]) == 1
        assert [r[1] for r in spool.head(10)] == ["ok"]
        ((error, text),) = spool.unwritable()
        assert error.startswith("TypeError")
        assert "'odd'" in text
    finally:
        spool.close()


def test_failures_that_repeat_are_logged_once_per_interval_with_a_count(
    tmp_path, caplog, monkeypatch
):
    """The first failed write with its traceback, then one line per interval saying how many
    tries failed since; the retries metric counts every one."""
    monkeypatch.setattr("monitoring.prediction_log.FAILURE_LOG_INTERVAL_S", 0.5)
    monkeypatch.setattr("monitoring.prediction_log.RETRY_MAX_S", 0.1)
    database = tmp_path / "log.db"
    url = locked_url(database)
    PredictionLog(url, settings=settings(tmp_path)).close()
    log = PredictionLog(url, flush_interval_s=0.02, settings=settings(tmp_path))
    before = LOG_SHIP_RETRIES._value.get()
    with database_away(database):
        log.write([row("late")])
        time.sleep(1.6)
    wait_until(lambda: log.backlog == 0)
    log.close()
    tries = LOG_SHIP_RETRIES._value.get() - before
    lines = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert tries >= 8
    assert 2 <= len(lines) <= 5  # not one per try
    assert "Traceback" in lines[0]
    assert " (x" in lines[1]
    assert "in the last" in lines[1]
    assert request_ids(url) == ["late"]


@contextmanager
def creations_in_step(parties: int) -> Iterator[None]:
    """Every engine's ``CREATE TABLE`` of the log waits until ``parties`` of them are about to
    run: workers that start together have each found the table missing before any creates it,
    the race a host's API workers run on one database at start-up, made certain."""
    barrier = threading.Barrier(parties)

    def in_step(_conn, _cursor, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE") and PREDICTIONS.name in statement:
            barrier.wait(timeout=10)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", in_step)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", in_step)


def test_workers_creating_the_log_together_both_write_and_log_no_error(tmp_path, caplog):
    """Two workers' first contact with one new SQLite file: both create the table at once, the
    loser is no failure (no ERROR, no retry) and both workers' rows arrive."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    retries = LOG_SHIP_RETRIES._value.get()
    with caplog.at_level(logging.INFO, logger="monitoring.prediction_log"), creations_in_step(2):
        logs = [PredictionLog(url, settings=settings(tmp_path)) for _ in range(2)]
        for number, worker_log in enumerate(logs):
            worker_log.write([row(f"worker-{number}")])
        for worker_log in logs:
            worker_log.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []
    assert LOG_SHIP_RETRIES._value.get() == retries
    assert sorted(request_ids(url)) == ["worker-0", "worker-1"]
    with sa.create_engine(url).connect() as connection:
        indexes = {index["name"] for index in sa.inspect(connection).get_indexes(PREDICTIONS.name)}
    assert indexes == {index.name for index in PREDICTIONS.indexes}
