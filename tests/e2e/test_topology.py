"""The deployment topology on one machine: API and runner as separate `bentoml serve`
processes from the built Bento's source, the API reaching the runner by URL over HTTP, as the
two Kubernetes Deployments do; such an API never loads torch. Also: the API is not ready, and
answers 503, without a runner; and train/serve parity over HTTP: the built Bento, served with
the runner and in-process, answers training's whole test split with training's probabilities
and their decisions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import bentoml
import numpy as np
import psutil
import pytest
import requests
from tests_support import served_answers, serving_env

from credit_risk.decision import DecisionThresholds, decide
from credit_risk.features import raw_columns_from_records
from loadtests.load.burst import burst
from loadtests.load.server import Server
from model_artifact.bundle import mlflow_folder, read_bundle

THRESHOLDS = DecisionThresholds()  # the served defaults


def ready(url: str) -> bool:
    """As a Kubernetes probe sees it: a timeout counts as not ready."""
    try:
        return requests.get(f"{url}/readyz", timeout=3).status_code == 200
    except requests.Timeout:
        return False


def logged(server: Server, text: str, timeout_s: float = 10) -> bool:
    """Whether ``text`` reaches the server's log: a line BentoML writes once the response is
    sent can land after the caller already has its answer."""
    deadline = time.monotonic() + timeout_s
    while text not in server.log.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def process_tree(pid: int) -> list[int]:
    """A served process and every process under it (BentoML's workers)."""
    parent = psutil.Process(pid)
    return [parent.pid, *(child.pid for child in parent.children(recursive=True))]


def loads_torch(pid: int) -> bool:
    """Whether torch's native library is mapped into the process."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture(scope="module")
def bento_src(bento_tag) -> Path:
    return Path(bentoml.bentos.get(bento_tag).path) / "src"


@pytest.fixture(scope="module")
def in_process(bento_tag, tmp_path_factory) -> Iterator[Server]:
    """The same Bento with the runner in the API process."""
    folder = tmp_path_factory.mktemp("inprocess")
    env = serving_env(
        CREDIT_RISK_RUNNER_MODE="inprocess",
        CREDIT_RISK_PREDICTION_LOG_URL=f"sqlite:///{folder / 'log.db'}",
    )
    with Server(bento_tag, folder / "inprocess.log", env) as served:
        yield served


def test_both_topologies_answer_the_test_split_as_training_scored_it(server, in_process):
    served_model = requests.get(f"{server.url}/model", timeout=10).json()["model_tag"]
    bundle = read_bundle(mlflow_folder(bentoml.models.get(served_model)))
    assert bundle.test_split is not None, "training logs its test split with the model"
    records = bundle.test_split["records"]
    trained = np.asarray(bundle.test_split["probabilities"])
    expected = [v.decision for v in decide(trained, raw_columns_from_records(records), THRESHOLDS)]
    assert len(records) > 500
    assert len(set(expected)) == 3

    for topology in (server, in_process):
        results = served_answers(topology.url, records)
        served = np.array([r["probability_default"] for r in results])
        np.testing.assert_allclose(served, trained, rtol=0, atol=1e-6, err_msg=topology.url)
        assert [r["decision"] for r in results] == expected, topology.url


def test_api_calls_a_separately_served_runner_over_http(server, bento_src, tmp_path, make_record):
    env = serving_env(
        CREDIT_RISK_PREDICTION_LOG_URL=f"sqlite:///{tmp_path / 'log.db'}",
        CREDIT_RISK_ACCESS_LOG="true",  # the runner's access log shows who scored
    )
    body = {"applications": [make_record(), make_record(income=None, home=None)]}
    expected = requests.post(f"{server.url}/score", json=body, timeout=10).json()["results"]

    runner = Server("runners.service:ModelRunner", tmp_path / "runner.log", env, cwd=bento_src)
    runner.wait_ready()
    api = Server(
        "service:CreditRiskAPI",
        tmp_path / "api.log",
        env | {"CREDIT_RISK_RUNNER_URL": runner.url, "CREDIT_RISK_API_MAX_CONCURRENCY": "2"},
        cwd=bento_src,
    )
    try:
        api.wait_ready()
        results = requests.post(f"{api.url}/score", json=body, timeout=10).json()["results"]
        assert [r["probability_default"] for r in results] == pytest.approx(
            [r["probability_default"] for r in expected], abs=1e-6
        )
        assert logged(runner, "path=/predict")  # the runner process did the scoring
        assert "[service:credit_risk_runner" not in api.log.read_text()  # none spawned locally
        # an API that scores remotely never loads torch; the runner's processes do
        assert not any(loads_torch(pid) for pid in process_tree(api.process.pid))
        assert any(loads_torch(pid) for pid in process_tree(runner.process.pid))

        # 32 connections against an in-flight bound of 2: shed with 503, never dropped
        overload = burst(f"{api.url}/score", json.dumps(body).encode(), 32, 10).outcomes
        assert set(overload) <= {"200", "503"}, overload
        assert overload["503"] > 0
        assert overload["200"] > 0

        runner.stop()
        response = requests.post(f"{api.url}/score", json=body, timeout=30)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"  # shed, not dropped: clients back off
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ready(api.url):
            time.sleep(1)
        assert not ready(api.url)
    finally:
        api.stop()
        if runner.process.poll() is None:
            runner.stop()


def test_in_process_runner_mode_scores_the_same_without_a_runner_process(
    server, in_process, make_record
):
    body = {"applications": [make_record(), make_record(records="yes", assets=None)]}
    expected = requests.post(f"{server.url}/score", json=body, timeout=10).json()["results"]
    results = requests.post(f"{in_process.url}/score", json=body, timeout=10).json()["results"]
    model = requests.get(f"{in_process.url}/model", timeout=10).json()
    assert [r["probability_default"] for r in results] == pytest.approx(
        [r["probability_default"] for r in expected], abs=1e-6
    )
    assert [r["decision"] for r in results] == [r["decision"] for r in expected]
    assert model["runner_mode"] == "inprocess"
    assert model["runner"]["model_tag"] == results[0]["model_tag"]
    assert "[service:credit_risk_runner" not in in_process.log.read_text()
