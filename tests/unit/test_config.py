"""Settings per concern: environment overrides, and the served tag is always a promoted (or
named) one."""

from __future__ import annotations

import gc

import pytest

from model_artifact.champion import ChampionRecord, Promotion, resolve_served_tags, write_champion
from model_artifact.settings import RegistrySettings
from serving.settings import WorkerSettings
from serving.worker import freeze_startup_heap, service_logging

PROMOTION = Promotion(
    bento_model_tag="credit-risk:mlflow-v3",
    registered_model="credit-risk",
    mlflow_version="3",
    mlflow_run_id="r",
    promoted_at="2026-01-01T00:00:00+00:00",
)


def test_without_champion_or_tag_the_service_refuses_to_guess(tmp_path):
    with pytest.raises(LookupError, match="make promote"):
        resolve_served_tags(RegistrySettings(champion_file=tmp_path / "absent.json"))


def test_champion_record_names_the_served_tag(tmp_path):
    write_champion(tmp_path / "c.json", ChampionRecord(current=PROMOTION))
    served = resolve_served_tags(RegistrySettings(champion_file=tmp_path / "c.json"))
    assert (served.champion, served.challenger) == ("credit-risk:mlflow-v3", None)


def test_explicit_tag_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("CREDIT_RISK_MODEL_TAG", "credit-risk:pinned")
    served = resolve_served_tags(RegistrySettings(champion_file=tmp_path / "x.json"))
    assert served.champion == "credit-risk:pinned"


def test_an_empty_challenger_tag_turns_a_recorded_challenger_off(monkeypatch, tmp_path):
    challenger = PROMOTION.model_copy(update={"bento_model_tag": "credit-risk:mlflow-v4"})
    write_champion(tmp_path / "c.json", ChampionRecord(current=PROMOTION, challenger=challenger))
    registry = RegistrySettings(champion_file=tmp_path / "c.json")
    assert resolve_served_tags(registry).challenger == "credit-risk:mlflow-v4"
    monkeypatch.setenv("CREDIT_RISK_CHALLENGER_TAG", "")
    registry = RegistrySettings(champion_file=tmp_path / "c.json")
    assert resolve_served_tags(registry).challenger is None


def test_tracking_uri_defaults_to_local_sqlite_and_env_overrides(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert RegistrySettings().mlflow_tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert RegistrySettings().mlflow_tracking_uri == "http://mlflow.internal:5000"


def test_access_log_is_off_unless_asked_for(monkeypatch):
    assert service_logging(WorkerSettings()) == {"access": {"enabled": False}}
    monkeypatch.setenv("CREDIT_RISK_ACCESS_LOG", "true")
    assert service_logging(WorkerSettings()) == {"access": {"enabled": True}}


def test_gc_thresholds_are_set_after_the_startup_freeze_and_read_from_json(monkeypatch):
    assert WorkerSettings().gc_thresholds == (20_000, 20, 50)
    monkeypatch.setenv("CREDIT_RISK_GC_THRESHOLDS", "[700, 10, 10]")
    settings = WorkerSettings()
    assert settings.gc_thresholds == (700, 10, 10)
    before = gc.get_threshold()
    try:
        freeze_startup_heap(WorkerSettings(gc_thresholds=(1234, 5, 6)))
        assert gc.get_threshold() == (1234, 5, 6)
        assert gc.get_freeze_count() > 0  # the start-up heap is out of every collection
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
