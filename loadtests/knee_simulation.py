"""How often the knee search lands within +/-15% of a known capacity, on simulated steps.

    python -m loadtests.knee_simulation [--runs 1000]

The measured noise of this machine is modelled on a latency curve with a known knee: log(p99)
rises linearly with the rate (p99 = 100 ms at 620 req/s, x e every 150 req/s), each step adds
Gaussian noise of 0.35 in log p99 (one 6 s step's p99 moves by 2x between reruns), and 7% of
steps meet a stall that multiplies p99 by 3-10x. It runs ``knee.search`` and ``knee.capacity``
themselves on the sweep's grid (`loadtests/sizing.yaml`) and on the verification's, and scores
a verification the way `make size-verify` does (the median of three passes against one sweep
pass). Seeded: the same command prints the same figures.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable

import yaml

from credit_risk.config import REPO_ROOT
from loadtests import knee
from loadtests.knee import Step
from loadtests.size import VERIFY_PASSES, verification_grid

KNEE_RPS = 620.0  # where p99 crosses 100 ms
E_FOLD_RPS = 150.0  # p99 grows e-fold per this many req/s near the knee
NOISE = 0.35  # standard deviation of log p99 between reruns of one step
STALL_SHARE, STALL_FACTOR = 0.07, (3.0, 10.0)
SLO = 100.0
TOLERANCE = 0.15


def simulated_step(rng: random.Random) -> Callable[[float], Step]:
    def step(rate: float) -> Step:
        log_p99 = math.log(SLO) + (rate - KNEE_RPS) / E_FOLD_RPS + rng.gauss(0, NOISE)
        if rng.random() < STALL_SHARE:
            log_p99 += math.log(rng.uniform(*STALL_FACTOR))
        p99 = round(math.exp(log_p99), 1)
        return Step(rate, rate, p99 / 2, p99, p99, 0, 1000, 50.0, 300.0)

    return step


def one_pass(grid: dict, rng: random.Random) -> float:
    return knee.capacity(knee.search(simulated_step(rng), grid), SLO)


def share_within(values: list[float]) -> float:
    return sum(abs(v - 1) <= TOLERANCE for v in values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    runs = parser.parse_args().runs
    sweep = yaml.safe_load((REPO_ROOT / "loadtests" / "sizing.yaml").read_text())
    verification = verification_grid(sweep, KNEE_RPS, SLO)
    rng = random.Random(0)
    for name, grid in (("sweep", sweep), ("verification", verification)):
        ratios = [one_pass(grid, rng) / KNEE_RPS for _ in range(runs)]
        print(
            f"one {name} pass: within +/-{TOLERANCE:.0%} of the true knee in "
            f"{share_within(ratios):.1%} of {runs} runs, spread {statistics.pstdev(ratios):.1%}"
        )
    deviations = []
    for _ in range(runs):
        predicted = one_pass(sweep, rng)
        passes = [
            one_pass(verification_grid(sweep, predicted, SLO), rng) for _ in range(VERIFY_PASSES)
        ]
        deviations.append(statistics.median(passes) / predicted)
    print(
        f"verification (median of {VERIFY_PASSES} passes vs one sweep pass): within "
        f"+/-{TOLERANCE:.0%} in {share_within(deviations):.1%} of {runs} runs"
    )


if __name__ == "__main__":
    main()
