"""A training run leaves a registered MLflow version with everything later stages need."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

from credit_risk.contract import CONTRACT_VERSION
from model_artifact.bundle import BASELINE_FILE, BUNDLE_FILES, TEST_SPLIT_FILE, read_bundle
from training.data import TARGET, fingerprint, load_credit_data, split
from training.fit import fit
from training.settings import TrainingConfig


def test_registered_version_carries_model_signature_bundle_metrics_and_lineage(champion):
    settings, result, _ = champion
    client = MlflowClient()
    version = client.get_model_version(settings.registered_model_name, result.registered_version)
    run = client.get_run(version.run_id)
    for metric in ("test_roc_auc", "test_log_loss", "test_brier", "test_ece", "validation_roc_auc"):
        assert metric in run.data.metrics
    assert run.data.metrics["test_roc_auc"] > 0.75
    assert run.data.tags["contract_version"] == CONTRACT_VERSION
    assert run.data.tags["data_fingerprint"] == fingerprint(load_credit_data())
    assert {"hidden", "epochs", "feature_width", "seed"} <= set(run.data.params)

    folder = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{settings.registered_model_name}/{result.registered_version}"
        )
    )
    model_info = mlflow.models.get_model_info(str(folder))
    assert model_info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"][1] == len(
        read_bundle(folder).feature_params.feature_names
    )
    assert (folder / "input_example.json").is_file()
    requirements = (folder / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements
    assert "numpy==" in requirements
    shipped = sorted([*BUNDLE_FILES, BASELINE_FILE, TEST_SPLIT_FILE])
    assert sorted(p.name for p in (folder / "extra_files").iterdir()) == shipped
    run_artifacts = {a.path for a in client.list_artifacts(version.run_id, "bundle")}
    assert run_artifacts == {f"bundle/{name}" for name in shipped}
    calibration = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="calibration.json"
            )
        ).read_text()
    )
    assert calibration["test"]


def test_bundle_holds_reference_statistics_and_golden_set(champion):
    import bentoml

    _, _, report = champion

    model = bentoml.models.get(report.bento_model_tag)
    bundle = read_bundle(Path(model.path_of("mlflow_model")))
    assert set(bundle.reference["numeric"]) >= {"income", "amount"}
    assert abs(sum(bundle.reference["categorical"]["home"]["proportions"].values()) - 1) < 1e-9
    assert len(bundle.golden["records"]) == len(bundle.golden["probabilities"]) == 12
    # the whole test split as training scored it, the golden set its first rows
    assert bundle.test_split is not None
    assert len(bundle.test_split["records"]) == len(bundle.test_split["probabilities"]) == 891
    assert bundle.test_split["probabilities"][:12] == bundle.golden["probabilities"]
    # the reasons' reference applicant: the average repayer, a full-width row, low risk
    width = len(bundle.feature_params.feature_names)
    assert bundle.baseline_row().shape == (width,)
    assert bundle.baseline["probability"] < 0.5


def test_split_is_stratified_reproducible_and_disjoint():
    frame = load_credit_data()
    first, second = split(frame, seed=7), split(frame, seed=7)
    assert first.test.equals(second.test)
    sizes = [len(first.train), len(first.validation), len(first.test)]
    assert sum(sizes) == len(frame) == 4454
    for part in (first.train, first.validation, first.test):
        assert abs(part[TARGET].mean() - frame[TARGET].mean()) < 0.01


def test_training_loop_reduces_validation_loss_on_a_small_sample(credit_splits, fitted_params):
    from credit_risk.pipeline import records_to_matrix
    from credit_risk.records import contract_records

    x = records_to_matrix(contract_records(credit_splits.train[:600]), fitted_params)
    y = credit_splits.train[TARGET].to_numpy()[:600]
    xv = records_to_matrix(contract_records(credit_splits.validation), fitted_params)
    yv = credit_splits.validation[TARGET].to_numpy()
    result = fit(x, y, xv, yv, TrainingConfig(epochs=5, hidden=(8,), patience=5))
    assert result.validation_losses[-1] < result.validation_losses[0]
    assert result.train_losses[-1] < result.train_losses[0]
    assert not result.model.training
    assert np.isfinite(result.validation_losses).all()
