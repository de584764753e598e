"""Canary assignment: deterministic per applicant, the share it is given, independent per
canary, and monotone in the share (raising it never moves an applicant back)."""

from __future__ import annotations

import numpy as np
import pytest

from credit_risk.traffic import applicant_point, canary_rows

KEYS = [f"applicant-{i}" for i in range(20_000)]


def test_the_same_key_always_gets_the_same_arm():
    first = canary_rows(KEYS, 0.25, "credit-risk:mlflow-v2")
    again = canary_rows(list(reversed(KEYS)), 0.25, "credit-risk:mlflow-v2")[::-1]
    assert np.array_equal(first, again)
    assert applicant_point("abc", "t") == applicant_point("abc", "t")


@pytest.mark.parametrize("share", [0.05, 0.25, 0.5, 0.9])
def test_the_canary_gets_its_share(share):
    mask = canary_rows(KEYS, share, "credit-risk:mlflow-v2")
    # binomial: 4 standard deviations of 20,000 draws is under 1.5 points
    assert mask.mean() == pytest.approx(share, abs=4 * np.sqrt(share * (1 - share) / len(KEYS)))


def test_no_share_and_full_share():
    assert not canary_rows(KEYS[:100], 0.0, "t").any()
    assert canary_rows(KEYS[:100], 1.0, "t").all()


def test_raising_the_share_only_moves_applicants_to_the_canary():
    low = canary_rows(KEYS, 0.1, "t")
    high = canary_rows(KEYS, 0.4, "t")
    assert not (low & ~high).any()


def test_each_canary_draws_its_own_applicants():
    one = canary_rows(KEYS, 0.25, "credit-risk:mlflow-v2")
    other = canary_rows(KEYS, 0.25, "credit-risk:mlflow-v3")
    overlap = (one & other).mean()
    assert overlap == pytest.approx(0.25 * 0.25, abs=0.01)  # independent, not the same quarter
