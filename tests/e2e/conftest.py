"""A real Bento, built from a staged build context, served by a real `bentoml serve`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from tests_support import serving_env

from credit_risk.config import REPO_ROOT
from loadtests.server import BENTOML, Server

BUILD_SOURCES = ("service.py", "bentofile.yaml", "credit_risk", "runners", "requirements")


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


@pytest.fixture(scope="session")
def server(bento_tag, tmp_path_factory) -> Iterator[Server]:
    served = Server(bento_tag, tmp_path_factory.mktemp("logs") / "serve.log", serving_env())
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()
