"""The credit-risk API service (CPU): validate -> features -> await scorer -> decide -> explain
-> answer -> record. Each step is a call into its own module; this file wires them. The scorer
is chosen once at start-up: the runner service through ``bentoml.depends`` (spawned locally, or
a URL from ``CREDIT_RISK_RUNNER_URL`` when deployed apart), or the models in this process.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import ServiceUnavailable
from fastapi import FastAPI
from pydantic import Field, StrictBool

from api.answers import RequestIds, answers
from api.guard import RequestGuard
from api.openapi import ServedDocument
from api.runner_client import MatrixClient
from api.score_endpoint import ScoreEndpoint
from api.scorer import LocalScorer, RemoteScorer, Scorer
from api.settings import ApiSettings
from api.shadow import ShadowBatcher
from credit_risk.contract import (
    MAX_APPLICATIONS_PER_REQUEST,
    Application,
    PrincipalReason,
    ScoreResponse,
    contract_document,
)
from credit_risk.decision import DecisionThresholds, Verdict, decide
from credit_risk.features import raw_columns_from_records
from credit_risk.pipeline import raw_to_matrix
from credit_risk.reasons import ReasonCoder, ReasonSettings
from model_artifact.bundle import read_bundle
from model_artifact.loaded_model import mlflow_folder
from model_artifact.torch_scorer import select_device
from monitoring.credentials import redact_credentials
from monitoring.metrics import count_rejections
from monitoring.recorder import ServingMonitor
from monitoring.settings import MonitoringSettings
from runner.drain import Drain, DrainGate, stop_after_drain
from runner.models import RunnerModels
from runner.service import CHALLENGER_REF, CHAMPION_REF, ModelRunner
from runner.settings import RunnerSettings, WorkerSettings
from runner.worker import freeze_startup_heap, limit_torch_threads, service_logging

settings = ApiSettings()
runner_settings = RunnerSettings()
worker = WorkerSettings()
monitoring = MonitoringSettings()
thresholds = DecisionThresholds()
reason_settings = ReasonSettings()
log = logging.getLogger(__name__)
info_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
# on SIGTERM: new scoring requests 503 for api_drain_s and until those in flight are answered
stopping = Drain(min_s=settings.api_drain_s, quiet_s=0.0, timeout_s=worker.drain_timeout_s)

Applications = Annotated[
    list[Application], Field(min_length=1, max_length=MAX_APPLICATIONS_PER_REQUEST)
]


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="credit_risk_api",
    workers=settings.api_workers,
    resources={"cpu": "1"},
    traffic={"timeout": settings.api_timeout_s},  # in-flight bound: RequestGuard below
    tracing=worker.tracing(("/score",)),
    logging=service_logging(worker),
)
class CreditRiskAPI:
    model_ref = CHAMPION_REF
    challenger_ref = CHALLENGER_REF
    runner = (
        bentoml.depends(ModelRunner, url=settings.runner_url)
        if settings.runner_mode == "remote"
        else None
    )

    def __init__(self) -> None:
        limit_torch_threads(worker)
        self.model_tag = str(self.model_ref.tag)
        bundle = read_bundle(mlflow_folder(self.model_ref))
        self.params = bundle.feature_params
        self.contract_version = bundle.contract["version"]
        self.reasons = self.reason_coder(bundle.baseline is not None)
        self.scorer = self.choose_scorer()
        labels = self.model_ref.info.labels
        self.monitor = ServingMonitor(
            bundle, self.model_tag, labels, monitoring, self.model_ref.info.metadata.get("metrics")
        )
        self.shadow = self.shadow_batcher()
        self.background: list[asyncio.Task[None]] = []
        self.request_ids = RequestIds()
        freeze_startup_heap()

    def choose_scorer(self) -> Scorer:
        max_rows = runner_settings.runner_max_batch_size
        if self.runner is None:
            device = select_device("cpu")
            models = RunnerModels.from_refs(self.model_ref, self.challenger_ref, device)
            return LocalScorer(models, max_rows)
        # where the proxy (resolved above) found the runner: the Dependency records it
        runner_url: str | None = getattr(type(self).runner, "url", None)
        if runner_url is None:  # no runner served beside this API (a test): BentoML made one here
            return LocalScorer(self.runner.models, max_rows)
        return RemoteScorer(
            self.runner,
            MatrixClient(runner_url, max(max_rows, MAX_APPLICATIONS_PER_REQUEST)),
            max_rows,
            settings.api_runner_calls_in_flight,
            settings.runner_retries,
            settings.runner_deadline_s,
            settings.runner_probe_interval_s,
        )

    def __is_ready__(self) -> bool:
        """Not ready while stopping or while the runner is unreachable (BentoML's ``/readyz``
        then also asks the runner itself)."""
        return self.scorer.available and not stopping.draining

    def reason_coder(self, model_explains: bool) -> ReasonCoder | None:
        if not model_explains:
            log.warning("%s ships no attribution baseline: no principal reasons", self.model_tag)
            return None
        return ReasonCoder(self.params.feature_names, reason_settings)

    def shadow_batcher(self) -> ShadowBatcher | None:
        """The challenger scored off the request path, through its own fitted features."""
        if self.challenger_ref is None:
            return None
        return ShadowBatcher(
            read_bundle(mlflow_folder(self.challenger_ref)).feature_params,
            self.scorer.predict_challenger,
            partial(self.monitor.record_challenger, model_tag=str(self.challenger_ref.tag)),
            max_rows=runner_settings.runner_max_batch_size,
        )

    @bentoml.api(route="/score")
    async def score(self, applications: Applications, explain: StrictBool = False) -> ScoreResponse:
        """Score a batch of applications; each answer carries its request id, the model tag,
        and for a review or decline (every application with ``explain``) its principal
        reasons."""
        # Over HTTP, api/score_endpoint.py answers this route with the same input model and
        # `answer`; this declaration is the contract BentoML documents and its clients read.
        return await self.answer(applications, explain)

    async def answer(self, applications: list[Application], explain: bool) -> ScoreResponse:
        """validate (done by the caller) -> features -> model -> decision -> reasons ->
        answers -> record. Refused (503, Retry-After) while the prediction log cannot take
        more rows: an answer that could not be logged is never given."""
        if not self.monitor.accepting:
            raise ServiceUnavailable("prediction log backlog full, retry later")
        records = [application.model_dump() for application in applications]
        raw = raw_columns_from_records(records)
        matrix = raw_to_matrix(raw, self.params)
        probabilities = await self.scorer.predict(matrix)
        verdicts = decide(probabilities, raw, thresholds)
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

    @bentoml.on_startup
    async def start_background(self) -> None:
        """Drift gauges and shadow scoring, inside the serving loop and off the request path;
        a SIGTERM drains before the worker stops (runner/drain.py)."""
        stop_after_drain(stopping)
        self.background.append(asyncio.create_task(self.refresh_drift()))
        if self.shadow is not None:
            self.background.append(asyncio.create_task(self.shadow.run()))

    async def refresh_drift(self) -> None:
        """Keep the drift gauges current without touching any scoring request."""
        while True:
            await asyncio.sleep(monitoring.drift_refresh_s)
            # tens of ms over a full window: off the event loop, so no request waits on it
            await asyncio.to_thread(self.monitor.drift_report)

    @bentoml.on_shutdown
    async def drain(self) -> None:
        """Score queued shadow rows, then flush the prediction log: a clean stop loses nothing."""
        for task in self.background:
            task.cancel()
        if self.shadow is not None:
            await self.shadow.flush()
        await self.scorer.close()
        self.monitor.close()

    @info_app.get("/model")
    async def model(self) -> dict[str, Any]:
        """Lineage of the live model: BentoML tag, MLflow run and version, metrics, runner.
        Never the prediction log's URL; any password in a lineage string is hidden."""
        lineage = {
            "model_tag": self.model_tag,
            "labels": dict(self.model_ref.info.labels),
            "metadata": self.model_ref.info.metadata,
            "challenger_tag": str(self.challenger_ref.tag) if self.challenger_ref else None,
            "runner": await self.scorer.describe(),
            "runner_mode": settings.runner_mode,
            "contract_version": self.contract_version,
            "decision_thresholds": thresholds.model_dump(),
        }
        redacted: dict[str, Any] = redact_credentials(lineage)
        return redacted

    @info_app.get("/contract")
    async def contract(self) -> dict[str, Any]:
        """The request contract this service enforces (also in the OpenAPI schema)."""
        return contract_document()

    @info_app.get("/drift")
    async def drift(self) -> dict[str, Any]:
        """PSI per contract field and for the score, live window vs training reference."""
        return self.monitor.drift_report()


# bentoml's decorators are typed as returning the class, not the Service they build
# Outermost: while draining, refuses scoring before any other work and closes connections.
CreditRiskAPI.add_asgi_middleware(  # type: ignore[attr-defined]
    DrainGate, drain=stopping, refuse_paths=("/score",), close_connections=True
)
CreditRiskAPI.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard,
    paths=("/score",),
    max_in_flight=settings.api_max_concurrency,
    on_rejected=count_rejections,
)
# /docs.json as OpenAPI 3.0 with the guard's answers documented, so 3.0 tools read the contract
CreditRiskAPI.add_asgi_middleware(ServedDocument, guarded_paths=("/score",))  # type: ignore[attr-defined]
# Innermost: the guard (and any middleware registered above) has already checked the request.
CreditRiskAPI.add_asgi_middleware(  # type: ignore[attr-defined]
    ScoreEndpoint,
    path="/score",
    input_model=CreditRiskAPI.apis["score"].input_spec,  # type: ignore[attr-defined]
    service=bentoml.get_current_service,
)
