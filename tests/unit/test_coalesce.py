"""Coalescing: concurrent requests share model calls, each gets exactly its own rows back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.coalesce import MatrixCoalescer, WaitedTooLongError, matrix_coalescer


class Recorder:
    """A fake model: the probability of a row is its first value; records each call's rows."""

    def __init__(self, delay_s: float = 0.01, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.fail = fail

    async def __call__(self, matrix: np.ndarray) -> np.ndarray:
        self.calls.append(len(matrix))
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("runner down")
        return matrix[:, 0].copy()


def rows(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.float32).repeat(2).reshape(count, 2)


def run_concurrently(coalescer: MatrixCoalescer, matrices: list[np.ndarray]) -> list[np.ndarray]:
    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(coalescer(m) for m in matrices))

    return asyncio.run(main())


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    model = Recorder()
    matrices = [rows(10 * i, 1 + i % 3) for i in range(20)]
    results = run_concurrently(matrix_coalescer(model, max_rows=256, max_in_flight=1), matrices)
    for matrix, result in zip(matrices, results, strict=True):
        np.testing.assert_array_equal(result, matrix[:, 0])
    assert len(model.calls) < len(matrices)
    assert sum(model.calls) == sum(len(m) for m in matrices)


def test_a_call_never_exceeds_max_rows_but_an_oversized_request_still_goes():
    model = Recorder()
    matrices = [rows(0, 3) for _ in range(10)] + [rows(100, 9)]
    run_concurrently(matrix_coalescer(model, max_rows=7, max_in_flight=2), matrices)
    assert max(model.calls) == 9
    assert all(calls <= 7 for calls in model.calls if calls != 9)


def test_in_flight_calls_are_bounded():
    model = Recorder()
    coalescer = matrix_coalescer(model, max_rows=2, max_in_flight=3)

    async def main() -> int:
        tasks = [asyncio.ensure_future(coalescer(rows(i, 1))) for i in range(20)]
        await asyncio.sleep(0.001)
        peak = coalescer.in_flight
        await asyncio.gather(*tasks)
        return peak

    assert asyncio.run(main()) == 3


def test_a_lone_request_is_not_held_back():
    model = Recorder(delay_s=0)
    coalescer = matrix_coalescer(model, max_rows=256, max_in_flight=1)
    for i in range(3):
        np.testing.assert_array_equal(run_concurrently(coalescer, [rows(i, 1)])[0], [i])
    assert model.calls == [1, 1, 1]


def test_a_failed_call_fails_every_request_in_it():
    coalescer = matrix_coalescer(Recorder(fail=True), max_rows=256, max_in_flight=1)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(coalescer(rows(i, 1)) for i in range(5)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)


def test_a_cancelled_request_does_not_disturb_the_others():
    coalescer = matrix_coalescer(Recorder(), max_rows=256, max_in_flight=1)

    async def main() -> list[np.ndarray]:
        tasks = [asyncio.ensure_future(coalescer(rows(i, 1))) for i in range(4)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        return [await task for i, task in enumerate(tasks) if i != 1]

    assert [r.tolist() for r in asyncio.run(main())] == [[0.0], [2.0], [3.0]]


def test_a_matrix_that_waits_too_long_for_its_call_leaves_the_queue():
    """Queued behind a slow call past ``max_wait_s``: out of the queue, busy; the call in
    flight is not cut, and the next call carries only what still waits."""

    async def main() -> tuple[np.ndarray, list[int]]:
        model = Recorder(delay_s=0.2)
        coalescer = matrix_coalescer(model, max_rows=256, max_in_flight=1, max_wait_s=0.05)
        started = asyncio.create_task(coalescer(rows(0, 2)))
        await asyncio.sleep(0.01)  # its call is running
        with pytest.raises(WaitedTooLongError):
            await coalescer(rows(10, 3))
        assert len(coalescer.waiting) == 0
        answered = await started  # not cut: it had started before the bound
        await coalescer(rows(20, 1))
        return answered, model.calls

    answered, calls = asyncio.run(main())
    np.testing.assert_array_equal(answered, [0, 1])
    assert calls == [2, 1]  # the withdrawn rows were never scored
