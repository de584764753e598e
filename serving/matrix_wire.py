"""The API→runner wire format: a float32 matrix as its raw bytes, its shape in a header.

Why not BentoML's own client format (pickle of the call's arguments, through the route's
pydantic IO model and its batching dispatcher): per call, that framing cost the runner more CPU
than the model itself and the API a pickle round trip (``docs/performance.md``). A matrix
needs no framing beyond its shape: the body is ``rows x columns`` little-endian float32 values,
C order, and decoding it is one ``np.frombuffer``. Both ends import this module, so the format
has one definition.
"""

from __future__ import annotations

import math

import numpy as np

MEDIA_TYPE = "application/x-credit-risk-matrix"
SHAPE_HEADER = "x-matrix-shape"
DTYPE = np.dtype("<f4")


class MatrixFormatError(ValueError):
    """A body or shape header that does not describe a matrix; the message says which."""


def encode(matrix: np.ndarray) -> tuple[bytes, str]:
    """Body and shape header value of a 1-d or 2-d array."""
    if matrix.ndim not in (1, 2):
        raise MatrixFormatError(f"a matrix has 1 or 2 dimensions, not {matrix.ndim}")
    body = np.ascontiguousarray(matrix, dtype=DTYPE).tobytes()
    return body, ",".join(str(size) for size in matrix.shape)


def parse_shape(shape_header: str | None, max_rows: int) -> tuple[int, ...]:
    """The shape a header names, checked before any of the body is read."""
    if not shape_header:
        raise MatrixFormatError(f"header {SHAPE_HEADER} is missing")
    try:
        shape = tuple(int(size) for size in shape_header.split(","))
    except ValueError:
        raise MatrixFormatError(
            f"header {SHAPE_HEADER} must be 'rows' or 'rows,columns', not {shape_header!r}"
        ) from None
    if len(shape) not in (1, 2) or min(shape) < 0:
        raise MatrixFormatError(f"header {SHAPE_HEADER} {shape_header!r} is not a 1-d or 2-d shape")
    if shape[0] > max_rows:
        raise MatrixFormatError(f"{shape[0]} rows, at most {max_rows} per call")
    return shape


def body_size(shape: tuple[int, ...]) -> int:
    """Bytes of the body that carries a matrix of ``shape``."""
    return math.prod(shape) * DTYPE.itemsize


def decode(body: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The array a body of ``shape`` carries, in a writable buffer of its own (torch takes
    numpy arrays without a copy, and only writable ones)."""
    if len(body) != body_size(shape):
        raise MatrixFormatError(
            f"body has {len(body)} bytes, shape {shape} needs {body_size(shape)} (float32)"
        )
    return np.frombuffer(bytearray(body), dtype=DTYPE).reshape(shape)
