"""A closed-loop burst: N connections each sending requests back to back; counts outcomes and
keeps latencies.

Used where an exact count matters (zero errors, one log row per answer) and for side-by-side
comparisons of configurations under identical load; sizing uses Locust.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import numpy as np

JSON = {"content-type": "application/json"}


@dataclass
class BurstResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return sum(self.outcomes.values()) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        return (
            float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")
        )


async def _burst(url: str, body: bytes, connections: int, per_connection: int) -> BurstResult:
    result = BurstResult()
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


def burst(url: str, body: bytes, connections: int, per_connection: int) -> BurstResult:
    """Outcome counts (keyed by HTTP status or client exception name) and latencies."""
    return asyncio.run(_burst(url, body, connections, per_connection))
