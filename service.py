"""The credit-risk API service (CPU): contract -> features -> matrix -> runner -> decision.

Each step is a call into its own module; this file only wires them. The model runner is a
separately scaled service reached through ``bentoml.depends`` (in-process spawn locally, a
URL from ``CREDIT_RISK_RUNNER_URL`` when deployed apart).
"""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from typing import Annotated, Any

import bentoml
import numpy as np
from fastapi import FastAPI
from pydantic import Field

from credit_risk.bundle import read_bundle
from credit_risk.config import get_settings
from credit_risk.contract import (
    MAX_APPLICATIONS_PER_REQUEST,
    Application,
    ScoreResponse,
    ScoreResult,
    contract_document,
)
from credit_risk.decision import decide
from credit_risk.features import raw_columns_from_records
from credit_risk.http_guard import RequestGuard
from credit_risk.metrics import count_rejections
from credit_risk.monitoring import ServingMonitor
from credit_risk.pipeline import raw_to_matrix
from runners.client import predict_with_retry
from runners.coalesce import Coalescer
from runners.core import RunnerCore
from runners.loaded_model import mlflow_folder
from runners.model_runner import CHALLENGER_TAG, ModelRunner
from runners.shadow import ShadowBatcher
from runners.startup import freeze_startup_heap, limit_torch_threads
from runners.torch_core import select_device

settings = get_settings()
info_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

Applications = Annotated[
    list[Application], Field(min_length=1, max_length=MAX_APPLICATIONS_PER_REQUEST)
]


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="credit_risk_api",
    workers=settings.api_workers,
    resources={"cpu": "1"},
    traffic={"timeout": settings.api_timeout_s},  # in-flight bound: RequestGuard below
    logging=settings.service_logging(),
)
class CreditRiskAPI:
    model_ref = bentoml.models.BentoModel(settings.served_model_tag())
    challenger_ref = bentoml.models.BentoModel(CHALLENGER_TAG) if CHALLENGER_TAG else None
    runner = (
        bentoml.depends(ModelRunner, url=settings.runner_url)
        if settings.runner_mode == "remote"
        else None
    )

    def __init__(self) -> None:
        limit_torch_threads()
        self.bundle = read_bundle(mlflow_folder(self.model_ref))
        self.local = (
            RunnerCore.from_refs(self.model_ref, self.challenger_ref, select_device("cpu"))
            if self.runner is None
            else None
        )
        self.model_tag = str(self.model_ref.tag)
        self.challenger_bundle = (
            read_bundle(mlflow_folder(self.challenger_ref)) if self.challenger_ref else None
        )
        self.monitor = ServingMonitor(
            self.bundle, self.model_tag, self.model_ref.info.labels, settings
        )
        self.shadow = (
            ShadowBatcher(
                self.challenger_bundle.feature_params,
                self.predict_challenger,
                partial(self.monitor.record_challenger, model_tag=str(self.challenger_ref.tag)),
                max_rows=settings.runner_max_batch_size,
            )
            if self.challenger_bundle is not None
            else None
        )
        self.score_champion = Coalescer(
            self.predict,
            max_rows=settings.runner_max_batch_size,
            max_in_flight=settings.api_runner_calls_in_flight if self.local is None else 1,
        )
        self.background: list[asyncio.Task[None]] = []
        freeze_startup_heap()

    @bentoml.api(route="/score")
    async def score(self, applications: Applications) -> ScoreResponse:
        """Score a batch of applications; each answer carries its request id and model tag."""
        records = [application.model_dump() for application in applications]
        raw = raw_columns_from_records(records)
        matrix = raw_to_matrix(raw, self.bundle.feature_params)
        probabilities = await self.score_champion(matrix)
        verdicts = decide(probabilities, raw, settings.decision)
        results = [
            ScoreResult(
                request_id=application.request_id or uuid.uuid4().hex,
                probability_default=probability,
                decision=verdict.decision,
                reasons=list(verdict.reasons),
                model_tag=self.model_tag,
            )
            for application, probability, verdict in zip(
                applications, probabilities.tolist(), verdicts, strict=True
            )
        ]
        self.monitor.record_answers(raw, records, results)
        if self.shadow is not None:
            self.shadow.add(raw, [r.request_id for r in results])
        if not self.background:  # started on the first request, inside the serving loop
            self.background.append(asyncio.create_task(self.refresh_drift()))
            if self.shadow is not None:
                self.background.append(asyncio.create_task(self.shadow.run()))
        return ScoreResponse(results=results)

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The champion's probabilities for one (coalesced) matrix: in this process, or from
        the runner with retries."""
        if self.local is not None:
            return self.local.predict(matrix)
        # looked up per call: a remote runner's client learns its endpoints on connect
        return await predict_with_retry(
            lambda m: self.runner.to_async.predict(m), matrix, settings.runner_retries
        )

    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        if self.local is not None:
            return self.local.predict_challenger(matrix)
        return await self.runner.to_async.predict_challenger(matrix)

    async def refresh_drift(self) -> None:
        """Keep the drift gauges current without touching any scoring request."""
        while True:
            await asyncio.sleep(settings.drift_refresh_s)
            # tens of ms over a full window: off the event loop, so no request waits on it
            await asyncio.to_thread(self.monitor.drift_report)

    @bentoml.on_shutdown
    async def drain(self) -> None:
        """Score queued shadow rows, then flush the prediction log: a clean stop loses nothing."""
        for task in self.background:
            task.cancel()
        if self.shadow is not None:
            await self.shadow.flush()
        self.monitor.close()

    @info_app.get("/model")
    async def model(self) -> dict[str, Any]:
        """Lineage of the live model: BentoML tag, MLflow run and version, metrics, runner."""
        return {
            "model_tag": self.model_tag,
            "labels": dict(self.model_ref.info.labels),
            "metadata": self.model_ref.info.metadata,
            "challenger_tag": str(self.challenger_ref.tag) if self.challenger_ref else None,
            "runner": self.local.describe()
            if self.local
            else await self.runner.to_async.describe(),
            "runner_mode": settings.runner_mode,
            "contract_version": self.bundle.contract["version"],
            "decision_thresholds": settings.decision.model_dump(),
        }

    @info_app.get("/contract")
    async def contract(self) -> dict[str, Any]:
        """The request contract this service enforces (also in the OpenAPI schema)."""
        return contract_document()

    @info_app.get("/drift")
    async def drift(self) -> dict[str, Any]:
        """PSI per contract field and for the score, live window vs training reference."""
        return self.monitor.drift_report()


CreditRiskAPI.add_asgi_middleware(
    RequestGuard,
    paths=("/score",),
    max_in_flight=settings.api_max_concurrency,
    on_rejected=count_rejections,
)
