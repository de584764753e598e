"""Validated applications to the model matrix: the one path that training, the API service,
batch scoring and the parity tests all call, so there is nothing to drift apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from credit_risk.features import FeatureParams, RawColumns, raw_columns_from_records
from credit_risk.matrix import to_matrix


def raw_to_matrix(raw: RawColumns, params: FeatureParams) -> np.ndarray:
    """Raw contract columns to the float32 matrix the model was trained on."""
    return to_matrix(params.plan.block(raw), params.feature_names)


def records_to_matrix(records: Sequence[Mapping[str, Any]], params: FeatureParams) -> np.ndarray:
    """Contract records (plain dicts) to the float32 matrix the model was trained on."""
    return raw_to_matrix(raw_columns_from_records(records), params)
