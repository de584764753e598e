"""Business rules: a default probability plus contract fields become a decision with reasons.

Kept apart from the model and the features so credit policy can change (thresholds come from
configuration) without retraining, and so the model never learns policy. No statistics here.
"""

from __future__ import annotations

from dataclasses import dataclass

from credit_risk.config import DecisionThresholds
from credit_risk.contract import Application, Decision


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reasons: list[str]


def policy_flags(application: Application, thresholds: DecisionThresholds) -> list[str]:
    """Reasons that forbid an automatic approval whatever the score says."""
    flags: list[str] = []
    if application.records == "yes":
        flags.append("PRIOR_DEFAULT_RECORDS")
    if application.amount > thresholds.max_loan_to_price_for_approve * application.price:
        flags.append("LOAN_EXCEEDS_PRICE")
    if application.income is None:
        flags.append("INCOME_NOT_STATED")
    return flags


def decide(
    probability_default: float, application: Application, thresholds: DecisionThresholds
) -> Verdict:
    """Decline high risk, approve low risk unless a policy flag asks for a person, else review."""
    if probability_default >= thresholds.decline_at_or_above:
        return Verdict("decline", ["HIGH_DEFAULT_RISK"])
    if probability_default < thresholds.approve_below:
        flags = policy_flags(application, thresholds)
        if flags:
            return Verdict("review", ["LOW_DEFAULT_RISK", *flags])
        return Verdict("approve", ["LOW_DEFAULT_RISK"])
    return Verdict("review", ["MODERATE_DEFAULT_RISK"])
