"""The contract applied to a whole table at once, for batch scoring.

Validating a file row by row through ``Application`` cost about 30 µs a row, twenty times the
model. Here the contract's own rules, read off ``Application`` (bounds, integer fields, closed
enums, optional fields, the request id's pattern, seniority <= age), are checked column by
column. A row that passes every rule is accepted without building a model; only the rows that
fail somewhere go through ``Application`` itself, which decides them and words the reasons.
The column checks may be stricter than the contract but never more lenient (a property test
holds them to that), so the accepted rows are exactly those ``Application`` accepts.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types
import numpy as np
import pandas as pd
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from credit_risk.contract import CATEGORICAL_FIELDS, NUMERIC_FIELDS, Application
from credit_risk.features import RawColumns, raw_columns_from_records
from credit_risk.records import records_from_frame

REQUEST_ID = "request_id"


@dataclass(frozen=True)
class ValidTable:
    """The accepted rows of a table, in input order, and one reject line per contract error."""

    rows: np.ndarray  # input row numbers of the accepted rows
    raw: RawColumns
    request_ids: np.ndarray  # object: the caller's id or None
    rejects: list[dict[str, object]]


def _bounds_ok(values: np.ndarray, info: FieldInfo) -> np.ndarray:
    ok = np.isfinite(values)
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            ok &= values >= rule.ge
        elif isinstance(rule, annotated_types.Gt):
            ok &= values > rule.gt
        elif isinstance(rule, annotated_types.Le):
            ok &= values <= rule.le
        elif isinstance(rule, annotated_types.Lt):
            ok &= values < rule.lt
    return np.asarray(ok, dtype=bool)


def _numeric(name: str, column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64 with NaN for missing, rows that satisfy the field's rules)."""
    if column.dtype.kind not in "iuf":  # text, booleans, mixed: left to the contract
        return np.full(len(column), np.nan), np.zeros(len(column), dtype=bool)
    info = Application.model_fields[name]
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    ok = _bounds_ok(values, info)
    if int in typing.get_args(info.annotation) or info.annotation is int:
        ok &= values == np.floor(values)
    return values, ok | (missing & (not info.is_required()))


def _levels(name: str) -> tuple[str, ...]:
    annotation = Application.model_fields[name].annotation
    candidates = (annotation, *typing.get_args(annotation))
    literal = next(a for a in candidates if typing.get_origin(a) is typing.Literal)
    return typing.get_args(literal)


def _categorical(name: str, column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as an object array of str or None, rows that satisfy the field's rules).

    Factorised first, so the per-value work is done once per distinct value, not per row;
    code -1 (missing) picks the sentinel appended at the end of each lookup."""
    codes, uniques = pd.factorize(column)
    levels = set(_levels(name))
    optional = not Application.model_fields[name].is_required()
    known = np.array([isinstance(u, str) and u in levels for u in uniques] + [optional])
    values = np.array([*uniques, None], dtype=object)
    return values[codes], known[codes]


def _request_ids(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    annotation = typing.get_args(Application.model_fields[REQUEST_ID].annotation)[0]
    rule = typing.get_args(annotation)[1]
    pattern = re.compile(rule.pattern)
    missing = column.isna().to_numpy()
    values = column.astype(str).to_numpy(dtype=object)
    values[missing] = None
    ok = np.fromiter(
        (
            value is None
            or (rule.min_length <= len(value) <= rule.max_length and bool(pattern.fullmatch(value)))
            for value in values.tolist()
        ),
        dtype=bool,
        count=len(values),
    )
    return values, ok


def clean_rows(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows certain to pass the contract, and every present field's column as the model sees
    it (numbers as float64 with NaN, categories and ids as str or None)."""
    rows = len(frame)
    none = np.zeros(rows, dtype=bool)
    known = set(Application.model_fields)
    if not set(frame.columns) <= known or frame.columns.duplicated().any():
        return none, {}  # every row carries an unknown field: the contract refuses each
    clean = np.ones(rows, dtype=bool)
    columns: dict[str, np.ndarray] = {}
    for name, info in Application.model_fields.items():
        if name not in frame.columns:
            if info.is_required():
                return none, {}
            columns[name] = np.full(rows, np.nan if name in NUMERIC_FIELDS else None)
            continue
        if name in NUMERIC_FIELDS:
            columns[name], ok = _numeric(name, frame[name])
        elif name in CATEGORICAL_FIELDS:
            columns[name], ok = _categorical(name, frame[name])
        else:
            columns[name], ok = _request_ids(frame[name])
        clean &= ok
    clean &= ~(columns["seniority"] > columns["age"])
    return clean, columns


def _validate_each(
    frame: pd.DataFrame, row_numbers: np.ndarray
) -> tuple[list[int], list[Application], list[dict[str, object]]]:
    """The contract row by row, for the rows the column checks could not clear."""
    rows: list[int] = []
    applications: list[Application] = []
    rejects: list[dict[str, object]] = []
    for row, record in zip(row_numbers.tolist(), records_from_frame(frame), strict=True):
        try:
            applications.append(Application.model_validate(record))
            rows.append(row)
        except ValidationError as error:
            rejects += [
                {
                    "row": row,
                    "field": ".".join(str(part) for part in e["loc"]) or "<row>",
                    "reason": e["msg"],
                }
                for e in error.errors()
            ]
    return rows, applications, rejects


def validate_table(frame: pd.DataFrame) -> ValidTable:
    """Accepted rows (raw columns and request ids, in input order) and the rejects."""
    frame = frame.reset_index(drop=True)
    clean, columns = clean_rows(frame)
    fast = np.flatnonzero(clean)
    doubtful = np.flatnonzero(~clean)
    slow_rows, applications, rejects = (
        _validate_each(frame.iloc[doubtful], doubtful) if doubtful.size else ([], [], [])
    )
    slow_raw = raw_columns_from_records([a.model_dump() for a in applications])
    rows = np.concatenate([fast, np.asarray(slow_rows, dtype=np.intp)])
    order = np.argsort(rows, kind="stable")

    def merged(fast_values: Any, slow_values: Any) -> np.ndarray:
        return np.concatenate([fast_values, slow_values])[order]

    fast_raw = {f: columns[f][fast] for f in slow_raw} if columns else raw_columns_from_records([])
    ids = columns[REQUEST_ID][fast] if columns else np.empty(0, dtype=object)
    return ValidTable(
        rows=rows[order],
        raw={field: merged(fast_raw[field], slow_raw[field]) for field in slow_raw},
        request_ids=merged(
            ids.astype(object), np.array([a.request_id for a in applications], dtype=object)
        ),
        rejects=rejects,
    )
