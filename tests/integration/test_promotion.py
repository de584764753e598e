"""Promotion imports with lineage, a forced promotion records its reason, rollback restores
the previous champion in one call, and a challenger gets its own alias. What each gate refuses
is in test_bad_candidates.py."""

from __future__ import annotations

import bentoml
import pytest
from mlflow import MlflowClient

from model_artifact.champion import read_champion, resolve_served_tags
from training.promote import bento_tag, main, promote, rollback
from training.registry import resolve
from training.settings import PromotionSettings


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
        "loads",
        "contract",
        "golden_set",
        "metric_floor",
        "dependency_parity",
    ]
    assert all(g.passed for g in report.gates)
    assert resolve_served_tags(settings).champion == report.bento_model_tag
    client = MlflowClient()
    assert client.get_model_version_by_alias("credit-risk", "champion").run_id == result.run_id


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
