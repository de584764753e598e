"""The BentoML entry point: ``bentoml serve service:CreditRiskAPI``.

Two services, each scaled on its own: ``CreditRiskAPI`` (CPU: contract, features, decision,
reasons, monitoring; here) in front of ``ModelRunner`` (the network, CPU or CUDA;
``runners/service.py``), reached through ``bentoml.depends``: spawned beside the API locally,
or the URL in ``CREDIT_RISK_RUNNER_URL`` when deployed apart. With
``CREDIT_RISK_RUNNER_MODE=inprocess`` the API worker holds the models itself and no runner runs.

This module composes; the work lives in ``api/`` (the API process) and ``runners/`` (the runner
process), which never import each other, over ``serving/`` (what both run). The models both
declare are resolved once per process (``serving/model_refs.py``). A request to the API meets,
in this order (the list at the end of this file): the drain gate, then the ``/score`` handler,
then BentoML's own routes.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Annotated, Any, Literal

import bentoml
from fastapi import FastAPI
from pydantic import Field, StrictBool

from api.canary import CanarySplit
from api.runner_client import MatrixClient
from api.score_handler import ScoreHandler
from api.scorer import LocalScorer, RemoteScorer, Scorer
from api.scoring import Arm, ScoringPipeline
from api.settings import ApiSettings, RunnerClientSettings
from api.shadow import ShadowBatcher
from credit_risk.contract import (
    MAX_APPLICATIONS_PER_REQUEST,
    Application,
    ScoreResponse,
    contract_document,
)
from credit_risk.reasons import ReasonCoder
from model_artifact.bundle import mlflow_folder, read_bundle
from model_artifact.settings import DecisionSettings, ReasonSettings
from monitoring.credentials import redact_credentials
from monitoring.recorder import ServingMonitor
from monitoring.settings import CanarySettings, MonitoringSettings
from monitoring.traffic_split import TrafficSplitStore
from runners.service import ModelRunner
from serving.drain import Drain, DrainGate, stop_after_drain
from serving.log_summary import RepeatedWarnings
from serving.model_refs import served_refs
from serving.settings import WorkerSettings
from serving.worker import freeze_startup_heap, service_logging

settings = ApiSettings()
runner_client = RunnerClientSettings()
worker = WorkerSettings()
monitoring = MonitoringSettings()
thresholds = DecisionSettings()
reasons = ReasonSettings()
canary_bounds = CanarySettings()
log = logging.getLogger(__name__)
CANARY_WATCH = RepeatedWarnings(log)
info_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
# on SIGTERM: new scoring requests 503 for api_drain_s and until those in flight are answered
drain = Drain(min_s=settings.api_drain_s, quiet_s=0.0, timeout_s=worker.drain_timeout_s)

Applications = Annotated[
    list[Application], Field(min_length=1, max_length=MAX_APPLICATIONS_PER_REQUEST)
]


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="credit_risk_api",
    workers=settings.api_workers,
    resources={"cpu": "1"},
    traffic={"timeout": settings.api_timeout_s},  # in-flight bound: ScoreHandler below
    tracing=worker.tracing(("/score",)),
    logging=service_logging(worker),
)
class CreditRiskAPI:
    model_ref = served_refs().champion
    challenger_ref = served_refs().challenger
    canary_ref = served_refs().canary
    runner = (
        bentoml.depends(ModelRunner, url=runner_client.runner_url)
        if runner_client.runner_mode == "remote"
        else None
    )

    def __init__(self) -> None:
        self.model_tag = str(self.model_ref.tag)
        bundle = read_bundle(mlflow_folder(self.model_ref))
        self.contract_version = bundle.contract["version"]
        self.scorer = self.choose_scorer()
        self.monitor = ServingMonitor(
            bundle,
            self.model_tag,
            self.model_ref.info.labels,
            monitoring,
            self.model_ref.info.metadata.get("metrics"),
        )
        self.shadow = self.shadow_batcher()
        self.split = self.canary_split()
        self.pipeline = ScoringPipeline(
            self.arm("champion", self.model_ref),
            self.scorer,
            thresholds,
            self.monitor,
            self.shadow,
            worker.runner_max_batch_size,
            canary=self.arm("canary", self.canary_ref) if self.canary_ref else None,
            split=self.split,
        )
        self.background: list[asyncio.Task[None]] = []
        freeze_startup_heap(worker)

    def choose_scorer(self) -> Scorer:
        max_rows = worker.runner_max_batch_size
        if self.runner is None:
            # torch is imported only by an API worker that scores in process
            from serving.served_models import ServedModels

            models = ServedModels.load(
                self.model_ref, self.challenger_ref, self.canary_ref, "cpu", worker.torch_threads
            )
            return LocalScorer(models, max_rows)
        # where the proxy (resolved above) found the runner: the Dependency records it
        runner_url: str | None = getattr(type(self).runner, "url", None)
        if runner_url is None:  # no runner served beside this API (a test): BentoML made one here
            return LocalScorer(self.runner.models, max_rows)
        client = MatrixClient(runner_url, max(max_rows, MAX_APPLICATIONS_PER_REQUEST))
        return RemoteScorer(self.runner, client, max_rows, runner_client)

    def __is_ready__(self) -> bool:
        """Not ready while stopping or while the runner is unreachable (BentoML's ``/readyz``
        then also asks the runner itself)."""
        return self.scorer.available and not drain.draining

    def arm(self, role: Literal["champion", "canary"], model: bentoml.Model) -> Arm:
        """A model that decides: its own fitted features and, when it ships an attribution
        baseline, its own reason coder."""
        bundle = read_bundle(mlflow_folder(model))
        params = bundle.feature_params
        if bundle.baseline is None:
            log.warning("%s ships no attribution baseline: no principal reasons", model.tag)
            return Arm(role, str(model.tag), params, None)
        return Arm(role, str(model.tag), params, ReasonCoder(params.feature_names, reasons))

    def canary_split(self) -> CanarySplit | None:
        """The canary's live share, kept in the prediction log's database beside the log."""
        canary = served_refs().canary_split
        if canary is None:
            return None
        return CanarySplit(canary, TrafficSplitStore(monitoring.prediction_log_url), canary_bounds)

    def shadow_batcher(self) -> ShadowBatcher | None:
        """The challenger scored off the request path, through its own fitted features."""
        if self.challenger_ref is None:
            return None
        return ShadowBatcher(
            read_bundle(mlflow_folder(self.challenger_ref)).feature_params,
            partial(self.scorer.predict, role="challenger"),
            partial(self.monitor.record_challenger, model_tag=str(self.challenger_ref.tag)),
            max_rows=worker.runner_max_batch_size,
        )

    @bentoml.api(route="/score")
    async def score(self, applications: Applications, explain: StrictBool = False) -> ScoreResponse:
        """Score a batch of applications; each answer carries its request id, the model tag,
        and for a review or decline (every application with ``explain``) its principal
        reasons."""
        # The contract BentoML documents and its clients read. Over HTTP the request reaches
        # api/score_handler.py first, which validates with this method's input model and
        # answers with the same pipeline; this body serves in-process callers.
        return await self.pipeline.answer(applications, explain)

    @bentoml.on_startup
    async def start_background(self) -> None:
        """Drift gauges and shadow scoring, inside the serving loop and off the request path;
        a SIGTERM drains before the worker stops (serving/drain.py)."""
        stop_after_drain(drain)
        self.background.append(asyncio.create_task(self.refresh_drift()))
        if self.split is not None:  # share 0 until its first read, not awaited here: a
            # database that does not answer must not hold the worker's start past its probes
            self.background.append(asyncio.create_task(self.watch_canary(self.split)))
        if self.shadow is not None:
            self.background.append(asyncio.create_task(self.shadow.run()))

    async def refresh_drift(self) -> None:
        """Keep the drift gauges current without touching any scoring request."""
        while True:
            await asyncio.sleep(monitoring.drift_refresh_s)
            # tens of ms over a full window: off the event loop, so no request waits on it
            await asyncio.to_thread(self.monitor.drift_report)

    async def watch_canary(self, split: CanarySplit) -> None:
        """Follow the canary's live share, and take it out of traffic when it breaches a
        bound against the champion (api/canary.py)."""
        while True:
            try:
                await asyncio.to_thread(split.refresh)
                breaches = split.check()
                if breaches:
                    await asyncio.to_thread(split.roll_back, breaches)
            except Exception as error:  # the watch must outlive any failure: never run blind
                CANARY_WATCH.warning(f"canary watch failed ({type(error).__name__}: {error})")
            await asyncio.sleep(canary_bounds.refresh_s)

    @bentoml.on_shutdown
    async def flush_on_shutdown(self) -> None:
        """Score queued shadow rows, then flush the prediction log: a clean stop loses nothing."""
        for task in self.background:
            task.cancel()
        if self.shadow is not None:
            await self.shadow.flush()
        await self.scorer.close()
        self.monitor.close()
        if self.split is not None:
            self.split.store.close()

    @info_app.get("/model")
    async def model(self) -> dict[str, Any]:
        """Lineage of the live model: BentoML tag, MLflow run and version, metrics, runner.
        Never the prediction log's URL; any password in a lineage string is hidden."""
        lineage = {
            "model_tag": self.model_tag,
            "labels": dict(self.model_ref.info.labels),
            "metadata": self.model_ref.info.metadata,
            "challenger_tag": str(self.challenger_ref.tag) if self.challenger_ref else None,
            "canary": self.canary_lineage(),
            "runner": await self.scorer.describe(),
            "runner_mode": runner_client.runner_mode,
            "contract_version": self.contract_version,
            "decision_thresholds": thresholds.model_dump(),
        }
        redacted: dict[str, Any] = redact_credentials(lineage)
        return redacted

    def canary_lineage(self) -> dict[str, Any] | None:
        """The canary beside the champion: its tag, lineage, promoted and live share."""
        if self.split is None or self.canary_ref is None:
            return None
        return {
            **self.split.describe(),
            "labels": dict(self.canary_ref.info.labels),
            "metadata": self.canary_ref.info.metadata,
        }

    @info_app.get("/contract")
    async def contract(self) -> dict[str, Any]:
        """The request contract this service enforces (also in the OpenAPI schema)."""
        return contract_document()

    @info_app.get("/drift")
    async def drift(self) -> dict[str, Any]:
        """PSI per contract field and for the score, live window vs training reference."""
        return self.monitor.drift_report()


def scoring_pipeline() -> ScoringPipeline:
    """The live worker's pipeline (BentoML creates the instance after the middleware stack)."""
    instance: CreditRiskAPI = bentoml.get_current_service()
    return instance.pipeline


# The API's request path, outermost first. bentoml's decorators are typed as returning the
# class, not the Service they build.
MIDDLEWARE: tuple[tuple[Any, dict[str, Any]], ...] = (
    # counts every request; once stopping, refuses new scoring and closes connections
    (DrainGate, {"drain": drain, "refuse_paths": ("/score",), "close_connections": True}),
    # POST /score in fixed steps, and the OpenAPI document at /docs.json, built once
    (
        ScoreHandler,
        {
            "input_model": CreditRiskAPI.apis["score"].input_spec,  # type: ignore[attr-defined]
            "pipeline": scoring_pipeline,
            "document": lambda: CreditRiskAPI.openapi_spec.asdict(),  # type: ignore[attr-defined]
            "max_in_flight": settings.api_max_concurrency,
        },
    ),
)
for middleware, options in MIDDLEWARE:
    CreditRiskAPI.add_asgi_middleware(middleware, **options)  # type: ignore[attr-defined]
