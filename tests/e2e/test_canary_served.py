"""A canary in a built Bento under `bentoml serve` (two API workers, the runner beside them):
promoted at 0.25, it decides a quarter of 2,000 held-out applications, each applicant the same
model when asked again, the split shown by `GET /model` and logged per arm; a share change in
the shared table (what a rollback, the bandit or an operator writes) reaches every worker."""

from __future__ import annotations

import shutil
import time

import pytest
import requests
from tests_support import TINY_CONFIG, build_bento, serving_env

from credit_risk.records import contract_records
from loadtests.load.server import Server
from model_artifact.champion import read_champion
from monitoring.prediction_log import read_predictions
from monitoring.traffic_split import TrafficSplitStore
from training.data import load_credit_data, split
from training.promote import promote
from training.settings import TrainingConfig
from training.train import train

APPLICANTS = 2000


@pytest.fixture(scope="module")
def canary_bento(champion, build_context, tmp_path_factory):
    """The test Bento's sources with a second version promoted as canary at 0.25."""
    settings, _, report = champion
    context = tmp_path_factory.mktemp("canary-context") / "src"
    shutil.copytree(build_context, context)
    local = settings.model_copy(update={"champion_file": context / "champion.json"})
    version = train(TrainingConfig(**TINY_CONFIG, seed=11), settings).registered_version
    canary = promote(local, version=version, role="canary", share=0.25)
    assert canary.promoted, canary.gates
    return (
        build_bento(context, "bentofile.yaml"),
        report.bento_model_tag,
        read_champion(local.champion_file),
    )


@pytest.fixture(scope="module")
def canary_server(canary_bento, tmp_path_factory):
    bento, _, _ = canary_bento
    folder = tmp_path_factory.mktemp("canary-serve")
    log_url = f"sqlite:///{folder / 'predictions.db'}"
    env = serving_env(
        CREDIT_RISK_PREDICTION_LOG_URL=log_url,
        CREDIT_RISK_CANARY_REFRESH_S="0.5",
        # this test is about the split; the bounds that roll a canary back have their own
        CREDIT_RISK_CANARY_MIN_ROWS="1000000",
    )
    server = Server(bento, folder / "serve.log", env).wait_ready()
    yield server, log_url
    if server.process.poll() is None:
        server.stop()


def score(url: str, records: list[dict]) -> list[dict]:
    results = []
    for start in range(0, len(records), 100):
        body = {"applications": records[start : start + 100]}
        response = requests.post(f"{url}/score", json=body, timeout=30)
        assert response.status_code == 200, response.text
        results += response.json()["results"]
    return results


def test_the_canary_decides_its_share_stickily_and_follows_the_table(canary_bento, canary_server):
    _, champion_tag, record = canary_bento
    canary_tag = record.canary.bento_model_tag
    server, log_url = canary_server
    held_out = contract_records(split(load_credit_data(), seed=42).test)
    records = [
        dict(held_out[i % len(held_out)], request_id=f"applicant-{i}") for i in range(APPLICANTS)
    ]

    info = requests.get(f"{server.url}/model", timeout=10).json()
    assert info["model_tag"] == champion_tag
    assert info["canary"]["model_tag"] == canary_tag
    assert info["canary"]["share"] == info["canary"]["promoted_share"] == 0.25

    first = score(server.url, records)
    tags = [r["model_tag"] for r in first]
    assert set(tags) == {champion_tag, canary_tag}
    assert tags.count(canary_tag) / APPLICANTS == pytest.approx(0.25, abs=0.04)
    # resent in another order and other batches (other connections, other workers)
    again = {r["request_id"]: r["model_tag"] for r in score(server.url, records[::-1])}
    assert [again[r["request_id"]] for r in first] == tags

    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'credit_risk_arm_requests_total{result="answered",role="canary"}' in metrics
    assert "credit_risk_canary_share 0.25" in metrics

    # an operator (or the bandit) sets the share to 0 in the shared table: every worker follows
    store = TrafficSplitStore(log_url)
    store.set_share(canary_tag, record.canary.promoted_at, 0.0, "operator", "end of the test")
    time.sleep(2.0)  # four refreshes
    after = score(server.url, records[:400])
    assert {r["model_tag"] for r in after} == {champion_tag}
    info = requests.get(f"{server.url}/model", timeout=10).json()
    assert info["canary"]["share"] == 0.0
    assert info["canary"]["last_change"]["source"] == "operator"

    server.stop()  # a clean stop flushes the log: one row per answered application and arm
    canary_rows = read_predictions(log_url, "canary")
    assert {row["request_id"] for row in canary_rows} == {
        r["request_id"] for r in first if r["model_tag"] == canary_tag
    }
    assert {row["model_tag"] for row in canary_rows} == {canary_tag}
