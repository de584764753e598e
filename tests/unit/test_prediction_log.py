"""The prediction log batches off the request path and loses nothing on a clean close."""

from __future__ import annotations

import time

import sqlalchemy as sa

from monitoring.metrics import REJECTIONS, count_rejections
from monitoring.prediction_log import PredictionLog, read_predictions


def row(request_id: str, role: str = "champion") -> dict:
    return {
        "request_id": request_id,
        "logged_at": time.time(),
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
