"""Shared constants and helpers for tests (fixtures live in conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST

TINY_CONFIG = {"epochs": 4, "hidden": (16,), "golden_rows": 12, "patience": 2}


def serving_env(**extra: str) -> dict[str, str]:
    """The test environment minus the champion-file override, so a Bento serves the champion
    recorded inside it; ``extra`` adds or overrides variables."""
    env = {k: v for k, v in os.environ.items() if k != "CREDIT_RISK_CHAMPION_FILE"}
    return env | extra


def build_bento(context: Path, bentofile: str) -> str:
    """`bentoml build` exactly as the Makefile runs it, in ``context``; returns the new tag."""
    built = subprocess.run(
        [
            str(Path(sys.executable).with_name("bentoml")),
            "build",
            ".",
            "-f",
            bentofile,
            "--output",
            "tag",
        ],
        cwd=context,
        env=serving_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


def served_answers(url: str, records: list[dict]) -> list[dict]:
    """Every record scored over HTTP, in requests of the most applications one may hold."""
    results = []
    for start in range(0, len(records), MAX_APPLICATIONS_PER_REQUEST):
        body = {"applications": records[start : start + MAX_APPLICATIONS_PER_REQUEST]}
        response = requests.post(f"{url}/score", json=body, timeout=30)
        assert response.status_code == 200, response.text
        results += response.json()["results"]
    return results


MLFLOW = str(Path(sys.executable).with_name("mlflow"))
K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
RUNNER_COMPONENT = "../../components/runner"


def has_runner(profile: str) -> bool:
    """Whether `make size` deployed this Kubernetes profile with a runner Deployment (its
    overlay's components), as the sizing run it came from recommended."""
    spec = yaml.safe_load((K8S / "overlays" / profile / "kustomization.yaml").read_text())
    return RUNNER_COMPONENT in spec.get("components", [])


def mlflow_server_command(root: Path, artifacts_destination: str) -> list[str]:
    """`mlflow server` on loopback (``{port}`` filled in by ``Server``): SQLite in ``root``
    behind tracking and registry, artifacts proxied to ``artifacts_destination``. Run it with
    ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: the job runner (seven huey consumers, for
    GenAI jobs) has no part in tracking, registry or artifacts; on two cores it only slows the
    start and the stop."""
    return [
        MLFLOW,
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        artifacts_destination,
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
    ]
