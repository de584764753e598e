"""A serving worker's start-up settings that no model or request code should have to know.

- Torch's intra-op thread pool. A worker scores small batches; a second torch thread brings no
  speed to a one-row call, and its OpenMP spin-wait burned 0.77 ms of CPU per request in the
  API worker (measured per thread with psutil under 16 connections; docs/performance.md).
  Scale with workers and replicas, not threads.
- The garbage collector. torch, MLflow, BentoML and pydantic leave millions of long-lived
  objects behind at import. Without ``gc.freeze``, the first full collection under traffic
  scans them all and stalls every request in flight: p99 237 ms on the first open-loop step of
  a fresh worker without the freeze, 15 ms with it (docs/performance.md).
"""

from __future__ import annotations

import gc
from typing import Any

import torch

from runner.settings import WorkerSettings


def limit_torch_threads(settings: WorkerSettings) -> None:
    """Call before the first model call: the pool is sized on first use."""
    torch.set_num_threads(settings.torch_threads)


def freeze_startup_heap() -> None:
    """Call at the very end of start-up, once everything long-lived exists."""
    gc.collect()
    gc.freeze()


def service_logging(settings: WorkerSettings) -> dict[str, Any]:
    """The ``logging`` block of every ``@bentoml.service`` here."""
    return {"access": {"enabled": settings.access_log}}
