"""End of a worker's start-up: keep the garbage collector off the import-time heap.

torch, MLflow, BentoML and pydantic leave millions of long-lived objects behind at import.
Without this, the first full collection under traffic scans them all and stalls every request
in flight for ~300 ms (measured: p99 300 ms at 100 req/s once, 17 ms on the next step).
``gc.freeze`` moves them to a generation the collector never scans.
"""

from __future__ import annotations

import gc

from credit_risk.config import get_settings


def freeze_startup_heap() -> None:
    if get_settings().gc_freeze_at_startup:
        gc.collect()
        gc.freeze()
