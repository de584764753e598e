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
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from bentoml.exceptions import ServiceUnavailable

from api.runner_breaker import RunnerBreaker
from api.runner_client import RunnerConnectionError
from api.settings import RunnerClientSettings
from monitoring.metrics import RUNNER_BUSY, RUNNER_CALL_RETRIES
from serving.coalesce import MatrixCoalescer, WaitedTooLongError, coalesced, matrix_coalescer
from serving.log_summary import RepeatedWarnings

if TYPE_CHECKING:  # torch: imported only by a worker that scores in process
    from serving.served_models import Role, ServedModels

log = logging.getLogger(__name__)
RETRIES = RepeatedWarnings(log)  # one line per interval; the metric counts each retry

# no answer at all (connection refused, reset or cut, truncated body, timeout) ...
UNREACHABLE = (RunnerConnectionError, TimeoutError)
# ... or an answer that says "later" (the runner shedding load): both worth a retry
RETRYABLE = (*UNREACHABLE, ServiceUnavailable)

Attempt = Callable[[np.ndarray], Awaitable[Any]]  # one try of a runner call
# The runner's matrix call (runners/service.py, MODEL_CALLS) for each model call and role.
RUNNER_METHODS = {
    ("predict", "champion"): "predict",
    ("explain", "champion"): "explain",
    ("predict", "challenger"): "predict_challenger",
    ("predict", "canary"): "predict_canary",
    ("explain", "canary"): "explain_canary",
}


class RunnerClient(Protocol):
    """The runner's model calls by name (``api.runner_client.MatrixClient``)."""

    async def call(self, method: str, matrix: np.ndarray) -> np.ndarray: ...

    async def close(self) -> None: ...


class RunnerUnavailable(ServiceUnavailable):
    """The runner could not score in time; the client should retry later (503)."""


class RunnerBusy(RunnerUnavailable):
    """The runner answers, but not this request in time: shed (503), the breaker untouched."""


class RunnerUnreachable(RunnerUnavailable):
    """Not even an answer: the runner is gone or hung, so the breaker opens."""


class RunnerTimedOut(RunnerUnreachable):
    """Connected, but no answer within the deadline: gone, hung, or only slow (a probe tells)."""


class Scorer(Protocol):
    @property
    def available(self) -> bool:
        """False while scoring would fail at once (the API's ``/readyz`` says not ready)."""

    async def predict(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        """The role's default probabilities, (n, width) float32 -> (n,), for a matrix built
        with that model's own features (the challenger and the canary have theirs)."""

    async def explain(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        """The role's per-column contributions, (n, width) -> (n, width)."""

    async def describe(self) -> dict[str, Any]:
        """What scores: tags, device, feature width (for ``GET /model``)."""

    async def close(self) -> None:
        """Release connections at shutdown."""


class LocalScorer:
    """The models in this process: a synchronous call, so one model call at a time."""

    def __init__(self, models: ServedModels, max_rows: int) -> None:
        self.models = models
        self.calls = {
            (call, role): coalesced(partial(score, role=role), max_rows)
            for call, score in (("predict", models.predict), ("explain", models.explain))
            for role in ("champion", "canary")
        }

    @property
    def available(self) -> bool:
        return True

    async def predict(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        if role == "challenger":  # shadow scoring: one call per interval, nothing to share
            return self.models.predict(matrix, role)
        return await self.calls["predict", role](matrix)

    async def explain(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        return await self.calls["explain", role](matrix)

    async def describe(self) -> dict[str, Any]:
        return self.models.describe()

    async def close(self) -> None:
        return None


class RemoteScorer:
    """The runner service: matrices through ``client``, readiness and ``describe`` through its
    ``bentoml.depends`` proxy ``runner``; every call retried within ``deadline_s`` and refused
    at once while ``breaker`` is open.

    Slow is told apart from gone. A request waits at most ``runner_queue_timeout_s`` for its
    model call to start, and a call that misses its deadline while the runner is still
    answering other calls (one came back within the last deadline) is the runner being busy:
    both answer 503 + ``Retry-After`` and leave the breaker alone. Only a runner that answers
    nothing, not even a probe within ``runner_probe_timeout_s``, opens it. (Before, a model
    slower than the deadline under load opened and closed the breaker dozens of times a
    minute, refusing everything in between.)"""

    def __init__(
        self, runner: Any, client: RunnerClient, max_rows: int, settings: RunnerClientSettings
    ) -> None:
        self.runner = runner
        self.client = client
        self.retries = settings.runner_retries
        self.deadline_s = settings.runner_deadline_s
        self.probe_timeout_s = settings.runner_probe_timeout_s
        self.breaker = RunnerBreaker(
            self.runner_ready, settings.runner_probe_interval_s, settings.runner_probe_timeout_s
        )
        self.last_answer_at = float("-inf")
        calls = settings.api_runner_calls_in_flight
        wait_s = settings.runner_queue_timeout_s
        self.calls = {
            (call, role): matrix_coalescer(
                partial(self.call, RUNNER_METHODS[call, role]), max_rows, calls, max_wait_s=wait_s
            )
            for call in ("predict", "explain")
            for role in ("champion", "canary")
        }

    @property
    def available(self) -> bool:
        return not self.breaker.is_open

    async def runner_ready(self) -> bool:
        ready: bool = await self.runner.is_ready(self.probe_timeout_s)
        return ready

    def answering(self) -> bool:
        """Whether the runner answered a call within the last deadline."""
        return time.monotonic() - self.last_answer_at < self.deadline_s

    async def call(self, method: str, matrix: np.ndarray) -> np.ndarray:
        """One runner call: refused at once while the breaker is open; a missed deadline is
        the runner being busy while it still answers, otherwise a suspected outage (a probe
        decides); no connection at all opens the breaker."""
        if self.breaker.is_open:
            raise RunnerUnavailable("model runner unreachable, retry later")
        generation = self.breaker.generation
        attempt: Attempt = partial(self.client.call, method)
        try:
            answer = await with_retries(attempt, matrix, self.retries, self.deadline_s)
        except RunnerTimedOut as error:
            if self.answering():
                RUNNER_BUSY.inc()
                raise RunnerBusy(f"model runner busy: {error}") from error
            self.breaker.suspect(generation, str(error))
            raise
        except RunnerUnreachable as error:
            self.breaker.trip(generation, str(error))
            raise
        self.last_answer_at = time.monotonic()
        return answer

    async def coalesced(self, coalescer: MatrixCoalescer, matrix: np.ndarray) -> np.ndarray:
        try:
            return await coalescer(matrix)
        except WaitedTooLongError as error:
            RUNNER_BUSY.inc()
            raise RunnerBusy(f"model runner busy: {error}") from error

    async def predict(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        if role == "challenger":  # shadow scoring: one call per interval, nothing to share
            return await self.call(RUNNER_METHODS["predict", role], matrix)
        if self.breaker.is_open:  # before queueing behind calls that are about to fail
            raise RunnerUnavailable("model runner unreachable, retry later")
        return await self.coalesced(self.calls["predict", role], matrix)

    async def explain(self, matrix: np.ndarray, role: Role = "champion") -> np.ndarray:
        return await self.coalesced(self.calls["explain", role], matrix)

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
                        RUNNER_CALL_RETRIES.labels(type(error).__name__).inc()
                        RETRIES.warning(f"runner call failed ({type(error).__name__}), retried")
                        await asyncio.sleep(backoff_s * 2**attempt)
    except TimeoutError as error:
        raise RunnerTimedOut(f"no answer from the model runner in {deadline_s}s") from error
    if isinstance(failure, ServiceUnavailable):
        raise RunnerUnavailable(f"model runner overloaded: {failure}") from failure
    raise RunnerUnreachable(f"model runner unreachable: {failure!r}") from failure
