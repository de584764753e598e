"""Concurrent callers share one call: the API's requests in one worker (one pass of the
scoring pipeline for the requests that arrive together, ``api/scoring.py``; one runner hop or
torch call for many passes), and the runner's matrix calls from every API worker (one torch call
for many hops: the runner's adaptive batching, ``runners/matrix_endpoint.py``).

The fixed cost of a call, not its rows, is what limits throughput. Items arriving together are
joined into one call and its answers handed back to each caller. There is no waiting window: a
call starts on the next turn of the event loop whenever fewer than ``max_in_flight`` calls are
running, and what arrives meanwhile rides with the next one, so an idle service adds no latency
and a busy one batches more.

A caller may bound how long it waits for its call to start (``max_wait_s``): one still queued
then is taken out of the queue and gets ``WaitedTooLongError``, so a model stage that answers
slowly sheds the excess at the door instead of letting every request queue behind it.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sized
from typing import Generic, TypeVar

import numpy as np

Item = TypeVar("Item", bound=Sized)  # its length is its rows, bounded by ``max_rows``
Result = TypeVar("Result")
Predict = Callable[[np.ndarray], Awaitable[np.ndarray]]
Score = Callable[[np.ndarray], np.ndarray]
# no bound on calls in flight: join only what arrives together, never hold an item back
UNBOUNDED = sys.maxsize


class WaitedTooLongError(Exception):
    """An item waited ``max_wait_s`` for its call to start: the stage behind it is busy."""


class Coalescer(Generic[Item, Result]):
    """``call`` answers a list of items with one result each, in order; a call fails as a
    whole, and every caller in it gets its error."""

    def __init__(
        self,
        call: Callable[[list[Item]], Awaitable[list[Result]]],
        max_rows: int,
        max_in_flight: int,
        max_wait_s: float | None = None,
    ) -> None:
        self.call = call
        self.max_rows = max_rows
        self.max_in_flight = max_in_flight
        self.max_wait_s = max_wait_s
        self.waiting: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self.tasks: set[asyncio.Task[None]] = set()  # held so a running call is not collected
        self.in_flight = 0
        self.dispatch_scheduled = False

    async def __call__(self, item: Item) -> Result:
        """This item's result, from a call shared with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        entry = (item, future)
        self.waiting.append(entry)
        if not self.dispatch_scheduled:
            self.dispatch_scheduled = True
            loop.call_soon(self.dispatch)  # after the requests already runnable have queued
        if self.max_wait_s is None or (
            len(self.waiting) == 1 and self.in_flight < self.max_in_flight
        ):
            return await future  # alone, with a free slot: it starts next turn, no timer
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.max_wait_s)
        except TimeoutError:
            if self.withdraw(entry):  # never started: give up its place
                future.cancel()
                raise WaitedTooLongError(f"no model call started in {self.max_wait_s}s") from None
            return await future  # started: the call's own deadline bounds it

    def withdraw(self, entry: tuple[Item, asyncio.Future[Result]]) -> bool:
        """Take ``entry`` out of the queue (by identity: matrices do not compare as bools)."""
        for index, waiting in enumerate(self.waiting):
            if waiting is entry:
                del self.waiting[index]
                return True
        return False

    def dispatch(self) -> None:
        self.dispatch_scheduled = False
        while self.waiting and self.in_flight < self.max_in_flight:
            batch: list[tuple[Item, asyncio.Future[Result]]] = []
            rows = 0
            while self.waiting and (not batch or rows + len(self.waiting[0][0]) <= self.max_rows):
                rows += len(self.waiting[0][0])
                batch.append(self.waiting.popleft())
            self.in_flight += 1
            task = asyncio.create_task(self.score(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def score(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            parts = await self.call([item for item, _ in batch])
            for (_, future), part in zip(batch, parts, strict=True):
                if not future.done():  # its client may have gone away
                    future.set_result(part)
        except Exception as error:  # every request of the call gets the same answer
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        finally:
            self.in_flight -= 1
            self.dispatch()


MatrixCoalescer = Coalescer[np.ndarray, np.ndarray]


def matrix_coalescer(
    predict: Predict, max_rows: int, max_in_flight: int, max_wait_s: float | None = None
) -> MatrixCoalescer:
    """Matrices joined into one model call: concatenated, scored, split again by rows."""

    async def call(matrices: list[np.ndarray]) -> list[np.ndarray]:
        if len(matrices) == 1:
            return [await predict(matrices[0])]
        joined = await predict(np.concatenate(matrices))
        return np.split(joined, np.cumsum([len(matrix) for matrix in matrices[:-1]]))

    return Coalescer(call, max_rows, max_in_flight, max_wait_s)


def coalesced(score: Score, max_rows: int) -> MatrixCoalescer:
    """A synchronous model call shared by the matrices that arrive while the previous call
    runs. It runs on the event loop (a CPU batch takes well under a millisecond, less than a
    hand-off to a thread), so one call at a time, and calls arriving meanwhile queue and are
    joined into the next one."""

    async def call(matrix: np.ndarray) -> np.ndarray:
        return score(matrix)

    return matrix_coalescer(call, max_rows=max_rows, max_in_flight=1)
