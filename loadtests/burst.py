"""A closed-loop burst: N connections each sending M requests back to back; counts outcomes.

Used where an exact count matters (zero errors, one log row per answer), not for latency
figures, which come from Locust.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

JSON = {"content-type": "application/json"}


async def _burst(url: str, body: bytes, connections: int, per_connection: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(headers=JSON, connector=connector) as session:

        async def worker() -> None:
            for _ in range(per_connection):
                try:
                    async with session.post(url, data=body) as response:
                        await response.read()
                        outcomes[str(response.status)] += 1
                except aiohttp.ClientError as error:
                    outcomes[type(error).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return outcomes


def burst(url: str, body: bytes, connections: int, per_connection: int) -> Counter[str]:
    """Outcome counts keyed by HTTP status or client exception name."""
    return asyncio.run(_burst(url, body, connections, per_connection))
