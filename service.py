"""The credit-risk API service (CPU): contract -> features -> matrix -> runner -> decision.

Each step is a call into its own module; this file only wires them. The model runner is a
separately scaled service reached through ``bentoml.depends`` (in-process spawn locally, a
URL from ``CREDIT_RISK_RUNNER_URL`` when deployed apart).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import bentoml
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
from credit_risk.http_guard import JSONBodyGuard
from credit_risk.pipeline import records_to_matrix
from runners.client import predict_with_retry
from runners.loaded_model import MLFLOW_MODEL_FOLDER
from runners.model_runner import ModelRunner

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
    traffic={"timeout": settings.api_timeout_s, "max_concurrency": settings.api_max_concurrency},
)
class CreditRiskAPI:
    model_ref = bentoml.models.BentoModel(settings.served_model_tag())
    runner = bentoml.depends(ModelRunner, url=settings.runner_url)

    def __init__(self) -> None:
        folder = Path(self.model_ref.path_of(MLFLOW_MODEL_FOLDER))
        self.bundle = read_bundle(folder)
        self.model_tag = str(self.model_ref.tag)

    @bentoml.api(route="/score")
    async def score(self, applications: Applications) -> ScoreResponse:
        """Score a batch of applications; each answer carries its request id and model tag."""
        records = [application.model_dump() for application in applications]
        matrix = records_to_matrix(records, self.bundle.feature_params)
        probabilities = await predict_with_retry(
            self.runner.to_async.predict, matrix, settings.runner_retries
        )
        results = []
        for application, probability in zip(applications, probabilities.tolist(), strict=True):
            verdict = decide(probability, application, settings.decision)
            results.append(
                ScoreResult(
                    request_id=application.request_id or uuid.uuid4().hex,
                    probability_default=probability,
                    decision=verdict.decision,
                    reasons=verdict.reasons,
                    model_tag=self.model_tag,
                )
            )
        return ScoreResponse(results=results)

    @info_app.get("/model")
    async def model(self) -> dict[str, Any]:
        """Lineage of the live model: BentoML tag, MLflow run and version, metrics, runner."""
        return {
            "model_tag": self.model_tag,
            "labels": dict(self.model_ref.info.labels),
            "metadata": self.model_ref.info.metadata,
            "runner": await self.runner.to_async.describe(),
            "contract_version": self.bundle.contract["version"],
            "decision_thresholds": settings.decision.model_dump(),
        }

    @info_app.get("/contract")
    async def contract(self) -> dict[str, Any]:
        """The request contract this service enforces (also in the OpenAPI schema)."""
        return contract_document()


CreditRiskAPI.add_asgi_middleware(JSONBodyGuard, paths=("/score",))
