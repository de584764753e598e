"""Podman as the image tests drive it: the engine's configuration (deploy/image/engine.sh), an
image built from a Bento by the same script `make image` runs, and a container started the
way Kubernetes runs one (non-root, read-only root filesystem), with its processes seen from
the host so a test can kill one of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from loadtests.load.server import free_port
from model_artifact.settings import SOURCE_ROOT

CONTAINERS_CONF = SOURCE_ROOT / ".image" / "containers.conf"
BASE_IMAGES = (
    "localhost/credit-risk-base:bookworm-py311",
    "localhost/credit-risk-base:bookworm-py311-cpu",
)
CONTAINERIZE = SOURCE_ROOT / "deploy" / "image" / "containerize.sh"
SETUP_HINT = "as root: `make engine base-image` (deploy/image/README.md)"


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout, check=check
    )


def missing_engine() -> str | None:
    """Why containers cannot run here, or None when they can."""
    if shutil.which("podman") is None:
        return f"podman is not installed; {SETUP_HINT}"
    if not CONTAINERS_CONF.is_file():
        return f"{CONTAINERS_CONF} is missing; {SETUP_HINT}"
    for image in BASE_IMAGES:
        if podman("image", "exists", image, check=False).returncode != 0:
            return f"base image {image} is missing; {SETUP_HINT}"
    return None


def build_image(bento_tag: str, image: str, variant: str, env: dict[str, str]) -> float:
    """`deploy/image/containerize.sh`; the seconds it took."""
    start = time.monotonic()
    built = subprocess.run(
        [str(CONTAINERIZE), bento_tag, image, variant],
        env=env | {"CONTAINERS_CONF": str(CONTAINERS_CONF)},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    return time.monotonic() - start


def image_size_bytes(image: str) -> int:
    size: int = json.loads(podman("image", "inspect", image).stdout)[0]["Size"]
    return size


def run_python(image: str, code: str) -> str:
    """``python -c code`` in a throw-away container of ``image`` (the Bento's venv python)."""
    return podman("run", "--rm", "--entrypoint", "python", image, "-c", code, timeout=300).stdout


class Container:
    """``podman run -d`` of ``image`` with ``options``, port 3000 published on loopback."""

    def __init__(self, image: str, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = podman(
            "run", "-d", "-p", f"127.0.0.1:{self.port}:3000", *options, image
        ).stdout.strip()
        self.started = time.monotonic()

    def wait_ready(self, timeout_s: float = 180) -> float:
        """Seconds from `podman run` to the first 200 from /readyz."""
        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"container exited:\n{self.logs()[-4000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"not ready in {timeout_s}s:\n{self.logs()[-4000:]}")

    def inspect(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(podman("inspect", self.id).stdout)[0]
        return found

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.id, *command, check=False)

    def processes(self) -> list[psutil.Process]:
        """The container's processes, as the host sees them."""
        init = psutil.Process(self.inspect()["State"]["Pid"])
        return [init, *init.children(recursive=True)]

    def workers(self, service: str) -> list[psutil.Process]:
        """The BentoML workers of ``service`` (``--service-name`` in the command line)."""
        return [p for p in self.processes() if f"--service-name {service}" in " ".join(p.cmdline())]

    def wait_exit(self, timeout_s: float) -> int:
        """The exit code, once the container has stopped."""
        waited = podman("wait", self.id, timeout=timeout_s)
        return int(waited.stdout.strip().splitlines()[-1])

    def stop(self, timeout_s: int = 30) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``, as the kubelet does; the exit code."""
        podman("stop", "-t", str(timeout_s), self.id, timeout=timeout_s + 30)
        return int(self.inspect()["State"]["ExitCode"])

    def logs(self) -> str:
        logged = podman("logs", self.id, check=False)
        return logged.stdout + logged.stderr

    def remove(self) -> None:
        podman("rm", "-f", "-v", self.id, check=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *_: object) -> None:
        self.remove()


def save_logs(container: Container, path: Path) -> None:
    path.write_text(container.logs())
