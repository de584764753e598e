"""Runner faults seen from the API: every call bounded by one deadline, retries included; an
unanswered call opens the breaker, scoring is then refused at once, and the first good probe
closes it again. (Against a real server: tests/e2e/test_faults.py.)"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from bentoml.exceptions import ServiceUnavailable

from api.runner_breaker import RunnerBreaker
from api.runner_client import RunnerConnectionError
from api.scorer import (
    RemoteScorer,
    RunnerBusy,
    RunnerUnavailable,
    RunnerUnreachable,
    with_retries,
)
from api.settings import RunnerClientSettings

MATRIX = np.ones((3, 2), dtype=np.float32)


def client_settings(retries: int, **extra: float) -> RunnerClientSettings:
    """Short bounds, so each scenario runs in tenths of a second."""
    bounds = {
        "runner_deadline_s": 0.2,
        "runner_probe_interval_s": 0.02,
        "runner_probe_timeout_s": 0.2,
        "runner_queue_timeout_s": 0.5,
    }
    return RunnerClientSettings(runner_retries=retries, **(bounds | extra))


async def hang(_: np.ndarray) -> np.ndarray:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


def failing(error: Exception, then: np.ndarray | None = None, times: int = 10**6):
    calls: list[int] = []

    async def call(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        if len(calls) <= times or then is None:
            raise error
        return then

    return call, calls


def test_a_hung_runner_costs_one_deadline_then_unreachable():
    started = time.monotonic()
    with pytest.raises(RunnerUnreachable, match="no answer"):
        asyncio.run(with_retries(hang, MATRIX, retries=2, deadline_s=0.2))
    assert time.monotonic() - started < 0.5


def test_refused_connections_are_retried_then_unreachable():
    refused = RunnerConnectionError("cannot connect to the runner: refused")
    call, calls = failing(refused)
    with pytest.raises(RunnerUnreachable):
        asyncio.run(with_retries(call, MATRIX, retries=2, deadline_s=5, backoff_s=0))
    assert len(calls) == 3


def test_a_shedding_runner_is_unavailable_but_not_unreachable():
    call, _ = failing(ServiceUnavailable("overloaded"))
    with pytest.raises(RunnerUnavailable) as raised:
        asyncio.run(with_retries(call, MATRIX, retries=1, deadline_s=5, backoff_s=0))
    assert not isinstance(raised.value, RunnerUnreachable)


def test_a_retry_that_succeeds_answers():
    call, calls = failing(
        RunnerConnectionError("the runner closed the connection"), then=np.arange(3.0), times=1
    )
    result = asyncio.run(with_retries(call, MATRIX, retries=2, deadline_s=5, backoff_s=0))
    np.testing.assert_array_equal(result, np.arange(3.0, dtype=np.float32))
    assert len(calls) == 2


class Probe:
    """Answers from a script: False, an exception, a hang, then True."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else True
        if answer == "hang":
            await asyncio.sleep(3600)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)


def test_breaker_opens_on_trip_and_closes_after_the_first_good_probe():
    async def main() -> tuple[bool, bool, int, int]:
        probe = Probe(False, OSError("refused"), "hang", True)
        breaker = RunnerBreaker(probe, interval_s=0.01, probe_timeout_s=0.05)
        breaker.trip(breaker.generation, "test")
        opened = breaker.is_open
        assert breaker.probing is not None
        await breaker.probing
        return opened, breaker.is_open, probe.calls, breaker.generation

    opened, still_open, probes, generation = asyncio.run(main())
    assert opened
    assert not still_open
    assert probes == 4  # a failure, an error and a hang each count as "not back yet"
    assert generation == 1


def test_a_call_from_before_the_last_recovery_cannot_reopen_the_breaker():
    async def main() -> bool:
        breaker = RunnerBreaker(Probe(True), interval_s=0.01, probe_timeout_s=0.05)
        stale = breaker.generation
        breaker.trip(stale, "first outage")
        assert breaker.probing is not None
        await breaker.probing
        breaker.trip(stale, "a late failure of the first outage")
        return breaker.is_open

    assert asyncio.run(main()) is False


class Runner:
    """The runner as the API reaches it: matrix calls by name, and ``is_ready``."""

    def __init__(self) -> None:
        self.hung = True
        self.calls = 0

    async def call(self, method: str, matrix: np.ndarray) -> np.ndarray:
        answer: np.ndarray = await getattr(self, method)(matrix)
        return answer

    async def close(self) -> None:
        return None

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.hung:
            await asyncio.sleep(3600)
        return matrix[:, 0]

    async def is_ready(self, timeout: float) -> bool:
        return not self.hung


def test_scoring_fails_fast_while_the_runner_hangs_and_recovers_by_itself():
    async def main() -> None:
        runner = Runner()
        scorer = RemoteScorer(runner, runner, 256, client_settings(retries=2))
        started = time.monotonic()
        first = await asyncio.gather(
            *(scorer.predict(MATRIX) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(result, RunnerUnreachable) for result in first)
        assert time.monotonic() - started < 0.5  # one deadline for all, not one each
        assert not scorer.available

        calls = runner.calls
        started = time.monotonic()
        with pytest.raises(RunnerUnavailable):
            await scorer.predict(MATRIX)
        assert time.monotonic() - started < 0.01
        assert runner.calls == calls  # refused without asking the runner

        runner.hung = False
        for _ in range(100):
            if scorer.available:
                break
            await asyncio.sleep(0.01)
        np.testing.assert_array_equal(await scorer.predict(MATRIX), MATRIX[:, 0])

    asyncio.run(main())


class SlowRunner(Runner):
    """Alive and ready, but this call's answer comes after the deadline (a host short of CPU)."""

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        await asyncio.sleep(0.3)
        return matrix[:, 0]

    async def is_ready(self, timeout: float) -> bool:
        return True


def test_a_late_answer_from_a_runner_that_answers_its_probe_opens_nothing():
    async def main() -> None:
        runner = SlowRunner()
        scorer = RemoteScorer(runner, runner, 256, client_settings(retries=0))
        with pytest.raises(RunnerUnreachable, match="no answer"):  # this request: 503
            await scorer.predict(MATRIX)
        await asyncio.sleep(0.05)  # the confirming probe has answered
        assert scorer.available  # the next requests are not refused

    asyncio.run(main())


class BusyRunner(Runner):
    """A model that takes ``seconds`` a call, one call at a time (the runner's event loop
    scores), shared by several API workers: alone each call is well within the deadline, under
    load the calls queue past it. A probe waits for the model call in progress to end."""

    def __init__(self, seconds: float = 0.3) -> None:
        super().__init__()
        self.hung = False
        self.seconds = seconds
        self.lock = asyncio.Lock()

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        async with self.lock:
            await asyncio.sleep(self.seconds)
        return matrix[:, 0]

    async def is_ready(self, timeout: float) -> bool:
        async with asyncio.timeout(timeout), self.lock:
            return True


def test_a_busy_runner_sheds_what_it_cannot_answer_in_time_and_never_opens_the_breaker():
    """Four API workers, 2 calls in flight each, against a runner that answers a call in
    60 ms: 8 calls queue 60-480 ms in the runner, past the 0.2 s deadline. What misses it is
    shed as busy; no worker's breaker opens."""

    async def main() -> tuple[dict[str, int], int]:
        runner = BusyRunner(seconds=0.06)
        settings = client_settings(retries=0, runner_probe_timeout_s=2.0)  # the defaults' ratio
        workers = [RemoteScorer(runner, runner, 1, settings) for _ in range(4)]
        outcomes: dict[str, int] = {}
        opened = 0
        for _ in range(5):  # waves of concurrent one-row requests
            wave = await asyncio.gather(
                *(worker.predict(MATRIX[:1]) for worker in workers for _ in range(4)),
                return_exceptions=True,
            )
            for result in wave:
                kind = type(result).__name__ if isinstance(result, Exception) else "answered"
                outcomes[kind] = outcomes.get(kind, 0) + 1
            opened += sum(worker.breaker.opened_at is not None for worker in workers)
        return outcomes, opened

    outcomes, opened = asyncio.run(main())
    assert opened == 0  # never "unreachable": it is alive, only slow
    assert outcomes["answered"] > 0
    assert outcomes["RunnerBusy"] > 0  # the excess shed: 503 + Retry-After
    # a worker with no answer of its own yet asks a probe (refusing meanwhile): 503s too
    assert set(outcomes) <= {"answered", "RunnerBusy", "RunnerTimedOut", "RunnerUnavailable"}


def test_a_request_that_waits_too_long_for_its_model_call_is_busy_not_unreachable():
    async def main() -> None:
        runner = BusyRunner()
        settings = client_settings(retries=0, runner_deadline_s=5.0, runner_queue_timeout_s=0.1)
        scorer = RemoteScorer(runner, runner, 1, settings)
        first = asyncio.create_task(scorer.predict(MATRIX[:1]))
        await asyncio.sleep(0)
        with pytest.raises(RunnerBusy, match="no model call started"):
            # calls_in_flight (2) are busy with 1-row calls; this one queues behind them
            await asyncio.gather(scorer.predict(MATRIX[:1]), scorer.predict(MATRIX[:1]))
        await first
        assert scorer.available

    asyncio.run(main())
