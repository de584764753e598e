"""The matrix serialiser refuses anything that is not a finite number, naming the column."""

from __future__ import annotations

import numpy as np
import pytest

from credit_risk.matrix import MatrixError, to_matrix

COLUMNS = ["a", "b", "c"]


def block(b=None):
    base = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    if b is not None:
        base[:, 1] = b
    return base


def test_casts_to_contiguous_float32():
    matrix = to_matrix(np.asfortranarray(block()), COLUMNS)
    assert matrix.dtype == np.float32
    assert matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, block())


def test_integer_and_bool_blocks_are_numbers():
    assert to_matrix(np.ones((2, 3), dtype=np.int64), COLUMNS).dtype == np.float32
    assert to_matrix(np.ones((2, 3), dtype=bool), COLUMNS).dtype == np.float32


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ([1.0, np.nan], "NaN or infinite"),
        ([np.inf, 1.0], "NaN or infinite"),
        ([1e300, 1.0], "too large for float32"),
    ],
)
def test_non_finite_value_raises_typed_error_naming_its_column(bad, reason):
    with pytest.raises(MatrixError, match=reason) as caught:
        to_matrix(block(b=bad), COLUMNS)
    assert caught.value.column == "b"


def test_non_numeric_block_is_refused():
    with pytest.raises(MatrixError, match="non-numeric"):
        to_matrix(np.array([["x", "y", "z"]], dtype=object), COLUMNS)


def test_narrow_block_names_the_first_missing_column():
    with pytest.raises(MatrixError) as caught:
        to_matrix(block()[:, :2], COLUMNS)
    assert (caught.value.column, caught.value.reason) == ("c", "missing")


def test_wide_block_means_an_untrained_column():
    with pytest.raises(MatrixError, match="not a trained column") as caught:
        to_matrix(np.ones((2, 4)), COLUMNS)
    assert caught.value.column == "#3"


@pytest.mark.parametrize("shape", [(3,), (1, 2, 3)])
def test_block_must_be_two_dimensional(shape):
    with pytest.raises(MatrixError, match="2-D"):
        to_matrix(np.ones(shape), COLUMNS)


def test_empty_block_keeps_its_width():
    assert to_matrix(np.empty((0, 3)), COLUMNS).shape == (0, 3)


def test_matrix_error_is_not_a_numpy_error():
    assert issubclass(MatrixError, ValueError)
    assert not issubclass(MatrixError, FloatingPointError)
