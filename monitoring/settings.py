"""What the API records about its answers and where (env ``CREDIT_RISK_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Absolute, so the server (whose working directory is the Bento's own folder in the store)
# and the outcome join run from the repository read and write the same log.
DEFAULT_LOG_URL = f"sqlite:///{Path.home() / '.credit-risk' / 'predictions.db'}"


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_", extra="ignore")

    prediction_log_url: str = Field(
        DEFAULT_LOG_URL,
        description="Prediction log, any SQLAlchemy URL (e.g. `postgresql+psycopg://…`).",
        repr=False,  # it carries the database password: never in a printed settings object
    )
    prediction_log_batch_rows: int = Field(500, ge=1, description="Rows per log insert.")
    prediction_log_flush_s: float = Field(
        1.0, gt=0, description="Longest a logged row waits for its insert."
    )
    prediction_log_retention_days: int = Field(
        365,
        ge=0,
        description="Days a prediction-log row (personal data) is kept; older rows are deleted "
        "at start-up and hourly (0: kept forever).",
    )
    drift_window: int = Field(5000, ge=10, description="Live applications kept for drift.")
    drift_psi_alert: float = Field(0.2, gt=0, description="PSI above which a field alerts.")
    drift_min_window: int = Field(
        200, ge=1, description="Rows before PSI or the estimated AUC may alert."
    )
    drift_refresh_s: float = Field(10.0, gt=0, description="Period of the drift gauges' refresh.")
    estimated_auc_drop_alert: float = Field(
        0.05,
        gt=0,
        description="Drop of the label-free estimated ROC AUC below training's that alerts.",
    )
