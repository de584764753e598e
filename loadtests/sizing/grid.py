"""What ``loadtests/sizing.yaml`` declares about the traffic, read in one place: the numbers of
applications per request each configuration is measured at, the step grid of each, the
production mix of them, and the rows/s that mix makes.

- ``applications_per_request``: the batch sizes measured (default ``[1]``); every configuration
  is served and searched at each.
- ``start_rps``, ``growth``, ``max_rps``: the ramp of one-application requests. Every other
  batch size has its own ``start_rps`` and ``max_rps`` (``growth`` optional) under
  ``batch_steps``, in requests/s: a 256-application request is about a hundred times the work
  of one, so the one-application ramp (150 to 3,000 req/s) would ask for 38,400 to 768,000
  rows/s. A batch size without its own section is refused rather than guessed.
- ``applications_mix``: the share of ``target_rps`` (requests) per batch size (default
  ``{1: 1.0}``). The rows/s to carry, and to log, are ``target_rps`` x the mix's mean
  applications per request (``target_rows_per_s``).

Pure functions over the parsed YAML; ``tests/unit/test_sizing.py`` holds them to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_APPLICATIONS = 256  # the API's own limit per request (README, "The API")
STEP_KEYS = ("start_rps", "max_rps", "growth")  # what a batch size's section may set
ONE = {1: 1.0}  # the mix of a grid that declares none: one application per request


def batch_sizes(grid: Mapping[str, Any]) -> list[int]:
    """The applications per request to measure, smallest first."""
    sizes = sorted({int(size) for size in grid.get("applications_per_request", [1])})
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_APPLICATIONS:
        raise ValueError(
            f"applications_per_request must lie in 1..{MAX_APPLICATIONS}, got {sizes or 'none'}"
        )
    return sizes


def step_grid(grid: Mapping[str, Any], applications: int) -> dict[str, Any]:
    """The knee search's grid for requests of ``applications`` each: the grid itself for one,
    with the batch size's own ``batch_steps`` section over it otherwise."""
    if applications == 1:
        return dict(grid)
    section = grid.get("batch_steps", {}).get(applications)
    if not section or not {"start_rps", "max_rps"} <= set(section):
        raise ValueError(
            f"{applications} applications per request: declare start_rps and max_rps under "
            f"batch_steps.{applications} (the one-application ramp would ask for "
            f"{grid['max_rps'] * applications:,.0f} rows/s)"
        )
    unknown = set(section) - set(STEP_KEYS)
    if unknown:
        raise ValueError(f"batch_steps.{applications}: unknown keys {sorted(unknown)}")
    steps = dict(grid) | {key: section[key] for key in STEP_KEYS if key in section}
    if not 0 < steps["start_rps"] <= steps["max_rps"] or steps["growth"] <= 1:
        raise ValueError(f"batch_steps.{applications}: need 0 < start_rps <= max_rps, growth > 1")
    return steps


def ramp_steps(steps: Mapping[str, Any]) -> int:
    """How many ramp steps a grid allows at most (reruns and bisections aside)."""
    return math.floor(math.log(steps["max_rps"] / steps["start_rps"], steps["growth"]) + 1e-9) + 1


def applications_mix(grid: Mapping[str, Any]) -> dict[int, float]:
    """Applications per request -> share of the target's requests, checked to add up to 1."""
    mix = {int(size): float(share) for size, share in grid.get("applications_mix", ONE).items()}
    if not mix or any(share <= 0 for share in mix.values()):
        raise ValueError(f"applications_mix needs positive shares, got {mix}")
    if not math.isclose(sum(mix.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"applications_mix shares add up to {sum(mix.values())}, not 1")
    if min(mix) < 1 or max(mix) > MAX_APPLICATIONS:
        raise ValueError(f"applications_mix sizes must lie in 1..{MAX_APPLICATIONS}")
    return dict(sorted(mix.items()))


def mean_applications(mix: Mapping[int, float]) -> float:
    """Applications per request, on average over the mix."""
    return sum(size * share for size, share in mix.items())


def target_rows_per_s(grid: Mapping[str, Any]) -> float:
    """The applications (rows) per second the target load brings: requests x the mix's mean;
    each is one row of the prediction log."""
    return round(float(grid["target_rps"]) * mean_applications(applications_mix(grid)), 1)
