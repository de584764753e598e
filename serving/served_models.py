"""What a process that scores holds: the champion, and beside it a shadow challenger and a
canary when promoted, on one device.

The runner service serves it; with ``CREDIT_RISK_RUNNER_MODE=inprocess`` the API worker holds
one itself and skips the hop. This is the one serving module that imports torch, so an API
worker that scores through a runner never loads it.

Torch's intra-op thread pool is sized here, before the first model call: a worker scores small
batches, a second torch thread brings no speed to a one-row call, and its OpenMP spin-wait
burned 0.77 ms of CPU per request in the API worker (measured per thread with psutil under 16
connections; docs/performance.md). Scale with workers and replicas, not threads.
"""

from __future__ import annotations

from typing import Any, Literal

import bentoml
import numpy as np
import torch

from model_artifact.loaded_model import LoadedModel
from model_artifact.torch_scorer import select_device
from monitoring.metrics import RUNNER_BATCH_ROWS

Role = Literal["champion", "challenger", "canary"]


class ServedModels:
    def __init__(
        self,
        champion: LoadedModel,
        challenger: LoadedModel | None,
        canary: LoadedModel | None = None,
    ) -> None:
        self.champion = champion
        self.challenger = challenger
        self.canary = canary

    @classmethod
    def load(
        cls,
        champion: bentoml.Model,
        challenger: bentoml.Model | None,
        canary: bentoml.Model | None,
        device: Literal["auto", "cpu", "cuda"],
        torch_threads: int,
    ) -> ServedModels:
        torch.set_num_threads(torch_threads)
        on = select_device(device)

        def load(model: bentoml.Model | None) -> LoadedModel | None:
            return None if model is None else LoadedModel.from_bento_model(model, on)

        return cls(LoadedModel.from_bento_model(champion, on), load(challenger), load(canary))

    def model(self, role: Role) -> LoadedModel:
        model = {"champion": self.champion, "challenger": self.challenger, "canary": self.canary}
        served = model[role]
        if served is None:
            raise LookupError(f"no {role} is configured")
        return served

    def width(self, role: Role) -> int | None:
        """The columns the role's model takes; None when no such model is served."""
        try:
            return self.model(role).scorer.width
        except LookupError:
            return None

    def predict(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        """(n, width) float32 -> (n,) default probabilities of the role's model, for a matrix
        built with that model's own features."""
        model = self.model(role)
        RUNNER_BATCH_ROWS.labels(role).observe(len(matrix))
        return model.predict(matrix)

    def explain(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        """The role's Integrated Gradients contributions, (n, width)."""
        return self.model(role).attribute(matrix)

    def describe(self) -> dict[str, Any]:
        return {
            "model_tag": self.champion.tag,
            "challenger_tag": self.challenger.tag if self.challenger else None,
            "canary_tag": self.canary.tag if self.canary else None,
            "device": str(self.champion.scorer.device),
            "feature_width": self.champion.scorer.width,
            "explains": self.champion.bundle.baseline is not None,
        }
