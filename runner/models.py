"""What a runner holds, wherever it runs: the champion (and a shadow challenger) on one device.

The runner service wraps it in BentoML APIs with adaptive batching; with
``CREDIT_RISK_RUNNER_MODE=inprocess`` the API service holds one itself and skips the hop.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np
import torch

from model_artifact.loaded_model import LoadedModel
from monitoring.metrics import RUNNER_BATCH_ROWS


class RunnerModels:
    def __init__(self, champion: LoadedModel, challenger: LoadedModel | None) -> None:
        self.champion = champion
        self.challenger = challenger

    @classmethod
    def from_refs(
        cls, champion: bentoml.Model, challenger: bentoml.Model | None, device: torch.device
    ) -> RunnerModels:
        load = LoadedModel.from_bento_model
        return cls(load(champion, device), load(challenger, device) if challenger else None)

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
