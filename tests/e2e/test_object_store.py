"""Models where teams keep them: the MLflow artifact store in an S3-compatible bucket (a real
`moto_server` on loopback), a real `mlflow server` in front of it, and the project's own CLIs
configured by environment variables only: train -> promote -> `bentoml build` -> `bentoml serve`
-> a scored request, with every artifact in the bucket, none on the tracking server's disk, and
the secret key in no log or output of any step.

Two ways a team runs it. Proxied (``--artifacts-destination s3://…``): only the tracking server
holds S3 credentials, workstations hold none. Direct (an experiment whose artifact location is
``s3://…``): each workstation writes to and reads from the bucket with its own credentials."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from mlflow import MlflowClient
from tests_support import TINY_CONFIG, mlflow_server_command

from loadtests.load.server import BENTOML, Server
from model_artifact.bundle import BUNDLE_FILES
from model_artifact.settings import SOURCE_ROOT

MOTO = str(Path(sys.executable).with_name("moto_server"))
MODEL = "credit-risk"
BUCKET = "models"
PROXIED = "mlartifacts"  # the server's --artifacts-destination prefix in the bucket
DIRECT = "direct"  # the prefix a directly-writing experiment names as its artifact location
REGION = "us-east-1"
APPLICATION = json.loads((SOURCE_ROOT / "loadtests" / "example_request.json").read_text())
# What MLflow (``mlflow.pytorch.log_model``) and training (the bundle) put in every model.
MODEL_FILES = ("MLmodel", "data/model.pt2", *(f"extra_files/{name}" for name in BUNDLE_FILES))


@dataclass(frozen=True)
class ObjectStore:
    url: str
    key_id: str
    secret: str
    log: Path

    def credentials(self) -> dict[str, str]:
        """What a process that talks to the bucket needs in its environment."""
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.url,
        }

    def keys(self, prefix: str) -> list[str]:
        # The test's own client gets the credentials as arguments: never in os.environ.
        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def no_aws(tmp: Path) -> dict[str, str]:
    """This process's environment with no S3 credential or endpoint from the developer's shell
    (nor their ~/.aws, nor the cloud metadata endpoint, which is not on loopback)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "MLFLOW_S3_")) and k != "CREDIT_RISK_MLFLOW_ARTIFACT_LOCATION"
    }
    return env | {
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def object_store(tmp_path_factory) -> Iterator[ObjectStore]:
    """`moto_server` on a free loopback port with one bucket; fresh credentials per run."""
    root = tmp_path_factory.mktemp("object-store")
    command = [MOTO, "-H", "127.0.0.1", "-p", "{port}"]
    server = Server("moto", root / "moto.log", no_aws(root), command=command, ready_path="/")
    try:
        server.wait_ready(timeout_s=60)
        store = ObjectStore(
            server.url, f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30), server.log
        )
        boto3.client(
            "s3",
            endpoint_url=store.url,
            region_name=REGION,
            aws_access_key_id=store.key_id,
            aws_secret_access_key=store.secret,
        ).create_bucket(Bucket=BUCKET)
        yield store
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tracking_server(object_store, tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    """`mlflow server` on loopback, SQLite behind tracking and registry, artifacts proxied into
    the bucket; it alone holds the S3 credentials. Started in its own root folder, so a stray
    local artifact folder would show there. Yields it and that folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    command = mlflow_server_command(root, f"s3://{BUCKET}/{PROXIED}")
    env = (
        no_aws(root) | object_store.credentials() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    )
    server = Server(
        "mlflow", root / "server.log", env, cwd=root, command=command, ready_path="/health"
    )
    try:
        yield server.wait_ready(timeout_s=90), root
    finally:
        server.stop()


def workstation(home: Path, tracking_uri: str, **extra: str) -> dict[str, str]:
    """A user's shell: the server's URL, their own BentoML store, champion file and prediction
    log, the tiny training knobs, and (unless ``extra`` adds them) no S3 credentials at all."""
    knobs = {f"CREDIT_RISK_TRAIN_{k.upper()}": json.dumps(v) for k, v in TINY_CONFIG.items()}
    return (
        no_aws(home)
        | knobs
        | {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "BENTOML_HOME": str(home / "bentoml"),
            "CREDIT_RISK_CHAMPION_FILE": str(home / "champion.json"),
            "CREDIT_RISK_PREDICTION_LOG_URL": f"sqlite:///{home / 'predictions.db'}",
            "CREDIT_RISK_PREDICTION_LOG_SPOOL_DIR": str(home / "spool"),
        }
        | extra
    )


class Steps:
    """Runs commands as the user types them, from an empty working folder, and keeps what each
    printed (stdout and stderr), so the test can show no secret was ever written out."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.printed: list[str] = []

    def run(self, env: dict[str, str], *argv: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            list(argv),
            env=env,
            cwd=cwd or self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.printed += [done.stdout, done.stderr]
        assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def train(self, env: dict[str, str]) -> tuple[str, str]:
        printed = self.run(env, sys.executable, "-m", "training.train")
        trained = re.search(r"trained run=(\w+) version=(\d+)", printed)
        assert trained, printed
        return trained.group(1), trained.group(2)


def stage(context: Path, champion_file: Path) -> Path:
    """The build context `make build` packs (what bentofile.yaml includes, its requirements and
    the bentofiles), with the champion record this workstation's promotion wrote."""
    bentofile = yaml.safe_load((SOURCE_ROOT / "bentofile.yaml").read_text())
    wanted = [p for p in bentofile["include"] if p != "champion.json"]
    wanted += ["bentofile.yaml", bentofile["python"]["requirements_txt"], "requirements/*"]
    for pattern in wanted:
        for source in SOURCE_ROOT.glob(pattern.removeprefix("./")):
            if source.is_file():
                target = context / source.relative_to(SOURCE_ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    shutil.copy2(champion_file, context / "champion.json")
    return context


def model_keys(keys: list[str], prefix: str) -> set[str]:
    """The files of each logged model under ``prefix``: {relative path inside the model}."""
    inside = re.compile(rf"{re.escape(prefix)}/(?:\d+/)?models/m-\w+/artifacts/(.+)")
    return {match.group(1) for key in keys if (match := inside.fullmatch(key))}


def local_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def assert_no_secret(secret: str, texts: list[str], files: list[Path]) -> None:
    for i, text in enumerate(texts):
        assert secret not in text, f"the secret key was printed by step output #{i}"
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"the secret key is in {path}"


def test_proxied_train_promote_build_serve_from_the_bucket(object_store, tracking_server, tmp_path):
    """Workstations hold no S3 credentials: the tracking server proxies every artifact."""
    mlflow_server, server_root = tracking_server
    client = MlflowClient(tracking_uri=mlflow_server.url)
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "ours"
    env = workstation(home, mlflow_server.url)
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"} & set(env)
    steps = Steps(work)

    run_id, version = steps.train(env)
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:/")
    promoted = steps.run(env, sys.executable, "-m", "training.promote")
    tag = f"{MODEL}:mlflow-v{version}"
    assert f"PROMOTED {MODEL} v{version} as {tag}" in promoted
    assert client.get_model_version_by_alias(MODEL, "champion").version == version

    # Every model file and the run's bundle are objects in the bucket, behind the proxy prefix.
    keys = object_store.keys(f"{PROXIED}/")
    assert set(MODEL_FILES) <= model_keys(keys, PROXIED), keys
    bundle = {k.rsplit("/", 1)[1] for k in keys if f"/{run_id}/artifacts/bundle/" in k}
    assert set(BUNDLE_FILES) <= bundle, keys
    # ... and none on the tracking server's disk: its database and its log, nothing else.
    assert local_files(server_root) == {"mlflow.db", "server.log"}

    # Build the Bento around the promoted champion, serve it, score an application.
    context = stage(tmp_path / "build-context", home / "champion.json")
    build_env = {k: v for k, v in env.items() if k != "CREDIT_RISK_CHAMPION_FILE"}
    built = steps.run(
        build_env, BENTOML, "build", ".", "-f", "bentofile.yaml", "--output", "tag", cwd=context
    )
    bento = built.strip().splitlines()[-1].removeprefix("__tag__:")
    serve_log = tmp_path / "serve.log"
    with Server(bento, serve_log, build_env, cwd=work) as served:
        response = requests.post(f"{served.url}/score", json=APPLICATION, timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(APPLICATION["applications"])
    assert {r["model_tag"] for r in results} == {tag}

    assert local_files(work) == set()  # nothing written beside the user
    bento_home = [p for p in (home / "bentoml").rglob("*") if p.is_file()]
    assert_no_secret(
        object_store.secret, steps.printed, [mlflow_server.log, serve_log, *bento_home]
    )


def test_direct_writes_with_the_workstations_own_credentials(
    object_store, tracking_server, tmp_path
):
    """An experiment whose artifact location is the bucket: the workstation writes and reads
    the objects itself, with credentials from its environment; the server stores only URIs."""
    mlflow_server, server_root = tracking_server
    client = MlflowClient(tracking_uri=mlflow_server.url)
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "direct"
    name = f"{MODEL}-direct"
    env = workstation(
        home,
        mlflow_server.url,
        **object_store.credentials(),
        CREDIT_RISK_MLFLOW_ARTIFACT_LOCATION=f"s3://{BUCKET}/{DIRECT}",
        CREDIT_RISK_EXPERIMENT_NAME=name,
        CREDIT_RISK_REGISTERED_MODEL_NAME=name,
    )
    steps = Steps(work)

    run_id, version = steps.train(env)
    assert client.get_run(run_id).info.artifact_uri.startswith(f"s3://{BUCKET}/{DIRECT}/")
    promoted = steps.run(env, sys.executable, "-m", "training.promote")
    assert f"PROMOTED {name} v{version} as {MODEL}:mlflow-v{version}" in promoted

    keys = object_store.keys(f"{DIRECT}/")
    assert set(MODEL_FILES) <= model_keys(keys, DIRECT), keys
    assert local_files(server_root) == {"mlflow.db", "server.log"}
    assert local_files(work) == set()
    bento_home = [p for p in (home / "bentoml").rglob("*") if p.is_file()]
    assert_no_secret(object_store.secret, steps.printed, [mlflow_server.log, *bento_home])
