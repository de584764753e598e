"""Capacity at a p99 SLO from load steps: where the latency curve crosses the SLO.

Near the knee one short step's p99 moves by a factor of two between reruns at the same rate on
a shared machine, so "the highest step that held" is as noisy as one step, and is also stuck on
the step grid. Latency grows roughly exponentially with load around the knee, so the crossing is
read off a straight line fitted to log(p99) against the offered rate over every step whose p99
is within a factor ``BAND`` of the SLO: several steps share the noise, and the answer does not
depend on where the grid happened to put them. Without steps on both sides of the SLO in that
band (or with a line that does not rise) it falls back to the highest rate that held below the
lowest that broke.

``Step`` is one measured step (built from what the load generator saw, plus the server's CPU
and memory over it); ``Measured`` is one served configuration's steps, read per SLO. The sizing
sweep, its verification and the benchmark all search and read capacity here.

A step whose generator was saturated (``Step.generator_saturated``: a generator process above
``GENERATOR_CPU_LIMIT`` % of one core, or more than ``LATE_SHARE`` of the arrivals sent late by
the generator itself) measured the generator, not the server: its latency includes the
generator's own delay. Such steps end the ramp and are no points of the fit; when one lies at or
below the lowest rate that broke the SLO on a sound generator, the capacity is not measured but
generator-bound (``generator_bound``): the sound steps' reading is only a lower bound.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtests.load.load_result import LoadResult

ERROR_BUDGET = 0.001
BAND = 3.0  # steps with p99 within SLO / BAND .. SLO * BAND inform the fitted line
# A Python generator process cannot use more than one core; past this share of it, its event
# loop wakes late and its latencies are partly its own.
GENERATOR_CPU_LIMIT = 85.0
LATE_SHARE = 0.05  # the offered rate is not delivered once this share of arrivals leaves late


@dataclass
class Step:
    """One load step as measured: offered and achieved rate, latency percentiles (from each
    scheduled arrival), errors by kind, the server's CPU (% of one core) and resident memory
    over it, and the generator's own CPU (all its processes, and the busiest one) and late
    sends."""

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
    generator_cpu_percent: float = 0.0  # every generator process together, % of one core
    generator_peak_cpu_percent: float = 0.0  # the busiest generator process, % of one core
    generator_processes: int = 0  # how many processes generated the load (0: not measured)
    sent_late: int = 0  # arrivals the generator itself sent late
    applications: int = 1  # applications (rows) in each request of the step

    @classmethod
    def of(
        cls,
        rate: float,
        window_s: float,
        result: LoadResult,
        server_cpu_percent: float,
        server_rss_mb: float,
        applications: int = 1,
    ) -> Step:
        """The step at ``rate`` requests/s of ``applications`` each, from what its generator
        saw over a ``window_s`` window."""
        return cls(
            offered_rps=round(float(rate), 1),
            achieved_rps=round(result.requests_per_s, 1),
            p50_ms=round(result.percentile_ms(50), 1),
            p95_ms=round(result.percentile_ms(95), 1),
            p99_ms=round(result.percentile_ms(99), 1),
            errors=result.errors,
            requests=result.requests,
            server_cpu_percent=round(server_cpu_percent, 1),
            server_rss_mb=round(server_rss_mb, 1),
            error_kinds=result.error_kinds,
            window_s=window_s,
            generator_cpu_percent=round(result.generator_cpu_percent, 1),
            generator_peak_cpu_percent=round(result.generator_peak_cpu_percent, 1),
            generator_processes=len(result.generator),
            sent_late=result.sent_late,
            applications=applications,
        )

    @property
    def offered_rows_per_s(self) -> float:
        """Applications offered per second: requests x applications per request."""
        return round(self.offered_rps * self.applications, 1)

    @property
    def achieved_rows_per_s(self) -> float:
        return round(self.achieved_rps * self.applications, 1)

    @property
    def generator_saturated(self) -> bool:
        """The generator could not keep up: a process of it near a full core, or it did not
        deliver the offered rate on schedule (more than ``LATE_SHARE`` sent late)."""
        return (
            self.generator_peak_cpu_percent > GENERATOR_CPU_LIMIT
            or self.sent_late > LATE_SHARE * self.requests
        )

    def within_error_budget(self) -> bool:
        return self.errors <= ERROR_BUDGET * self.requests

    def held(self, slo_p99_ms: float) -> bool:
        return self.p99_ms <= slo_p99_ms and self.within_error_budget()


def bracket(steps: list[Step], slo_p99_ms: float) -> tuple[float, float]:
    """The highest rate that held below the lowest that broke (0 if none), and that lowest
    broken rate (inf if none); the steps may come in any order. A rate broke only if none of
    its runs held: a break that its rerun did not confirm was a stall of the host, not the
    knee, and must not send the refinement below where the ramp went on."""
    held_rates = {s.offered_rps for s in steps if s.held(slo_p99_ms)}
    broke = min((s.offered_rps for s in steps if s.offered_rps not in held_rates), default=math.inf)
    held = max((rate for rate in held_rates if rate < broke), default=0.0)
    return held, broke


def sound(steps: list[Step]) -> list[Step]:
    """The steps whose generator kept up: the only ones that measured the server."""
    return [s for s in steps if not s.generator_saturated]


def search(step: Callable[[float], Step], grid: Mapping[str, Any]) -> list[Step]:
    """Geometric steps from ``start_rps`` by ``growth`` until the loosest SLO breaks, then
    ``refine_steps`` bisections of each SLO's knee (a coarse ramp alone is stuck on its grid).
    Only the ramp's stop is confirmed: a step that breaks the loosest SLO is run once more and
    the ramp goes on if the rerun holds, since one stall of the shared host can break a short
    step. Both runs are kept as points for the fit, and no other step is rerun: judging only
    breaks on a second try would bias the knee upwards. A step with a saturated generator ends
    the ramp at once (higher rates would measure the generator harder), and the bisections
    stay below it: between the highest sound step that held and the lowest rate that broke
    with a sound generator or saturated one, where a sound step may still find the knee."""
    steps: list[Step] = []

    def goes_on(rate: float, slo: float) -> bool:
        steps.append(step(rate))
        return steps[-1].held(slo) and not steps[-1].generator_saturated

    loosest = max(grid["slos_p99_ms"])
    rate = grid["start_rps"]
    while rate <= grid["max_rps"] and (
        goes_on(rate, loosest) or (not steps[-1].generator_saturated and goes_on(rate, loosest))
    ):
        rate *= grid["growth"]
    for slo in grid["slos_p99_ms"]:
        for _ in range(grid.get("refine_steps", 0)):
            below, above = bracket(sound(steps), slo)
            above = min([above, *(s.offered_rps for s in steps if s.generator_saturated)])
            if not below or math.isinf(above) or below >= above:
                break
            goes_on(math.sqrt(below * above), slo)
    return steps


def generator_bound(steps: list[Step], slo_p99_ms: float) -> bool:
    """Whether the capacity at this SLO is the generator's, not the server's: a step with a
    saturated generator at or below the lowest rate that broke the SLO with a sound one (any
    rate, when no sound step broke it)."""
    _, broke = bracket(sound(steps), slo_p99_ms)
    return any(s.generator_saturated and s.offered_rps <= broke for s in steps)


def capacity(steps: list[Step], slo_p99_ms: float) -> float:
    """The offered rate at which the fitted log(p99) line meets the SLO, kept inside the span of
    the steps it was fitted on and below any rate that broke the error budget (such steps still
    count as latency points: past the knee the API sheds a few requests with quick 503s). Read
    from the sound steps only: where ``generator_bound``, a lower bound."""
    steps = sound(steps)
    held, _ = bracket(steps, slo_p99_ms)
    overload = min((s.offered_rps for s in steps if not s.within_error_budget()), default=math.inf)
    # the knee's neighbourhood only: a stalled step far below it is no point of its curve
    near = [
        s
        for s in steps
        if slo_p99_ms / BAND <= s.p99_ms <= slo_p99_ms * BAND and s.offered_rps >= held / 2
    ]
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


@dataclass
class Measured:
    """One served configuration (its name, the instance it runs on, its environment) and the
    steps measured on it, all at one number of applications per request; ``slos_p99_ms`` are
    the SLOs its search looked for. Rates and capacities are requests/s; a request's p99 is
    what the SLO bounds, whatever it carries."""

    name: str
    instance: str
    env: dict[str, str]
    steps: list[Step] = field(default_factory=list)
    slos_p99_ms: tuple[float, ...] = ()

    @property
    def applications(self) -> int:
        """Applications per request of its steps (1 before any step is measured)."""
        found = {s.applications for s in self.steps} or {1}
        if len(found) > 1:
            raise ValueError(f"{self.name}: steps of {sorted(found)} applications per request")
        return found.pop()

    @property
    def label(self) -> str:
        """The name, with the batch size when a request carries more than one application."""
        if self.applications == 1:
            return self.name
        return f"{self.name}, {self.applications} applications/request"

    def capacity_rows_per_s(self, slo_p99_ms: float) -> float:
        """The capacity in applications (rows) per second: requests/s x applications."""
        return round(self.capacity(slo_p99_ms) * self.applications, 1)

    def capacity(self, slo_p99_ms: float) -> float:
        """Fitted per SLO; a looser SLO never gets less than a tighter one did (each SLO's fit
        sees its own steps, so two close knees can otherwise come out in the wrong order)."""
        tighter = [s for s in self.slos_p99_ms if s < slo_p99_ms]
        return max(capacity(self.steps, s) for s in [*tighter, slo_p99_ms])

    def generator_bound(self, slo_p99_ms: float) -> bool:
        """The capacity at this SLO is a lower bound set by the load generator (knee.py)."""
        return generator_bound(self.steps, slo_p99_ms)

    def cpu_ms_per_request(self, slo_p99_ms: float) -> float:
        """Server CPU per request over the steps from half the capacity to the capacity: the
        same work costs more CPU time when the shared host is slow, so comparing this between
        two runs tells drift of the machine from error of the method. Steps past the knee are
        left out (queueing and shedding cost CPU of their own), and so are light ones (fixed
        costs dominate), so two ramps on different grids are compared over the same band."""
        top = self.capacity(slo_p99_ms)
        costs = [
            s.server_cpu_percent * 10 / s.achieved_rps
            for s in self.steps
            if top / 2 <= s.offered_rps <= top and s.achieved_rps
        ]
        return round(statistics.median(costs), 3) if costs else math.nan
