"""The model runner service: owns the network, batches adaptively, scales on its own.

Deployed alone (``CREDIT_RISK_RUNNER_URL`` set on the API) or spawned by the API service
locally; either way it holds the model once per worker, on CUDA when asked and present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from credit_risk.config import get_settings
from credit_risk.matrix import check_matrix
from runners.loaded_model import MLFLOW_MODEL_FOLDER, LoadedModel
from runners.torch_core import select_device

settings = get_settings()

# BentoML 1.4.31-1.4.40 renews its client session every 100 requests (or 300 s) and closes the
# old one while requests are still in flight on it (ServerDisconnectedError in the caller under
# concurrency). Renewal exists to rebalance keep-alive connections across replicas; here it is
# off by default (settings.runner_session_max_requests) and the API retries the idempotent
# scoring call instead. loadtests/session_renewal_check.py measures both choices.
SESSION_RENEWAL = {"max_requests": settings.runner_session_max_requests, "max_age": 10.0**9}


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
)
class ModelRunner:
    model_ref = bentoml.models.BentoModel(settings.served_model_tag())

    def __init__(self) -> None:
        folder = Path(self.model_ref.path_of(MLFLOW_MODEL_FOLDER))
        device = select_device(settings.runner_device)
        self.model = LoadedModel.from_mlflow_dir(str(self.model_ref.tag), folder, device)
        self.width = self.model.scorer.width

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.runner_max_batch_size,
        max_latency_ms=settings.runner_max_latency_ms,
    )
    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) float32 -> (n,) default probabilities; requests are merged on axis 0."""
        return self.model.scorer.predict(check_matrix(matrix, self.width))

    @bentoml.api
    def describe(self) -> dict[str, Any]:
        """What this runner serves, for the API's ``GET /model`` and readiness."""
        return {
            "model_tag": self.model.tag,
            "device": str(self.model.scorer.device),
            "feature_width": self.width,
        }
