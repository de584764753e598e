"""Integrated Gradients as computed for reasons: the same numbers as captum's implementation,
and contributions that add up to the probability's distance from the baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from model_artifact.attribution import STEPS, attribute, integrated_gradients
from model_artifact.network import TabularMLP


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return TabularMLP(12, (16, 8), dropout=0.0).eval()


def test_matches_captum_integrated_gradients(network):
    inputs = torch.randn(7, 12)
    baseline = torch.randn(12)
    ours = integrated_gradients(network, inputs, baseline)
    theirs = IntegratedGradients(network).attribute(
        inputs, baselines=baseline[None], n_steps=STEPS, method="riemann_middle"
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def completeness_error(network, steps: int) -> float:
    matrix = torch.from_numpy(np.random.default_rng(1).normal(size=(200, 12)).astype(np.float32))
    baseline = torch.zeros(12)
    contributions = integrated_gradients(network, matrix, baseline, steps)
    with torch.no_grad():
        gap = network(matrix) - network(baseline[None])
    return float((contributions.sum(dim=1) - gap).abs().max())


def test_contributions_add_up_to_the_distance_from_the_baseline(network):
    """Completeness holds up to the integral's error, which more path points shrink (on the
    trained model at the default steps: tests/integration/test_principal_reasons.py)."""
    coarse = completeness_error(network, STEPS)
    assert coarse < 5e-3
    assert completeness_error(network, 8 * STEPS) < coarse / 4


def test_an_input_equal_to_the_baseline_has_no_contributions(network):
    baseline = np.random.default_rng(2).normal(size=12).astype(np.float32)
    contributions = attribute(network, baseline[None], baseline, torch.device("cpu"))
    assert np.abs(contributions).max() == 0


def test_no_rows_no_work(network):
    empty = np.empty((0, 12), dtype=np.float32)
    assert attribute(network, empty, np.zeros(12), torch.device("cpu")).shape == (0, 12)
