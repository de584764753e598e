"""Tabular rows (a data frame from the data set, a CSV or Parquet file) to contract records.

Files have no JSON types, so a cell that reads as a number becomes one (an integral value an
``int``), categories and request ids are text, an empty cell becomes ``None``, and anything
else is left as it is for the contract to refuse with a reason. Training and batch scoring
both go through here.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from credit_risk.contract import CATEGORICAL_FIELDS, CONTRACT_FIELDS

ContractRecord = dict[str, Any]


TEXT_FIELDS = frozenset({*CATEGORICAL_FIELDS, "request_id"})


def _cell(field: str, value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if field in TEXT_FIELDS:  # an id column of numbers is still ids: 17 means "17"
        return str(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) or hasattr(value, "item"):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


def records_from_frame(frame: pd.DataFrame) -> list[ContractRecord]:
    """One contract record per row; columns outside the contract are kept (and refused)."""
    columns = list(frame.columns)
    return [
        {column: _cell(column, value) for column, value in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def contract_records(frame: pd.DataFrame) -> list[ContractRecord]:
    """Records restricted to the contract's fields (training data carries a target column)."""
    return records_from_frame(frame[list(CONTRACT_FIELDS)])
