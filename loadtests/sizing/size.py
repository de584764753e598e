"""`make size`: measure each declared configuration's capacity at each latency SLO, size the
API and runner deployments for a target load at the least cost, and write a report.

    python -m loadtests.sizing.size [--grid loadtests/sizing.yaml] [--prices loadtests/prices.yaml]
                                    [--no-profiles]
    python -m loadtests.sizing.size --verify [--run loadtests/reports/sizing-YYYYMMDD-HHMM]

For every configuration in the grid, and every number of applications per request the grid
lists (`applications_per_request`, each on its own step grid: `loadtests/sizing/grid.py`), it
serves the built Bento (`credit-risk:latest`) with that configuration's environment and its own
empty prediction log, and raises open-loop Poisson arrivals (the Locust scenario from a master
and ``--processes`` workers, paced per user on a Poisson schedule, measured over a window after
the connections are open; `loadtests/load/pacing.py`) step by step until p99 passes the largest
SLO or errors pass the budget, then bisects each SLO's knee, recording latency percentiles,
errors by kind, server CPU and memory, and the generator's own CPU beside it, per step
(`loadtests/sizing/measure.py`). Capacity is where the fitted latency curve meets the SLO
(`loadtests/sizing/knee.py`), unless a saturated generator set it: then it is reported as
generator-bound, a lower bound. It also measures the runner alone (per-stage sizing), the same
paced source posting pre-built matrices, and first of all, briefly, the prediction log alone,
per API pod and per PostgreSQL database (`loadtests/sizing/log_stage.py`): no recommendation
answers more rows than the log writes.

Output in loadtests/reports/sizing-YYYYMMDD-HHMM/ (`loadtests/sizing/report.py`): report.md,
grid.yaml (the grid it ran), steps.csv, log-stage.json, latency.png, capacity.png,
runner_devices.png, recommendation.json and deployment.yaml (replicas, resource requests and
autoscaling per stage, tagged with the model version: `loadtests/sizing/recommend.py`). Then
both Kubernetes profiles from the same values (`loadtests/sizing/profiles.py`; not with
`--no-profiles`, for a run that is not to be deployed): the CPU profile in whichever topology
the run recommends, the runner component included when it has a runner stage. `--verify`
measures the newest run's first recommendation again at one application per request
(`loadtests/sizing/verify.py`) and adds verification.md and verification-steps.csv to its
folder. Loopback only; every step is bounded in time and rate.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from loadtests import runs
from loadtests.load import locust_run
from loadtests.sizing import log_stage, profiles, recommend, verify
from loadtests.sizing.grid import applications_mix, batch_sizes, step_grid
from loadtests.sizing.measure import measure_configuration, measure_runner_alone
from loadtests.sizing.report import write_sizing_report
from model_artifact.champion import resolve_served_tags
from model_artifact.settings import RegistrySettings

TOOL = "sizing"  # run folders are loadtests/reports/sizing-YYYYMMDD-HHMM


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.sizing.size",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--grid", type=Path, default=runs.LOADTESTS / "sizing.yaml", help="configurations, SLOs"
    )
    parser.add_argument(
        "--prices", type=Path, default=runs.LOADTESTS / "prices.yaml", help="instance prices"
    )
    parser.add_argument(
        "--out", type=Path, default=runs.REPORTS, help="where run folders go (and --verify looks)"
    )
    parser.add_argument(
        "--verify", action="store_true", help="measure a run's first recommendation again"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=locust_run.PROCESSES,
        help="Locust worker processes per step (-1: one per core; 0: one process, no workers)",
    )
    parser.add_argument(
        "--no-profiles",
        action="store_true",
        help="leave deploy/k8s/overlays as they are (a trial or reduced run)",
    )
    parser.add_argument(
        "--run",
        type=Path,
        metavar="FOLDER",
        help="the sizing run folder to verify (default: the newest under --out)",
    )
    args = parser.parse_args(argv)
    if args.run and not args.verify:
        parser.error("--run goes with --verify")
    grid = yaml.safe_load(args.grid.read_text())
    if args.verify:
        folder = args.run or runs.newest_run(TOOL, "recommendation.json", args.out)
        print(verify.verify(grid, folder, args.processes))
        print(f"verification: {folder / 'verification.md'}")
        return
    prices = yaml.safe_load(args.prices.read_text())
    sizes = batch_sizes(grid)
    for size in sizes:  # a batch size without its step grid fails now, not after an hour
        step_grid(grid, size)
    unmeasured = set(applications_mix(grid)) - set(sizes)
    if unmeasured:
        parser.error(
            f"applications_mix names {sorted(unmeasured)}: not in applications_per_request"
        )
    model_tag = resolve_served_tags(RegistrySettings()).champion
    folder = runs.new_run(TOOL, args.out)
    (folder / "grid.yaml").write_text(args.grid.read_text())  # what this run measured
    # the log first: it is brief, and a store that cannot be measured shows in the first minute
    workers = {log_stage.api_workers(config["env"]) for config in grid["configurations"]}
    log = log_stage.measure(grid, workers, max(sizes))
    configurations = [
        measure_configuration(config, grid, args.processes, size)
        for config in grid["configurations"]
        for size in sizes
    ]
    with tempfile.TemporaryDirectory() as logs:
        runner = measure_runner_alone(grid, Path(logs), args.processes)
    options = recommend.recommend_per_slo(configurations, grid, prices, log)
    write_sizing_report(folder, configurations, runner, options, grid, prices, model_tag, log)
    for option in options:
        print(
            f"p99 <= {option['slo_p99_ms']} ms: {option['configuration']} x{option['replicas']} "
            f"({option['limited_by']}; {option['usd_per_million_predictions']} $ per million "
            "predictions)"
        )
        for note in recommend.log_notes(option):
            print(f"  {note}")
    print(f"report: {folder / 'report.md'}")
    if args.no_profiles:
        print("profile values not written: --no-profiles")
        return
    try:
        written = profiles.write_profiles(
            folder, configurations, runner, grid, prices, model_tag, log=log
        )
    except ValueError as error:  # the sizing stands; only the deployment values are missing
        print(f"profile values not written: {error}")
        return
    for path in written.paths:
        print(f"profile values: {profiles.display(path)}")
    for reason in written.skipped:
        print(f"profile values not written: {reason}")


if __name__ == "__main__":
    main()
