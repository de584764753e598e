"""Whether the runner can be reached, so scoring fails fast while it cannot.

A killed runner worker is respawned by BentoML's arbiter in about 10 s, and a stopped one
(SIGSTOP, a stuck GPU call) may never answer; in both cases the arbiter still holds its
socket, so calls connect, queue and hang. Measured before this breaker, with 16 clients, the
slowest answer took 8.6 s: to a client with a 1-2 s timeout, an outage. Now the first call
that cannot reach the runner, or gets no answer within its deadline while a probe of the
runner gets none either, opens the breaker: from then on every scoring request
is answered 503 at once, ``/readyz`` says not ready, and a background probe of the runner's
``/readyz`` closes the breaker as soon as it answers again, with no restart of the API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]


class RunnerBreaker:
    """Open after an unanswered call, closed by the first successful probe.

    ``generation`` counts closings: a call that started before the breaker last closed cannot
    reopen it when it finally fails (it saw the old outage, not a new one)."""

    def __init__(self, probe: Probe, interval_s: float, probe_timeout_s: float) -> None:
        self.probe = probe
        self.interval_s = interval_s
        self.probe_timeout_s = probe_timeout_s
        self.opened_at: float | None = None
        self.confirming = False  # a late answer is being checked with a probe
        self.generation = 0
        self.probing: asyncio.Task[None] | None = None  # held so the task is not collected

    @property
    def is_open(self) -> bool:
        """Refusing calls: open, or checking a late answer (no new call may queue behind a
        runner that may be hung; against a live one the check takes milliseconds)."""
        return self.opened_at is not None or self.confirming

    def suspect(self, generation: int, reason: str) -> None:
        """A call went unanswered within its deadline: open only if a probe fails too. On a
        host short of CPU a healthy runner's answer can be late; opening on that alone turned
        one slow call into a quarter second of 503s for every request."""
        if self.is_open or generation != self.generation:
            return
        self.confirming = True
        self.probing = asyncio.get_running_loop().create_task(self.confirm(generation, reason))

    async def confirm(self, generation: int, reason: str) -> None:
        answered = await self.probe_once()
        self.confirming = False
        if not answered:
            self.trip(generation, reason)

    def trip(self, generation: int, reason: str) -> None:
        """Open, unless already open or ``generation`` is stale; start probing."""
        if self.opened_at is not None or generation != self.generation:
            return
        self.opened_at = time.monotonic()
        log.warning("runner unreachable (%s): scoring answers 503 until it is back", reason)
        self.probing = asyncio.get_running_loop().create_task(self.probe_until_back())

    async def probe_until_back(self) -> None:
        while not await self.probe_once():
            await asyncio.sleep(self.interval_s)
        outage_s = time.monotonic() - (self.opened_at or 0.0)
        self.opened_at = None
        self.generation += 1
        log.warning("runner back after %.1fs: scoring resumed", outage_s)

    async def probe_once(self) -> bool:
        """One bounded probe; any failure (refused, reset, timeout, not ready) is False."""
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                return await self.probe()
        except Exception as error:  # a probe must never end the probing loop
            log.debug("runner probe failed: %r", error)
            return False
