"""The API→runner matrix format: every float32 matrix survives the trip bit for bit, and every
malformed shape or body is refused with a message naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.matrix_wire import MatrixFormatError, body_size, decode, encode, parse_shape

MATRICES = hnp.arrays(
    np.float32,
    st.one_of(
        hnp.array_shapes(min_dims=1, max_dims=1, min_side=0, max_side=300),
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
    ),
    elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
)


@given(MATRICES)
def test_a_matrix_round_trips_bit_for_bit(matrix):
    body, shape = encode(matrix)
    decoded = decode(body, parse_shape(shape, max_rows=10_000))
    assert decoded.shape == matrix.shape
    assert decoded.dtype == np.float32
    assert decoded.tobytes() == np.ascontiguousarray(matrix).tobytes()  # NaN payloads too
    decoded[...] = 0  # writable: torch takes it without a copy or a warning


def test_other_dtypes_and_layouts_are_sent_as_c_order_float32():
    matrix = np.arange(12, dtype=np.float64).reshape(3, 4).T  # Fortran order, float64
    body, shape = encode(matrix)
    assert shape == "4,3"
    np.testing.assert_array_equal(decode(body, parse_shape(shape, 10)), matrix.astype(np.float32))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("three", "must be 'rows' or 'rows,columns'"),
        ("2,x", "must be 'rows' or 'rows,columns'"),
        ("1,2,3", "not a 1-d or 2-d shape"),
        ("-1,4", "not a 1-d or 2-d shape"),
        ("11,4", "11 rows, at most 10 per call"),
    ],
)
def test_a_bad_shape_header_is_named(header, reason):
    with pytest.raises(MatrixFormatError, match=reason):
        parse_shape(header, max_rows=10)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_body_of_the_wrong_length_is_refused(size):
    shape = parse_shape("2,4", max_rows=10)
    assert body_size(shape) == 32
    with pytest.raises(MatrixFormatError, match=f"body has {size} bytes, shape"):
        decode(b"\0" * size, shape)


def test_three_dimensions_cannot_be_sent():
    with pytest.raises(MatrixFormatError, match="1 or 2 dimensions"):
        encode(np.zeros((2, 2, 2), dtype=np.float32))
