"""The prediction log batches off the request path and loses nothing on a clean close; it
keeps rows no longer than the retention."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from monitoring.metrics import REJECTIONS, count_rejections
from monitoring.prediction_log import (
    DAY_S,
    PREDICTIONS,
    PredictionLog,
    delete_expired,
    main,
    read_predictions,
)
from monitoring.settings import MonitoringSettings


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


def test_write_does_not_wait_for_the_database(tmp_path):
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", batch_rows=10_000, flush_interval_s=60)
    rows = [row(str(i)) for i in range(200)]
    start = time.perf_counter()
    for _ in range(100):
        log.write(rows)
    assert time.perf_counter() - start < 0.5  # 20,000 rows queued, none written yet
    log.close()


def test_rejections_are_counted_by_field_and_type():
    before = REJECTIONS.labels("age", "int_type")._value.get()
    count_rejections(b'{"detail": [{"loc": ["applications", 0, "age"], "type": "int_type"}]}')
    count_rejections(b"not json")
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


# --- retention -------------------------------------------------------------------------------


def indexed_columns(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        indexes = sa.inspect(engine).get_indexes(PREDICTIONS.name)
    finally:
        engine.dispose()
    return {column for index in indexes for column in index["column_names"]}


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
