"""Feature engineering as pure functions, shared verbatim by training and serving.

Raw columns (contract field -> 1-D array; numbers as float64 with NaN for missing, categories
as object arrays of str or None) go in, named float64 feature columns in a fixed order come
out. Every fitted value (imputation, clip range, scaling, vocabularies) lives in
``FeatureParams``, fitted on the training split only and shipped inside the model artifact,
so serving never learns anything from its own traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from credit_risk.contract import CATEGORICAL_FIELDS, CONTRACT_VERSION, NUMERIC_FIELDS

RawColumns = Mapping[str, np.ndarray]
FeatureColumns = dict[str, np.ndarray]

UNKNOWN_LEVEL = "__unknown__"
LOG_FIELDS: frozenset[str] = frozenset({"expenses", "income", "assets", "debt", "amount", "price"})
MISSING_FLAG_FIELDS: tuple[str, ...] = ("income", "assets", "debt")
# name -> (numerator, denominator); a missing or non-positive denominator gives a missing ratio.
RATIOS: dict[str, tuple[str, str]] = {
    "loan_to_price": ("amount", "price"),
    "debt_to_assets": ("debt", "assets"),
    "amount_to_income": ("amount", "income"),
    "expenses_to_income": ("expenses", "income"),
}
CLIP_QUANTILES = (0.001, 0.999)
MIN_CATEGORY_COUNT = 10


class ScaledParams(BaseModel):
    """How one numeric column is repaired and scaled: impute, clip, (log1p), standardise."""

    model_config = ConfigDict(frozen=True)

    fill: float
    low: float
    high: float
    log: bool
    mean: float
    std: float


class FeatureParams(BaseModel):
    """Everything fitted on the training split; serialised as ``feature_params.json``.

    Column order comes from the code's field tuples, never from these dicts' key order, so a
    JSON round trip (which may sort keys) cannot permute the model's inputs."""

    model_config = ConfigDict(frozen=True)

    contract_version: str
    numeric: dict[str, ScaledParams]
    ratios: dict[str, ScaledParams]
    categories: dict[str, list[str]]

    @property
    def feature_names(self) -> list[str]:
        """The model's column order; the matrix module enforces exactly this order and width."""
        names = [f"num__{field}" for field in NUMERIC_FIELDS]
        names += [f"missing__{field}" for field in MISSING_FLAG_FIELDS]
        names += [f"ratio__{name}" for name in RATIOS]
        for field in CATEGORICAL_FIELDS:
            names += [f"cat__{field}={level}" for level in (*self.categories[field], UNKNOWN_LEVEL)]
        return names


def raw_columns_from_records(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Contract records (dicts or validated applications dumped to dicts) to raw columns."""
    columns: dict[str, np.ndarray] = {}
    for field in NUMERIC_FIELDS:
        values = [record.get(field) for record in records]
        columns[field] = np.array(
            [np.nan if value is None else value for value in values], dtype=np.float64
        )
    for field in CATEGORICAL_FIELDS:
        columns[field] = np.array([record.get(field) for record in records], dtype=object)
    return columns


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is missing, zero or negative.

    A ratio too large for float64 becomes +inf (an extreme, clipped later), not NaN (missing)."""
    valid = np.isfinite(denominator) & (denominator > 0) & np.isfinite(numerator)
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    with np.errstate(over="ignore"):
        np.divide(numerator, denominator, out=out, where=valid)
    return out


def ratio_columns(raw: RawColumns) -> dict[str, np.ndarray]:
    """The ratio features before imputation; NaN marks an undefined ratio."""
    return {
        name: safe_ratio(raw[num].astype(np.float64), raw[den].astype(np.float64))
        for name, (num, den) in RATIOS.items()
    }


def _fit_scaled(values: np.ndarray, log: bool) -> ScaledParams:
    present = values[np.isfinite(values)]
    if present.size == 0:
        raise ValueError("cannot fit a feature with no observed values")
    fill = float(np.median(present))
    low, high = (float(q) for q in np.quantile(present, CLIP_QUANTILES))
    prepared = _prepare(values, fill, low, high, log)
    std = float(prepared.std())
    return ScaledParams(
        fill=fill, low=low, high=high, log=log, mean=float(prepared.mean()), std=std or 1.0
    )


def _prepare(values: np.ndarray, fill: float, low: float, high: float, log: bool) -> np.ndarray:
    """NaN (missing) takes the fitted fill; everything else, infinities included, is clipped."""
    repaired = np.clip(np.where(np.isnan(values), fill, values), low, high)
    return np.log1p(repaired) if log else repaired


def scale(values: np.ndarray, params: ScaledParams) -> np.ndarray:
    """Impute, clip to the fitted range, optionally log1p, then standardise."""
    prepared = _prepare(values, params.fill, params.low, params.high, params.log)
    return (prepared - params.mean) / params.std


def fit_vocabulary(values: np.ndarray, min_count: int = MIN_CATEGORY_COUNT) -> list[str]:
    """Levels seen at least ``min_count`` times; rarer and unseen ones share the unknown bucket."""
    present = [value for value in values.tolist() if isinstance(value, str)]
    levels, counts = np.unique(np.array(present, dtype=str), return_counts=True)
    return [str(level) for level, count in zip(levels, counts, strict=True) if count >= min_count]


def one_hot(values: np.ndarray, levels: Sequence[str]) -> dict[str, np.ndarray]:
    """One column per known level plus the unknown bucket (null, rare or never-seen values)."""
    known = {level: index for index, level in enumerate(levels)}
    codes = np.array([known.get(value, len(levels)) for value in values.tolist()], dtype=np.intp)
    return {
        level: (codes == index).astype(np.float64)
        for index, level in enumerate((*levels, UNKNOWN_LEVEL))
    }


def fit_feature_params(raw: RawColumns) -> FeatureParams:
    """Fit every feature parameter on the training split's raw columns."""
    ratios = ratio_columns(raw)
    return FeatureParams(
        contract_version=CONTRACT_VERSION,
        numeric={
            field: _fit_scaled(raw[field].astype(np.float64), field in LOG_FIELDS)
            for field in NUMERIC_FIELDS
        },
        ratios={name: _fit_scaled(values, log=False) for name, values in ratios.items()},
        categories={field: fit_vocabulary(raw[field]) for field in CATEGORICAL_FIELDS},
    )


def build_features(raw: RawColumns, params: FeatureParams) -> FeatureColumns:
    """Raw columns to named feature columns, in ``params.feature_names`` order."""
    features: FeatureColumns = {}
    for field in NUMERIC_FIELDS:
        features[f"num__{field}"] = scale(raw[field].astype(np.float64), params.numeric[field])
    for field in MISSING_FLAG_FIELDS:
        missing = np.isnan(raw[field].astype(np.float64))
        features[f"missing__{field}"] = missing.astype(np.float64)
    ratios = ratio_columns(raw)
    for name in RATIOS:
        features[f"ratio__{name}"] = scale(ratios[name], params.ratios[name])
    for field in CATEGORICAL_FIELDS:
        for level, column in one_hot(raw[field], params.categories[field]).items():
            features[f"cat__{field}={level}"] = column
    return features
