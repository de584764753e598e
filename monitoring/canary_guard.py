"""Whether a canary must leave traffic: its recent requests and scores against the
champion's, in one worker.

Each arm keeps a window of its recent requests (failed or not, how long they took) and scores.
A canary is rolled back when, relative to the champion over the same traffic:

- ``errors``: it failed on more than ``max_failure_rate_excess`` more of its requests (and at
  least ``min_failures`` times: a single failure among the first few requests is no rate);
- ``latency``: its p95 exceeds ``max_latency_ratio`` x the champion's p95 + ``latency_slack_s``;
- ``score_drift``: its scores' distribution departs from the champion's (PSI over the
  champion's score deciles). Both arms see the same population, assigned by a hash, so a
  large PSI is the model, not the traffic: a model that ranks alike but is calibrated
  differently moves every decision the thresholds make;
- ``estimated_auc``: its label-free estimated ROC AUC (``credit_risk.estimate``) is more than
  ``max_auc_drop`` below the champion's: it separates the applicants it sees less well, before
  a single outcome is known.

Outcomes, when they arrive, are the final word (``monitoring.outcomes`` per arm, the bandit);
these bounds act within minutes, on what a running service can see.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from credit_risk.estimate import estimate_performance
from monitoring.drift import psi
from monitoring.settings import CanarySettings

BREACH_REASONS = ("errors", "latency", "score_drift", "estimated_auc")


@dataclass(frozen=True)
class Breach:
    reason: str  # errors | latency | score_drift | estimated_auc
    detail: str


class ArmWindow:
    """One arm's recent requests (latency, failed) and scores, bounded."""

    def __init__(self, requests: int, rows: int) -> None:
        self.latencies: deque[float] = deque(maxlen=requests)
        self.failures: deque[bool] = deque(maxlen=requests)
        self.scores: deque[float] = deque(maxlen=rows)

    def record_requests(self, latency_s: float, failed: bool, count: int = 1) -> None:
        """``count`` requests answered (or failed) together, in one pass of ``latency_s``."""
        self.latencies.extend([latency_s] * count)
        self.failures.extend([failed] * count)

    def record_scores(self, probabilities: list[float]) -> None:
        self.scores.extend(probabilities)

    @property
    def requests(self) -> int:
        return len(self.failures)

    @property
    def failed(self) -> int:
        return sum(self.failures)

    def failure_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def latency_p95(self) -> float:
        return float(np.percentile(self.latencies, 95)) if self.latencies else 0.0

    def score_array(self) -> np.ndarray:
        return np.fromiter(self.scores, float, len(self.scores))

    def estimated_auc(self) -> float | None:
        return estimate_performance(self.score_array()).roc_auc if self.scores else None

    def clear(self) -> None:
        self.latencies.clear()
        self.failures.clear()
        self.scores.clear()


def score_psi(champion: np.ndarray, canary: np.ndarray) -> float:
    """PSI of the canary's scores over bins at the champion's score deciles."""
    edges = np.unique(np.quantile(champion, np.linspace(0.1, 0.9, 9)))
    expected = np.bincount(np.searchsorted(edges, champion, side="right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, canary, side="right"), minlength=len(edges) + 1)
    return psi(expected / champion.size, actual / canary.size)


def canary_breaches(champion: ArmWindow, canary: ArmWindow, bounds: CanarySettings) -> list[Breach]:
    """Every bound the canary breaches now; empty while it is within them or unproven."""
    breaches = []
    if canary.failed >= bounds.min_failures:
        excess = canary.failure_rate() - champion.failure_rate()
        if excess > bounds.max_failure_rate_excess:
            breaches.append(
                Breach(
                    "errors",
                    f"canary failed {canary.failed} of {canary.requests} requests "
                    f"({canary.failure_rate():.1%}; champion {champion.failure_rate():.1%})",
                )
            )
    if canary.requests >= bounds.min_requests and champion.requests >= bounds.min_requests:
        theirs, ours = champion.latency_p95(), canary.latency_p95()
        if ours > bounds.max_latency_ratio * theirs + bounds.latency_slack_s:
            breaches.append(
                Breach("latency", f"canary p95 {ours * 1e3:.1f} ms, champion {theirs * 1e3:.1f} ms")
            )
    if len(canary.scores) >= bounds.min_rows and len(champion.scores) >= bounds.min_rows:
        ours_scores, theirs_scores = canary.score_array(), champion.score_array()
        drift = score_psi(theirs_scores, ours_scores)
        if drift > bounds.max_score_psi:
            breaches.append(
                Breach("score_drift", f"canary score PSI {drift:.3f} against the champion's")
            )
        ours_auc = estimate_performance(ours_scores).roc_auc
        theirs_auc = estimate_performance(theirs_scores).roc_auc
        worse = (
            ours_auc is not None
            and theirs_auc is not None
            and ours_auc < theirs_auc - bounds.max_auc_drop
        )
        if worse:
            breaches.append(
                Breach(
                    "estimated_auc",
                    f"canary estimated ROC AUC {ours_auc:.3f}, champion {theirs_auc:.3f}",
                )
            )
    return breaches
