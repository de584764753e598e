"""The prediction log's URL carries the database password: it never appears in a log line, an
error, a printed settings object or `GET /model`, only with the password as ``***``. (That the
URL reaches the pod from a Secret, never a ConfigMap, is in test_manifests.py.)"""

from __future__ import annotations

import ast
import json
import logging
import time
import traceback
from pathlib import Path

import pytest
import sqlalchemy as sa

import monitoring.prediction_log as prediction_log
from model_artifact.settings import SOURCE_ROOT
from monitoring.credentials import (
    PredictionLogError,
    hide_passwords,
    redact_credentials,
    redact_url,
    url_secrets,
)
from monitoring.prediction_log import PredictionLog, read_predictions
from monitoring.settings import MonitoringSettings

PASSWORD = "S3cr:t/p@ss!"  # needs percent-encoding in a URL: both spellings must stay hidden
ENCODED = "S3cr%3At%2Fp%40ss%21"
URL = f"postgresql+psycopg://credit:{ENCODED}@db.internal:5432/credit"
FRAGMENTS = ("S3cr", ENCODED, PASSWORD)  # no piece of the password, either spelling


def assert_hidden(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, text


def test_the_redacted_url_keeps_everything_but_the_password():
    shown = redact_url(URL)
    assert shown == "postgresql+psycopg://credit:***@db.internal:5432/credit"
    assert_hidden(shown)
    assert redact_url("sqlite:////var/lib/credit-risk/predictions.db") == (
        "sqlite:////var/lib/credit-risk/predictions.db"
    )


def test_a_password_left_unencoded_or_a_url_sqlalchemy_cannot_parse_is_still_redacted():
    raw = f"postgresql+psycopg://credit:{PASSWORD}@db.internal/credit"  # @ / : not encoded
    shown = redact_url(raw)
    for fragment in ("S3cr", "p@ss", "ss!"):
        assert fragment not in shown, shown
    assert shown.endswith("credit:***@db.internal/credit")
    shown = redact_url(f"not a url, but ://credit:{ENCODED}@db")
    assert_hidden(shown)
    assert "credit:***@db" in shown


def test_passwords_are_hidden_in_free_text():
    text = (
        f"could not connect to {URL}; conninfo host=db user=credit password={ENCODED} "
        f"and the decoded {PASSWORD} as a driver might echo it"
    )
    shown = hide_passwords(text, *url_secrets(URL))
    assert_hidden(shown)
    assert "postgresql+psycopg://credit:***@db.internal:5432/credit" in shown
    assert "password=***" in shown


def test_the_model_endpoint_answers_lineage_without_passwords():
    """`GET /model` answers this helper's output; any credential URL in a lineage string
    (an MLflow model URI, a tracking store) comes out with its password hidden."""
    lineage = {
        "model_tag": "credit-risk:mlflow-v3",
        "labels": {"mlflow_run_id": "abc123"},
        "metadata": {
            "mlflow_model_uri": f"https://ci:{ENCODED}@mlflow.internal/models/credit-risk/3",
            "metrics": {"test_roc_auc": 0.858},
            "notes": [f"tracked in {URL}"],
        },
        "runner": {"device": "cuda", "feature_width": 23},
        "decision_thresholds": {"approve_below": 0.25},
        "challenger_tag": None,
    }
    shown = redact_credentials(lineage)
    assert_hidden(json.dumps(shown))
    assert shown["metadata"]["mlflow_model_uri"] == (
        "https://ci:***@mlflow.internal/models/credit-risk/3"
    )
    assert shown["metadata"]["metrics"] == {"test_roc_auc": 0.858}
    assert shown["runner"] == lineage["runner"]
    assert shown["challenger_tag"] is None


def test_the_model_endpoint_returns_what_the_helper_redacted():
    """CreditRiskAPI.model needs a served model to call; its source must end in the helper."""
    tree = ast.parse((SOURCE_ROOT / "service.py").read_text())
    (method,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "model"
    ]
    calls = {
        node.func.id
        for node in ast.walk(method)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "redact_credentials" in calls
    returned = [node.value for node in ast.walk(method) if isinstance(node, ast.Return)]
    assert len(returned) == 1
    assigned = {
        target.id: node.value
        for node in ast.walk(method)
        if isinstance(node, ast.AnnAssign | ast.Assign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    value = returned[0]
    if isinstance(value, ast.Name):
        value = assigned[value.id]
    assert isinstance(value, ast.Call)
    assert isinstance(value.func, ast.Name)
    assert value.func.id == "redact_credentials"


def test_the_settings_object_never_prints_the_url():
    settings = MonitoringSettings(prediction_log_url=URL)
    assert_hidden(repr(settings))
    assert_hidden(str(settings))


def test_a_log_that_cannot_reach_its_database_says_so_without_the_password(tmp_path, caplog):
    """No server at db.internal: the log starts all the same (rows wait in its spool), and
    its failure to write names the redacted URL only; reading fails the same way."""
    caplog.set_level(logging.INFO, logger=prediction_log.__name__)
    log = PredictionLog(URL, settings=spool_settings(tmp_path, drain_s=0))
    log.write([row("kept")])
    wait_for(lambda: "could not be written" in caplog.text)
    log.close()
    text = logged(caplog)
    assert "prediction log postgresql+psycopg://credit:***@db.internal:5432/credit" in text
    assert_hidden(text)
    with pytest.raises(PredictionLogError) as raised:
        read_predictions(URL)
    message = str(raised.value)
    assert "postgresql+psycopg://credit:***@db.internal:5432/credit" in message
    assert_hidden(message)
    assert raised.value.__suppress_context__  # the original is not printed beside it
    assert_hidden("".join(traceback.format_exception(raised.value)))


def test_a_malformed_url_is_never_echoed():
    malformed = f"postgresql+psycopg://credit:{ENCODED}@db.internal:port/credit"
    with pytest.raises(PredictionLogError) as raised:
        PredictionLog(malformed)
    assert_hidden("".join(traceback.format_exception(raised.value)))


def spool_settings(tmp_path: Path, drain_s: float) -> MonitoringSettings:
    """The log's spool in the test's folder; ``drain_s``: how long its close waits for a
    database that does not answer."""
    return MonitoringSettings(
        prediction_log_spool_dir=str(tmp_path / "spool"), prediction_log_drain_s=drain_s
    )


@pytest.fixture
def postgres_log(tmp_path, monkeypatch, caplog):
    """A log configured with the PostgreSQL URL above but writing SQLite underneath (SQLite
    URLs carry no password): what it logs is what the service would log."""
    database = f"sqlite:///{tmp_path / 'log.db'}"
    real_open = prediction_log.open_engine
    monkeypatch.setattr(prediction_log, "open_engine", lambda url: real_open(database))
    caplog.set_level(logging.INFO, logger=prediction_log.__name__)
    log = PredictionLog(
        URL,
        batch_rows=1000,
        flush_interval_s=0.02,
        retention_days=30,
        settings=spool_settings(tmp_path, drain_s=1),  # a test may leave the database failing
    )
    yield log, database
    log.close()


def row(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "logged_at": time.time(),
        "role": "champion",
        "model_tag": "credit-risk:test",
        "probability_default": 0.3,
        "features": {"income": 123_456, "age": 41},  # personal data: not in a log line either
    }


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)
    assert condition()


def logged(caplog) -> str:
    """Every record so far, set-up included, as emitted and as formatted."""
    records = caplog.get_records("setup") + caplog.get_records("call")
    formatter = logging.Formatter()
    return "\n".join(formatter.format(record) for record in records)


def test_the_startup_line_names_the_log_without_its_password(postgres_log, caplog):
    log, _ = postgres_log
    assert log.location == "postgresql+psycopg://credit:***@db.internal:5432/credit"
    text = logged(caplog)
    assert "prediction log postgresql+psycopg://credit:***@db.internal:5432/credit" in text
    assert "rows kept 30 days" in text
    assert_hidden(text)


def test_a_failed_insert_logs_neither_the_password_nor_the_applicants_data(postgres_log, caplog):
    log, database = postgres_log
    log.write([row("first")])  # once a row is in, the writer's first contact is over
    wait_for(lambda: len(read_predictions(database)) == 1)
    engine = sa.create_engine(database)
    with engine.begin() as connection:  # the table vanishes under the writer
        connection.execute(sa.text("DROP TABLE predictions"))
    engine.dispose()
    log.write([row("lost")])
    wait_for(lambda: "could not be written" in caplog.text)
    text = logged(caplog)
    assert_hidden(text)
    assert "no such table" in text  # the cause is still there to read
    assert "123456" not in text  # statement parameters hidden (hide_parameters)


def test_a_driver_error_that_echoes_the_password_is_redacted(postgres_log, caplog, monkeypatch):
    """Some drivers put their connection string in the message: hidden, both spellings."""
    log, _ = postgres_log

    def failing_begin():
        raise sa.exc.OperationalError(
            "INSERT INTO predictions ...",
            {},
            Exception(f'connection to "{URL}" failed: password "{PASSWORD}" rejected'),
        )

    monkeypatch.setattr(log.engine, "begin", failing_begin)
    log.write([row("lost")])
    wait_for(lambda: "could not be written" in caplog.text)
    assert_hidden(logged(caplog))
    log._purge()  # the retention's failures go through the same redaction
    assert "expired rows could not be deleted" in caplog.text
    assert_hidden(logged(caplog))


def test_no_module_logs_or_prints_the_raw_log_url():
    """Every use of the URL setting in the code passes it to the log (which redacts it), and
    no logging or print call takes it as an argument."""
    offenders = []
    for path in sorted([*SOURCE_ROOT.glob("*/*.py"), SOURCE_ROOT / "service.py"]):
        if path.parts[-2] in {"tests", ".venv"}:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            speaks = name == "print" or name.split(".")[-1] in {
                "debug",
                "info",
                "warning",
                "error",
                "exception",
                "critical",
            }
            if speaks and "prediction_log_url" in ast.unparse(node):
                offenders.append(f"{Path(path).relative_to(SOURCE_ROOT)}:{node.lineno}")
    assert not offenders
