"""The one typed place for configuration, fed by environment variables (prefix ``CREDIT_RISK_``).

Reading it has no side effects: nothing is created, no tracking URI is set. Services,
training and promotion all take their knobs from here so a deployment is one set of env vars.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_risk.champion import read_champion

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAMPION_FILE = "champion.json"


class DecisionThresholds(BaseSettings):
    """Probability cut-offs of the business decision (env ``CREDIT_RISK_DECISION__*``)."""

    approve_below: float = Field(0.25, gt=0, lt=1)
    decline_at_or_above: float = Field(0.55, gt=0, lt=1)
    max_loan_to_price_for_approve: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> DecisionThresholds:
        if self.approve_below > self.decline_at_or_above:
            raise ValueError("approve_below must not exceed decline_at_or_above")
        return self


class TrainingConfig(BaseSettings):
    """Training knobs (env ``CREDIT_RISK_TRAIN_*``); the network size is here so a larger
    variant for a GPU is a configuration change, not a code change."""

    model_config = SettingsConfigDict(
        env_prefix="CREDIT_RISK_TRAIN_", extra="ignore", protected_namespaces=()
    )

    seed: int = Field(42, description="Weight initialisation and batch order.")
    # Fixed apart from ``seed`` so every candidate is measured on the same test rows and the
    # promotion gate compares like with like.
    split_seed: int = 42
    sample_rows: int | None = Field(None, ge=50, description="Subsample for fast runs.")
    hidden: tuple[int, ...] = (64,)
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(10, ge=1, description="Epochs without validation gain before stopping.")
    golden_rows: int = Field(25, ge=1)
    register_model: bool = True


class Settings(BaseSettings):
    """Everything a deployment may tune; defaults are the embedded, local ones."""

    model_config = SettingsConfigDict(
        env_prefix="CREDIT_RISK_",
        env_nested_delimiter="__",
        extra="ignore",
        protected_namespaces=(),
    )

    mlflow_tracking_uri: str = Field("sqlite:///mlflow.db", validation_alias="MLFLOW_TRACKING_URI")
    # Where new experiments keep artifacts (e.g. s3://bucket/path); MLflow's default if unset.
    mlflow_artifact_location: str | None = None
    registered_model_name: str = "credit-risk"
    bento_model_name: str = "credit-risk"
    experiment_name: str = "credit-risk"
    champion_alias: str = "champion"
    # Tag of the BentoML model the services serve; when unset, the tag promotion recorded.
    model_tag: str | None = None
    champion_file: Path = REPO_ROOT / CHAMPION_FILE

    # Runner (model) service: a URL makes the API call a separately deployed runner; the
    # in-process mode has the API score itself, with no hop (CPU-only deployments where the
    # hop does not pay; `make bench` compares).
    runner_mode: Literal["remote", "inprocess"] = "remote"
    runner_url: str | None = None
    runner_device: Literal["auto", "cpu", "cuda"] = "auto"
    runner_workers: int = Field(1, ge=1)
    runner_max_batch_size: int = Field(256, ge=1)
    runner_max_latency_ms: int = Field(200, ge=1)
    runner_timeout_s: float = Field(10.0, gt=0)
    runner_retries: int = Field(2, ge=0)
    # BentoML renews the API's client session to the runner after this many requests; in
    # 1.4.31-1.4.40 renewal drops the calls still in flight, so it is off unless asked for.
    runner_session_max_requests: int = Field(2**31 - 1, ge=1)

    # API service.
    api_workers: int = Field(1, ge=1)
    # Requests in flight per API worker before /score sheds with 503 + Retry-After.
    api_max_concurrency: int = Field(64, ge=1)
    api_timeout_s: float = Field(15.0, gt=0)
    # BentoML's per-request access log line. Off by default: at hundreds of requests/s per
    # worker it costs about a tenth of throughput (make bench), and the prediction log (by
    # request id) and the Prometheus metrics already record every request.
    access_log: bool = False
    # Runner calls in flight per API worker; concurrent requests beyond it share the next call
    # (runners/coalesce.py). In-process scoring is synchronous, so it always uses one.
    api_runner_calls_in_flight: int = Field(2, ge=1)
    max_applications_per_request: int = Field(256, ge=1)

    # Torch intra-op threads per worker process (runners/startup.py says why 1).
    torch_threads: int = Field(1, ge=1)

    # Freeze the import-time heap out of the GC at the end of start-up (runners/startup.py);
    # off only to measure what it prevents (python -m loadtests.startup_tail).
    gc_freeze_at_startup: bool = True

    # Monitoring. Off only to measure its own cost side by side (loadtests/compare.py).
    monitoring_enabled: bool = True
    # Absolute, so the server (whose working directory is the Bento's own folder in the store)
    # and the outcomes join run from the repository read and write the same log.
    prediction_log_url: str = f"sqlite:///{Path.home() / '.credit-risk' / 'predictions.db'}"
    prediction_log_batch_rows: int = Field(500, ge=1)
    prediction_log_flush_s: float = Field(1.0, gt=0)
    drift_window: int = Field(5000, ge=10)
    drift_psi_alert: float = Field(0.2, gt=0)
    drift_min_window: int = Field(200, ge=1, description="Rows before PSI may alert.")
    drift_refresh_s: float = Field(10.0, gt=0)

    # Shadow challenger: scored on the same matrix, logged, never answered.
    challenger_tag: str | None = None

    # Promotion gates.
    promotion_min_test_auc: float = Field(0.75, ge=0, le=1)
    promotion_max_auc_drop: float = Field(0.02, ge=0, le=1)
    golden_tolerance: float = Field(1e-5, gt=0)

    decision: DecisionThresholds = Field(default_factory=DecisionThresholds)

    def served_model_tag(self) -> str:
        """The explicit tag, else the champion recorded by promotion; never an unpromoted model."""
        if self.model_tag:
            return self.model_tag
        champion = read_champion(self.champion_file)
        if champion is None:
            raise LookupError(
                f"no champion recorded in {self.champion_file}: run `make promote` "
                "(python -m training.promote) or set CREDIT_RISK_MODEL_TAG"
            )
        return champion.bento_model_tag

    def service_logging(self) -> dict[str, Any]:
        """The ``logging`` block of every ``@bentoml.service`` here."""
        return {"access": {"enabled": self.access_log}}

    def challenger_model_tag(self) -> str | None:
        """The explicit challenger tag (empty turns a recorded one off), else the one promotion
        recorded, else none."""
        if self.challenger_tag is not None:
            return self.challenger_tag or None
        champion = read_champion(self.champion_file)
        return champion.challenger.bento_model_tag if champion and champion.challenger else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests build their own ``Settings`` instead."""
    return Settings()
