"""The model runner's knobs, and the worker-process knobs every serving process shares
(env ``CREDIT_RISK_*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_ENV = SettingsConfigDict(env_prefix="CREDIT_RISK_", extra="ignore")


class RunnerSettings(BaseSettings):
    """The runner service: device, workers, adaptive batching, and how the API connects."""

    model_config = _ENV

    runner_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`cpu`, `cuda`, or `auto` (CUDA when present)."
    )
    runner_workers: int = Field(1, ge=1, description="Runner worker processes.")
    runner_max_batch_size: int = Field(
        256, ge=1, description="Most rows per model call (runner batching and API coalescing)."
    )
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


class WorkerSettings(BaseSettings):
    """Per-process settings of every serving worker, API and runner alike."""

    model_config = _ENV

    torch_threads: int = Field(
        1, ge=1, description="Torch intra-op threads per worker (scale workers, not threads)."
    )
    access_log: bool = Field(False, description="BentoML's per-request access log line.")
    trace_scoring: bool = Field(
        False,
        description="OpenTelemetry spans for `/score` and the runner's model calls (for a "
        "configured tracing exporter; off saves about a sixth of the CPU per request).",
    )
    drain_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Longest a stopping worker keeps serving (below the pod's grace period).",
    )

    def tracing(self, scoring_paths: tuple[str, ...]) -> dict[str, Any]:
        """BentoML's ``tracing`` block: the scoring paths left out of the spans unless asked
        for. Without an exporter the spans go nowhere, yet each costs as much CPU as the model
        (a quarter of the runner's, a sixth of the API's per request)."""
        return {} if self.trace_scoring else {"excluded_urls": [f"{p}$" for p in scoring_paths]}
