"""A serving worker's start-up settings that no model or request code should have to know.

- The garbage collector. torch, MLflow, BentoML and pydantic leave millions of long-lived
  objects behind at import. Without ``gc.freeze``, the first full collection under traffic
  scans them all and stalls every request in flight: p99 237 ms on the first open-loop step of
  a fresh worker without the freeze, 15 ms with it (docs/performance.md). After the freeze,
  ``CREDIT_RISK_GC_THRESHOLDS``: Python's default collects the young generation every 700 net
  allocations, so every few requests, and promotes their survivors toward costly older
  collections; a request allocates hundreds of objects that die with it (the bench's pair
  "Python's default GC" measures the difference).
- BentoML's access log, one line per request, off unless asked for.

(Torch's thread pool is set where the models are loaded, ``serving/served_models.py``: an API
worker that scores remotely never imports torch.)
"""

from __future__ import annotations

import gc
from typing import Any

from serving.settings import WorkerSettings


def freeze_startup_heap(settings: WorkerSettings) -> None:
    """Call at the very end of start-up, once everything long-lived exists."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.gc_thresholds)


def service_logging(settings: WorkerSettings) -> dict[str, Any]:
    """The ``logging`` block of every ``@bentoml.service`` here."""
    return {"access": {"enabled": settings.access_log}}
