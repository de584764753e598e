"""Settings: environment overrides, and the served tag is always a promoted (or named) one."""

from __future__ import annotations

import pytest

from credit_risk.champion import ChampionRecord, Promotion, write_champion
from credit_risk.config import Settings


def test_without_champion_or_tag_the_service_refuses_to_guess(tmp_path):
    with pytest.raises(LookupError, match="make promote"):
        Settings(champion_file=tmp_path / "absent.json").served_model_tag()


def test_champion_record_names_the_served_tag(tmp_path):
    promotion = Promotion(
        bento_model_tag="credit-risk:mlflow-v3",
        registered_model="credit-risk",
        mlflow_version="3",
        mlflow_run_id="r",
        promoted_at="2026-01-01T00:00:00+00:00",
    )
    write_champion(tmp_path / "c.json", ChampionRecord(current=promotion))
    assert Settings(champion_file=tmp_path / "c.json").served_model_tag() == "credit-risk:mlflow-v3"


def test_explicit_tag_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("CREDIT_RISK_MODEL_TAG", "credit-risk:pinned")
    assert Settings(champion_file=tmp_path / "x.json").served_model_tag() == "credit-risk:pinned"


def test_tracking_uri_defaults_to_local_sqlite_and_env_overrides(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert Settings().mlflow_tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert Settings().mlflow_tracking_uri == "http://mlflow.internal:5000"


def test_access_log_is_off_unless_asked_for(monkeypatch):
    from credit_risk.config import Settings

    assert Settings().service_logging() == {"access": {"enabled": False}}
    monkeypatch.setenv("CREDIT_RISK_ACCESS_LOG", "true")
    assert Settings().service_logging() == {"access": {"enabled": True}}
