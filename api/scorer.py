"""The one way the API asks for probabilities and attributions, chosen once at start-up: in this
process (no hop) or from the runner service (matrices over ``api/runner_client.py``; retried,
since both calls are idempotent, within one deadline, and refused at once while the runner is
unreachable: ``api/runner_breaker.py``).
Either way concurrent requests share model calls (``serving/coalesce.py``), attributions included
(one call for 256 rows costs what a few one-row calls do), so the endpoint has no mode
branches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import numpy as np
from bentoml.exceptions import ServiceUnavailable

from api.runner_breaker import RunnerBreaker
from serving.coalesce import Coalescer, coalesced

if TYPE_CHECKING:  # torch: imported only by a worker that scores in process
    from serving.served_models import ServedModels

log = logging.getLogger(__name__)

# no answer at all (connection refused, reset or cut, truncated body, timeout) ...
UNREACHABLE = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
# ... or an answer that says "later" (the runner shedding load): both worth a retry
RETRYABLE = (*UNREACHABLE, ServiceUnavailable)

Attempt = Callable[[np.ndarray], Awaitable[Any]]  # one try of a runner call


class RunnerClient(Protocol):
    """The runner's model calls by name (``api.runner_client.MatrixClient``)."""

    async def call(self, method: str, matrix: np.ndarray) -> np.ndarray: ...

    async def close(self) -> None: ...


class RunnerUnavailable(ServiceUnavailable):
    """The runner could not score in time; the client should retry later (503)."""


class RunnerUnreachable(RunnerUnavailable):
    """Not even an answer: the runner is gone or hung, so the breaker opens."""


class RunnerTimedOut(RunnerUnreachable):
    """Connected, but no answer within the deadline: gone, hung, or only slow (a probe tells)."""


class Scorer(Protocol):
    @property
    def available(self) -> bool:
        """False while scoring would fail at once (the API's ``/readyz`` says not ready)."""

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The champion's default probabilities, (n, width) float32 -> (n,)."""

    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        """The shadow challenger's, for a matrix built with its own features."""

    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        """The champion's per-column contributions, (n, width) -> (n, width)."""

    async def describe(self) -> dict[str, Any]:
        """What scores: tags, device, feature width (for ``GET /model``)."""

    async def close(self) -> None:
        """Release connections at shutdown."""


class LocalScorer:
    """The models in this process: a synchronous call, so one model call at a time."""

    def __init__(self, models: ServedModels, max_rows: int) -> None:
        self.models = models
        self.champion = coalesced(models.predict, max_rows)
        self.attributions = coalesced(models.explain, max_rows)

    @property
    def available(self) -> bool:
        return True

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        return await self.champion(matrix)

    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        return self.models.predict_challenger(matrix)

    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        return await self.attributions(matrix)

    async def describe(self) -> dict[str, Any]:
        return self.models.describe()

    async def close(self) -> None:
        return None


class RemoteScorer:
    """The runner service: matrices through ``client``, readiness and ``describe`` through its
    ``bentoml.depends`` proxy ``runner``; every call retried within ``deadline_s`` and refused
    at once while ``breaker`` is open."""

    def __init__(
        self,
        runner: Any,
        client: RunnerClient,
        max_rows: int,
        calls_in_flight: int,
        retries: int,
        deadline_s: float,
        probe_interval_s: float,
    ) -> None:
        self.runner = runner
        self.client = client
        self.retries = retries
        self.deadline_s = deadline_s
        self.breaker = RunnerBreaker(self.runner_ready, probe_interval_s, deadline_s)
        self.champion = Coalescer(self._predict, max_rows=max_rows, max_in_flight=calls_in_flight)
        self.attributions = Coalescer(
            self._explain, max_rows=max_rows, max_in_flight=calls_in_flight
        )

    @property
    def available(self) -> bool:
        return not self.breaker.is_open

    async def runner_ready(self) -> bool:
        ready: bool = await self.runner.is_ready(self.deadline_s)
        return ready

    async def call(self, method: str, matrix: np.ndarray) -> np.ndarray:
        """One runner call: refused at once while the breaker is open; opens it when the
        runner gives no answer at all within the deadline."""
        if self.breaker.is_open:
            raise RunnerUnavailable("model runner unreachable, retry later")
        generation = self.breaker.generation
        attempt: Attempt = partial(self.client.call, method)
        try:
            return await with_retries(attempt, matrix, self.retries, self.deadline_s)
        except RunnerTimedOut as error:
            self.breaker.suspect(generation, str(error))
            raise
        except RunnerUnreachable as error:
            self.breaker.trip(generation, str(error))
            raise

    async def _predict(self, matrix: np.ndarray) -> np.ndarray:
        return await self.call("predict", matrix)

    async def _explain(self, matrix: np.ndarray) -> np.ndarray:
        return await self.call("explain", matrix)

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        if self.breaker.is_open:  # before queueing behind calls that are about to fail
            raise RunnerUnavailable("model runner unreachable, retry later")
        return await self.champion(matrix)

    async def predict_challenger(self, matrix: np.ndarray) -> np.ndarray:
        return await self.call("predict_challenger", matrix)

    async def explain(self, matrix: np.ndarray) -> np.ndarray:
        return await self.attributions(matrix)

    async def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = await self.runner.to_async.describe()
        return described

    async def close(self) -> None:
        await self.client.close()


async def with_retries(
    call: Attempt,
    matrix: np.ndarray,
    retries: int,
    deadline_s: float,
    backoff_s: float = 0.05,
) -> np.ndarray:
    """A dropped connection or a shed request is retried ``retries`` times with exponential
    backoff, all within ``deadline_s``; then ``RunnerUnreachable`` when the runner never
    answered, ``RunnerUnavailable`` when it answered "later" (both 503 + Retry-After)."""
    failure: BaseException | None = None
    try:
        async with asyncio.timeout(deadline_s):
            for attempt in range(retries + 1):
                try:
                    return np.asarray(await call(matrix), dtype=np.float32)
                except RETRYABLE as error:
                    failure = error
                    if attempt < retries:
                        log.warning(
                            "runner call failed (%r), retry %d/%d", error, attempt + 1, retries
                        )
                        await asyncio.sleep(backoff_s * 2**attempt)
    except TimeoutError as error:
        raise RunnerTimedOut(f"no answer from the model runner in {deadline_s}s") from error
    if isinstance(failure, ServiceUnavailable):
        raise RunnerUnavailable(f"model runner overloaded: {failure}") from failure
    raise RunnerUnreachable(f"model runner unreachable: {failure!r}") from failure
