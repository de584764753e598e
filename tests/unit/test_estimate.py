"""Label-free performance estimation: the fast expected AUC is exactly the pair-weighted
definition, and every estimate is what the metric averages to when labels are drawn from the
scores (the calibration assumption made literal)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata
from sklearn.metrics import brier_score_loss, log_loss

from credit_risk.estimate import (
    estimate_performance,
    expected_brier,
    expected_log_loss,
    expected_roc_auc,
    training_performance,
)


def pairwise(p: np.ndarray) -> tuple[float, float]:
    """The definition's numerator and denominator, pair by pair: O(n^2), for checking only."""
    numerator = denominator = 0.0
    for i, j in itertools.permutations(range(len(p)), 2):
        weight = p[i] * (1 - p[j])
        denominator += weight
        numerator += weight * (float(p[i] > p[j]) + 0.5 * float(p[i] == p[j]))
    return numerator, denominator


def brute_force_auc(p: np.ndarray) -> float:
    numerator, denominator = pairwise(p)
    return numerator / denominator


def test_scores_of_zero_and_one_are_perfectly_separated():
    assert expected_roc_auc(np.array([0.0, 1.0, 0.0, 1.0, 1.0])) == pytest.approx(1.0)


def test_constant_scores_rank_nothing():
    assert expected_roc_auc(np.full(50, 0.3)) == pytest.approx(0.5)


def test_undefined_without_a_possible_default_non_default_pair():
    assert expected_roc_auc(np.array([0.4])) is None
    assert expected_roc_auc(np.zeros(10)) is None
    assert expected_roc_auc(np.ones(10)) is None


# Scores on a coarse grid, so ties (which count one half) are common.
SCORES = st.lists(
    st.one_of(st.floats(0, 1, allow_subnormal=False), st.integers(0, 10).map(lambda k: k / 10)),
    min_size=2,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(scores=SCORES)
def test_sorted_computation_equals_the_pairwise_definition(scores):
    p = np.array(scores)
    numerator, denominator = pairwise(p)
    if denominator == 0:  # every score 0 or 1 on one side: no (default, non-default) pair
        assert expected_roc_auc(p) is None
        return
    assume(denominator > 1e-9)  # vanishing pair mass: the ratio is float noise either way
    assert expected_roc_auc(p) == pytest.approx(numerator / denominator, abs=1e-9)
    assert expected_roc_auc(p[::-1]) == pytest.approx(expected_roc_auc(p), abs=1e-12)


def test_expected_auc_is_what_realized_auc_averages_to_under_calibration():
    """Draw labels from the scores 4,000 times: the mean realized AUC (by ranks) lands on the
    estimate; the estimate is a ratio of expectations, so only nearly."""
    rng = np.random.default_rng(7)
    p = rng.beta(2, 5, size=400)
    labels = rng.random((4000, p.size)) < p
    positives = labels.sum(axis=1)
    usable = (positives > 0) & (positives < p.size)
    ranks = rankdata(p)
    realized = (labels @ ranks - positives * (positives + 1) / 2) / (
        positives * (p.size - positives)
    )
    assert realized[usable].mean() == pytest.approx(expected_roc_auc(p), abs=0.003)


def test_log_loss_and_brier_are_exact_expectations_over_every_labelling():
    """Enumerate all 2^6 label vectors, each weighted by its probability under the scores."""
    p = np.array([0.05, 0.2, 0.2, 0.5, 0.7, 0.95])
    expected_loss = expected_brier_value = 0.0
    for bits in itertools.product((0, 1), repeat=p.size):
        labels = np.array(bits)
        weight = np.prod(np.where(labels == 1, p, 1 - p))
        expected_loss += weight * log_loss(labels, p, labels=[0, 1])
        expected_brier_value += weight * brier_score_loss(labels, p)
    assert expected_log_loss(p) == pytest.approx(expected_loss, abs=1e-12)
    assert expected_brier(p) == pytest.approx(expected_brier_value, abs=1e-12)


def test_estimate_of_a_window_ignores_unfilled_slots():
    estimate = estimate_performance(np.array([0.1, np.nan, 0.3, 0.8]))
    assert estimate.rows == 3
    assert estimate.default_rate == pytest.approx(0.4)
    assert estimate.as_dict()["roc_auc"] == pytest.approx(
        brute_force_auc(np.array([0.1, 0.3, 0.8]))
    )
    empty = estimate_performance(np.array([]))
    assert empty.as_dict() == {
        "rows": 0,
        "roc_auc": None,
        "default_rate": None,
        "log_loss": None,
        "brier": None,
    }


def test_training_values_are_the_test_split_metrics_under_the_estimates_names():
    logged = {"test_roc_auc": 0.858, "test_default_rate": 0.282, "train_roc_auc": 0.87}
    training = training_performance(logged)
    assert training["roc_auc"] == 0.858
    assert training["default_rate"] == 0.282
    assert training["log_loss"] is None
    assert training_performance(None)["roc_auc"] is None
