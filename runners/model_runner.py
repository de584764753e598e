"""The model runner service: owns the network, batches adaptively, scales on its own.

Deployed alone (``CREDIT_RISK_RUNNER_URL`` set on the API) or spawned by the API service
locally; either way it holds the model once per worker, on CUDA when asked and present.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np

from credit_risk.config import get_settings
from runners.core import RunnerCore
from runners.startup import freeze_startup_heap, limit_torch_threads
from runners.torch_core import select_device

settings = get_settings()
CHALLENGER_TAG = settings.challenger_model_tag()

# BentoML 1.4.31-1.4.40 renews its client session every 100 requests (or 300 s) and closes the
# old one while requests are still in flight on it (ServerDisconnectedError in the caller under
# concurrency). Renewal exists to rebalance keep-alive connections across replicas; here it is
# off by default (settings.runner_session_max_requests) and the API retries the idempotent
# scoring call instead. `python -m loadtests.compare renewal` measures the choices.
SESSION_RENEWAL = {"max_requests": settings.runner_session_max_requests, "max_age": 10.0**9}


# Adaptive batching: requests are merged on axis 0 up to this size, waiting at most this long.
batched = bentoml.api(
    batchable=True,
    max_batch_size=settings.runner_max_batch_size,
    max_latency_ms=settings.runner_max_latency_ms,
)


def runner_resources() -> dict[str, Any]:
    resources: dict[str, Any] = {"cpu": "1"}
    if settings.runner_device == "cuda":
        resources["gpu"] = 1
    return resources


@bentoml.service(
    name="credit_risk_runner",
    workers=settings.runner_workers,
    resources=runner_resources(),
    traffic={"timeout": settings.runner_timeout_s},
    runner_connection=SESSION_RENEWAL,
    logging=settings.service_logging(),
)
class ModelRunner:
    model_ref = bentoml.models.BentoModel(settings.served_model_tag())
    challenger_ref = bentoml.models.BentoModel(CHALLENGER_TAG) if CHALLENGER_TAG else None

    def __init__(self) -> None:
        limit_torch_threads()
        device = select_device(settings.runner_device)
        self.core = RunnerCore.from_refs(self.model_ref, self.challenger_ref, device)
        freeze_startup_heap()

    # async: the batch is scored on the event loop, not handed to a thread pool. A batch takes
    # well under a millisecond on CPU, less than the hand-off and thread switches it replaces.
    @batched
    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) float32 -> (n,) default probabilities; requests are merged on axis 0."""
        return self.core.predict(matrix)

    @batched
    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        """The shadow challenger's probabilities for a matrix built with its own features."""
        return self.core.predict_challenger(matrix)

    @bentoml.api
    def describe(self) -> dict[str, Any]:
        """What this runner serves, for the API's ``GET /model`` and readiness."""
        return self.core.describe()
