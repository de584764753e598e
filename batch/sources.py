"""Input files cut into pieces that workers read on their own, each piece knowing the input
row number of its first row.

A piece is a range of rows of one file, so a worker reads only its range (nothing passes
through the client) and reports rejects with the row numbers ``python -m batch.score`` gives.
Pieces start at multiples of ``BLOCK_ROWS`` within their file, so every block of rows reaches
the model exactly as it does in the single-machine CLI, and the floats come out equal.

- Parquet: row counts come from the footer; a worker reads the row groups that cover its
  range. Row groups no larger than a piece keep a worker from reading rows it drops.
- CSV: the client reads the file once for the byte offset of every piece's first line (no
  parsing). A record must not span lines (a quoted newline), as with
  ``dask.dataframe.read_csv(blocksize=...)``; a piece that parses to another row count than
  its lines fails, naming the file, rather than numbering rows wrongly.

Rows are numbered over all input files in sorted path order, from 0.
"""

from __future__ import annotations

import glob
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from batch.score import BLOCK_ROWS

SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class Piece:
    """Rows ``[file_row, file_row + rows)`` of ``path``, input rows from ``first_row`` on."""

    path: str
    first_row: int
    file_row: int
    rows: int
    byte_start: int = 0  # CSV only: offset of the piece's first line
    byte_stop: int = 0  # CSV only: offset just past its last line


def input_files(source: str) -> list[Path]:
    """A file, a folder (its CSV and Parquet files) or a glob, sorted; none is an error."""
    path = Path(source)
    if path.is_dir():
        files = [  # hidden and "_" files are bookkeeping (a writer's temporaries, _SUCCESS)
            p
            for p in path.iterdir()
            if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith((".", "_"))
        ]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(match) for match in glob.glob(source)]
    if not files:
        raise FileNotFoundError(f"no CSV or Parquet input at {source}")
    unknown = [str(p) for p in files if p.suffix not in SUFFIXES]
    if unknown:
        raise ValueError(f"inputs must be .csv or .parquet: {unknown}")
    return sorted(files)


def _csv_starts(path: Path, every: int) -> tuple[list[int], int, int]:
    """(byte offset of data rows 0, every, 2*every, ..., row count, file size). Blank lines
    are not rows, as ``pandas.read_csv`` skips them."""
    starts: list[int] = []
    rows = 0
    with path.open("rb") as file:
        position = len(file.readline())  # the header
        for line in file:
            if line.strip(b"\r\n"):
                if rows % every == 0:
                    starts.append(position)
                rows += 1
            position += len(line)
    return starts, rows, position


def file_pieces(path: Path, first_row: int, piece_rows: int) -> list[Piece]:
    """The pieces of one file, its first row numbered ``first_row``."""
    if path.suffix == ".parquet":
        total = pq.ParquetFile(path).metadata.num_rows
        return [
            Piece(str(path), first_row + start, start, min(piece_rows, total - start))
            for start in range(0, total, piece_rows)
        ]
    starts, total, size = _csv_starts(path, piece_rows)
    stops = [*starts[1:], size]
    return [
        Piece(
            str(path),
            first_row + index * piece_rows,
            index * piece_rows,
            min(piece_rows, total - index * piece_rows),
            start,
            stop,
        )
        for index, (start, stop) in enumerate(zip(starts, stops, strict=True))
    ]


def plan(files: list[Path], piece_rows: int) -> list[Piece]:
    """Pieces of at most ``piece_rows`` rows (a multiple of ``BLOCK_ROWS``) over all files."""
    if piece_rows <= 0 or piece_rows % BLOCK_ROWS:
        raise ValueError(f"rows per piece must be a positive multiple of {BLOCK_ROWS}")
    pieces: list[Piece] = []
    for path in files:
        first_row = pieces[-1].first_row + pieces[-1].rows if pieces else 0
        pieces += file_pieces(path, first_row, piece_rows)
    return pieces


def _parquet_rows(piece: Piece) -> pd.DataFrame:
    parquet = pq.ParquetFile(piece.path)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    covering = np.flatnonzero((ends > piece.file_row) & (starts < piece.file_row + piece.rows))
    table = parquet.read_row_groups(covering.tolist(), use_pandas_metadata=True)
    return table.slice(piece.file_row - int(starts[covering[0]]), piece.rows).to_pandas()


def _csv_rows(piece: Piece) -> pd.DataFrame:
    with Path(piece.path).open("rb") as file:
        header = file.readline()
        file.seek(piece.byte_start)
        body = file.read(piece.byte_stop - piece.byte_start)
    frame = pd.read_csv(io.BytesIO(header + body))
    if len(frame) != piece.rows:
        raise ValueError(
            f"{piece.path}: bytes {piece.byte_start}-{piece.byte_stop} hold {piece.rows} lines "
            f"but parse to {len(frame)} rows (a quoted newline?): convert the file to Parquet"
        )
    return frame


def read_piece(piece: Piece) -> pd.DataFrame:
    """The piece's rows as ``python -m batch.score`` reads them (types inferred per piece for
    CSV; the contract then accepts and refuses exactly the same rows)."""
    return _parquet_rows(piece) if piece.path.endswith(".parquet") else _csv_rows(piece)
