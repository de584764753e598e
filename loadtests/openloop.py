"""Open-loop load: requests start on a Poisson schedule at a target rate, whatever the server's
response time, so queueing shows up in the latency instead of silently lowering the rate
(closed-loop clients hide tail latency). Latency is measured from the scheduled start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import aiohttp
import numpy as np

from loadtests.burst import JSON, BurstResult

T = TypeVar("T")


async def _open_loop(
    url: str, body: bytes, rate: float, duration_s: float, seed: int
) -> BurstResult:
    result = BurstResult()
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, size=int(rate * duration_s * 1.2) + 10))
    arrivals = arrivals[arrivals < duration_s]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=JSON, connector=connector, timeout=timeout) as session:

        async def one(scheduled: float) -> None:
            try:
                async with session.post(url, data=body) as response:
                    await response.read()
                    result.outcomes[str(response.status)] += 1
            except (TimeoutError, aiohttp.ClientError) as error:
                result.outcomes[type(error).__name__] += 1
            result.latencies_s.append(time.perf_counter() - scheduled)

        started = time.perf_counter()
        tasks = []
        for offset in arrivals:
            delay = started + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(started + offset)))
        await asyncio.gather(*tasks)
        result.elapsed_s = time.perf_counter() - started
    return result


def open_loop(url: str, body: bytes, rate: float, duration_s: float, seed: int = 0) -> BurstResult:
    """Poisson arrivals at ``rate`` per second for ``duration_s`` seconds (bounded)."""
    return asyncio.run(_open_loop(url, body, rate, duration_s, seed))


def broke(result: BurstResult, p99_ms: float, error_budget: float) -> bool:
    total = sum(result.outcomes.values())
    errors = total - result.outcomes.get("200", 0)
    return result.percentile_ms(99) > p99_ms or errors > error_budget * total


def confirmed(run: Callable[[int], T], breaks: Callable[[T], bool]) -> T:
    """A step that breaks is run once more (another arrival sequence, seed 1) and judged on the
    rerun: on a shared machine one stall can break a short step, so a break has to repeat to
    count. The bench's capacity search uses it."""
    result = run(0)
    return run(1) if breaks(result) else result


def capacity_at_slo(
    run: Callable[[float, int], BurstResult],
    p99_ms: float,
    start_rate: float = 25,
    factor: float = 1.4,
    max_rate: float = 5000,
    error_budget: float = 0.001,
) -> tuple[float, list[tuple[float, BurstResult]]]:
    """Raise the arrival rate geometrically until p99 or the error budget breaks (confirmed);
    the capacity is the last rate that held (0 when even the first did not). ``run`` takes the
    rate and an arrival-sequence seed."""
    steps: list[tuple[float, BurstResult]] = []
    held, rate = 0.0, start_rate
    while rate <= max_rate:
        result = confirmed(
            lambda seed, r=rate: run(r, seed), lambda got: broke(got, p99_ms, error_budget)
        )
        steps.append((rate, result))
        if broke(result, p99_ms, error_budget):
            break
        held, rate = rate, rate * factor
    return held, steps
