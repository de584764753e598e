"""The scoring pipeline of ``POST /score``, after validation: features -> await scorer ->
decide -> principal reasons -> answers -> record. Each step is a call into its own module; this
class holds what they need for each served model (an ``Arm``) and runs them in order.

Requests that arrive together share one pass (``serving/coalesce.py``): their applications are
joined, go through the steps as one batch, and each request gets its own answers back. Every
step costs about the same for one row as for a few (numpy calls, a runner hop, a metrics
update, a log write), so under load a pass answering several requests costs little more than
one; an idle worker joins nothing and adds no wait.

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
from dataclasses import dataclass, replace
from functools import partial
from itertools import accumulate
from typing import Any

import numpy as np
from bentoml.exceptions import ServiceUnavailable

from api.answers import RequestIds, answers
from api.canary import CanarySplit
from api.scorer import Scorer
from api.shadow import ShadowBatcher
from credit_risk.contract import Application, PrincipalReason, ScoreResponse, ScoreResult
from credit_risk.decision import DecisionThresholds, Verdict, decide
from credit_risk.features import FeatureParams, RawColumns, raw_columns_from_records
from credit_risk.pipeline import raw_to_matrix
from credit_risk.reasons import ReasonCoder
from credit_risk.traffic import Arm as Role
from monitoring.metrics import ARM_LATENCY, ARM_REQUESTS
from monitoring.recorder import ServingMonitor
from serving.coalesce import UNBOUNDED, Coalescer


@dataclass(frozen=True)
class Request:
    """One request's applications as the pipeline takes them: contract records and their ids."""

    records: list[dict[str, Any]]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class Decided:
    """One arm's answers to part of a request, before they are recorded; ``fallback``: the
    champion's answers to applicants of a canary that failed."""

    arm: Arm
    raw: RawColumns
    records: list[dict[str, Any]]
    ids: list[str]
    results: list[ScoreResult]
    latency_s: float
    requests: int  # how many of the pass's requests have rows in this part
    fallback: bool = False


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
    without a challenger); ``max_rows``: the most applications one pass joins (a larger
    request still passes alone)."""

    def __init__(
        self,
        champion: Arm,
        scorer: Scorer,
        thresholds: DecisionThresholds,
        monitor: ServingMonitor,
        shadow: ShadowBatcher | None,
        max_rows: int,
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
        # one joiner per explain flag: a pass explains all its rows or only the adverse ones
        self.passes = {
            explain: Coalescer(partial(self.answer_together, explain=explain), max_rows, UNBOUNDED)
            for explain in (False, True)
        }

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
        return await self.passes[explain](Request(records, ids))

    async def answer_together(self, requests: list[Request], explain: bool) -> list[ScoreResponse]:
        """One pass for the requests that arrived together: each gets its own answers, in its
        own order. A pass fails as a whole (the champion's runner down fails them all)."""
        records = [record for request in requests for record in request.records]
        ids = [request_id for request in requests for request_id in request.ids]
        sizes = [len(request) for request in requests]
        results = await self.answer_rows(records, ids, sizes, explain)
        return [
            ScoreResponse(results=results[end - size : end])
            for size, end in zip(sizes, accumulate(sizes), strict=True)
        ]

    async def answer_rows(
        self, records: list[dict[str, Any]], ids: list[str], sizes: list[int], explain: bool
    ) -> list[ScoreResult]:
        """Every row's answer, in order; ``sizes``: how many of the rows each request of the
        pass brought, so that a canary's windows count requests, not rows."""
        canary, split = self.canary, self.split
        to_canary = split.rows(ids) if canary is not None and split is not None else None
        if canary is None or to_canary is None or not to_canary.any():
            part = await self.tracked(self.champion, records, ids, explain, len(sizes))
            self.record(part)
            return part.results
        owner = np.repeat(np.arange(len(sizes)), sizes)  # each row's request
        rows = [np.flatnonzero(~to_canary), np.flatnonzero(to_canary)]
        champion_rows, canary_rows = rows
        outcomes = await asyncio.gather(
            self.tracked(
                self.champion,
                pick(records, champion_rows),
                pick(ids, champion_rows),
                explain,
                request_count(owner[champion_rows]),
            ),
            self.decide_or_fall_back(
                canary,
                pick(records, canary_rows),
                pick(ids, canary_rows),
                explain,
                request_count(owner[canary_rows]),
            ),
            return_exceptions=True,
        )
        parts = [outcome for outcome in outcomes if isinstance(outcome, Decided)]
        if len(parts) < len(outcomes):  # nothing of a request that fails is answered or logged
            raise next(outcome for outcome in outcomes if not isinstance(outcome, Decided))
        for part in parts:
            self.record(part)
        by_row = {
            row: result
            for part_rows, part in zip(rows, parts, strict=True)
            for row, result in zip(part_rows.tolist(), part.results, strict=True)
        }
        return [by_row[row] for row in range(len(records))]

    async def decide_or_fall_back(
        self,
        canary: Arm,
        records: list[dict[str, Any]],
        ids: list[str],
        explain: bool,
        requests: int,
    ) -> Decided:
        """The canary's answers; the champion's when the canary fails, whatever the failure
        (its model raising, its calls shed or timing out): the failure counts against the
        canary, and the applicants are still answered. Only when the champion fails too
        (a runner that is down fails both) is the request refused."""
        try:
            return await self.tracked(canary, records, ids, explain, requests)
        except Exception:
            part = await self.decide(self.champion, records, ids, explain, requests)
            return replace(part, fallback=True)

    async def tracked(
        self, arm: Arm, records: list[dict[str, Any]], ids: list[str], explain: bool, requests: int
    ) -> Decided:
        """``decide``, with a failure counted against the arm while a canary runs."""
        started = time.perf_counter()
        try:
            return await self.decide(arm, records, ids, explain, requests)
        except Exception:
            if self.split is not None:
                ARM_REQUESTS.labels(arm.role, "failed").inc(requests)
                latency_s = time.perf_counter() - started
                self.split.windows[arm.role].record_requests(latency_s, True, requests)
            raise

    async def decide(
        self, arm: Arm, records: list[dict[str, Any]], ids: list[str], explain: bool, requests: int
    ) -> Decided:
        """One arm's answers for these applications (of ``requests`` requests); nothing
        recorded yet."""
        started = time.perf_counter()
        raw = raw_columns_from_records(records)
        matrix = raw_to_matrix(raw, arm.params)
        probabilities = await self.scorer.predict(matrix, arm.role)
        verdicts = decide(probabilities, raw, self.thresholds)
        principal = await self.principal_reasons(arm, matrix, verdicts, explain)
        results = answers(ids, probabilities, verdicts, principal, arm.model_tag)
        latency_s = time.perf_counter() - started
        return Decided(arm, raw, records, ids, results, latency_s, requests)

    def record(self, part: Decided) -> None:
        """An answered part: monitoring and the log, the shadow queue, and (unless it stood in
        for a failed canary) its arm's window, one entry per request it answered."""
        self.monitor.record_answers(part.raw, part.records, part.results, part.arm.role)
        if self.shadow is not None:
            self.shadow.add(part.raw, part.ids)
        if self.split is not None and not part.fallback:
            role = part.arm.role
            for _ in range(part.requests):
                ARM_LATENCY.labels(role).observe(part.latency_s)
            ARM_REQUESTS.labels(role, "answered").inc(part.requests)
            window = self.split.windows[role]
            window.record_requests(part.latency_s, False, part.requests)
            window.record_scores([result.probability_default for result in part.results])

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


def request_count(owner: np.ndarray) -> int:
    """How many requests the rows with these owners belong to."""
    return len(np.unique(owner))
