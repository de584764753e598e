"""The model's performance on today's traffic, estimated from its own scores before any label
exists (confidence-based performance estimation, the idea behind NannyML's CBPE).

Defaults are observed months after the decision, so the outcome join
(``monitoring.outcomes``) reports live quality far too late to act on. A calibrated model's
score ``p`` *is* the probability that the applicant defaults, so the labels of a window of live
rows can be treated as independent draws ``y_i ~ Bernoulli(p_i)`` and every metric replaced by
its expectation under those draws:

- default rate: ``mean(p)``;
- ROC AUC: the share of (default, non-default) pairs the score orders correctly, each pair
  ``(i, j)`` weighted by the probability ``p_i (1 - p_j)`` that ``i`` defaults and ``j`` does
  not (ties count one half). Computed in O(n log n) from the sorted scores, never pair by pair;
- log loss: the mean binary entropy of ``p``;
- Brier score: ``mean(p (1 - p))``.

The assumption is calibration on the *live* data, and its failure mode follows from it: when
the relation between inputs and default changes (concept drift: the same score now means a
different risk), the scores do not know, and the estimate keeps saying all is well while the
realized AUC falls. CBPE sees only what moves the score distribution: covariate shift into
regions the model finds harder (scores bunched together) or easier. Input drift (PSI per field
in ``monitoring.drift``) tells *why* the estimate moved, and the outcome join, once labels
arrive, is what finally checks the calibration the estimate rests on.

Pure numpy: the API computes it off the request path every refresh over the drift window
(5,000 rows by default: a sort and a few cumulative sums).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CLIP = 1e-7  # as credit_risk.quality.evaluate clips scores for log loss
TRAINING_KEYS = ("roc_auc", "default_rate", "log_loss", "brier", "ece", "estimated_roc_auc")


@dataclass(frozen=True)
class PerformanceEstimate:
    """Expected metrics of a window of scores; ``None`` where undefined (see the functions)."""

    rows: int
    roc_auc: float | None
    default_rate: float | None
    log_loss: float | None
    brier: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def expected_roc_auc(probabilities: np.ndarray) -> float | None:
    """Expected ROC AUC of calibrated scores, the pair-weighted ratio

        sum_{i != j} p_i (1 - p_j) ([s_i > s_j] + 0.5 [s_i == s_j])
        / sum_{i != j} p_i (1 - p_j)

    with the score ``s`` equal to the probability ``p``. Sorting groups equal scores; a pair in
    two groups is ordered correctly exactly when the default candidate's group is the higher
    one, so the numerator is, per group, its default mass times the non-default mass of all
    lower groups, plus half the pairs inside the group. ``None`` when no pair can be a
    (default, non-default) pair: fewer than two rows, or every score 0 or every score 1.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if p.size < 2:
        return None
    p = np.sort(p)
    q = 1.0 - p
    _, starts = np.unique(p, return_index=True)  # p is sorted: groups are contiguous runs
    group_p = np.add.reduceat(p, starts)
    group_q = np.add.reduceat(q, starts)
    group_pq = np.add.reduceat(p * q, starts)  # the i == j "pairs", excluded below
    lower_q = np.cumsum(group_q) - group_q  # non-default mass strictly below each group
    ordered = float(np.sum(group_p * lower_q))
    tied = float(np.sum(group_p * group_q - group_pq))
    pairs = float(p.sum() * q.sum() - np.sum(p * q))
    if pairs <= 0.0:
        return None
    return (ordered + 0.5 * tied) / pairs


def expected_log_loss(probabilities: np.ndarray) -> float | None:
    """E[log loss] when each label is drawn from its own score: the mean binary entropy."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), CLIP, 1 - CLIP)
    if p.size == 0:
        return None
    return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))


def expected_brier(probabilities: np.ndarray) -> float | None:
    """E[(y - p)^2] with y ~ Bernoulli(p) is p (1 - p)^2 + (1 - p) p^2 = p (1 - p)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if p.size == 0:
        return None
    return float(np.mean(p * (1 - p)))


def estimate_performance(probabilities: np.ndarray) -> PerformanceEstimate:
    """Every expected metric of one window of calibrated default probabilities."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    return PerformanceEstimate(
        rows=int(p.size),
        roc_auc=expected_roc_auc(p),
        default_rate=float(p.mean()) if p.size else None,
        log_loss=expected_log_loss(p),
        brier=expected_brier(p),
    )


def training_performance(metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The realized test-split metrics the model was promoted with (``test_roc_auc`` ...,
    logged by training and carried in the BentoML model's metadata), under the estimate's
    names so the two sit side by side; ``None`` for any the metadata lacks."""
    metrics = metrics or {}
    found = {key: metrics.get(f"test_{key}") for key in TRAINING_KEYS}
    return {key: None if value is None else float(value) for key, value in found.items()}
