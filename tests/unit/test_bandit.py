"""The canary bandit's policy: costs per decision and outcome, evidence per arm (declines need no
outcome), and a share that follows the evidence within its bounds, the same from either side."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from credit_risk.bandit import ArmEvidence, DecisionCosts, ThompsonSplit

COSTS = DecisionCosts()
POLICY = ThompsonSplit()


def proven(mean: float, sd: float = 0.01, count: int = 1_000) -> ArmEvidence:
    return ArmEvidence(count, mean, sd**2)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_cost_table_books_the_loss_the_margin_and_a_review():
    table = COSTS.table()
    assert table["approve"] == pytest.approx((-0.15, 1.0))
    assert table["review"] == pytest.approx((0.02 - 0.9 * 0.15, 0.02 + 0.4 * 1.0))
    assert table["decline"] == (0.0, 0.0)  # whatever the (unobserved) outcome


def test_vectorised_costs_match_the_table_and_refuse_unknown_decisions():
    decisions = np.array(["approve", "review", "decline", "approve"])
    defaulted = np.array([1, 0, 1, 0])
    assert COSTS.costs(decisions, defaulted) == pytest.approx([1.0, -0.115, 0.0, -0.15])
    with pytest.raises(ValueError, match="accept"):
        COSTS.costs(np.array(["approve", "accept"]), np.array([0, 0]))


def test_evidence_from_rewards_is_their_mean_and_squared_standard_error():
    rewards = np.array([0.15, 0.15, -1.0, 0.15])
    evidence = ArmEvidence.from_rewards(rewards)
    assert evidence.count == 4
    assert evidence.mean == pytest.approx(rewards.mean())
    assert evidence.variance == pytest.approx(rewards.var(ddof=1) / 4)
    assert ArmEvidence.from_rewards(np.array([])).count == 0


def test_evidence_from_decisions_matches_the_rewards_when_every_outcome_is_known():
    generator = np.random.default_rng(3)
    decisions = generator.choice(["approve", "review", "decline"], 5_000, p=[0.6, 0.3, 0.1])
    defaulted = (generator.random(5_000) < 0.2).astype(float)
    stratified = ArmEvidence.from_decisions(decisions, defaulted, COSTS)
    plain = ArmEvidence.from_rewards(-COSTS.costs(decisions, defaulted))
    assert stratified.mean == pytest.approx(plain.mean, abs=2e-3)
    assert stratified.variance == pytest.approx(plain.variance, rel=0.1)


def test_declines_need_no_outcome_and_outcomes_in_flight_do_not_bias_the_mean():
    generator = np.random.default_rng(4)
    decisions = generator.choice(["approve", "decline"], 20_000, p=[0.5, 0.5])
    defaulted = (generator.random(20_000) < 0.1).astype(float)
    full = ArmEvidence.from_decisions(decisions, defaulted, COSTS)
    # production: no decline is ever labelled, and half the approvals are still in flight
    observed = np.where(
        (decisions == "approve") & (generator.random(20_000) < 0.5), defaulted, np.nan
    )
    partial = ArmEvidence.from_decisions(decisions, observed, COSTS)
    assert partial.mean == pytest.approx(full.mean, abs=5e-3)
    assert partial.count == pytest.approx(5_000, rel=0.05)  # labelled approvals only
    # the naive mean over labelled rows would judge the arm on its approvals alone
    labelled = ~np.isnan(observed)
    naive = -COSTS.costs(decisions[labelled], observed[labelled]).mean()
    assert abs(naive - full.mean) > 5 * abs(partial.mean - full.mean)
    everyone_declined = ArmEvidence.from_decisions(
        np.array(["decline"] * 10), np.full(10, np.nan), COSTS
    )
    assert (everyone_declined.count, everyone_declined.mean) == (0, 0.0)


def test_an_arm_without_outcomes_for_a_decision_is_uncertain_not_excluded():
    decisions = np.array(["approve"] * 100)
    evidence = ArmEvidence.from_decisions(decisions, np.full(100, np.nan), COSTS)
    assert evidence.count == 0
    assert evidence.variance > 0.1  # a coin flip of a default rate: wide


@settings(max_examples=60, deadline=None)
@given(
    champion_mean=st.floats(-1, 1),
    canary_mean=st.floats(-1, 1),
    sd=st.floats(0, 0.5),
    current=st.floats(0, 1),
    counts=st.tuples(st.integers(0, 400), st.integers(0, 400)),
)
def test_the_share_stays_within_floor_and_ceiling(champion_mean, canary_mean, sd, current, counts):
    champion = ArmEvidence(counts[0], champion_mean, sd**2)
    canary = ArmEvidence(counts[1], canary_mean, sd**2)
    share = POLICY.canary_share(champion, canary, current, rng())
    assert POLICY.floor <= share <= POLICY.ceiling
    if counts[1] < POLICY.min_outcomes:
        assert share <= POLICY.unproven_ceiling


def test_clear_evidence_sends_the_share_to_the_floor_or_the_ceiling():
    assert POLICY.canary_share(proven(0.05), proven(-0.05), 0.5, rng()) == POLICY.floor
    assert POLICY.canary_share(proven(-0.05), proven(0.05), 0.5, rng()) == POLICY.ceiling


def test_an_unproven_arm_holds_the_share_and_gets_at_most_the_unproven_ceiling():
    few = proven(0.5, count=POLICY.min_outcomes - 1)  # looks far better, on too little
    assert POLICY.canary_share(proven(0.0), few, 0.1, rng()) == 0.1  # held where it is
    assert POLICY.canary_share(proven(0.0), few, 0.6, rng()) == POLICY.unproven_ceiling
    # an unproven champion beside a proven canary: the champion is capped the same way
    share = POLICY.canary_share(few, proven(-0.5), 0.5, rng())
    assert share == pytest.approx(1 - POLICY.unproven_ceiling)
    # both unproven: the canary's cap, the champion takes the rest
    assert POLICY.canary_share(few, few, 0.5, rng()) == POLICY.unproven_ceiling
    decision = POLICY.decide(proven(0.0), few, 0.1, rng())
    assert decision.probability_canary_better is None
    assert "held" in decision.note


def test_the_share_moves_toward_the_better_arm_as_evidence_accumulates():
    generator = np.random.default_rng(5)
    champion_rewards = np.where(generator.random(20_000) < 0.20, -1.0, 0.15)
    canary_rewards = np.where(generator.random(20_000) < 0.15, -1.0, 0.15)  # defaults less
    shares = [
        POLICY.canary_share(
            ArmEvidence.from_rewards(champion_rewards[:n]),
            ArmEvidence.from_rewards(canary_rewards[:n]),
            0.2,
            rng(),
        )
        for n in (200, 800, 3_000, 20_000)
    ]
    assert shares[-1] == POLICY.ceiling
    assert shares[0] < shares[-1]
    assert shares == sorted(shares)


def test_equal_evidence_splits_evenly():
    assert POLICY.canary_share(proven(0.01), proven(0.01), 0.2, rng()) == pytest.approx(
        0.5, abs=0.02
    )


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.01), (0.02, -0.01), (0.0, 0.0)])
def test_the_policy_is_symmetric_in_the_arms(a, b):
    one = POLICY.decide(proven(a, 0.01), proven(b, 0.02), 0.3, rng())
    other = POLICY.decide(proven(b, 0.02), proven(a, 0.01), 0.7, rng())
    assert one.share + other.share == pytest.approx(1.0, abs=1e-12)


def test_same_seed_same_share_and_monte_carlo_matches_the_closed_form():
    champion, canary = proven(0.0, 0.02), proven(0.01, 0.02)
    first = POLICY.probability_canary_better(champion, canary, np.random.default_rng(7))
    again = POLICY.probability_canary_better(champion, canary, np.random.default_rng(7))
    assert first == again
    exact = 0.5 * (1 + math.erf(0.01 / math.sqrt(2 * 0.02**2) / math.sqrt(2)))
    assert first == pytest.approx(exact, abs=0.01)


def test_max_step_limits_a_move():
    slow = ThompsonSplit(max_step=0.1)
    assert slow.canary_share(proven(-0.05), proven(0.05), 0.2, rng()) == pytest.approx(0.3)
    assert slow.canary_share(proven(0.05), proven(-0.05), 0.2, rng()) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "options",
    [
        {"floor": 0.3, "unproven_ceiling": 0.2},
        {"ceiling": 0.6, "unproven_ceiling": 0.7},
        {"draws": 3},
    ],
)
def test_inconsistent_policies_are_refused(options):
    with pytest.raises(ValidationError):
        ThompsonSplit(**options)
