"""What travels inside the model artifact besides the weights, so a model never loses its
preprocessing: fitted feature parameters, the contract it was trained for, the training
reference statistics (for drift), a golden set (for promotion), the reference applicant
that reason codes are measured from (the attribution baseline), and every test-split row with
the probability training gave it (for parity checks of a served model over HTTP).

They are MLflow ``extra_files`` of the logged model, so ``bentoml.mlflow.import_model`` carries
them into the BentoML store and ``bentoml build`` into the Bento. Reading them needs neither
MLflow nor BentoML: only the model directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from credit_risk.features import FeatureParams

MLFLOW_MODEL_FOLDER = "mlflow_model"  # where bentoml.mlflow.import_model keeps the MLflow model


class StoredModel(Protocol):
    """What is used of a ``bentoml.Model`` (kept structural so torch-only code needs no bentoml)."""

    @property
    def tag(self) -> Any: ...

    def path_of(self, item: str) -> str: ...


def mlflow_folder(model: StoredModel) -> Path:
    """The MLflow model folder inside a BentoML model imported by promotion."""
    return Path(model.path_of(MLFLOW_MODEL_FOLDER))


FEATURE_PARAMS_FILE = "feature_params.json"
CONTRACT_FILE = "contract.json"
REFERENCE_FILE = "reference_stats.json"
GOLDEN_FILE = "golden.json"
BASELINE_FILE = "baseline.json"
TEST_SPLIT_FILE = "test_split.json"
BUNDLE_FILES = (FEATURE_PARAMS_FILE, CONTRACT_FILE, REFERENCE_FILE, GOLDEN_FILE)
EXTRA_FILES_DIR = "extra_files"


@dataclass(frozen=True)
class ModelBundle:
    """The non-weight parts of a trained model, read from an MLflow model directory."""

    feature_params: FeatureParams
    contract: dict[str, Any]
    reference: dict[str, Any]
    golden: dict[str, Any]
    # {"features": [width floats], "definition": "..."}; None for a model trained before
    # reason codes existed, which then answers without principal reasons.
    baseline: dict[str, Any] | None = None
    # {"records": [...], "probabilities": [...]}: the whole test split as training scored it;
    # None for a model trained before it was logged.
    test_split: dict[str, Any] | None = None

    def baseline_row(self) -> np.ndarray | None:
        """The attribution baseline as a float32 (width,) row, if the model ships one."""
        if self.baseline is None:
            return None
        return np.asarray(self.baseline["features"], dtype=np.float32)


def read_bundle(mlflow_model_dir: Path) -> ModelBundle:
    """Load the bundle files that training logged next to the model weights."""
    folder = Path(mlflow_model_dir) / EXTRA_FILES_DIR
    missing = [name for name in BUNDLE_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"model at {mlflow_model_dir} lacks bundle files {missing}")

    def load(name: str) -> dict[str, Any]:
        content: dict[str, Any] = json.loads((folder / name).read_text())
        return content

    return ModelBundle(
        feature_params=FeatureParams.model_validate(load(FEATURE_PARAMS_FILE)),
        contract=load(CONTRACT_FILE),
        reference=load(REFERENCE_FILE),
        golden=load(GOLDEN_FILE),
        baseline=load(BASELINE_FILE) if (folder / BASELINE_FILE).is_file() else None,
        test_split=load(TEST_SPLIT_FILE) if (folder / TEST_SPLIT_FILE).is_file() else None,
    )


def write_bundle_files(folder: Path, bundle: ModelBundle) -> list[Path]:
    """Write the bundle as JSON files, returned in the order MLflow should log them."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        FEATURE_PARAMS_FILE: bundle.feature_params.model_dump(mode="json"),
        CONTRACT_FILE: bundle.contract,
        REFERENCE_FILE: bundle.reference,
        GOLDEN_FILE: bundle.golden,
    }
    if bundle.baseline is not None:
        contents[BASELINE_FILE] = bundle.baseline
    if bundle.test_split is not None:
        contents[TEST_SPLIT_FILE] = bundle.test_split
    paths = []
    for name, content in contents.items():
        path = folder / name
        path.write_text(json.dumps(content, indent=1, sort_keys=True))
        paths.append(path)
    return paths
