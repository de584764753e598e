"""Business rules: thresholds from configuration, policy flags from contract fields only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from credit_risk.config import DecisionThresholds
from credit_risk.contract import Application
from credit_risk.decision import decide

THRESHOLDS = DecisionThresholds(approve_below=0.2, decline_at_or_above=0.6)


@pytest.mark.parametrize(
    ("probability", "decision"),
    [
        (0.0, "approve"),
        (0.1999, "approve"),
        (0.2, "review"),
        (0.5999, "review"),
        (0.6, "decline"),
        (1.0, "decline"),
    ],
)
def test_thresholds_split_the_probability_range(make_record, probability, decision):
    assert (
        decide(probability, Application.model_validate(make_record()), THRESHOLDS).decision
        == decision
    )


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"records": "yes"}, "PRIOR_DEFAULT_RECORDS"),
        ({"amount": 2000, "price": 1000}, "LOAN_EXCEEDS_PRICE"),
        ({"income": None}, "INCOME_NOT_STATED"),
    ],
)
def test_policy_flags_turn_an_approval_into_review(make_record, overrides, flag):
    verdict = decide(0.05, Application.model_validate(make_record(**overrides)), THRESHOLDS)
    assert verdict.decision == "review"
    assert flag in verdict.reasons


def test_policy_flags_do_not_soften_a_decline(make_record):
    verdict = decide(0.9, Application.model_validate(make_record(records="yes")), THRESHOLDS)
    assert (verdict.decision, verdict.reasons) == ("decline", ["HIGH_DEFAULT_RISK"])


def test_thresholds_are_configurable_from_environment(monkeypatch, make_record):
    monkeypatch.setenv("CREDIT_RISK_DECISION__APPROVE_BELOW", "0.5")
    monkeypatch.setenv("CREDIT_RISK_DECISION__DECLINE_AT_OR_ABOVE", "0.9")
    from credit_risk.config import Settings

    thresholds = Settings().decision
    assert decide(0.4, Application.model_validate(make_record()), thresholds).decision == "approve"


def test_inverted_thresholds_are_refused():
    with pytest.raises(ValidationError, match="approve_below"):
        DecisionThresholds(approve_below=0.7, decline_at_or_above=0.3)
