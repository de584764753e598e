"""What a load generator saw: each request's outcome and latency, and how long the load ran.

One type for every generator here (the closed-loop burst, the aiohttp open-loop source and the
paced Locust scenario), so a sizing step, a benchmark row and a verification are read the same
way. The generator decides which outcome counts as answered well (``ok_outcome``); every other
outcome is an error, kept by kind (HTTP status or client exception name).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    ok_outcome: str = "200"

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

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(self.latencies_s, q) * 1000)
