"""Calling the runner from the API: scoring is idempotent, so a dropped connection or a shed
request is retried a bounded number of times before the API itself answers 503."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import numpy as np
from bentoml.exceptions import ServiceUnavailable

log = logging.getLogger(__name__)

RETRYABLE = (aiohttp.ClientConnectionError, asyncio.TimeoutError, ServiceUnavailable)


class RunnerUnavailable(ServiceUnavailable):
    """The runner could not score after all retries; the client should retry later (503)."""


async def predict_with_retry(
    predict: Callable[[np.ndarray], Awaitable[np.ndarray]],
    matrix: np.ndarray,
    retries: int,
    backoff_s: float = 0.05,
) -> np.ndarray:
    for attempt in range(retries + 1):
        try:
            return np.asarray(await predict(matrix), dtype=np.float32)
        except RETRYABLE as error:
            if attempt == retries:
                raise RunnerUnavailable(f"model runner unavailable: {error!r}") from error
            log.warning("runner call failed (%r), retry %d/%d", error, attempt + 1, retries)
            await asyncio.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")
