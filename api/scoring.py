"""The scoring pipeline of ``POST /score``, after validation: features -> await scorer ->
decide -> principal reasons -> answers -> record. Each step is a call into its own module; this
class holds what they need for one served model and runs them in order."""

from __future__ import annotations

import numpy as np
from bentoml.exceptions import ServiceUnavailable

from api.answers import RequestIds, answers
from api.scorer import Scorer
from api.shadow import ShadowBatcher
from credit_risk.contract import Application, PrincipalReason, ScoreResponse
from credit_risk.decision import DecisionThresholds, Verdict, decide
from credit_risk.features import FeatureParams, raw_columns_from_records
from credit_risk.pipeline import raw_to_matrix
from credit_risk.reasons import ReasonCoder
from monitoring.recorder import ServingMonitor


class ScoringPipeline:
    """One served model's answers: ``params`` are its fitted features, ``reasons`` its reason
    coder (None when the model ships no attribution baseline), ``shadow`` the challenger's
    batcher (None without a challenger)."""

    def __init__(
        self,
        model_tag: str,
        params: FeatureParams,
        scorer: Scorer,
        thresholds: DecisionThresholds,
        reasons: ReasonCoder | None,
        monitor: ServingMonitor,
        shadow: ShadowBatcher | None,
    ) -> None:
        self.model_tag = model_tag
        self.params = params
        self.scorer = scorer
        self.thresholds = thresholds
        self.reasons = reasons
        self.monitor = monitor
        self.shadow = shadow
        self.request_ids = RequestIds()

    async def answer(self, applications: list[Application], explain: bool) -> ScoreResponse:
        """Refused (503, Retry-After) while the prediction log cannot take more rows: an answer
        that could not be logged is never given."""
        if not self.monitor.accepting:
            raise ServiceUnavailable("prediction log backlog full, retry later")
        records = [application.model_dump() for application in applications]
        raw = raw_columns_from_records(records)
        matrix = raw_to_matrix(raw, self.params)
        probabilities = await self.scorer.predict(matrix)
        verdicts = decide(probabilities, raw, self.thresholds)
        principal = await self.principal_reasons(matrix, verdicts, explain)
        results = answers(
            applications, probabilities, verdicts, principal, self.model_tag, self.request_ids
        )
        self.monitor.record_answers(raw, records, results)
        if self.shadow is not None:
            self.shadow.add(raw, [result.request_id for result in results])
        return ScoreResponse(results=results)

    async def principal_reasons(
        self, matrix: np.ndarray, verdicts: list[Verdict], requested: bool
    ) -> list[list[PrincipalReason]]:
        """Attributions from the model stage for the rows that need reasons, as fields."""
        if self.reasons is None:
            return [[] for _ in verdicts]
        rows = self.reasons.rows_to_explain([v.decision for v in verdicts], requested)
        attributions = await self.scorer.explain(matrix[rows]) if rows.size else matrix[:0]
        return self.reasons.for_rows(len(verdicts), rows, attributions)
