"""The torch scorer: device choice, scoring shapes and dtypes, loading the exported network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_artifact.network import TabularMLP
from model_artifact.torch_scorer import TorchScorer, load_exported_module, select_device


def scorer(width: int = 5) -> TorchScorer:
    torch.manual_seed(0)
    return TorchScorer(TabularMLP(width, (8,)).eval(), torch.device("cpu"), width)


def test_cpu_is_chosen_without_cuda_and_cuda_request_fails_loudly():
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert select_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="CUDA"):
            select_device("cuda")


@pytest.mark.parametrize("rows", [0, 1, 7, 300])
def test_predict_returns_float32_probabilities_per_row(rows):
    out = scorer().predict(np.random.default_rng(0).normal(size=(rows, 5)).astype(np.float32))
    assert out.shape == (rows,)
    assert out.dtype == np.float32
    assert ((out > 0) & (out < 1)).all()


def test_rows_are_scored_independently_of_batch_composition():
    s = scorer()
    matrix = np.random.default_rng(1).normal(size=(16, 5)).astype(np.float32)
    whole = s.predict(matrix)
    one_by_one = np.concatenate([s.predict(matrix[i : i + 1]) for i in range(16)])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-6)


def test_exported_module_matches_eager_module(tmp_path):
    import mlflow
    from mlflow.models import infer_signature

    s = scorer()
    example = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    mlflow.pytorch.save_model(
        s.module,
        tmp_path / "m",
        input_example=example,
        signature=infer_signature(example, s.predict(example)),
    )
    exported = TorchScorer(load_exported_module(tmp_path / "m"), torch.device("cpu"), 5)
    matrix = np.random.default_rng(3).normal(size=(33, 5)).astype(np.float32)
    np.testing.assert_array_equal(exported.predict(matrix), s.predict(matrix))


def test_torch_scorer_imports_no_bentoml_or_mlflow():
    import subprocess
    import sys

    code = (
        "import sys, model_artifact.torch_scorer; "
        "bad = [m for m in ('bentoml', 'mlflow') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
