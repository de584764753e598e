"""Open-loop load: requests start on a Poisson schedule at a target rate, whatever the server's
response time, so queueing shows up in the latency instead of silently lowering the rate
(closed-loop clients hide tail latency). Latency is measured from the scheduled start. The
generator is this one process: it reports its own CPU over the arrivals and how many of them it
started late (``pacing.LATE_S``), so a step it could not drive is not read as the server's.

The benchmark's capacity steps and the sizing's runner-alone steps use it: both post bodies the
Locust scenario does not speak (other servers' formats, the runner's matrix API).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np

from loadtests.burst import JSON
from loadtests.load_result import LoadResult
from loadtests.pacing import LATE_S, CpuClock


async def _open_loop(
    url: str, body: bytes, rate: float, duration_s: float, seed: int
) -> LoadResult:
    result = LoadResult()
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

        clock = CpuClock()
        started = time.perf_counter()
        tasks = []
        for offset in arrivals:
            delay = started + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() - (started + offset) > LATE_S:
                result.sent_late += 1
            tasks.append(asyncio.create_task(one(started + offset)))
        result.generator.append(clock.read("aiohttp"))
        await asyncio.gather(*tasks)
        result.elapsed_s = time.perf_counter() - started
    return result


def open_loop(url: str, body: bytes, rate: float, duration_s: float, seed: int = 0) -> LoadResult:
    """Poisson arrivals at ``rate`` per second for ``duration_s`` seconds (bounded); ``seed``
    picks the arrival sequence."""
    return asyncio.run(_open_loop(url, body, rate, duration_s, seed))
