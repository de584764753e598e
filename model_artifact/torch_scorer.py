"""The torch scorer: load the exported network and score float32 matrices on a device.

Imports neither BentoML nor MLflow, so the same code runs in the runner service, in the
batch scorer, in benchmarks and alone on a GPU machine that has only torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from model_artifact.attribution import attribute

# Where ``mlflow.pytorch`` (pt2 format) puts the ``torch.export`` archive in a model folder.
EXPORTED_PROGRAM_PATH = Path("data") / "model.pt2"

DeviceChoice = Literal["auto", "cpu", "cuda"]


def select_device(requested: DeviceChoice) -> torch.device:
    """CUDA when asked for (or ``auto`` and present), else CPU; asking for absent CUDA fails."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runner device 'cuda' requested but CUDA is not available")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_exported_module(mlflow_model_dir: Path) -> nn.Module:
    """The network from an MLflow pt2 model folder, via ``torch.export`` (no pickle, no code)."""
    program = torch.export.load(str(Path(mlflow_model_dir) / EXPORTED_PROGRAM_PATH))
    return program.module()


class TorchScorer:
    """Holds one network on one device and turns matrices into default probabilities."""

    def __init__(self, module: nn.Module, device: torch.device, width: int) -> None:
        self.device = device
        self.width = width
        self.module = module.to(device)

    @classmethod
    def from_model_dir(
        cls, mlflow_model_dir: Path, device: torch.device, width: int
    ) -> TorchScorer:
        return cls(load_exported_module(mlflow_model_dir), device, width)

    def attribute(self, matrix: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """(n, width) Integrated Gradients contributions against ``baseline`` (width,)."""
        return attribute(self.module, matrix, baseline, self.device)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """(n, width) float32 -> (n,) float32 probabilities; n may be 0."""
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
        with torch.inference_mode():
            probabilities = self.module(tensor.to(self.device, non_blocking=True))
        scores: np.ndarray = probabilities.reshape(-1).float().cpu().numpy()
        return scores
