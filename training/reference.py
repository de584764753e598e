"""Reference statistics of the training data and scores, shipped with the model so serving
can measure drift against what the model actually learned from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from credit_risk.contract import CATEGORICAL_FIELDS, NUMERIC_FIELDS

NUMERIC_BINS = 10
SCORE_BINS = 10


def numeric_reference(values: np.ndarray) -> dict[str, Any]:
    """Quantile bin edges of the observed values, each bin's share, and the missing share."""
    present = values[np.isfinite(values)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, NUMERIC_BINS + 1)))
    inner = edges[1:-1]
    counts = np.bincount(np.searchsorted(inner, present, side="right"), minlength=len(inner) + 1)
    return {
        "edges": inner.tolist(),
        "proportions": (counts / counts.sum()).tolist(),
        "missing_share": float(1 - present.size / values.size),
        "min": float(present.min()),
        "max": float(present.max()),
    }


def categorical_reference(values: np.ndarray) -> dict[str, Any]:
    """Share of each observed level; null is counted under ``null``."""
    counts = Counter("null" if value is None else str(value) for value in values.tolist())
    return {"proportions": {level: count / values.size for level, count in sorted(counts.items())}}


def reference_statistics(raw: Mapping[str, np.ndarray], scores: np.ndarray) -> dict[str, Any]:
    edges = np.linspace(0, 1, SCORE_BINS + 1)
    score_counts, _ = np.histogram(scores, bins=edges)
    return {
        "rows": int(scores.size),
        "numeric": {field: numeric_reference(raw[field]) for field in NUMERIC_FIELDS},
        "categorical": {field: categorical_reference(raw[field]) for field in CATEGORICAL_FIELDS},
        "score": {
            "edges": edges[1:-1].tolist(),
            "proportions": (score_counts / score_counts.sum()).tolist(),
        },
    }
