"""Both Bentos build from the same sources and carry the promoted model; their generated
Dockerfiles and requirements pin what the image must contain (checked without Docker)."""

from __future__ import annotations

from pathlib import Path

import bentoml
import pytest

PINNED = ("bentoml==1.4.39", "mlflow==3.17.2", "numpy==2.4.6", "pydantic==2.14.3", "torch==2.13.0")


def bento_files(tag: str) -> tuple[str, str, bentoml.Bento]:
    bento = bentoml.bentos.get(tag)
    root = Path(bento.path)
    dockerfile = (root / "env" / "docker" / "Dockerfile").read_text()
    requirements = (root / "env" / "python" / "requirements.txt").read_text()
    return dockerfile, requirements, bento


@pytest.mark.parametrize("which", ["cpu", "cuda"])
def test_bento_packs_the_champion_and_pins_the_serving_environment(
    which, bento_tag, cuda_bento_tag, champion
):
    _, _, report = champion
    dockerfile, requirements, bento = bento_files(bento_tag if which == "cpu" else cuda_bento_tag)
    models = {str(m.tag) for s in bento.info.services for m in s.models}
    assert models == {report.bento_model_tag}
    assert (Path(bento.path) / "src" / "champion.json").is_file()
    for pin in PINNED:
        assert pin in requirements
    base = "bookworm-py311-cpu" if which == "cpu" else "bookworm-py311 "
    assert f"FROM localhost/credit-risk-base:{base}" in dockerfile  # made here: no registry
    assert (
        "uv --directory $INSTALL_ROOT pip install -r $BENTO_PATH/env/python/requirements.txt"
        in dockerfile
    )


def test_cpu_image_takes_the_cpu_torch_build(bento_tag):
    """The pin is the same in both Bentos; the CPU base image resolves it to the local +cpu
    wheel (deploy/image/base.sh), and the bentofile names no index that cannot be reached."""
    dockerfile, requirements, _ = bento_files(bento_tag)
    assert "torch==2.13.0\n" in requirements
    assert "--extra-index-url" not in requirements
    assert "credit-risk-base:bookworm-py311-cpu" in dockerfile


def test_cuda_image_takes_the_cuda_torch_build_and_defaults_the_runner_to_the_gpu(cuda_bento_tag):
    dockerfile, requirements, bento = bento_files(cuda_bento_tag)
    assert "torch==2.13.0\n" in requirements
    assert "whl/cpu" not in requirements  # so pip takes the default, CUDA, wheel
    assert "CREDIT_RISK_RUNNER_DEVICE=cuda" in dockerfile.replace('"', "")
    assert bento.info.labels["accelerator"] == "nvidia-gpu"
