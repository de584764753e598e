"""Shadow batching: rows queued by requests are scored in runner-sized chunks, with the
challenger's own features, and a failing challenger disturbs nothing."""

from __future__ import annotations

import asyncio

import numpy as np

from api.shadow import ShadowBatcher
from credit_risk.features import raw_columns_from_records


def test_queued_rows_are_scored_in_chunks_and_recorded_by_request_id(fitted_params, make_record):
    calls: list[int] = []
    recorded: list[tuple[list[str], list[float]]] = []

    async def predict(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        assert matrix.shape[1] == len(fitted_params.feature_names)
        return np.full(len(matrix), 0.25, dtype=np.float32)

    batcher = ShadowBatcher(
        fitted_params, predict, lambda ids, p: recorded.append((list(ids), p)), max_rows=4
    )
    for batch in range(3):
        records = [make_record(age=20 + i) for i in range(3)]
        batcher.add(raw_columns_from_records(records), [f"r{batch}-{i}" for i in range(3)])
    asyncio.run(batcher.flush())
    assert calls == [4, 4, 1]  # one queue, runner-sized chunks, not one call per request
    assert [i for ids, _ in recorded for i in ids] == [
        f"r{b}-{i}" for b in range(3) for i in range(3)
    ]
    assert batcher.pending == []


def test_a_failing_challenger_is_logged_not_raised(fitted_params, make_record, caplog):
    async def broken(matrix: np.ndarray) -> np.ndarray:
        raise ConnectionError("runner gone")

    batcher = ShadowBatcher(fitted_params, broken, lambda ids, p: None)
    batcher.add(raw_columns_from_records([make_record()]), ["x"])
    asyncio.run(batcher.flush())
    assert "shadow scoring of 1 rows failed" in caplog.text
