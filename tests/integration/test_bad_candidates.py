"""Each promotion gate refuses the real failure it exists for, in its own words: a network
trained on shuffled labels, weights corrupted on disk in the registered artifact, a model
trained under a changed contract, a model logged by a different environment. A refusal
leaves the MLflow aliases, the BentoML store and the champion record exactly as they were."""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import bentoml
import numpy as np
import pytest
from bentoml.exceptions import NotFound
from mlflow import MlflowClient
from tests_support import TINY_CONFIG

import training.train
from credit_risk.contract import contract_document
from model_artifact.champion import read_champion
from model_artifact.torch_scorer import EXPORTED_PROGRAM_PATH
from training.data import TARGET, load_credit_data
from training.promote import main, promote
from training.settings import TrainingConfig
from training.train import TrainResult, pip_requirements, train

pytestmark = pytest.mark.slow

FIRST_LAYER_WEIGHTS = "model/data/weights/weight_0"  # inside the torch.export archive
OTHER_NUMPY = "1.26.4"


def stores(settings) -> tuple[dict[str, str], object, list[str]]:
    """Everything a refusal must leave alone: every MLflow alias of the registered model, the
    champion record, and the BentoML store's listing."""
    aliases = MlflowClient().get_registered_model(settings.registered_model_name).aliases
    tags = sorted(str(model.tag) for model in bentoml.models.list())
    return dict(aliases), read_champion(settings.champion_file), tags


def refused(settings, result: TrainResult) -> dict[str, str]:
    """Promote the version; assert nothing moved and nothing stayed imported; return the
    failed gates' details by gate name."""
    before = stores(settings)
    report = promote(settings, version=result.registered_version)
    assert not report.promoted
    assert stores(settings) == before
    with pytest.raises(NotFound):
        bentoml.models.get(report.bento_model_tag)
    return {gate.name: gate.detail for gate in report.gates if not gate.passed}


def trained_with(monkeypatch, settings, name: str, replacement: Callable[..., Any]) -> TrainResult:
    """A tiny candidate trained by the real ``train`` with one of its inputs replaced."""
    monkeypatch.setattr(training.train, name, replacement)
    return train(TrainingConfig(**TINY_CONFIG), settings)


def registered_weights(settings, version: str) -> Path:
    """The exported network of a registered version where the artifact store keeps it (the
    test store is local), not a downloaded copy: corrupting it corrupts the registry."""
    uri = MlflowClient().get_model_version_download_uri(settings.registered_model_name, version)
    weights = Path(urlparse(uri).path) / EXPORTED_PROGRAM_PATH
    assert weights.is_file(), uri
    return weights


def negate_first_layer(weights: Path) -> None:
    """Bit rot that still loads: the stored (uncompressed) first-layer tensor is overwritten in
    place with its negation; the archive's CRC is now wrong, and torch does not check it."""
    with zipfile.ZipFile(weights) as archive:
        entry = archive.getinfo(FIRST_LAYER_WEIGHTS)
    assert entry.compress_type == zipfile.ZIP_STORED
    content = bytearray(weights.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", content, entry.header_offset + 26)
    start = entry.header_offset + 30 + name_length + extra_length
    tensor = np.frombuffer(bytes(content[start : start + entry.file_size]), dtype=np.float32)
    content[start : start + entry.file_size] = (-tensor).tobytes()
    weights.write_bytes(bytes(content))


def truncate(weights: Path) -> None:
    """An interrupted upload or copy: the first half of the archive."""
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) // 2])


def test_model_trained_on_shuffled_labels_is_refused_by_the_metric_floor(
    champion, monkeypatch, capsys
):
    settings, _, _ = champion

    def shuffled_labels():
        frame = load_credit_data()
        frame[TARGET] = np.random.default_rng(0).permutation(frame[TARGET].to_numpy())
        return frame

    noise = trained_with(monkeypatch, settings, "load_credit_data", shuffled_labels)
    assert 0.4 < noise.metrics["test_roc_auc"] < 0.6  # it learned nothing, as intended

    failed = refused(settings, noise)
    assert list(failed) == ["metric_floor"]
    assert re.fullmatch(
        r"test_roc_auc 0\.[45]\d{3} \(floor 0\.7500\); champion v\d+ 0\.\d{4}, max drop 0\.02",
        failed["metric_floor"],
    )
    capsys.readouterr()
    assert main(["--version", noise.registered_version]) == 1
    printed = capsys.readouterr().out
    assert f"[FAIL] metric_floor: {failed['metric_floor']}" in printed
    assert f"REFUSED credit-risk v{noise.registered_version}" in printed


@pytest.mark.parametrize(
    ("corrupt", "gate", "message"),
    [
        (
            negate_first_layer,
            "golden_set",
            r"12 rows, max \|error\| \d\.\d\de-0[1-3] \(tolerance 1e-05\); "
            r"\d+ decision flips vs champion",
        ),
        (
            truncate,
            "loads",
            r"credit-risk:mlflow-v\d+ does not load: BadZipFile: File is not a zip file",
        ),
    ],
    ids=["bit_rot_still_loads", "truncated_archive"],
)
def test_weights_corrupted_in_the_registry_are_refused(champion, candidate, corrupt, gate, message):
    settings, _, _ = champion
    corrupt(registered_weights(settings, candidate.registered_version))
    failed = refused(settings, candidate)
    assert list(failed) == [gate]
    assert re.fullmatch(message, failed[gate]), failed[gate]


def renamed_income(contract: dict[str, Any]) -> None:
    contract["fields"] = ["monthly_income" if f == "income" else f for f in contract["fields"]]
    properties = contract["application_schema"]["properties"]
    properties["monthly_income"] = properties.pop("income")


def home_without_ignore(contract: dict[str, Any]) -> None:
    home = contract["application_schema"]["properties"]["home"]["anyOf"][0]
    home["enum"] = [level for level in home["enum"] if level != "ignore"]


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (renamed_income, "served only ['income'], model only ['monthly_income']"),
        (home_without_ignore, "definition changed ['home']"),
    ],
    ids=["field_renamed", "field_levels_changed"],
)
def test_model_trained_under_a_changed_contract_is_refused_by_the_contract_gate(
    champion, monkeypatch, change, difference
):
    """The version number was not bumped: the gate compares the fields themselves."""
    settings, _, _ = champion

    def changed_contract() -> dict[str, Any]:
        document = contract_document()
        change(document)
        return document

    result = trained_with(monkeypatch, settings, "contract_document", changed_contract)
    failed = refused(settings, result)
    assert list(failed) == ["contract"]
    assert (
        failed["contract"] == f"model contract 1.0.0 vs served 1.0.0; fields differ: {difference}"
    )


def test_model_logged_by_another_environment_is_refused_by_dependency_parity(champion, monkeypatch):
    settings, _, _ = champion
    serving = pip_requirements()
    trained_on = [f"numpy=={OTHER_NUMPY}" if pin.startswith("numpy==") else pin for pin in serving]
    assert trained_on != serving

    result = trained_with(monkeypatch, settings, "pip_requirements", lambda: trained_on)
    failed = refused(settings, result)
    assert list(failed) == ["dependency_parity"]
    installed = next(pin for pin in serving if pin.startswith("numpy==")).split("==")[1]
    assert failed["dependency_parity"] == f"numpy trained {OTHER_NUMPY} / serving {installed}"
