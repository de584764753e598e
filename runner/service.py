"""The model runner service: owns the network, batches adaptively, scales on its own.

Deployed alone (``CREDIT_RISK_RUNNER_URL`` set on the API) or spawned by the API service
locally; either way it holds the model once per worker, on CUDA when asked and present.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST
from model_artifact.champion import resolve_served_tags
from model_artifact.settings import RegistrySettings
from model_artifact.torch_scorer import select_device
from runner.coalesce import coalesced
from runner.drain import Drain, DrainGate, stop_after_drain
from runner.matrix_endpoint import MatrixEndpoint, ModelCall
from runner.models import RunnerModels
from runner.settings import RunnerSettings, WorkerSettings
from runner.worker import freeze_startup_heap, limit_torch_threads, service_logging

# BentoML packs a service's models from its class attributes, so the tags must be known when
# the class is defined: this is the one place they are resolved, once per serving process (the
# API declares the same refs, imported from here).
SERVED = resolve_served_tags(RegistrySettings())
CHAMPION_REF = bentoml.models.BentoModel(SERVED.champion)
CHALLENGER_REF = bentoml.models.BentoModel(SERVED.challenger) if SERVED.challenger else None

settings = RunnerSettings()
worker = WorkerSettings()

# BentoML 1.4.31-1.4.40 renews its client session every 100 requests (or 300 s) and closes the
# old one while requests are still in flight on it (ServerDisconnectedError in the caller under
# concurrency). Renewal exists to rebalance keep-alive connections across replicas; here it is
# off by default and the API retries the idempotent scoring call instead (docs/operations.md).
# On SIGTERM the runner keeps serving until its API has been quiet for a while: the API drains
# first and still needs it for the requests it accepted (runner/drain.py).
stopping = Drain(
    min_s=settings.runner_drain_quiet_s,
    quiet_s=settings.runner_drain_quiet_s,
    timeout_s=worker.drain_timeout_s,
)

MODEL_CALLS = ("/predict", "/predict_challenger", "/explain")

SESSION_RENEWAL = {"max_requests": settings.runner_session_max_requests, "max_age": 10.0**9}

# Calls in the matrix format (the API's) are batched by the coalescers below. BentoML's own
# adaptive batching serves its clients on the same routes: merged on axis 0 up to this size,
# waiting at most this long.
batched = bentoml.api(
    batchable=True,
    max_batch_size=settings.runner_max_batch_size,
    max_latency_ms=settings.runner_max_latency_ms,
)


@bentoml.service(
    name="credit_risk_runner",
    workers=settings.runner_workers,
    resources={"cpu": "1", "gpu": 1} if settings.runner_device == "cuda" else {"cpu": "1"},
    traffic={"timeout": settings.runner_timeout_s},
    tracing=worker.tracing(MODEL_CALLS),
    runner_connection=SESSION_RENEWAL,
    logging=service_logging(worker),
)
class ModelRunner:
    model_ref = CHAMPION_REF
    challenger_ref = CHALLENGER_REF

    def __init__(self) -> None:
        limit_torch_threads(worker)
        device = select_device(settings.runner_device)
        self.models = RunnerModels.from_refs(self.model_ref, self.challenger_ref, device)
        self.matrix_calls = model_calls(self.models)
        freeze_startup_heap()

    @bentoml.on_startup
    async def defer_stop(self) -> None:
        stop_after_drain(stopping)

    def __is_ready__(self) -> bool:
        """Not ready once stopping, so a load balancer sends it nothing new."""
        return not stopping.draining

    # async: the batch is scored on the event loop, not handed to a thread pool. A batch takes
    # well under a millisecond on CPU, less than the hand-off and thread switches it replaces.
    @batched
    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) float32 -> (n,) default probabilities; requests are merged on axis 0."""
        return self.models.predict(matrix)

    @batched
    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        """The shadow challenger's probabilities for a matrix built with its own features."""
        return self.models.predict_challenger(matrix)

    @batched
    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) Integrated Gradients contributions of the champion's columns, for the
        principal reasons of adverse decisions; batched like ``predict``."""
        return self.models.explain(matrix)

    @bentoml.api
    def describe(self) -> dict[str, Any]:
        """What this runner serves, for the API's ``GET /model`` and readiness."""
        return self.models.describe()


def model_calls(models: RunnerModels) -> dict[str, ModelCall]:
    """The matrix endpoint's calls by path (``MODEL_CALLS``), each coalesced: one model call
    for every matrix that arrives while the previous call runs, across every API worker."""
    champion = models.champion.scorer.width
    challenger = models.challenger.scorer.width if models.challenger else None
    calls = (
        (models.predict, champion),
        (models.predict_challenger, challenger),
        (models.explain, champion),
    )
    max_rows = settings.runner_max_batch_size
    return {
        path: ModelCall(coalesced(score, max_rows), width)
        for path, (score, width) in zip(MODEL_CALLS, calls, strict=True)
    }


# Outermost: counts every call, so a stopping runner outlives its API's last one.
ModelRunner.add_asgi_middleware(DrainGate, drain=stopping)  # type: ignore[attr-defined]
# The API's calls, answered before BentoML's routes (runner/matrix_endpoint.py).
ModelRunner.add_asgi_middleware(  # type: ignore[attr-defined]
    MatrixEndpoint,
    service=bentoml.get_current_service,
    max_rows=max(settings.runner_max_batch_size, MAX_APPLICATIONS_PER_REQUEST),
)
