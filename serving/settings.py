"""The knobs every serving worker shares, API and runner alike (env ``CREDIT_RISK_*``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Per-process settings of every serving worker, API and runner alike."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_", extra="ignore")

    runner_max_batch_size: int = Field(
        256, ge=1, description="Most rows per model call (runner batching and API coalescing)."
    )
    torch_threads: int = Field(
        1, ge=1, description="Torch intra-op threads per worker (scale workers, not threads)."
    )
    access_log: bool = Field(False, description="BentoML's per-request access log line.")
    trace_scoring: bool = Field(
        False,
        description="OpenTelemetry spans for `/score` and the runner's model calls (for a "
        "configured tracing exporter; off saves about a sixth of the CPU per request).",
    )
    gc_thresholds: tuple[int, int, int] = Field(
        (20_000, 20, 50),
        description="Python's garbage collector thresholds in every serving worker, as JSON "
        "(`[700, 10, 10]` is Python's default): young collections every 20,000 allocations, not "
        "every 700, since a request allocates hundreds of short-lived objects.",
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
