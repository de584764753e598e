"""Train/serve parity: the test split's rows, sent through the service path as JSON, give the
training pipeline's matrix bit for bit and its probabilities within 1e-6."""

from __future__ import annotations

import asyncio

import bentoml
import numpy as np
import torch

from api.scorer import LocalScorer
from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST, ScoreRequest
from credit_risk.pipeline import records_to_matrix
from credit_risk.records import contract_records
from model_artifact.bundle import mlflow_folder, read_bundle
from model_artifact.torch_scorer import TorchScorer, load_exported_module
from training.data import load_credit_data, split


class SpyModels:
    """Delegates to the real models and keeps every matrix the API scored."""

    def __init__(self, models):
        self.models = models
        self.matrices: list[np.ndarray] = []

    def predict(self, matrix, role="champion"):
        self.matrices.append(np.array(matrix, copy=True))
        return self.models.predict(matrix, role)

    def explain(self, matrix, role="champion"):
        return self.models.explain(matrix, role)


def test_service_path_reproduces_training_matrix_and_probabilities(champion):
    from service import CreditRiskAPI

    _, _, report = champion
    test_rows = split(load_credit_data(), seed=42).test  # the split training used (seed 42)
    records = contract_records(test_rows)
    folder = mlflow_folder(bentoml.models.get(report.bento_model_tag))
    params = read_bundle(folder).feature_params

    training_matrix = records_to_matrix(records, params)  # exactly what train() computed
    trained = TorchScorer(
        load_exported_module(folder), torch.device("cpu"), training_matrix.shape[1]
    )
    training_probabilities = trained.predict(training_matrix)

    api = CreditRiskAPI()  # no runner served beside it: BentoML builds one in this process
    spy = SpyModels(api.scorer.models)  # what the scorer hands the model (over HTTP: tests/e2e)
    api.pipeline.scorer = LocalScorer(spy, api.scorer.calls["predict", "champion"].max_rows)
    served: list[float] = []
    for start in range(0, len(records), MAX_APPLICATIONS_PER_REQUEST):
        chunk = records[start : start + MAX_APPLICATIONS_PER_REQUEST]
        body = ScoreRequest.model_validate({"applications": chunk}).model_dump_json(
            exclude_none=True
        )
        request = ScoreRequest.model_validate_json(body)  # what the HTTP layer parses
        response = asyncio.run(api.score(request.applications))
        served += [r.probability_default for r in response.results]

    served_matrix = np.concatenate(spy.matrices)
    assert served_matrix.dtype == training_matrix.dtype == np.float32
    np.testing.assert_array_equal(served_matrix, training_matrix)
    np.testing.assert_allclose(np.array(served), training_probabilities, rtol=0, atol=1e-6)
    assert len(served) == len(test_rows) == 891
