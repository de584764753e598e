"""Where the served Bento's CPU goes, process by process, under closed-loop load.

`make bench` gives each system's CPU per request as one figure; tuning the runner hop needs it
per process: is the API worker or the runner the one at a full core? This serves
``credit-risk:latest`` under the given environment (e.g. ``CREDIT_RISK_API_WORKERS=1``), sends
16 connections of one-application requests, and prints per round the req/s, each worker's
cores, and the runner's CPU per request (docs/performance.md, "The runner hop, step by step").

    python -m loadtests.bench.process_split [NAME=VALUE ...] [--rounds 2] [--requests 400]
"""

from __future__ import annotations

import argparse
import platform

import psutil

from loadtests.load.burst import burst
from loadtests.sizing.measure import score_body, serving

CONNECTIONS = 16
SERVICES = ("credit_risk_api", "credit_risk_runner")


def cpu_seconds(processes: list[psutil.Process]) -> list[float]:
    times = [process.cpu_times() for process in processes]
    return [t.user + t.system for t in times]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", nargs="*", help="NAME=VALUE settings of the served Bento")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=400, help="per connection and round")
    args = parser.parse_args(argv)
    env = dict(setting.split("=", 1) for setting in args.env)
    body = score_body()
    print(f"{platform.machine()}, {psutil.cpu_count()} cores; credit-risk:latest {env or ''}")
    with serving(env) as server:
        url = f"{server.url}/score"
        burst(url, body, CONNECTIONS, 50)  # warm-up
        workers = {service: server.workers(service) for service in SERVICES}
        for round_number in range(1, args.rounds + 1):
            processes = [p for service in SERVICES for p in workers[service]]
            before = cpu_seconds(processes)
            result = burst(url, body, CONNECTIONS, args.requests)
            used = [a - b for a, b in zip(cpu_seconds(processes), before, strict=True)]
            cores = {p.pid: u / result.elapsed_s for p, u in zip(processes, used, strict=True)}
            runner_s = sum(used[len(workers[SERVICES[0]]) :])
            api = " + ".join(f"{cores[p.pid]:.2f}" for p in workers[SERVICES[0]])
            runner = " + ".join(f"{cores[p.pid]:.2f}" for p in workers[SERVICES[1]]) or "none"
            print(
                f"round {round_number}: {result.requests_per_s:,.0f} req/s, "
                f"non-2xx {result.errors}; API cores {api}; runner cores {runner}; "
                f"runner CPU {1000 * runner_s / max(result.requests, 1):.2f} ms/request"
            )


if __name__ == "__main__":
    main()
