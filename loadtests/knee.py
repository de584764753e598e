"""Capacity at a p99 SLO from load steps: where the latency curve crosses the SLO.

Near the knee one short step's p99 moves by a factor of two between reruns at the same rate on
a shared machine, so "the highest step that held" is as noisy as one step, and is also stuck on
the step grid. Latency grows roughly exponentially with load around the knee, so the crossing is
read off a straight line fitted to log(p99) against the offered rate over every step whose p99
is within a factor ``BAND`` of the SLO: several steps share the noise, and the answer does not
depend on where the grid happened to put them. Without steps on both sides of the SLO in that
band (or with a line that does not rise) it falls back to the highest rate that held below the
lowest that broke.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ERROR_BUDGET = 0.001
BAND = 3.0  # steps with p99 within SLO / BAND .. SLO * BAND inform the fitted line


def within_error_budget(errors: int, requests: int) -> bool:
    return errors <= ERROR_BUDGET * requests


@dataclass
class Step:
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    requests: int
    server_cpu_percent: float
    server_rss_mb: float
    error_kinds: dict[str, int] = field(default_factory=dict)  # status or exception: count
    window_s: float = 0.0  # how long the step's arrivals ran

    def within_error_budget(self) -> bool:
        return within_error_budget(self.errors, self.requests)

    def held(self, slo_p99_ms: float) -> bool:
        return self.p99_ms <= slo_p99_ms and self.within_error_budget()


def bracket(steps: list[Step], slo_p99_ms: float) -> tuple[float, float]:
    """The highest rate that held below the lowest that broke (0 if none), and that lowest
    broken rate (inf if none); the steps may come in any order."""
    broke = min((s.offered_rps for s in steps if not s.held(slo_p99_ms)), default=math.inf)
    held = max(
        (s.offered_rps for s in steps if s.held(slo_p99_ms) and s.offered_rps < broke),
        default=0.0,
    )
    return held, broke


def search(step: Callable[[float], Step], grid: Mapping[str, Any]) -> list[Step]:
    """Geometric steps from ``start_rps`` by ``growth`` until the loosest SLO breaks, then
    ``refine_steps`` bisections of each SLO's knee (a coarse ramp alone is stuck on its grid).
    Only the ramp's stop is confirmed: a step that breaks the loosest SLO is run once more and
    the ramp goes on if the rerun holds, since one stall of the shared host can break a short
    step. Both runs are kept as points for the fit, and no other step is rerun: judging only
    breaks on a second try would bias the knee upwards."""
    steps: list[Step] = []

    def held(rate: float, slo: float) -> bool:
        steps.append(step(rate))
        return steps[-1].held(slo)

    loosest = max(grid["slos_p99_ms"])
    rate = grid["start_rps"]
    while rate <= grid["max_rps"] and (held(rate, loosest) or held(rate, loosest)):
        rate *= grid["growth"]
    for slo in grid["slos_p99_ms"]:
        for _ in range(grid.get("refine_steps", 0)):
            below, above = bracket(steps, slo)
            if not below or math.isinf(above):
                break
            held(math.sqrt(below * above), slo)
    return steps


def capacity(steps: list[Step], slo_p99_ms: float) -> float:
    """The offered rate at which the fitted log(p99) line meets the SLO, kept inside the span of
    the steps it was fitted on and below any rate that broke the error budget (such steps still
    count as latency points: past the knee the API sheds a few requests with quick 503s)."""
    held, _ = bracket(steps, slo_p99_ms)
    overload = min((s.offered_rps for s in steps if not s.within_error_budget()), default=math.inf)
    near = [s for s in steps if slo_p99_ms / BAND <= s.p99_ms <= slo_p99_ms * BAND]
    rates = np.array([s.offered_rps for s in near])
    below = rates[[s.p99_ms <= slo_p99_ms for s in near]]
    above = rates[[s.p99_ms > slo_p99_ms for s in near]]
    if not below.size or not above.size or np.ptp(rates) == 0:  # no line through one rate
        return held
    slope, intercept = np.polyfit(rates, np.log([s.p99_ms for s in near]), 1)
    if slope <= 0:
        return held
    crossing = (math.log(slo_p99_ms) - intercept) / slope
    crossing = min(max(crossing, rates.min()), rates.max())
    return round(float(crossing), 1) if crossing < overload else held
