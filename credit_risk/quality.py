"""Model quality numbers, shared by training (logged metrics) and monitoring (outcome joins):
discrimination (ROC AUC), probability quality (log loss, Brier) and calibration (expected
calibration error and its per-bin table)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

CALIBRATION_BINS = 10


def calibration_table(labels: np.ndarray, scores: np.ndarray) -> list[dict[str, float]]:
    """Per score-decile bin: mean predicted probability, observed default rate, row count."""
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, CALIBRATION_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    table = []
    for index in range(len(edges) - 1):
        members = bins == index
        if members.any():
            table.append(
                {
                    "mean_predicted": float(scores[members].mean()),
                    "observed_rate": float(labels[members].mean()),
                    "rows": float(members.sum()),
                }
            )
    return table


def expected_calibration_error(table: list[dict[str, float]]) -> float:
    total = sum(row["rows"] for row in table)
    return sum(abs(r["mean_predicted"] - r["observed_rate"]) * r["rows"] for r in table) / total


def evaluate(labels: np.ndarray, scores: np.ndarray, prefix: str) -> dict[str, float]:
    """Metrics named ``{prefix}_roc_auc`` etc., ready for ``mlflow.log_metrics``."""
    scores = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    return {
        f"{prefix}_roc_auc": float(roc_auc_score(labels, scores)),
        f"{prefix}_log_loss": float(log_loss(labels, scores, labels=[0, 1])),
        f"{prefix}_brier": float(brier_score_loss(labels, scores)),
        f"{prefix}_ece": expected_calibration_error(calibration_table(labels, scores)),
        f"{prefix}_rows": float(len(labels)),
        f"{prefix}_default_rate": float(labels.mean()),
    }
