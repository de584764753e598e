"""Start and stop a real `bentoml serve` on loopback, for tests, checks and sizing runs, and
reach its worker processes (to kill, stop or signal one, as the fault tests do)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

BENTOML = str(Path(sys.executable).with_name("bentoml"))
# Load tools measure the champion alone unless a scenario is about the shadow challenger.
NO_CHALLENGER = {"CREDIT_RISK_CHALLENGER_TAG": ""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serves(process: psutil.Process, service: str) -> bool:
    """Whether ``process`` is a BentoML worker of ``service`` (``--service-name`` in its
    command line); False for one that has just gone."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return False
    return any(
        flag == "--service-name" and name == service for flag, name in itertools.pairwise(command)
    )


class Server:
    """`bentoml serve TARGET` (or ``command``, with ``{port}`` filled in) in its own process
    group, logging to ``log``; ready when ``ready_path`` answers 200."""

    def __init__(
        self,
        target: str,
        log: Path,
        env: dict[str, str],
        port: int | None = None,
        cwd: Path | None = None,
        command: list[str] | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.ready_path = ready_path
        argv = command or [BENTOML, "serve", target, "--port", "{port}", "--host", "127.0.0.1"]
        self.argv = [part.replace("{port}", str(self.port)) for part in argv]
        self.env = env
        self.cwd = cwd
        self.process = self.launch()

    def launch(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 120) -> Server:
        deadline = time.monotonic() + timeout_s
        relaunched = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log.read_text()
                # BentoML's arbiter picks its control ports by binding and releasing them; an
                # outgoing connection can take one in between. A lost race, not a failure.
                if not relaunched and "Address already in use" in log:
                    relaunched = True
                    self.process = self.launch()
                    continue
                raise RuntimeError(f"server exited early:\n{log[-3000:]}")
            try:
                if requests.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or still starting
                pass
            time.sleep(0.5)
        raise TimeoutError(f"not ready in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def workers(self, service: str) -> list[psutil.Process]:
        """The live worker processes of one BentoML service (by its name, e.g.
        ``credit_risk_runner``) under this server's arbiter."""
        arbiter = psutil.Process(self.process.pid)
        return [child for child in arbiter.children(recursive=True) if serves(child, service)]

    def dependency_url(self, service: str) -> str:
        """Where the API workers reach a locally spawned dependency (a ``file://`` socket)."""
        api = next(p for p in psutil.Process(self.process.pid).children() if "--fd" in p.cmdline())
        url: str = json.loads(api.environ()["BENTOML_RUNNER_MAP"])[service]
        return url

    def terminate(self) -> None:
        """SIGTERM to the arbiter alone, as Kubernetes sends it to a container's first process;
        the arbiter passes it on to every worker."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM the whole group (BentoML's graceful shutdown), SIGKILL after 30 s."""
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> Server:
        return self.wait_ready()

    def __exit__(self, *_: object) -> None:
        self.stop()
