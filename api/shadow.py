"""Shadow scoring in the API: answered rows are queued and scored by the challenger in one
runner call per interval, so a challenger adds a runner hop every 100 ms, not one per request,
and never sits between a client and its answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from credit_risk.features import FeatureParams, RawColumns
from credit_risk.pipeline import raw_to_matrix

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], Awaitable[np.ndarray]]
RecordScores = Callable[[Sequence[str], list[float]], None]


class ShadowBatcher:
    def __init__(
        self,
        params: FeatureParams,
        predict: Predict,
        record: RecordScores,
        interval_s: float = 0.1,
        max_rows: int = 256,
    ) -> None:
        self.params = params  # the challenger's own fitted features, not the champion's
        self.predict = predict
        self.record = record
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.pending: list[tuple[RawColumns, list[str]]] = []

    def add(self, raw: RawColumns, request_ids: list[str]) -> None:
        self.pending.append((raw, request_ids))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Score everything queued so far, in runner-sized chunks; failures are logged only."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        raw = {field: np.concatenate([r[field] for r, _ in batch]) for field in batch[0][0]}
        ids = [request_id for _, request_ids in batch for request_id in request_ids]
        try:
            matrix = raw_to_matrix(raw, self.params)
            for start in range(0, len(ids), self.max_rows):
                chunk = matrix[start : start + self.max_rows]
                probabilities = np.asarray(await self.predict(chunk)).tolist()
                self.record(ids[start : start + self.max_rows], probabilities)
        except Exception:  # the shadow must never disturb the champion's answers
            log.exception("shadow scoring of %d rows failed", len(ids))
