"""Serialise named feature columns into the exact float32 matrix the model was trained on.

This is the last gate before the model: anything that is not a finite number in the trained
column order and width is refused here with a ``MatrixError`` naming the column, instead of a
numpy error or, worse, a silently wrong prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class MatrixError(ValueError):
    """A feature column cannot go into the model matrix; ``column`` says which and why."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"feature column {column!r}: {reason}")
        self.column = column
        self.reason = reason


def to_matrix(features: Mapping[str, np.ndarray], columns: Sequence[str]) -> np.ndarray:
    """Stack ``features`` in ``columns`` order into a C-contiguous float32 (rows, width) array."""
    extra = sorted(set(features) - set(columns))
    if extra:
        raise MatrixError(extra[0], f"not a trained column (width {len(columns)} expected)")
    arrays: list[np.ndarray] = []
    for column in columns:
        if column not in features:
            raise MatrixError(column, "missing")
        values = np.asarray(features[column])
        if values.ndim != 1:
            raise MatrixError(column, f"expected a 1-D column, got shape {values.shape}")
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise MatrixError(column, f"non-numeric values (dtype {values.dtype})")
        if arrays and values.shape[0] != arrays[0].shape[0]:
            raise MatrixError(column, f"has {values.shape[0]} rows, expected {arrays[0].shape[0]}")
        with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
            as_float = values.astype(np.float32)
        if not np.all(np.isfinite(as_float)):
            raise MatrixError(column, "NaN or infinite value (or too large for float32)")
        arrays.append(as_float)
    if not arrays:
        raise MatrixError("<none>", "no columns to serialise")
    return np.column_stack(arrays)


def check_matrix(matrix: np.ndarray, width: int) -> np.ndarray:
    """Validate a matrix arriving at the runner: 2-D, float32-castable, finite, right width."""
    array = np.asarray(matrix)
    if array.ndim != 2 or array.shape[1] != width:
        raise MatrixError("<matrix>", f"expected shape (n, {width}), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise MatrixError("<matrix>", f"non-numeric dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad_columns = np.flatnonzero(~np.isfinite(array).all(axis=0))
    if bad_columns.size:
        raise MatrixError(f"#{int(bad_columns[0])}", "NaN or infinite value")
    return array
