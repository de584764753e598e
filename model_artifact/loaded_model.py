"""A model as served: its bundle (preprocessing, contract, references) and its torch scorer,
both read from one MLflow model folder, the way the runner, promotion and batch scoring see it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from credit_risk.matrix import to_matrix
from credit_risk.pipeline import records_to_matrix
from model_artifact.bundle import ModelBundle, StoredModel, mlflow_folder, read_bundle
from model_artifact.champion import resolve_served_tags
from model_artifact.settings import RegistrySettings
from model_artifact.torch_scorer import TorchScorer


@dataclass(frozen=True)
class LoadedModel:
    tag: str
    bundle: ModelBundle
    scorer: TorchScorer

    @classmethod
    def from_mlflow_dir(cls, tag: str, folder: Path, device: torch.device) -> LoadedModel:
        bundle = read_bundle(folder)
        width = len(bundle.feature_params.feature_names)
        return cls(tag, bundle, TorchScorer.from_model_dir(folder, device, width))

    @classmethod
    def from_bento_model(cls, model: StoredModel, device: torch.device) -> LoadedModel:
        return cls.from_mlflow_dir(str(model.tag), mlflow_folder(model), device)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """A matrix from elsewhere (the API, over the hop) is checked against this model's
        columns before it reaches the network."""
        return self.scorer.predict(to_matrix(matrix, self.bundle.feature_params.feature_names))

    def attribute(self, matrix: np.ndarray) -> np.ndarray:
        """Each column's contribution to the probability against the shipped baseline."""
        baseline = self.bundle.baseline_row()
        if baseline is None:
            raise LookupError(f"model {self.tag} ships no attribution baseline: retrain it")
        columns = self.bundle.feature_params.feature_names
        return self.scorer.attribute(to_matrix(matrix, columns), baseline)

    def score_records(self, records: list[dict[str, object]]) -> np.ndarray:
        """Contract records to probabilities through the one shared feature pipeline."""
        return self.scorer.predict(records_to_matrix(records, self.bundle.feature_params))


def load_served_model(registry: RegistrySettings, device: torch.device) -> LoadedModel:
    """The champion from the BentoML store, for offline use (batch scoring, benchmarks)."""
    import bentoml  # the store; torch-only callers of this module never need it

    stored = bentoml.models.get(resolve_served_tags(registry).champion)
    return LoadedModel.from_bento_model(stored, device)
