"""Drift: PSI near zero for training-like traffic, well above the alert line for a shift."""

from __future__ import annotations

import numpy as np
import pytest

from credit_risk.features import raw_columns_from_records
from credit_risk.records import contract_records
from monitoring.drift import DriftWindow, categorical_shares, numeric_shares, psi
from training.reference import reference_statistics


@pytest.fixture(scope="module")
def reference(credit_splits):
    raw = raw_columns_from_records(contract_records(credit_splits.train))
    scores = np.random.default_rng(0).beta(2, 5, size=len(credit_splits.train))
    return reference_statistics(raw, scores)


def window_of(reference, records, scores=None):
    window = DriftWindow(reference, capacity=5000)
    raw = raw_columns_from_records(records)
    window.add(
        raw, np.random.default_rng(1).beta(2, 5, size=len(records)) if scores is None else scores
    )
    return window


def test_psi_is_zero_for_identical_and_grows_with_shift():
    base = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(base, base) == pytest.approx(0, abs=1e-12)
    assert psi(base, np.array([0.4, 0.3, 0.2, 0.1])) < psi(base, np.array([0.7, 0.1, 0.1, 0.1]))


def test_missing_values_are_their_own_bin():
    reference = {"edges": [1.0, 2.0], "proportions": [0.5, 0.25, 0.25], "missing_share": 0.2}
    expected, live = numeric_shares(reference, np.array([0.5, np.nan, np.nan, 3.0]))
    np.testing.assert_allclose(expected, [0.4, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(live, [0.25, 0, 0.25, 0.5])


def test_unseen_level_goes_to_other_bucket():
    expected, live = categorical_shares(
        {"proportions": {"a": 0.6, "b": 0.4}}, np.array(["a", "z", None])
    )
    np.testing.assert_allclose(expected, [0.6, 0.4, 0.0])
    np.testing.assert_allclose(live, [1 / 3, 0, 2 / 3])


def test_training_like_traffic_stays_below_threshold(reference, credit_splits):
    report = window_of(reference, contract_records(credit_splits.test)).report(0.2, min_window=200)
    assert report["alerts"] == []
    assert max(v["psi"] for v in report["features"].values()) < 0.1
    assert report["features"]["income"]["window"] == len(credit_splits.test)


def test_tripled_incomes_and_a_new_category_mix_alert(reference, credit_splits):
    records = contract_records(credit_splits.test)
    for record in records:
        if record["income"] is not None:
            record["income"] = min(record["income"] * 3, 100_000)
        record["home"] = "ignore"
    report = window_of(reference, records).report(0.2, min_window=200)
    assert {"income", "home"} <= set(report["alerts"])
    assert "age" not in report["alerts"]


def test_no_alert_below_the_minimum_window(reference, credit_splits):
    records = contract_records(credit_splits.test[:50])
    for record in records:
        record["home"] = "ignore"
    report = window_of(reference, records).report(0.2, min_window=200)
    assert report["features"]["home"]["psi"] > 0.2
    assert report["alerts"] == []


def test_window_keeps_only_the_newest_rows(reference, make_record):
    window = DriftWindow(reference, capacity=10)
    for age in range(20, 45):
        window.add(raw_columns_from_records([make_record(age=age)]), np.array([0.1]))
    assert window.size == 10
    assert sorted(window.numeric["age"].tolist()) == list(range(35, 45))
    window.add(
        raw_columns_from_records([make_record(age=a) for a in range(60, 75)]), np.full(15, 0.2)
    )
    assert sorted(window.numeric["age"].tolist()) == list(range(65, 75))


def test_live_scores_are_the_window_only(reference, make_record):
    window = DriftWindow(reference, capacity=4)
    assert window.live_scores().size == 0  # empty slots (NaN) never reach the estimate
    window.add(raw_columns_from_records([make_record()] * 3), np.array([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(window.live_scores(), [0.1, 0.2, 0.3])
    window.add(raw_columns_from_records([make_record()] * 2), np.array([0.4, 0.5]))
    assert sorted(window.live_scores().tolist()) == [0.2, 0.3, 0.4, 0.5]
