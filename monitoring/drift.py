"""Feature and score drift: a rolling window of live inputs compared with the training
reference statistics shipped in the model bundle, as a population stability index per field.

Adding to the window is a few array writes per request; the comparison runs only when asked
(``GET /drift`` and a periodic refresh of the gauges), never inside a scoring request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import entropy

from credit_risk.contract import CATEGORICAL_FIELDS, NUMERIC_FIELDS

SMOOTHING = 1e-4  # keeps empty bins finite; a level never seen in training still scores high
OTHER_LEVEL = "__other__"


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: symmetric KL divergence of two binned distributions."""
    p = (expected + SMOOTHING) / (expected + SMOOTHING).sum()
    q = (actual + SMOOTHING) / (actual + SMOOTHING).sum()
    return float(entropy(q, p) + entropy(p, q))


def numeric_shares(
    reference: Mapping[str, Any], values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(reference, live) shares over the reference's quantile bins plus a 'missing' bin."""
    missing = np.isnan(values)
    present = values[~missing]
    edges = np.asarray(reference["edges"])
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    live = np.append(counts, missing.sum()) / max(values.size, 1)
    share_present = 1 - reference["missing_share"]
    expected = np.append(
        np.asarray(reference["proportions"]) * share_present, reference["missing_share"]
    )
    return expected, live


def categorical_shares(
    reference: Mapping[str, Any], values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    levels = [*reference["proportions"], OTHER_LEVEL]
    index = {level: i for i, level in enumerate(levels)}
    counts = np.zeros(len(levels))
    for value in values.tolist():
        counts[index.get("null" if value is None else str(value), len(levels) - 1)] += 1
    expected = np.array([*reference["proportions"].values(), 0.0])
    return expected, counts / max(values.size, 1)


class DriftWindow:
    """The last ``capacity`` applications and scores seen by this process."""

    def __init__(self, reference: Mapping[str, Any], capacity: int) -> None:
        self.reference = reference
        self.capacity = capacity
        self.size = 0
        self.cursor = 0
        self.numeric = {f: np.full(capacity, np.nan) for f in NUMERIC_FIELDS}
        self.categorical = {f: np.full(capacity, None, dtype=object) for f in CATEGORICAL_FIELDS}
        self.scores = np.full(capacity, np.nan)

    def add(self, raw: Mapping[str, np.ndarray], scores: np.ndarray) -> None:
        rows = len(scores)
        if rows >= self.capacity:  # keep only the newest rows of an oversized batch
            raw = {field: column[-self.capacity :] for field, column in raw.items()}
            scores, rows = scores[-self.capacity :], self.capacity
        slots = (self.cursor + np.arange(rows)) % self.capacity
        for field, buffer in (*self.numeric.items(), *self.categorical.items()):
            buffer[slots] = raw[field]
        self.scores[slots] = scores
        self.cursor = (self.cursor + rows) % self.capacity
        self.size = min(self.size + rows, self.capacity)

    def live_scores(self) -> np.ndarray:
        """The window's scores (a copy, in no particular order), for the performance estimate."""
        return self.scores[: self.size].copy()

    def report(self, threshold: float, min_window: int = 1) -> dict[str, Any]:
        """PSI per contract field and for the score, with the window size and alerts; no
        alerts until ``min_window`` rows, since PSI on a handful of rows is noise."""
        live = slice(0, self.size)
        features: dict[str, dict[str, Any]] = {}
        for field, buffer in self.numeric.items():
            expected, actual = numeric_shares(self.reference["numeric"][field], buffer[live])
            features[field] = {"psi": psi(expected, actual), "window": self.size, "kind": "numeric"}
        for field, buffer in self.categorical.items():
            expected, actual = categorical_shares(
                self.reference["categorical"][field], buffer[live]
            )
            features[field] = {
                "psi": psi(expected, actual),
                "window": self.size,
                "kind": "categorical",
            }
        score_reference = {**self.reference["score"], "missing_share": 0.0}
        expected, actual = numeric_shares(score_reference, self.scores[live])
        score = {"psi": psi(expected, actual), "window": self.size}
        ready = self.size >= min_window
        alerts = sorted(f for f, v in features.items() if ready and v["psi"] > threshold)
        return {
            "window": self.size,
            "threshold": threshold,
            "min_window": min_window,
            "features": features,
            "score": score,
            "alerts": alerts,
        }
