"""Train, promote and roll back against a real `mlflow server` (tracking, model registry and
artifact proxy on loopback) with the project's own CLIs, configured by environment variables
only, as a team sharing a tracking server works: after every step the registry aliases, the
BentoML store, the champion record and the lineage between them agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tests_support import TINY_CONFIG, mlflow_server_command

from loadtests.load.server import Server

MODEL = "credit-risk"
# One call, one process: every model in the workstation's store with its lineage.
LIST_STORE = (
    "import bentoml, json; print(json.dumps({str(m.tag): {**m.info.labels, "
    "'model_uri': m.info.metadata['mlflow_model_uri']} for m in bentoml.models.list()}))"
)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    """`mlflow server` on a free loopback port: SQLite behind tracking and registry, artifacts
    proxied into a folder only the server writes; yields it and that folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts = root / "artifacts"
    command = mlflow_server_command(root, str(artifacts))
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = Server("mlflow", root / "server.log", env, command=command, ready_path="/health")
    try:
        yield server.wait_ready(timeout_s=90), artifacts
    finally:
        server.stop()


def workstation(home: Path, tracking_uri: str) -> dict[str, str]:
    """A user's shell: the server's URL, their own BentoML store and champion file, the tiny
    training knobs, and no artifact location, so the server decides where artifacts go."""
    env = {k: v for k, v in os.environ.items() if k != "CREDIT_RISK_MLFLOW_ARTIFACT_LOCATION"}
    knobs = {f"CREDIT_RISK_TRAIN_{k.upper()}": json.dumps(v) for k, v in TINY_CONFIG.items()}
    return (
        env
        | knobs
        | {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "BENTOML_HOME": str(home / "bentoml"),
            "CREDIT_RISK_CHAMPION_FILE": str(home / "champion.json"),
        }
    )


def run(env: dict[str, str], cwd: Path, *argv: str) -> str:
    """A command as the user types it, from an empty working folder; its stdout."""
    done = subprocess.run(
        [sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def train(env: dict[str, str], cwd: Path, seed: int) -> tuple[str, str]:
    printed = run(env | {"CREDIT_RISK_TRAIN_SEED": str(seed)}, cwd, "-m", "training.train")
    trained = re.search(r"trained run=(\w+) version=(\d+)", printed)
    assert trained, printed
    return trained.group(1), trained.group(2)


def champion_record(env: dict[str, str]) -> list[tuple[str, str]]:
    """(MLflow version, run id) of the current champion, then of its history."""
    record = json.loads(Path(env["CREDIT_RISK_CHAMPION_FILE"]).read_text())
    return [
        (p["mlflow_version"], p["mlflow_run_id"]) for p in [record["current"], *record["history"]]
    ]


def store(env: dict[str, str], cwd: Path) -> dict[str, tuple[str, str, str]]:
    """Tag -> (MLflow version, run id, model URI) of every model in the workstation's store."""
    listed = json.loads(run(env, cwd, "-c", LIST_STORE))
    return {
        tag: (model["mlflow_version"], model["mlflow_run_id"], model["model_uri"])
        for tag, model in listed.items()
    }


def lineage(version: str, run_id: str) -> tuple[str, str, str]:
    return version, run_id, f"models:/{MODEL}/{version}"


def test_train_promote_rollback_against_a_tracking_server(tracking_server, tmp_path):
    server, artifacts = tracking_server
    client = MlflowClient(tracking_uri=server.url)
    work = tmp_path / "work"
    work.mkdir()
    env = workstation(tmp_path / "ours", server.url)

    def aliases() -> dict[str, str]:
        return dict(client.get_registered_model(MODEL).aliases)

    run_1, v1 = train(env, work, seed=42)
    assert client.get_run(run_1).info.artifact_uri.startswith("mlflow-artifacts:/")
    assert list(artifacts.glob("*/models/*/artifacts/data/model.pt2"))  # through the proxy
    assert aliases() == {}

    promoted = run(env, work, "-m", "training.promote")
    assert f"PROMOTED {MODEL} v{v1} as {MODEL}:mlflow-v{v1}" in promoted
    assert aliases() == {"champion": v1}
    assert client.get_model_version_by_alias(MODEL, "champion").run_id == run_1
    assert champion_record(env) == [(v1, run_1)]
    assert store(env, work) == {f"{MODEL}:mlflow-v{v1}": lineage(v1, run_1)}

    run_2, v2 = train(env, work, seed=7)
    promoted = run(env, work, "-m", "training.promote", "--version", v2)
    assert f"PROMOTED {MODEL} v{v2}" in promoted
    assert "decision flips vs champion" in promoted
    assert f"champion v{v1} " in promoted  # the metric floor compared against it
    assert aliases() == {"champion": v2}
    assert champion_record(env) == [(v2, run_2), (v1, run_1)]
    both = {
        f"{MODEL}:mlflow-v{v1}": lineage(v1, run_1),
        f"{MODEL}:mlflow-v{v2}": lineage(v2, run_2),
    }
    assert store(env, work) == both

    rolled = run(env, work, "-m", "training.promote", "rollback")
    assert f"ROLLED BACK to {MODEL}:mlflow-v{v1}" in rolled
    assert aliases() == {"champion": v1}
    assert champion_record(env) == [(v1, run_1)]
    assert store(env, work) == both  # rollback serves a model the store kept

    # A colleague with an empty BentoML store gates v2 against the shared champion v1, which
    # promotion fetches from the registry; our store and record are not theirs to change.
    theirs = workstation(tmp_path / "theirs", server.url)
    promoted = run(theirs, work, "-m", "training.promote", "--version", v2)
    assert re.search(r"\[PASS\] golden_set: .*; \d+ decision flips vs champion", promoted)
    assert aliases() == {"champion": v2}
    assert champion_record(theirs) == [(v2, run_2)]
    assert store(theirs, work) == {f"{MODEL}:mlflow-v{v2}": lineage(v2, run_2)}
    assert champion_record(env) == [(v1, run_1)]
    assert store(env, work) == both

    assert list(work.iterdir()) == []  # nothing written beside the user: all went to the server
