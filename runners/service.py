"""The model runner service: owns the network, batches without a wait, scales on its own.

Deployed alone (``bentoml serve runners.service:ModelRunner``, its URL in the API's
``CREDIT_RISK_RUNNER_URL``) or spawned beside the API by ``service.py``; either way it holds the
models once per worker, on CUDA when asked and present. Torch is imported when a worker builds
the class (``serving/served_models.py``), not when this module is read: the API imports this
class to declare its dependency and never scores with it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import bentoml
import numpy as np

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST
from runners.matrix_endpoint import MatrixEndpoint, ModelRoute
from runners.settings import RunnerSettings
from serving.coalesce import coalesced
from serving.drain import Drain, DrainGate, stop_after_drain
from serving.model_refs import served_refs
from serving.settings import WorkerSettings
from serving.worker import freeze_startup_heap, service_logging

if TYPE_CHECKING:
    from serving.served_models import Role, ServedModels

settings = RunnerSettings()
worker = WorkerSettings()

# On SIGTERM the runner keeps serving until its API has been quiet for a while: the API drains
# first and still needs it for the requests it accepted (serving/drain.py).
drain = Drain(
    min_s=settings.runner_drain_quiet_s,
    quiet_s=settings.runner_drain_quiet_s,
    timeout_s=worker.drain_timeout_s,
)

# The matrix endpoint's calls: the path names the model call and the model's role.
MODEL_CALLS: dict[str, tuple[str, Role]] = {
    "/predict": ("predict", "champion"),
    "/explain": ("explain", "champion"),
    "/predict_challenger": ("predict", "challenger"),
    "/predict_canary": ("predict", "canary"),
    "/explain_canary": ("explain", "canary"),
}
MODEL_PATHS = tuple(MODEL_CALLS)

# BentoML 1.4.31-1.4.40 renews its client session every 100 requests (or 300 s) and closes the
# old one while requests are still in flight on it (ServerDisconnectedError in the caller under
# concurrency). Renewal exists to rebalance keep-alive connections across replicas; here it is
# off by default and the API retries the idempotent scoring call instead (docs/operations.md).
SESSION_RENEWAL = {"max_requests": settings.runner_session_max_requests, "max_age": 10.0**9}

# The API's calls in the matrix format are joined by the coalescers below. BentoML's own
# adaptive batching serves its clients on the same routes: merged on axis 0 up to this size,
# waiting at most this long.
batched = bentoml.api(
    batchable=True,
    max_batch_size=worker.runner_max_batch_size,
    max_latency_ms=settings.runner_max_latency_ms,
)


@bentoml.service(
    name="credit_risk_runner",
    workers=settings.runner_workers,
    resources={"cpu": "1", "gpu": 1} if settings.runner_device == "cuda" else {"cpu": "1"},
    traffic={"timeout": settings.runner_timeout_s},
    tracing=worker.tracing(MODEL_PATHS),
    runner_connection=SESSION_RENEWAL,
    logging=service_logging(worker),
)
class ModelRunner:
    model_ref = served_refs().champion
    challenger_ref = served_refs().challenger
    canary_ref = served_refs().canary

    def __init__(self) -> None:
        from serving.served_models import ServedModels  # torch: in the runner's workers only

        self.models = ServedModels.load(
            self.model_ref,
            self.challenger_ref,
            self.canary_ref,
            settings.runner_device,
            worker.torch_threads,
        )
        self.model_routes = model_routes(self.models, worker.runner_max_batch_size)
        freeze_startup_heap(worker)

    @bentoml.on_startup
    async def defer_stop(self) -> None:
        stop_after_drain(drain)

    def __is_ready__(self) -> bool:
        """Not ready once stopping, so a load balancer sends it nothing new."""
        return not drain.draining

    # async: the batch is scored on the event loop, not handed to a thread pool. A batch takes
    # well under a millisecond on CPU, less than the hand-off and thread switches it replaces.
    @batched
    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) float32 -> (n,) default probabilities; requests are merged on axis 0."""
        return self.models.predict(matrix)

    @batched
    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        """The shadow challenger's probabilities for a matrix built with its own features."""
        return self.models.predict(matrix, "challenger")

    @batched
    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) Integrated Gradients contributions of the champion's columns, for the
        principal reasons of adverse decisions; batched like ``predict``."""
        return self.models.explain(matrix)

    @bentoml.api
    def describe(self) -> dict[str, Any]:
        """What this runner serves, for the API's ``GET /model`` and readiness."""
        return self.models.describe()


def model_routes(models: ServedModels, max_rows: int) -> dict[str, ModelRoute]:
    """The matrix endpoint's routes by path (``MODEL_CALLS``), each coalesced: one model call
    for every matrix that arrives while the previous call runs, across every API worker. A
    role without a model still gets its route (width None): the call answers 404."""
    calls = {"predict": models.predict, "explain": models.explain}
    return {
        path: ModelRoute(coalesced(partial(calls[call], role=role), max_rows), models.width(role))
        for path, (call, role) in MODEL_CALLS.items()
    }


# bentoml's decorators are typed as returning the class, not the Service they build.
# In request order: the drain gate counts every call (a stopping runner outlives its API's last
# one), then the API's matrix calls are answered before BentoML's routes.
ModelRunner.add_asgi_middleware(DrainGate, drain=drain)  # type: ignore[attr-defined]
ModelRunner.add_asgi_middleware(  # type: ignore[attr-defined]
    MatrixEndpoint,
    service=bentoml.get_current_service,
    max_rows=max(worker.runner_max_batch_size, MAX_APPLICATIONS_PER_REQUEST),
)
