"""The scoring pipeline of ``POST /score``, after validation: features -> await scorer ->
decide -> principal reasons -> answers -> record. Each step is a call into its own module; this
class holds what they need for each served model (an ``Arm``) and runs them in order.

With a canary, each application is decided by one arm, chosen by its request id
(``api/canary.py``): a request's rows are split, each part goes through its own model's fitted
features, scorer, reasons and monitoring at the same time, and the answers come back in the
request's order, each naming the model that decided it. A canary that fails answers nothing:
its rows are decided by the champion, and the failure counts toward its rollback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bentoml.exceptions import ServiceUnavailable

from api.answers import RequestIds, answers
from api.canary import CanarySplit
from api.scorer import Scorer
from api.shadow import ShadowBatcher
from credit_risk.contract import Application, PrincipalReason, ScoreResponse, ScoreResult
from credit_risk.decision import DecisionThresholds, Verdict, decide
from credit_risk.features import FeatureParams, raw_columns_from_records
from credit_risk.pipeline import raw_to_matrix
from credit_risk.reasons import ReasonCoder
from credit_risk.traffic import Arm as Role
from monitoring.metrics import ARM_LATENCY, ARM_REQUESTS
from monitoring.recorder import ServingMonitor


@dataclass(frozen=True)
class Arm:
    """One model that decides applications: its tag, fitted features and reason coder (None
    when the model ships no attribution baseline)."""

    role: Role
    model_tag: str
    params: FeatureParams
    reasons: ReasonCoder | None


class ScoringPipeline:
    """``canary`` and ``split``: both or neither; ``shadow``: the challenger's batcher (None
    without a challenger)."""

    def __init__(
        self,
        champion: Arm,
        scorer: Scorer,
        thresholds: DecisionThresholds,
        monitor: ServingMonitor,
        shadow: ShadowBatcher | None,
        canary: Arm | None = None,
        split: CanarySplit | None = None,
    ) -> None:
        self.champion = champion
        self.canary = canary
        self.split = split
        self.scorer = scorer
        self.thresholds = thresholds
        self.monitor = monitor
        self.shadow = shadow
        self.request_ids = RequestIds()

    @property
    def model_tag(self) -> str:
        return self.champion.model_tag

    async def answer(self, applications: list[Application], explain: bool) -> ScoreResponse:
        """Refused (503, Retry-After) while the prediction log cannot take more rows: an answer
        that could not be logged is never given."""
        if not await self.monitor.room_in_log():
            raise ServiceUnavailable("prediction log backlog full, retry later")
        records = [application.model_dump() for application in applications]
        ids = [application.request_id or next(self.request_ids) for application in applications]
        canary, split = self.canary, self.split
        if canary is None or split is None or split.share <= 0.0:
            return ScoreResponse(results=await self.decide(self.champion, records, ids, explain))
        to_canary = split.rows(ids)
        if not to_canary.any():
            return ScoreResponse(results=await self.decide(self.champion, records, ids, explain))
        parts = [np.flatnonzero(~to_canary), np.flatnonzero(to_canary)]
        champion_rows, canary_rows = parts
        champion_part, canary_part = await asyncio.gather(
            self.decide(
                self.champion, pick(records, champion_rows), pick(ids, champion_rows), explain
            ),
            self.decide_or_fall_back(
                canary, split, pick(records, canary_rows), pick(ids, canary_rows), explain
            ),
        )
        by_row = {
            row: result
            for rows, part in zip(parts, (champion_part, canary_part), strict=True)
            for row, result in zip(rows.tolist(), part, strict=True)
        }
        return ScoreResponse(results=[by_row[row] for row in range(len(records))])

    async def decide_or_fall_back(
        self,
        canary: Arm,
        split: CanarySplit,
        records: list[dict[str, Any]],
        ids: list[str],
        explain: bool,
    ) -> list[ScoreResult]:
        """The canary's answers; the champion's when the canary fails (a runner that is down
        or busy fails both alike: that is a 503, not the canary's failure)."""
        started = time.perf_counter()
        try:
            return await self.decide(canary, records, ids, explain)
        except ServiceUnavailable:
            raise
        except Exception:
            ARM_REQUESTS.labels("canary", "failed").inc()
            split.windows["canary"].record_request(time.perf_counter() - started, True)
            return await self.decide(self.champion, records, ids, explain)

    async def decide(
        self, arm: Arm, records: list[dict[str, Any]], ids: list[str], explain: bool
    ) -> list[ScoreResult]:
        started = time.perf_counter()
        raw = raw_columns_from_records(records)
        matrix = raw_to_matrix(raw, arm.params)
        probabilities = await self.scorer.predict(matrix, arm.role)
        verdicts = decide(probabilities, raw, self.thresholds)
        principal = await self.principal_reasons(arm, matrix, verdicts, explain)
        results = answers(ids, probabilities, verdicts, principal, arm.model_tag)
        self.monitor.record_answers(raw, records, results, arm.role)
        if self.shadow is not None:
            self.shadow.add(raw, ids)
        if self.split is not None:
            latency = time.perf_counter() - started
            ARM_LATENCY.labels(arm.role).observe(latency)
            ARM_REQUESTS.labels(arm.role, "answered").inc()
            window = self.split.windows[arm.role]
            window.record_request(latency, False)
            window.record_scores(probabilities.tolist())
        return results

    async def principal_reasons(
        self, arm: Arm, matrix: np.ndarray, verdicts: list[Verdict], requested: bool
    ) -> list[list[PrincipalReason]]:
        """Attributions from the arm's model for the rows that need reasons, as fields."""
        if arm.reasons is None:
            return [[] for _ in verdicts]
        rows = arm.reasons.rows_to_explain([v.decision for v in verdicts], requested)
        attributions = (
            await self.scorer.explain(matrix[rows], arm.role) if rows.size else matrix[:0]
        )
        return arm.reasons.for_rows(len(verdicts), rows, attributions)


def pick(values: Sequence[Any], rows: np.ndarray) -> list[Any]:
    return [values[row] for row in rows.tolist()]
