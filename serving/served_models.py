"""What a process that scores holds: the champion (and a shadow challenger) on one device.

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


class ServedModels:
    def __init__(self, champion: LoadedModel, challenger: LoadedModel | None) -> None:
        self.champion = champion
        self.challenger = challenger

    @classmethod
    def load(
        cls,
        champion: bentoml.Model,
        challenger: bentoml.Model | None,
        device: Literal["auto", "cpu", "cuda"],
        torch_threads: int,
    ) -> ServedModels:
        torch.set_num_threads(torch_threads)
        on = select_device(device)
        load = LoadedModel.from_bento_model
        return cls(load(champion, on), load(challenger, on) if challenger else None)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) float32 -> (n,) default probabilities."""
        RUNNER_BATCH_ROWS.labels("champion").observe(len(matrix))
        return self.champion.predict(matrix)

    def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        """The challenger's probabilities for a matrix built with its own features."""
        if self.challenger is None:
            raise LookupError("no challenger is configured")
        RUNNER_BATCH_ROWS.labels("challenger").observe(len(matrix))
        return self.challenger.predict(matrix)

    def explain(self, matrix: np.ndarray) -> np.ndarray:
        """The champion's Integrated Gradients contributions, (n, width)."""
        return self.champion.attribute(matrix)

    def describe(self) -> dict[str, Any]:
        return {
            "model_tag": self.champion.tag,
            "challenger_tag": self.challenger.tag if self.challenger else None,
            "device": str(self.champion.scorer.device),
            "feature_width": self.champion.scorer.width,
            "explains": self.champion.bundle.baseline is not None,
        }
