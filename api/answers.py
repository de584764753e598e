"""Probabilities and business verdicts become the answers a client gets, one per application,
each with its request id (the caller's, or a new one to join outcomes on later)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence

import numpy as np

from credit_risk.contract import PrincipalReason, ScoreResult
from credit_risk.decision import Verdict


class RequestIds:
    """New request ids: 20 random hex digits drawn once per process, then a counter.

    Unique across workers, restarts and replicas as long as 80 random bits don't collide, and
    no system call per answer (``uuid4`` reads the OS entropy pool for every id: under load
    that was as much CPU as the model)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(10).hex()
        self.counter: Iterator[int] = itertools.count()

    def __next__(self) -> str:
        return f"{self.prefix}{next(self.counter):012x}"


def answers(
    request_ids: Sequence[str],
    probabilities: np.ndarray,
    verdicts: Sequence[Verdict],
    principal_reasons: Sequence[list[PrincipalReason]],
    model_tag: str,
) -> list[ScoreResult]:
    return [
        ScoreResult(
            request_id=request_id,
            probability_default=probability,
            decision=verdict.decision,
            reasons=list(verdict.reasons),
            principal_reasons=principal,
            model_tag=model_tag,
        )
        for request_id, probability, verdict, principal in zip(
            request_ids, probabilities.tolist(), verdicts, principal_reasons, strict=True
        )
    ]
