"""The matrix serialiser refuses anything that is not a finite number, naming the column."""

from __future__ import annotations

import numpy as np
import pytest

from credit_risk.matrix import MatrixError, check_matrix, to_matrix

COLUMNS = ["a", "b", "c"]


def columns(**overrides):
    base = {name: np.array([1.0, 2.0]) for name in COLUMNS}
    return base | overrides


def test_orders_columns_as_trained_and_casts_to_float32():
    features = {"c": np.array([3.0]), "a": np.array([1.0]), "b": np.array([2], dtype=np.int64)}
    matrix = to_matrix(features, COLUMNS)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (np.array(["x", "y"], dtype=object), "non-numeric"),
        (np.array(["1", "2"]), "non-numeric"),
        (np.array([1.0, np.nan]), "NaN or infinite"),
        (np.array([np.inf, 1.0]), "NaN or infinite"),
        (np.array([1e300, 1.0]), "too large for float32"),
        (np.array([[1.0, 2.0]]), "1-D"),
        (np.array([1.0, 2.0, 3.0]), "rows"),
    ],
)
def test_bad_column_raises_typed_error_naming_it(bad, reason):
    with pytest.raises(MatrixError, match=reason) as caught:
        to_matrix(columns(b=bad), COLUMNS)
    assert caught.value.column == "b"


def test_missing_column_is_named():
    features = columns()
    del features["c"]
    with pytest.raises(MatrixError) as caught:
        to_matrix(features, COLUMNS)
    assert (caught.value.column, caught.value.reason) == ("c", "missing")


def test_extra_column_means_wrong_width():
    with pytest.raises(MatrixError, match="not a trained column") as caught:
        to_matrix(columns(d=np.array([0.0, 0.0])), COLUMNS)
    assert caught.value.column == "d"


def test_matrix_error_is_not_a_numpy_error():
    assert issubclass(MatrixError, ValueError)
    assert not issubclass(MatrixError, FloatingPointError)


def test_check_matrix_accepts_the_right_width_and_refuses_others():
    good = np.ones((4, 3), dtype=np.float64)
    assert check_matrix(good, 3).dtype == np.float32
    with pytest.raises(MatrixError, match="expected shape"):
        check_matrix(np.ones((4, 2)), 3)
    with pytest.raises(MatrixError, match="expected shape"):
        check_matrix(np.ones(3), 3)
    bad = good.copy()
    bad[2, 1] = np.nan
    with pytest.raises(MatrixError, match="#1"):
        check_matrix(bad, 3)
