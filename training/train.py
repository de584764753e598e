"""Train the credit-risk network and log everything a later stage needs to MLflow.

Usage: ``python -m training.train`` (knobs: ``CREDIT_RISK_TRAIN_*``; store:
``MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db``). Registers a new version of
``credit-risk`` whose artifact carries its own preprocessing, contract, reference statistics
and golden set, so promotion and serving need nothing but the model.
"""

from __future__ import annotations

import argparse
import logging
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
from mlflow.models import infer_signature

from credit_risk.contract import CONTRACT_VERSION, contract_document
from credit_risk.estimate import expected_roc_auc
from credit_risk.features import fit_feature_params, raw_columns_from_records
from credit_risk.pipeline import records_to_matrix
from credit_risk.quality import calibration_table, evaluate
from credit_risk.records import contract_records
from model_artifact.bundle import ModelBundle, write_bundle_files
from model_artifact.settings import SOURCE_ROOT, RegistrySettings
from model_artifact.torch_scorer import TorchScorer, select_device
from training.data import TARGET, fingerprint, load_credit_data, sample, split
from training.fit import fit
from training.reference import reference_statistics
from training.settings import TrainingConfig

log = logging.getLogger(__name__)

# The serving environment must reproduce these exactly; promotion checks parity against them.
PINNED_PACKAGES = ("torch", "numpy", "pydantic", "mlflow")


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    registered_version: str | None
    metrics: dict[str, float]


def pip_requirements() -> list[str]:
    """Exact versions of what the model needs at inference, local labels (+cpu) dropped."""
    return [f"{name}=={version(name).split('+')[0]}" for name in PINNED_PACKAGES]


def git_commit() -> str:
    """The commit the code was trained from, or ``unknown`` outside a git checkout."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return completed.stdout.strip()


def repaid_reference(matrix: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The attribution baseline: the average applicant who repaid, so a reason reads as "what
    sets this applicant apart from a typical good loan" (a zero row would be no one at all)."""
    reference: np.ndarray = matrix[labels == 0].mean(axis=0).astype(np.float32)
    return reference


def ensure_experiment(registry: RegistrySettings) -> None:
    """Select the experiment, creating it with the configured artifact location if new. A
    tracking server given a folder on this machine would register models that only this
    machine can read, so that pairing is refused (leave the location unset: the server's
    artifact proxy, or name shared storage such as ``s3://``)."""
    location = registry.mlflow_artifact_location
    remote = urlparse(registry.mlflow_tracking_uri).scheme in ("http", "https")
    if remote and location is not None and urlparse(location).scheme in ("", "file"):
        raise ValueError(
            f"CREDIT_RISK_MLFLOW_ARTIFACT_LOCATION {location!r} is local to this machine but "
            f"the tracking server {registry.mlflow_tracking_uri} is shared: unset it or use "
            "shared storage"
        )
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(registry.experiment_name) is None:
        client.create_experiment(
            registry.experiment_name, artifact_location=registry.mlflow_artifact_location
        )
    mlflow.set_experiment(registry.experiment_name)


def train(config: TrainingConfig, registry: RegistrySettings) -> TrainResult:
    mlflow.set_tracking_uri(registry.mlflow_tracking_uri)
    ensure_experiment(registry)  # a store that cannot take the run fails before training
    frame = sample(load_credit_data(), config.sample_rows, config.split_seed)
    splits = split(frame, config.split_seed)
    records = {
        name: contract_records(getattr(splits, name)) for name in ("train", "validation", "test")
    }
    labels = {name: getattr(splits, name)[TARGET].to_numpy() for name in records}

    train_raw = raw_columns_from_records(records["train"])
    params = fit_feature_params(train_raw)
    matrices = {name: records_to_matrix(rows, params) for name, rows in records.items()}
    result = fit(
        matrices["train"], labels["train"], matrices["validation"], labels["validation"], config
    )
    scorer = TorchScorer(result.model, select_device("cpu"), len(params.feature_names))
    scores = {name: scorer.predict(matrix) for name, matrix in matrices.items()}

    metrics = {"best_epoch": float(result.best_epoch)}
    for name in records:
        metrics |= evaluate(labels[name], scores[name], name)
        # what the serving estimate of AUC (no labels) says of this split: its live reference
        estimated = expected_roc_auc(scores[name])  # None only when every score is equal
        metrics[f"{name}_estimated_roc_auc"] = 0.5 if estimated is None else estimated
    golden_rows = min(config.golden_rows, len(records["test"]))
    baseline = repaid_reference(matrices["train"], labels["train"])
    bundle = ModelBundle(
        feature_params=params,
        contract=contract_document(),
        reference=reference_statistics(train_raw, scores["train"]),
        golden={
            "records": records["test"][:golden_rows],
            "probabilities": scores["test"][:golden_rows].tolist(),
        },
        baseline={
            "features": baseline.tolist(),
            "probability": float(scorer.predict(baseline[None])[0]),
            "definition": "mean feature row of the training applicants who repaid",
        },
        test_split={"records": records["test"], "probabilities": scores["test"].tolist()},
    )
    data_id = fingerprint(frame)

    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as folder:
        mlflow.set_tags(
            {
                "data_fingerprint": data_id,
                "contract_version": CONTRACT_VERSION,
                "git_commit": git_commit(),
                "python_version": platform.python_version(),
            }
        )
        mlflow.log_params(
            config.model_dump(mode="json")
            | {
                "rows": len(frame),
                "train_rows": len(records["train"]),
                "feature_width": len(params.feature_names),
                "data_fingerprint": data_id,
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_dict(
            {"test": calibration_table(labels["test"], scores["test"].astype(np.float64))},
            "calibration.json",
        )
        extra_files = write_bundle_files(Path(folder), bundle)
        for path in extra_files:
            mlflow.log_artifact(str(path), artifact_path="bundle")
        example = matrices["validation"][:5]
        info = mlflow.pytorch.log_model(
            result.model,
            name="model",
            input_example=example,
            signature=infer_signature(example, scorer.predict(example)),
            pip_requirements=pip_requirements(),
            extra_files=[str(path) for path in extra_files],
            registered_model_name=registry.registered_model_name if config.register_model else None,
        )
    registered = str(info.registered_model_version) if config.register_model else None
    log.info(
        "run %s: test ROC AUC %.3f, registered %s version %s",
        run.info.run_id,
        metrics["test_roc_auc"],
        registry.registered_model_name,
        registered,
    )
    return TrainResult(run.info.run_id, info.model_uri, registered, metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train on the credit data and register a new version in MLflow; every knob "
        "is an environment variable (CREDIT_RISK_TRAIN_*, MLFLOW_TRACKING_URI: see README).",
    )
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train(TrainingConfig(), RegistrySettings())
    print(
        f"trained run={result.run_id} version={result.registered_version} "
        f"test_roc_auc={result.metrics['test_roc_auc']:.4f} "
        f"test_log_loss={result.metrics['test_log_loss']:.4f} "
        f"test_ece={result.metrics['test_ece']:.4f}"
    )


if __name__ == "__main__":
    main()
