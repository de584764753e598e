"""A real Bento, built from a staged build context, served by a real `bentoml serve`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests_support import build_bento, serving_env

from loadtests.load.server import Server
from model_artifact.settings import SOURCE_ROOT

BUILD_SOURCES = (
    "bentofile.yaml",
    "bentofile.cuda.yaml",
    "service.py",
    "api",
    "runners",
    "serving",
    "model_artifact",
    "monitoring",
    "credit_risk",
    "requirements",
)


@pytest.fixture(scope="session")
def build_context(champion, tmp_path_factory) -> Path:
    """A copy of the sources `make build` packs, holding the test workspace's champion.json
    (so a developer's own champion can never leak into a test Bento)."""
    settings, _, _ = champion
    context = tmp_path_factory.mktemp("build-context")
    for name in BUILD_SOURCES:
        source = SOURCE_ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    shutil.copy2(settings.champion_file, context / "champion.json")
    return context


@pytest.fixture(scope="session")
def bento_tag(build_context) -> str:
    return build_bento(build_context, "bentofile.yaml")


@pytest.fixture(scope="session")
def cuda_bento_tag(build_context) -> str:
    return build_bento(build_context, "bentofile.cuda.yaml")


@pytest.fixture(scope="session")
def server(bento_tag, tmp_path_factory) -> Iterator[Server]:
    served = Server(bento_tag, tmp_path_factory.mktemp("logs") / "serve.log", serving_env())
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="session")
def container_engine() -> None:
    """Podman as `make engine base-image` sets it up; the image tests skip, naming what is
    missing, where it cannot run (`make test` sets it up first, as root)."""
    from containers import missing_engine

    missing = missing_engine()
    if missing:
        pytest.skip(f"no container engine: {missing}")


@pytest.fixture(scope="session")
def cpu_image(container_engine, bento_tag) -> Iterator[str]:
    """The CPU image of the test Bento, built as `make image` builds one; removed afterwards."""
    from containers import build_image, podman

    image = f"localhost/credit-risk-test:{bento_tag.split(':')[1]}"
    seconds = build_image(bento_tag, image, "cpu", serving_env())
    print(f"\ncpu image {image} built in {seconds:.0f} s")
    try:
        yield image
    finally:
        podman("rmi", "-f", image, check=False)


@pytest.fixture(scope="session")
def image_server(cpu_image, tmp_path_factory) -> Iterator[Any]:
    """The CPU image run as Kubernetes runs it and nothing more: `podman run --read-only`, no
    mount, no variable."""
    from containers import Container, save_logs

    container = Container(cpu_image, "--read-only")
    try:
        print(f"\nimage ready in {container.wait_ready():.1f} s")
        yield container
    finally:
        save_logs(container, tmp_path_factory.mktemp("image") / "container.log")
        container.remove()


@pytest.fixture(params=["bentoml serve", "image"])
def served(request) -> Any:
    """The built Bento served on the host and its image run read-only (`podman run
    --read-only`): a test that asks for this runs against both, so bad input and the README's
    examples are checked where users deploy, not only on the development machine."""
    return request.getfixturevalue("server" if request.param == "bentoml serve" else "image_server")
