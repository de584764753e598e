"""Promotion imports with lineage, refuses bad candidates leaving both stores unchanged, and
rollback restores the previous champion in one call."""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import mlflow
import pytest
from bentoml.exceptions import NotFound
from mlflow import MlflowClient
from tests_support import TINY_CONFIG

from model_artifact.champion import read_champion, resolve_served_tags
from training.promote import bento_tag, main, promote, rollback
from training.registry import resolve
from training.settings import PromotionSettings, TrainingConfig
from training.train import train


def artifact_dir(settings, version: str) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(f"models:/{settings.registered_model_name}/{version}")
    )


@pytest.fixture
def candidate(champion):
    """A freshly trained, registered, not yet promoted version."""
    settings, _, _ = champion
    return train(TrainingConfig(**TINY_CONFIG, seed=7), settings)


def store_state(settings):
    client = MlflowClient()
    alias = client.get_model_version_by_alias(settings.registered_model_name, "champion").version
    return alias, read_champion(settings.champion_file), {str(m.tag) for m in bentoml.models.list()}


def test_promoted_model_carries_lineage_and_is_the_served_champion(champion):
    settings, result, report = champion
    model = bentoml.models.get(report.bento_model_tag)
    assert model.info.labels["mlflow_run_id"] == result.run_id
    assert model.info.labels["mlflow_version"] == result.registered_version
    assert model.info.labels["registered_model"] == "credit-risk"
    assert model.info.metadata["mlflow_model_uri"].endswith(f"/{result.registered_version}")
    assert model.info.metadata["metrics"]["test_roc_auc"] == pytest.approx(
        result.metrics["test_roc_auc"], abs=1e-6
    )
    assert len(model.info.metadata["data_fingerprint"]) == 64
    assert [g.name for g in report.gates] == [
        "contract",
        "golden_set",
        "metric_floor",
        "dependency_parity",
    ]
    assert all(g.passed for g in report.gates)
    assert resolve_served_tags(settings).champion == report.bento_model_tag
    client = MlflowClient()
    assert client.get_model_version_by_alias("credit-risk", "champion").run_id == result.run_id


def edit_bundle_file(settings, version: str, name: str, change) -> None:
    """Tamper with one bundle file of a registered version, in the MLflow artifact store."""
    path = artifact_dir(settings, version) / "extra_files" / name
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def golden_flipped(golden: dict) -> None:
    golden["probabilities"] = [1 - p for p in golden["probabilities"]]


def contract_bumped(contract: dict) -> None:
    contract["version"] = "2.0.0"


@pytest.mark.parametrize(
    ("floor", "tamper", "failing_gate"),
    [
        (0.99, None, "metric_floor"),
        (0.5, ("golden.json", golden_flipped), "golden_set"),
        (0.5, ("contract.json", contract_bumped), "contract"),
    ],
    ids=["below_metric_floor", "corrupted_golden_outputs", "changed_contract"],
)
def test_bad_candidate_is_refused_and_stores_unchanged(
    champion, candidate, floor, tamper, failing_gate
):
    settings, _, _ = champion
    if tamper is not None:
        edit_bundle_file(settings, candidate.registered_version, *tamper)
    before = store_state(settings)
    report = promote(
        settings,
        version=candidate.registered_version,
        policy=PromotionSettings(promotion_min_test_auc=floor),
    )
    assert not report.promoted
    assert [g.name for g in report.gates if not g.passed] == [failing_gate]
    assert store_state(settings) == before


def test_unloadable_artifact_fails_promotion_and_leaves_no_model(champion, candidate):
    settings, _, _ = champion
    weights = artifact_dir(settings, candidate.registered_version) / "data" / "model.pt2"
    weights.write_bytes(b"not a model")
    before = store_state(settings)
    with pytest.raises(Exception):  # noqa: B017, PT011 - torch's own error for a broken archive
        promote(settings, version=candidate.registered_version)
    assert store_state(settings) == before


def test_forced_promotion_records_reason_then_rollback_restores_previous(
    champion, candidate, capsys
):
    settings, _, report = champion
    forced = promote(
        settings,
        version=candidate.registered_version,
        force_reason="incident 42 hotfix",
        policy=PromotionSettings(promotion_min_test_auc=0.99),
    )
    assert forced.promoted
    record = read_champion(settings.champion_file)
    assert record.current.forced_reason == "incident 42 hotfix"
    assert record.history[0].bento_model_tag == report.bento_model_tag
    assert resolve_served_tags(settings).champion == bento_tag(
        resolve(MlflowClient(), "credit-risk", candidate.registered_version), settings
    )

    restored = rollback(settings)
    assert restored.bento_model_tag == report.bento_model_tag
    assert resolve_served_tags(settings).champion == report.bento_model_tag
    alias = MlflowClient().get_model_version_by_alias("credit-risk", "champion")
    assert str(alias.version) == champion[1].registered_version

    assert main(["history"]) == 0
    assert report.bento_model_tag in capsys.readouterr().out


def test_rollback_without_history_is_refused(tmp_path, champion):
    settings, _, _ = champion
    lonely = settings.model_copy(update={"champion_file": tmp_path / "none.json"})
    with pytest.raises(LookupError):
        rollback(lonely)


def test_cli_exit_code_reflects_refusal(champion, candidate, monkeypatch):
    monkeypatch.setenv("CREDIT_RISK_PROMOTION_MIN_TEST_AUC", "0.99")
    assert main(["--version", candidate.registered_version]) == 1
    with pytest.raises(NotFound):
        bentoml.models.get(f"credit-risk:mlflow-v{candidate.registered_version}")


def test_challenger_promotion_sets_its_alias_and_leaves_the_champion(champion, candidate, tmp_path):
    settings, _, report = champion
    local = settings.model_copy(update={"champion_file": tmp_path / "champion.json"})
    local.champion_file.write_text(settings.champion_file.read_text())
    challenger = promote(local, version=candidate.registered_version, role="challenger")
    assert challenger.promoted
    served = resolve_served_tags(local)
    assert served.champion == report.bento_model_tag
    assert served.challenger == challenger.bento_model_tag
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("credit-risk", "challenger").version) == (
        candidate.registered_version
    )
    assert str(client.get_model_version_by_alias("credit-risk", "champion").version) == (
        champion[1].registered_version
    )
