"""The API service's knobs (env ``CREDIT_RISK_*``): the service itself, and in one class what
it needs to call a model runner. What every serving worker shares is ``serving/settings.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_ENV = SettingsConfigDict(env_prefix="CREDIT_RISK_", extra="ignore")


class ApiSettings(BaseSettings):
    """The API service: workers, admission, timeout, stopping."""

    model_config = _ENV

    api_drain_s: float = Field(
        1.0,
        ge=0,
        description="After SIGTERM, least time new scoring requests get 503 + Retry-After.",
    )
    api_workers: int = Field(
        2,
        ge=1,
        description="API worker processes (two keep a 2-core machine busy beside the runner).",
    )
    api_max_concurrency: int = Field(
        64, ge=1, description="Scoring requests in flight per worker before 503 + Retry-After."
    )
    api_timeout_s: float = Field(15.0, gt=0, description="API request timeout.")


class RunnerClientSettings(BaseSettings):
    """Where the API's model calls go and how they are retried, bounded and shed."""

    model_config = _ENV

    runner_mode: Literal["remote", "inprocess"] = Field(
        "remote",
        description="`inprocess`: the API scores itself, no runner hop (CPU-only deployments).",
    )
    runner_url: str | None = Field(
        None, description="URL of a separately deployed runner (unset: spawned locally)."
    )
    runner_retries: int = Field(2, ge=0, description="Retries of the idempotent runner call.")
    runner_deadline_s: float = Field(
        0.8,
        gt=0,
        description="Most one runner call may take, retries included; then 503 and the breaker.",
    )
    runner_probe_interval_s: float = Field(
        0.25, gt=0, description="While the runner is unreachable, how often the API probes it."
    )
    runner_probe_timeout_s: float = Field(
        3.0,
        gt=0,
        description="How long a probe of a runner that missed a deadline may take before the "
        "runner counts as gone (a busy runner answers once its model call ends; a hung one "
        "never does).",
    )
    runner_queue_timeout_s: float = Field(
        0.5,
        gt=0,
        description="Longest a request waits for a model call to start before 503 + "
        "Retry-After (the model stage is busy).",
    )
    api_runner_calls_in_flight: int = Field(
        2, ge=1, description="Model calls in flight per API worker; later requests share one."
    )
