"""Feature engineering as pure functions, shared verbatim by training and serving.

Raw columns (contract field -> 1-D array; numbers as float64 with NaN for missing, categories
as object arrays of str or None) go in, a float64 (rows, width) block whose columns are
``FeatureParams.feature_names`` comes out. Every fitted value (imputation, clip range,
scaling, vocabularies) lives in ``FeatureParams``, fitted on the training split only and
shipped inside the model artifact, so serving never learns anything from its own traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from credit_risk.contract import CATEGORICAL_FIELDS, CONTRACT_VERSION, NUMERIC_FIELDS

RawColumns = Mapping[str, np.ndarray]

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

    @cached_property
    def plan(self) -> FeaturePlan:
        """The compiled form used on every batch, built once per loaded model."""
        return FeaturePlan(self)

    @cached_property
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


def numeric_block(raw: RawColumns) -> np.ndarray:
    """The numeric contract fields as one float64 (rows, 9) block, in ``NUMERIC_FIELDS`` order."""
    return np.column_stack([raw[field] for field in NUMERIC_FIELDS]).astype(np.float64)


_NUMERIC_INDEX = {field: index for index, field in enumerate(NUMERIC_FIELDS)}
_NUMERATORS = np.array([_NUMERIC_INDEX[numerator] for numerator, _ in RATIOS.values()])
_DENOMINATORS = np.array([_NUMERIC_INDEX[denominator] for _, denominator in RATIOS.values()])


def ratio_block(numeric: np.ndarray) -> np.ndarray:
    """The ratio features before imputation, (rows, len(RATIOS)) in ``RATIOS`` order; NaN
    marks an undefined ratio. Fitting and serving both compute them here."""
    return safe_ratio(numeric[:, _NUMERATORS], numeric[:, _DENOMINATORS])


def _repair(values: np.ndarray, fill: Any, low: Any, high: Any) -> np.ndarray:
    """NaN (missing) takes the fitted fill; everything else, infinities included, is clipped.

    Broadcasts: scalars for one column while fitting, per-column arrays when serving."""
    return np.clip(np.where(np.isnan(values), fill, values), low, high)


def _fit_scaled(values: np.ndarray, log: bool) -> ScaledParams:
    present = values[np.isfinite(values)]
    if present.size == 0:
        raise ValueError("cannot fit a feature with no observed values")
    fill = float(np.median(present))
    low, high = (float(q) for q in np.quantile(present, CLIP_QUANTILES))
    repaired = _repair(values, fill, low, high)
    prepared = np.log1p(repaired) if log else repaired
    std = float(prepared.std())
    return ScaledParams(
        fill=fill, low=low, high=high, log=log, mean=float(prepared.mean()), std=std or 1.0
    )


def fit_vocabulary(values: np.ndarray, min_count: int = MIN_CATEGORY_COUNT) -> list[str]:
    """Levels seen at least ``min_count`` times; rarer and unseen ones share the unknown bucket."""
    present = [value for value in values.tolist() if isinstance(value, str)]
    levels, counts = np.unique(np.array(present, dtype=str), return_counts=True)
    return [str(level) for level, count in zip(levels, counts, strict=True) if count >= min_count]


def category_codes(values: np.ndarray, levels: Sequence[str]) -> np.ndarray:
    """Each value's index in ``levels``; null, rare and never-seen values get ``len(levels)``,
    the unknown bucket."""
    known = {level: index for index, level in enumerate(levels)}
    lookups = map(known.get, values.tolist(), repeat(len(levels)))
    return np.fromiter(lookups, dtype=np.intp, count=len(values))


def fit_feature_params(raw: RawColumns) -> FeatureParams:
    """Fit every feature parameter on the training split's raw columns."""
    ratios = ratio_block(numeric_block(raw))
    return FeatureParams(
        contract_version=CONTRACT_VERSION,
        numeric={
            field: _fit_scaled(raw[field].astype(np.float64), field in LOG_FIELDS)
            for field in NUMERIC_FIELDS
        },
        ratios={
            name: _fit_scaled(ratios[:, index], log=False) for index, name in enumerate(RATIOS)
        },
        categories={field: fit_vocabulary(raw[field]) for field in CATEGORICAL_FIELDS},
    )


class FeaturePlan:
    """``FeatureParams`` compiled into arrays, so a batch is one 2-D pass instead of a numpy
    call per column: on a one-row request the per-call overhead was most of the API's CPU.

    Numerics and ratios are repaired and standardised together as one (n, 13) block; every
    category's one-hot lands with a single fancy-indexed write."""

    def __init__(self, params: FeatureParams) -> None:
        scaled = [params.numeric[f] for f in NUMERIC_FIELDS] + [params.ratios[r] for r in RATIOS]
        self.fill, self.low, self.high, self.mean, self.std = (
            np.array([getattr(p, name) for p in scaled])
            for name in ("fill", "low", "high", "mean", "std")
        )
        self.log_columns = np.flatnonzero([p.log for p in scaled])
        self.missing_columns = np.array([_NUMERIC_INDEX[f] for f in MISSING_FLAG_FIELDS])
        numeric, flags = len(NUMERIC_FIELDS), len(MISSING_FLAG_FIELDS)
        # output positions: numerics, then missing flags, then ratios, then one-hot blocks
        self.scaled_at = np.r_[np.arange(numeric), numeric + flags + np.arange(len(RATIOS))]
        self.flags_at = numeric + np.arange(flags)
        self.vocabularies: list[tuple[str, list[str], int]] = []
        offset = numeric + flags + len(RATIOS)
        for field in CATEGORICAL_FIELDS:
            levels = params.categories[field]
            self.vocabularies.append((field, levels, offset))
            offset += len(levels) + 1
        self.width = offset

    def block(self, raw: RawColumns) -> np.ndarray:
        """Raw contract columns to the float64 (rows, width) feature block."""
        numeric = numeric_block(raw)
        rows = numeric.shape[0]
        repaired = _repair(
            np.hstack([numeric, ratio_block(numeric)]), self.fill, self.low, self.high
        )
        repaired[:, self.log_columns] = np.log1p(repaired[:, self.log_columns])
        out = np.zeros((rows, self.width))
        out[:, self.scaled_at] = (repaired - self.mean) / self.std
        out[:, self.flags_at] = np.isnan(numeric[:, self.missing_columns])
        hot = np.column_stack(
            [
                offset + category_codes(raw[field], levels)
                for field, levels, offset in self.vocabularies
            ]
        )
        out[np.arange(rows)[:, None], hot] = 1.0
        return out
