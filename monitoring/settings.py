"""What the API records about its answers and where (env ``CREDIT_RISK_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Absolute, so the server (whose working directory is the Bento's own folder in the store)
# and the outcome join run from the repository read and write the same log.
DEFAULT_LOG_URL = f"sqlite:///{Path.home() / '.credit-risk' / 'predictions.db'}"
DEFAULT_SPOOL_DIR = str(Path.home() / ".credit-risk" / "spool")


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_", extra="ignore")

    prediction_log_url: str = Field(
        DEFAULT_LOG_URL,
        description="Prediction log, any SQLAlchemy URL (e.g. `postgresql+psycopg://…`).",
        repr=False,  # it carries the database password: never in a printed settings object
    )
    prediction_log_batch_rows: int = Field(500, ge=1, description="Rows per log insert.")
    prediction_log_flush_s: float = Field(
        0.2,
        gt=0,
        description="Longest an answered row waits in memory before it is on disk in the "
        "spool: what a hard kill (SIGKILL) of a worker can lose.",
    )
    prediction_log_spool_dir: str = Field(
        DEFAULT_SPOOL_DIR,
        description="Folder of the per-worker spool files that hold answered rows until the "
        "database has them (a volume that outlives the worker).",
    )
    prediction_log_spool_fsync: bool = Field(
        True,
        description="Sync each spool commit to the device (`false`: a power cut may lose the "
        "last seconds; a killed worker still loses nothing spooled).",
    )
    prediction_log_spool_max_rows: int = Field(
        1_000_000,
        ge=1,
        description="Rows a worker's spool may hold while the database is away before the API "
        "refuses requests (503).",
    )
    prediction_log_memory_rows: int = Field(
        20_000,
        ge=1,
        description="Answered rows a worker may hold in memory, not yet spooled, before the "
        "API refuses requests (503).",
    )
    prediction_log_admission_wait_s: float = Field(
        2.0,
        ge=0,
        description="Longest a request waits for room in the prediction log (memory bound) "
        "before 503: a surge waits for the spooler, a stuck log is refused.",
    )
    prediction_log_drain_s: float = Field(
        20.0,
        ge=0,
        description="Longest a clean stop waits for the database to take the spool; what is "
        "left ships after the next start.",
    )
    prediction_log_retention_days: int = Field(
        365,
        ge=0,
        description="Days a prediction-log row (personal data) is kept; older rows are deleted "
        "at start-up and hourly (0: kept forever).",
    )
    drift_window: int = Field(
        5000,
        ge=10,
        description="Live applications kept for drift, per API worker (each sees its share).",
    )
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


class CanarySettings(BaseSettings):
    """When a canary is taken out of traffic on its own (env ``CREDIT_RISK_CANARY_*``).

    Every bound is relative to the champion over the same recent traffic in the same worker,
    so a slow night or a drifting population that hits both models alike rolls nothing back.
    Rates and latencies need ``min_requests`` canary requests, score comparisons ``min_rows``
    scored rows per arm: below that a verdict would be noise."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_CANARY_", extra="ignore")

    refresh_s: float = Field(
        5.0,
        gt=0,
        description="How often a worker reads the canary's live share and checks its bounds.",
    )
    window_requests: int = Field(
        2000, ge=10, description="Recent requests per arm the rate and latency bounds look at."
    )
    window_rows: int = Field(
        5000, ge=10, description="Recent scores per arm the drift and AUC bounds look at."
    )
    min_requests: int = Field(
        50, ge=1, description="Canary requests before its failure rate or latency is judged."
    )
    min_failures: int = Field(
        5, ge=1, description="Canary failures before its failure rate can roll it back."
    )
    max_failure_rate_excess: float = Field(
        0.02, ge=0, le=1, description="Canary failure share allowed above the champion's."
    )
    max_latency_ratio: float = Field(
        3.0, ge=1, description="Canary p95 latency allowed, as a multiple of the champion's ..."
    )
    latency_slack_s: float = Field(
        0.005, ge=0, description="... plus this, so sub-millisecond noise is not a breach."
    )
    min_rows: int = Field(
        200, ge=10, description="Scored rows per arm before drift or estimated AUC is judged."
    )
    max_score_psi: float = Field(
        0.25, gt=0, description="PSI of the canary's scores against the champion's."
    )
    max_auc_drop: float = Field(
        0.05, gt=0, description="Canary's estimated ROC AUC allowed below the champion's."
    )
