"""What a load generator saw: each request's outcome and latency, how long the load ran, and
what generating it cost the generator itself.

One type for both generators here (the closed-loop burst, and the paced Locust scenario, one
process or a master and its workers), so a sizing step, a benchmark row and a verification are
read the same way. The generator decides which outcome counts as
answered well (``ok_outcome``); every other outcome is an error, kept by kind (HTTP status or
client exception name). An open-loop generator also says how many arrivals it sent late through
its own fault (``sent_late``: its event loop woke late for them) and the CPU each of its
processes used (``generator``): a generator that falls behind its schedule or runs out of CPU
measures itself, not the server.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ProcessCpu:
    """The CPU one generator process used over the load (``wall_s`` seconds of it)."""

    name: str  # "master", "worker <host>:<pid>", "local"
    cpu_s: float
    wall_s: float

    @property
    def percent(self) -> float:
        """% of one core: a Python process cannot use more than about 100."""
        return self.cpu_s / self.wall_s * 100 if self.wall_s > 0 else 0.0


@dataclass
class LoadResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    ok_outcome: str = "200"
    sent_late: int = 0  # arrivals the generator itself sent late (pacing.LATE_S)
    generator: list[ProcessCpu] = field(default_factory=list)  # empty: not measured

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def error_kinds(self) -> dict[str, int]:
        return {kind: n for kind, n in self.outcomes.items() if kind != self.ok_outcome}

    @property
    def errors(self) -> int:
        return self.requests - self.outcomes.get(self.ok_outcome, 0)

    @property
    def generator_cpu_percent(self) -> float:
        """All generator processes together, % of one core."""
        return sum(process.percent for process in self.generator)

    @property
    def generator_peak_cpu_percent(self) -> float:
        """The busiest generator process, % of one core: what saturates first."""
        return max((process.percent for process in self.generator), default=0.0)

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(self.latencies_s, q) * 1000)
