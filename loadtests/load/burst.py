"""A closed-loop burst: N connections each sending requests back to back.

Used where an exact count matters (zero errors, one log row per answer), for the benchmark's
side-by-side throughput under identical load, and to warm a server before it is measured;
capacity at a latency SLO needs open-loop arrivals instead (the paced Locust scenario,
``loadtests/load/pacing.py``).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from loadtests.load.load_result import LoadResult

JSON = {"content-type": "application/json"}


async def _burst(url: str, body: bytes, connections: int, per_connection: int) -> LoadResult:
    result = LoadResult()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(headers=JSON, connector=connector) as session:

        async def worker() -> None:
            for _ in range(per_connection):
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body) as response:
                        await response.read()
                        result.outcomes[str(response.status)] += 1
                except aiohttp.ClientError as error:
                    result.outcomes[type(error).__name__] += 1
                result.latencies_s.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        result.elapsed_s = time.perf_counter() - started
    return result


def burst(url: str, body: bytes, connections: int, per_connection: int) -> LoadResult:
    """Outcome counts (keyed by HTTP status or client exception name) and latencies."""
    return asyncio.run(_burst(url, body, connections, per_connection))
