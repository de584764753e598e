"""The configuration every lifecycle step shares, read from the environment by the entry
points: where models live and which one is served (the MLflow store and registry, the BentoML
model names, the champion record that promotion writes), and credit policy (the decision
thresholds and when principal reasons are given), which promotion's gates, both scoring paths
and the benchmarks apply. The domain (``credit_risk``) takes policy as arguments and reads no
environment itself."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_risk.decision import DecisionThresholds
from credit_risk.reasons import ReasonPolicy

# The repository root, or a Bento's ``src`` folder: where ``champion.json`` sits beside the code.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


class RegistrySettings(BaseSettings):
    """The stores and names shared by every lifecycle step."""

    model_config = SettingsConfigDict(
        env_prefix="CREDIT_RISK_", extra="ignore", protected_namespaces=()
    )

    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking and registry store; an `http://` tracking server works.",
    )
    mlflow_artifact_location: str | None = Field(
        None, description="Artifact root of a new experiment (e.g. `s3://bucket/path`)."
    )
    experiment_name: str = Field("credit-risk", description="MLflow experiment of training runs.")
    registered_model_name: str = Field("credit-risk", description="MLflow registered model.")
    champion_alias: str = Field("champion", description="MLflow alias of the served version.")
    bento_model_name: str = Field("credit-risk", description="BentoML model name of imports.")
    model_tag: str | None = Field(
        None, description="Pin the served BentoML model tag (default: the recorded champion)."
    )
    challenger_tag: str | None = Field(
        None, description="Shadow challenger tag (default: the recorded one; empty: none)."
    )
    canary_tag: str | None = Field(
        None, description="Canary tag (default: the recorded one; empty: none)."
    )
    canary_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of applications the canary decides at start (default: the recorded "
        "share).",
    )
    champion_file: Path = Field(
        SOURCE_ROOT / "champion.json",
        description="The champion record promotion writes and `bentoml build` packs.",
    )


class DecisionSettings(BaseSettings, DecisionThresholds):
    """Credit policy's cut-offs from the environment (``CREDIT_RISK_DECISION__*``)."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_DECISION__", extra="ignore")


class ReasonSettings(BaseSettings, ReasonPolicy):
    """When principal reasons are given, from the environment (``CREDIT_RISK_REASONS_*``)."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_REASONS_", extra="ignore")
