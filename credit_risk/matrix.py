"""Serialise named feature columns into the exact float32 matrix the model was trained on.

This is the last gate before the model: anything that is not a finite number in the trained
column order and width is refused here with a ``MatrixError`` naming the column, instead of a
numpy error or, worse, a silently wrong prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MatrixError(ValueError):
    """A feature column cannot go into the model matrix; ``column`` says which and why."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"feature column {column!r}: {reason}")
        self.column = column
        self.reason = reason


def to_matrix(block: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    """A (rows, width) numeric block whose columns are ``columns`` -> C-contiguous float32.

    Used on both sides of the runner hop: after feature engineering in the API, and on every
    matrix the runner receives, so neither trusts the other."""
    array = np.asarray(block)
    if array.ndim != 2:
        raise MatrixError(
            "<matrix>", f"expected a 2-D (rows, {len(columns)}) block, got shape {array.shape}"
        )
    if array.shape[1] != len(columns):
        short = array.shape[1] < len(columns)
        column = columns[array.shape[1]] if short else f"#{len(columns)}"
        reason = "missing" if short else f"not a trained column (width {len(columns)} expected)"
        raise MatrixError(column, reason)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise MatrixError("<matrix>", f"non-numeric values (dtype {array.dtype})")
    with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
        matrix = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(matrix).all():
        column = columns[int(np.flatnonzero(~np.isfinite(matrix).all(axis=0))[0])]
        raise MatrixError(column, "NaN or infinite value (or too large for float32)")
    return matrix
