"""The model runner service's knobs (env ``CREDIT_RISK_*``); what every serving worker shares
is ``serving/settings.py``, what the API needs to call a runner ``api/settings.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RunnerSettings(BaseSettings):
    """The runner service: device, workers, BentoML's adaptive batching, stopping."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_", extra="ignore")

    runner_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`cpu`, `cuda`, or `auto` (CUDA when present)."
    )
    runner_workers: int = Field(1, ge=1, description="Runner worker processes.")
    runner_max_latency_ms: int = Field(
        200,
        ge=1,
        description="Latency budget of BentoML's adaptive batching, for BentoML clients of the "
        "runner (the API's matrix calls are joined without a wait).",
    )
    runner_timeout_s: float = Field(10.0, gt=0, description="Runner request timeout.")
    runner_drain_quiet_s: float = Field(
        2.0,
        ge=0,
        description="After SIGTERM, the runner serves until it has had no call for this long.",
    )
    runner_session_max_requests: int = Field(
        2**31 - 1,
        ge=1,
        description="Requests before the API renews its runner session (docs/operations.md).",
    )
