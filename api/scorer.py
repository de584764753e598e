"""The one way the API asks for probabilities and attributions, chosen once at start-up: in this
process (no hop) or from the runner service (retried, since both are idempotent). Either way
concurrent requests share model calls (``api/coalesce.py``), attributions included (one call for
256 rows costs what a few one-row calls do), so the endpoint has no mode branches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import numpy as np
from bentoml.exceptions import ServiceUnavailable

from api.coalesce import Coalescer
from runner.models import RunnerModels

log = logging.getLogger(__name__)

RETRYABLE = (aiohttp.ClientConnectionError, asyncio.TimeoutError, ServiceUnavailable)


class RunnerUnavailable(ServiceUnavailable):
    """The runner could not score after all retries; the client should retry later (503)."""


class Scorer(Protocol):
    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The champion's default probabilities, (n, width) float32 -> (n,)."""

    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        """The shadow challenger's, for a matrix built with its own features."""

    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        """The champion's per-column contributions, (n, width) -> (n, width)."""

    async def describe(self) -> dict[str, Any]:
        """What scores: tags, device, feature width (for ``GET /model``)."""


class LocalScorer:
    """The models in this process: a synchronous call, so one model call at a time."""

    def __init__(self, models: RunnerModels, max_rows: int) -> None:
        self.models = models
        self.champion = Coalescer(self._predict, max_rows=max_rows, max_in_flight=1)
        self.attributions = Coalescer(self._explain, max_rows=max_rows, max_in_flight=1)

    async def _predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.models.predict(matrix)

    async def _explain(self, matrix: np.ndarray) -> np.ndarray:
        return self.models.explain(matrix)

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        return await self.champion(matrix)

    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        return self.models.predict_challenger(matrix)

    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        return await self.attributions(matrix)

    async def describe(self) -> dict[str, Any]:
        return self.models.describe()


class RemoteScorer:
    """The runner service through its ``bentoml.depends`` client."""

    def __init__(self, runner: Any, max_rows: int, calls_in_flight: int, retries: int) -> None:
        self.runner = runner
        self.retries = retries
        self.champion = Coalescer(self._predict, max_rows=max_rows, max_in_flight=calls_in_flight)
        self.attributions = Coalescer(
            self._explain, max_rows=max_rows, max_in_flight=calls_in_flight
        )

    async def _predict(self, matrix: np.ndarray) -> np.ndarray:
        # looked up per call: a remote runner's client learns its endpoints on connect
        return await with_retries(lambda m: self.runner.to_async.predict(m), matrix, self.retries)

    async def _explain(self, matrix: np.ndarray) -> np.ndarray:
        return await with_retries(lambda m: self.runner.to_async.explain(m), matrix, self.retries)

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        return await self.champion(matrix)

    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(await self.runner.to_async.predict_challenger(matrix))

    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        return await self.attributions(matrix)

    async def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = await self.runner.to_async.describe()
        return described


async def with_retries(
    predict: Callable[[np.ndarray], Awaitable[np.ndarray]],
    matrix: np.ndarray,
    retries: int,
    backoff_s: float = 0.05,
) -> np.ndarray:
    """A dropped connection or a shed request is retried ``retries`` times with exponential
    backoff; then ``RunnerUnavailable`` (503 + Retry-After to the client)."""
    for attempt in range(retries + 1):
        try:
            return np.asarray(await predict(matrix), dtype=np.float32)
        except RETRYABLE as error:
            if attempt == retries:
                raise RunnerUnavailable(f"model runner unavailable: {error!r}") from error
            log.warning("runner call failed (%r), retry %d/%d", error, attempt + 1, retries)
            await asyncio.sleep(backoff_s * 2**attempt)
    raise RunnerUnavailable("model runner unavailable")  # retries >= 0: never reached
