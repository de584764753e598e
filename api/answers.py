"""Probabilities and business verdicts become the answers a client gets, one per application,
each with its request id (the caller's, or a new one to join outcomes on later)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from credit_risk.contract import Application, PrincipalReason, ScoreResult
from credit_risk.decision import Verdict


def answers(
    applications: Sequence[Application],
    probabilities: np.ndarray,
    verdicts: Sequence[Verdict],
    principal_reasons: Sequence[list[PrincipalReason]],
    model_tag: str,
) -> list[ScoreResult]:
    return [
        ScoreResult(
            request_id=application.request_id or uuid.uuid4().hex,
            probability_default=probability,
            decision=verdict.decision,
            reasons=list(verdict.reasons),
            principal_reasons=principal,
            model_tag=model_tag,
        )
        for application, probability, verdict, principal in zip(
            applications, probabilities.tolist(), verdicts, principal_reasons, strict=True
        )
    ]
