"""`make size-verify`: measure a sizing run's first recommendation again and say whether its
capacity holds.

It checks the capacity at one application per request (``one_application``; a batched run's
other capacities are not verified). Capacity is measured afresh ``PASSES`` times, each on a new
server with the sweep's knee search on a grid of its own around the prediction, and judged on
the median (one pass on a shared host is as noisy as the spread between passes). Then, on one
more server: steps at the predicted capacity, and the Locust scenario with bad input held at
the operating point (headroom x capacity). Writes verification.md and verification-steps.csv
into the run's folder.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadtests.load.locust_run import PROCESSES, LocustRun, paced_run
from loadtests.sizing.knee import Measured, Step
from loadtests.sizing.measure import (
    locust_load,
    measure_configuration,
    run_step,
    score_body,
    serving,
    warm,
)
from loadtests.sizing.recommend import Option
from loadtests.sizing.report import write_steps

PASSES = 3  # fresh knee searches the verification judges on (their median)
REPEATS = 3  # steps run at the predicted capacity
HOLD_S = 30.0  # how long the operating point is held
TOLERANCE = 0.15  # the measured capacity's allowed deviation from the prediction
AT_PREDICTION = "at the predicted capacity"


def first_recommendation(folder: Path) -> tuple[Option, dict[str, Any]]:
    """A sizing run's first recommendation, as verified (``one_application``), and it as a
    grid configuration."""
    option = one_application(json.loads((folder / "recommendation.json").read_text())[0])
    config = {"name": option["configuration"], "instance": option["instance"], "env": option["env"]}
    return option, config


def one_application(option: Option) -> Option:
    """The recommendation's capacity and CPU per request at one application per request: what
    the verification measures again (the scenario's real applications, with bad input at the
    operating point), whatever mix the recommendation was sized for. Older runs measured only
    that: their option is it already."""
    measured = option.get("capacity_by_applications")
    if measured is None:
        return option
    single = [entry for entry in measured if entry["applications_per_request"] == 1]
    if not single:
        raise ValueError(
            f"'{option['configuration']}' was not measured at one application per request: "
            "the verification checks that capacity"
        )
    return option | {
        "capacity_rps_per_replica": single[0]["rps"],
        "server_cpu_ms_per_request": single[0]["server_cpu_ms_per_request"],
    }


def verification_grid(grid: Mapping[str, Any], predicted: float, slo: float) -> dict[str, Any]:
    """The verification's knee search: one SLO, x1.2 steps from 60% of the prediction."""
    return dict(
        grid, slos_p99_ms=[slo], start_rps=predicted * 0.6, growth=1.2, max_rps=predicted * 2
    )


def generator_line(passes: list[Measured], at_prediction: list[Step]) -> str:
    """How hard the load generator worked, and whether any pass measured it instead."""
    steps = [*(s for m in passes for s in m.steps), *at_prediction]
    busiest = max((s.generator_peak_cpu_percent for s in steps), default=0.0)
    saturated = sum(s.generator_saturated for s in steps)
    bound = sum(m.generator_bound(m.slos_p99_ms[0]) for m in passes)
    return (
        f"busiest process at most {busiest:.0f}% of one core, {saturated} of {len(steps)} steps "
        f"saturated, {bound} of {len(passes)} passes generator-bound (a lower bound, not the "
        "server's capacity)"
    )


def verification_markdown(
    option: Option,
    grid: Mapping[str, Any],
    passes: list[Measured],
    at_prediction: list[Step],
    mixed: LocustRun,
) -> str:
    predicted, slo = option["capacity_rps_per_replica"], option["slo_p99_ms"]
    capacities = [m.capacity(slo) for m in passes]
    measured = statistics.median(capacities)
    deviation = measured / predicted - 1
    held = sum(step.held(slo) for step in at_prediction)
    cpu_then = option["server_cpu_ms_per_request"]
    cpu_now = statistics.median(m.cpu_ms_per_request(slo) for m in passes)
    operating = predicted * grid["headroom"]
    return (
        f"# Verification of '{option['configuration']}' at p99 <= {slo:.0f} ms "
        f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)\n\n"
        f"- capacity: predicted {predicted:.0f} req/s, measured again {measured:.0f} "
        f"req/s, the median of {len(passes)} passes on fresh servers "
        f"({', '.join(f'{c:.0f}' for c in capacities)}): {deviation:+.1%}, "
        f"{'within' if abs(deviation) <= TOLERANCE else 'outside'} +/-{TOLERANCE:.0%};\n"
        f"- server CPU per request below the knee: {cpu_then:.2f} ms when sized, "
        f"{cpu_now:.2f} ms now ({cpu_now / cpu_then - 1:+.1%}: the same work on a "
        f"{'slower' if cpu_now > cpu_then else 'faster'} host, if far from 0);\n"
        f"- {len(at_prediction)} steps of {grid['step_seconds']} s at the predicted "
        f"{predicted:.0f} req/s: p99 {', '.join(f'{s.p99_ms:.0f}' for s in at_prediction)} ms, "
        f"errors {', '.join(str(s.errors) for s in at_prediction)}; the SLO held in {held} "
        f"of {len(at_prediction)} (capacity is the knee, where p99 meets the SLO, so steps there "
        "land on either side of it);\n"
        f"- Locust at the operating point, {operating:.0f} req/s ({grid['headroom']:.0%} of "
        f"capacity), 5% bad input, {HOLD_S:.0f} s: {mixed.total['Request Count']} "
        f"requests, {mixed.total['Failure Count']} failures {dict(mixed.failure_kinds)}, p99 "
        f"{mixed.arrivals.percentile_ms(99):.0f} ms (from schedule);\n"
        f"- generator: {generator_line(passes, at_prediction)}.\n\n"
        "Every step of each pass and at the predicted capacity, in the order run: "
        "[verification-steps.csv](verification-steps.csv).\n"
    )


def verify(grid: Mapping[str, Any], folder: Path, processes: int = PROCESSES) -> str:
    """Verify the sizing run in ``folder`` with the Locust load on ``processes`` workers;
    returns the verification's text."""
    option, config = first_recommendation(folder)
    predicted, slo = option["capacity_rps_per_replica"], option["slo_p99_ms"]
    search = verification_grid(grid, predicted, slo)
    passes = [measure_configuration(config, search, processes) for _ in range(PASSES)]
    with serving(config["env"]) as server:
        load = locust_load(server.url, processes)
        warm(f"{server.url}/score", score_body(), load, search["start_rps"])
        at_prediction = [
            run_step(server, load, predicted, grid["step_seconds"]) for _ in range(REPEATS)
        ]
        mixed = paced_run(server.url, predicted * grid["headroom"], HOLD_S, 0.05, processes)
    text = verification_markdown(option, grid, passes, at_prediction, mixed)
    (folder / "verification.md").write_text(text)
    write_steps(
        folder / "verification-steps.csv",
        [
            *((f"pass {index}", s) for index, m in enumerate(passes, 1) for s in m.steps),
            *((AT_PREDICTION, s) for s in at_prediction),
        ],
    )
    return text
