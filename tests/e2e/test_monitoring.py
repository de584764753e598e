"""Monitoring against a real server: drift stays quiet for training-like traffic and alerts
for a shifted one, in /drift and in /metrics; after a load run and a clean stop the prediction
log holds exactly one row per answered application; a shadow challenger is logged, never
answered."""

from __future__ import annotations

import json
import re

import pytest
import requests
from mlflow import MlflowClient
from tests_support import TINY_CONFIG, serving_env

from credit_risk.records import contract_records
from loadtests.load.burst import burst
from loadtests.load.server import Server
from monitoring.prediction_log import read_predictions
from training.data import load_credit_data, split
from training.promote import import_into_store
from training.registry import resolve
from training.settings import TrainingConfig
from training.train import train

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def challenger_tag(champion) -> str:
    settings, _, _ = champion
    result = train(TrainingConfig(**TINY_CONFIG, seed=11), settings)
    candidate = resolve(MlflowClient(), settings.registered_model_name, result.registered_version)
    model, _ = import_into_store(candidate, settings)
    return str(model.tag)


@pytest.fixture(scope="module")
def monitored(bento_tag, challenger_tag, tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitored")
    log_url = f"sqlite:///{folder / 'predictions.db'}"
    env = serving_env(
        CREDIT_RISK_PREDICTION_LOG_URL=log_url,
        CREDIT_RISK_API_WORKERS="1",  # the drift window is per worker: one holds all of it
        CREDIT_RISK_DRIFT_WINDOW="600",
        CREDIT_RISK_DRIFT_MIN_WINDOW="200",
        CREDIT_RISK_DRIFT_REFRESH_S="1",
        CREDIT_RISK_CHALLENGER_TAG=challenger_tag,
    )
    server = Server(bento_tag, folder / "serve.log", env).wait_ready()
    yield server, log_url
    if server.process.poll() is None:
        server.stop()


def send(server, records, prefix):
    answered = []
    for start in range(0, len(records), 50):
        chunk = [
            dict(r, request_id=f"{prefix}-{start + i}")
            for i, r in enumerate(records[start : start + 50])
        ]
        response = requests.post(f"{server.url}/score", json={"applications": chunk}, timeout=30)
        assert response.status_code == 200, response.text
        answered += response.json()["results"]
    return answered


def gauge(metrics_text: str, name: str, feature: str) -> float:
    match = re.search(rf'^{name}{{feature="{feature}"}} (\S+)$', metrics_text, re.MULTILINE)
    assert match, f"{name}{{feature={feature}}} not in /metrics"
    return float(match.group(1))


def test_drift_alerts_only_for_shifted_traffic_and_log_is_exact(
    monitored, champion, challenger_tag, make_record
):
    server, log_url = monitored
    _, _, report = champion
    records = contract_records(split(load_credit_data(), seed=42).test)

    answered = send(server, records[:600], "plain")
    drift = requests.get(f"{server.url}/drift", timeout=10).json()
    assert drift["window"] == 600
    assert drift["alerts"] == [], drift["features"]
    assert set(drift["features"]) >= {"income", "home", "age"}
    assert all(v["psi"] < drift["threshold"] for v in drift["features"].values())

    shifted = [
        dict(
            r, income=None if r["income"] is None else min(r["income"] * 3, 100_000), home="ignore"
        )
        for r in records[:600]
    ]
    answered += send(server, shifted, "shifted")
    drift = requests.get(f"{server.url}/drift", timeout=10).json()
    assert {"income", "home"} <= set(drift["alerts"])
    assert drift["features"]["income"]["psi"] > drift["threshold"]
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert gauge(metrics, "credit_risk_drift_alert", "income") == 1.0
    assert gauge(metrics, "credit_risk_drift_psi", "home") > 0.2
    assert gauge(metrics, "credit_risk_drift_alert", "age") == 0.0
    assert 'credit_risk_decisions_total{decision="' in metrics
    assert "credit_risk_model_info{" in metrics

    body = json.dumps({"applications": [make_record(), make_record(income=None)]}).encode()
    result = burst(f"{server.url}/score", body, connections=16, per_connection=50)
    assert result.outcomes == {"200": 800}
    assert {r["model_tag"] for r in answered} == {report.bento_model_tag}  # never the challenger

    assert server.stop() == 0
    logged = read_predictions(log_url)
    assert len(logged) == len(answered) + 800 * 2
    sent_ids = {r["request_id"] for r in answered}
    assert sent_ids <= {row["request_id"] for row in logged}
    shadow = read_predictions(log_url, role="challenger")
    assert shadow, "the challenger scored nothing"
    assert {row["model_tag"] for row in shadow} == {challenger_tag}
    assert {row["request_id"] for row in shadow if row["request_id"] in sent_ids}
