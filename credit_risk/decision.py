"""Business rules: default probabilities plus contract fields become decisions with reasons.

Kept apart from the model and the features so credit policy can change (thresholds come from
configuration) without retraining, and so the model never learns policy. No statistics here.
Vectorised over a batch's raw columns: every possible verdict is built once, and a batch only
computes which one each row gets, so a file of a million rows costs a few array operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, model_validator

from credit_risk.contract import Decision


class DecisionThresholds(BaseModel):
    """Credit policy's cut-offs: configuration, so policy changes without retraining. Entry
    points read them from the environment (``model_artifact.settings.DecisionSettings``)."""

    approve_below: float = Field(
        0.25, gt=0, lt=1, description="Default probability below which a clean file approves."
    )
    decline_at_or_above: float = Field(
        0.55, gt=0, lt=1, description="Default probability from which an application declines."
    )
    max_loan_to_price_for_approve: float = Field(
        1.0, gt=0, description="Loan/price ratio above which approval needs a person."
    )

    @model_validator(mode="after")
    def _ordered(self) -> DecisionThresholds:
        if self.approve_below > self.decline_at_or_above:
            raise ValueError("approve_below must not exceed decline_at_or_above")
        return self


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reasons: tuple[str, ...]


# Reasons that forbid an automatic approval whatever the score says, one bit each.
POLICY_FLAGS: tuple[str, ...] = ("PRIOR_DEFAULT_RECORDS", "LOAN_EXCEEDS_PRICE", "INCOME_NOT_STATED")
DECLINE, MODERATE, LOW_RISK = 0, 1, 2  # verdict codes; LOW_RISK + flag bits for low scores
VERDICTS: tuple[Verdict, ...] = (
    Verdict("decline", ("HIGH_DEFAULT_RISK",)),
    Verdict("review", ("MODERATE_DEFAULT_RISK",)),
    *(
        Verdict(
            "review" if bits else "approve",
            ("LOW_DEFAULT_RISK", *(f for i, f in enumerate(POLICY_FLAGS) if bits >> i & 1)),
        )
        for bits in range(2 ** len(POLICY_FLAGS))
    ),
)


def policy_flag_bits(raw: Mapping[str, np.ndarray], thresholds: DecisionThresholds) -> np.ndarray:
    """Per row, the policy flags raised, as bits in ``POLICY_FLAGS`` order."""
    prior_records = np.asarray(raw["records"] == "yes", dtype=np.intp)
    loan_exceeds = raw["amount"] > thresholds.max_loan_to_price_for_approve * raw["price"]
    no_income = np.isnan(raw["income"])
    bits: np.ndarray = (
        prior_records | loan_exceeds.astype(np.intp) << 1 | no_income.astype(np.intp) << 2
    )
    return bits


def verdict_codes(
    probabilities: np.ndarray, raw: Mapping[str, np.ndarray], thresholds: DecisionThresholds
) -> np.ndarray:
    """Decline high risk, approve low risk unless a policy flag asks for a person, else review:
    each row's index into ``VERDICTS``."""
    p = np.asarray(probabilities, dtype=np.float64)
    low = LOW_RISK + policy_flag_bits(raw, thresholds)
    return np.where(
        p >= thresholds.decline_at_or_above,
        DECLINE,
        np.where(p < thresholds.approve_below, low, MODERATE),
    )


def decide(
    probabilities: np.ndarray, raw: Mapping[str, np.ndarray], thresholds: DecisionThresholds
) -> list[Verdict]:
    """One verdict per row (shared, immutable objects)."""
    return [VERDICTS[code] for code in verdict_codes(probabilities, raw, thresholds).tolist()]
