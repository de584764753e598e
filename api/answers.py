"""Probabilities and business verdicts become the answers a client gets, one per application,
each with its request id (the caller's, or a new one to join outcomes on later)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from credit_risk.contract import Application, ScoreResult
from credit_risk.decision import Verdict


def answers(
    applications: Sequence[Application],
    probabilities: np.ndarray,
    verdicts: Sequence[Verdict],
    model_tag: str,
) -> list[ScoreResult]:
    return [
        ScoreResult(
            request_id=application.request_id or uuid.uuid4().hex,
            probability_default=probability,
            decision=verdict.decision,
            reasons=list(verdict.reasons),
            model_tag=model_tag,
        )
        for application, probability, verdict in zip(
            applications, probabilities.tolist(), verdicts, strict=True
        )
    ]
