"""The distributed batch job on a real Dask cluster (worker processes) gives exactly the
single-machine CLI's output, rejects included, loading the model once per worker; the way it
cuts files numbers every row as the CLI does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from batch import distributed, score
from batch.score import BLOCK_ROWS
from batch.sources import input_files, plan, read_piece
from training.data import TARGET, load_credit_data

ROWS = 2 * BLOCK_ROWS + 3000  # three pieces of one block each: more rows than a piece holds


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """Two worker processes on this machine, reached by address as a real cluster is; one
    cluster for the module, so the second job finds the model already loaded."""
    with distributed.connect(None, workers=2) as client:
        yield client.scheduler.address


@pytest.fixture(scope="module")
def applications() -> pd.DataFrame:
    """Credit applications resampled to ``ROWS`` rows, with bad rows in different pieces."""
    rows = load_credit_data().drop(columns=[TARGET]).sample(n=ROWS, replace=True, random_state=7)
    rows = rows.reset_index(drop=True)
    rows.loc[10, "home"] = "castle"
    rows.loc[BLOCK_ROWS + 5, "seniority"] = 99
    rows.loc[ROWS - 1, "amount"] = np.nan
    return rows


def same_rows(single: pd.DataFrame, parts: pd.DataFrame) -> None:
    """Same columns, rows and order; probabilities bit for bit, the rest as text."""
    assert list(parts.columns) == list(single.columns)
    assert len(parts) == len(single)
    for column in single.columns:
        if column == "probability_default":
            np.testing.assert_array_equal(parts[column].to_numpy(), single[column].to_numpy())
        else:
            assert parts[column].astype(str).tolist() == single[column].astype(str).tolist()


def run_both(tmp_path, source: str, cli_input, scheduler: str) -> dict:
    cli_output = tmp_path / "cli.parquet"
    assert score.main([str(cli_input), str(cli_output)]) == 0
    out = tmp_path / "distributed"
    argv = [source, str(out), "--partition-rows", str(BLOCK_ROWS), "--scheduler", scheduler]
    assert distributed.main(argv) == 0
    same_rows(pd.read_parquet(cli_output), pd.read_parquet(out / "scores"))
    same_rows(pd.read_csv(tmp_path / "cli.rejects.csv"), pd.read_parquet(out / "rejects"))
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_csv_on_worker_processes_matches_the_cli(champion, scheduler, applications, tmp_path):
    source = tmp_path / "applications.csv"
    bad = applications.astype(object)
    bad.loc[BLOCK_ROWS * 2 + 1, "age"] = "thirty"  # a text cell: that piece reads as text
    bad.to_csv(source, index=False)

    summary = run_both(tmp_path, str(source), source, scheduler)

    assert (summary["pieces"], summary["rows"], summary["rejected"]) == (3, ROWS, 4)
    assert set(summary["models_loaded"].values()) == {1}


@pytest.mark.slow
def test_parquet_folder_matches_the_cli(champion, scheduler, applications, tmp_path):
    """Two files (the second's rows numbered after the first's), row groups smaller than a
    piece; the model loads once per worker process over both jobs."""
    folder = tmp_path / "applications"
    folder.mkdir()
    applications[: 2 * BLOCK_ROWS].to_parquet(folder / "a.parquet", row_group_size=3000)
    applications[2 * BLOCK_ROWS :].to_parquet(folder / "b.parquet", row_group_size=3000)
    whole = tmp_path / "whole.parquet"
    applications.to_parquet(whole)

    summary = run_both(tmp_path, str(folder), whole, scheduler)

    assert (summary["pieces"], summary["rows"], summary["rejected"]) == (3, ROWS, 3)
    assert len(summary["files"]) == 2
    assert set(summary["models_loaded"].values()) == {1}  # 3 pieces, at most 2 loads


def test_pieces_number_rows_across_files_and_read_back_exactly(applications, tmp_path):
    frame = applications[: BLOCK_ROWS + 10]
    frame.to_csv(tmp_path / "1.csv", index=False)
    with (tmp_path / "1.csv").open("a") as file:
        file.write("\n")  # a blank line is not a row, for pandas nor for the plan
    frame.to_parquet(tmp_path / "2.parquet", row_group_size=1000)

    pieces = plan(input_files(str(tmp_path / "*")), BLOCK_ROWS)

    assert [(p.first_row, p.rows) for p in pieces] == [
        (0, BLOCK_ROWS),
        (BLOCK_ROWS, 10),
        (BLOCK_ROWS + 10, BLOCK_ROWS),
        (2 * BLOCK_ROWS + 10, 10),
    ]
    for piece, source in zip(pieces, [frame[:BLOCK_ROWS], frame[BLOCK_ROWS:]] * 2, strict=True):
        pd.testing.assert_frame_equal(
            read_piece(piece), source.reset_index(drop=True), check_dtype=False
        )


def test_a_record_spanning_lines_fails_the_piece_by_name(tmp_path):
    source = tmp_path / "quoted.csv"
    source.write_text('home,job\n"rent\nowner",fixed\nrent,fixed\n')
    (piece,) = plan([source], BLOCK_ROWS)
    with pytest.raises(ValueError, match="quoted newline"):
        read_piece(piece)


def test_rows_per_piece_must_keep_the_cli_blocks(tmp_path):
    with pytest.raises(ValueError, match=f"multiple of {BLOCK_ROWS}"):
        plan([], BLOCK_ROWS + 1)


def test_an_earlier_output_is_never_mixed_in(tmp_path):
    (tmp_path / "scores").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        distributed.prepare_output(tmp_path, overwrite=False)
    distributed.prepare_output(tmp_path, overwrite=True)
    assert not (tmp_path / "scores").exists()
