"""A real Bento, built from a staged build context, served by a real `bentoml serve`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from credit_risk.config import REPO_ROOT

BUILD_SOURCES = ("service.py", "bentofile.yaml", "credit_risk", "runners", "requirements")
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving_env(**extra: str) -> dict[str, str]:
    """The test environment minus the champion-file override: the Bento uses its own."""
    env = {k: v for k, v in os.environ.items() if k != "CREDIT_RISK_CHAMPION_FILE"}
    return env | extra


@pytest.fixture(scope="session")
def bento_tag(champion, tmp_path_factory) -> str:
    """`bentoml build` exactly as `make build` runs it, from a copy of the sources holding the
    test workspace's champion.json (so a developer's own champion can never leak in)."""
    settings, _, _ = champion
    context = tmp_path_factory.mktemp("build-context")
    for name in BUILD_SOURCES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    shutil.copy2(settings.champion_file, context / "champion.json")
    built = subprocess.run(
        [BENTOML, "build", ".", "--output", "tag"],
        cwd=context,
        env=serving_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


class Server:
    def __init__(self, args: list[str], port: int, log: Path, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process = subprocess.Popen(
            [BENTOML, "serve", *args, "--port", str(port), "--host", "127.0.0.1"],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or still starting
                pass
            time.sleep(0.5)
        raise TimeoutError(f"not ready in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


@pytest.fixture(scope="session")
def server(bento_tag, tmp_path_factory) -> Iterator[Server]:
    served = Server(
        [bento_tag], free_port(), tmp_path_factory.mktemp("logs") / "serve.log", serving_env()
    )
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()
