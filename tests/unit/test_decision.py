"""Business rules: thresholds from configuration, policy flags from contract fields only."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from credit_risk.contract import Application
from credit_risk.decision import VERDICTS, DecisionThresholds, decide
from credit_risk.features import raw_columns_from_records
from model_artifact.settings import DecisionSettings

THRESHOLDS = DecisionThresholds(approve_below=0.2, decline_at_or_above=0.6)


def decide_one(probability, record, thresholds=THRESHOLDS):
    raw = raw_columns_from_records([Application.model_validate(record).model_dump()])
    return decide(np.array([probability]), raw, thresholds)[0]


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
    assert decide_one(probability, make_record()).decision == decision


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"records": "yes"}, "PRIOR_DEFAULT_RECORDS"),
        ({"amount": 2000, "price": 1000}, "LOAN_EXCEEDS_PRICE"),
        ({"income": None}, "INCOME_NOT_STATED"),
    ],
)
def test_policy_flags_turn_an_approval_into_review(make_record, overrides, flag):
    verdict = decide_one(0.05, make_record(**overrides))
    assert verdict.decision == "review"
    assert flag in verdict.reasons


def test_policy_flags_do_not_soften_a_decline(make_record):
    verdict = decide_one(0.9, make_record(records="yes"))
    assert (verdict.decision, verdict.reasons) == ("decline", ("HIGH_DEFAULT_RISK",))


def test_thresholds_are_configurable_from_environment(monkeypatch, make_record):
    monkeypatch.setenv("CREDIT_RISK_DECISION__APPROVE_BELOW", "0.5")
    monkeypatch.setenv("CREDIT_RISK_DECISION__DECLINE_AT_OR_ABOVE", "0.9")
    thresholds = DecisionSettings()  # what the entry points read
    assert decide_one(0.4, make_record(), thresholds).decision == "approve"
    assert DecisionThresholds().approve_below == 0.25  # the domain itself reads no environment


def test_inverted_thresholds_are_refused():
    with pytest.raises(ValidationError, match="approve_below"):
        DecisionThresholds(approve_below=0.7, decline_at_or_above=0.3)


def test_a_batch_decides_each_row_as_it_would_alone(make_record):
    records = [
        make_record(records="yes", income=None),
        make_record(amount=5000, price=1000),
        make_record(),
        make_record(records="yes"),
    ]
    probabilities = np.array([0.05, 0.1, 0.3, 0.7])
    raw = raw_columns_from_records(records)
    together = decide(probabilities, raw, THRESHOLDS)
    assert together == [decide_one(p, r) for p, r in zip(probabilities, records, strict=True)]
    assert together[0].reasons == ("LOW_DEFAULT_RISK", "PRIOR_DEFAULT_RECORDS", "INCOME_NOT_STATED")
    assert decide(np.empty(0), raw_columns_from_records([]), THRESHOLDS) == []


def test_every_verdict_is_distinct_and_only_a_clean_low_score_approves():
    assert len(set(VERDICTS)) == len(VERDICTS)
    approvals = [v for v in VERDICTS if v.decision == "approve"]
    assert approvals == [VERDICTS[2]]
    assert approvals[0].reasons == ("LOW_DEFAULT_RISK",)
