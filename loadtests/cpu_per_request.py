"""Server CPU per request, per process and thread, side by side for variants of one Bento.

    python -m loadtests.cpu_per_request [--connections 16] [--requests 200]

Throughput on a 2-core machine shared with the load generator hides where a server's CPU goes;
this counts it: for each variant (environment overrides of the built Bento) it runs a closed
loop of one-application requests and divides each process's and thread's CPU time (psutil) by
the requests answered. This is how the spinning second torch thread was found (one torch thread
per worker is the default since: ``CREDIT_RISK_TORCH_THREADS``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from tempfile import TemporaryDirectory

import psutil

from loadtests.burst import burst
from loadtests.server import NO_CHALLENGER, Server
from loadtests.traffic import application_pool

IN_PROCESS = {"CREDIT_RISK_RUNNER_MODE": "inprocess", "CREDIT_RISK_API_WORKERS": "1"}
VARIANTS: dict[str, dict[str, str]] = {
    "in-process, 1 torch thread (default)": IN_PROCESS,
    "in-process, 2 torch threads": IN_PROCESS | {"CREDIT_RISK_TORCH_THREADS": "2"},
    "in-process, monitoring off": IN_PROCESS | {"CREDIT_RISK_MONITORING_ENABLED": "false"},
    "remote runner (default topology)": {},
}


def thread_seconds(process: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in process.threads()}


def measure(env: dict[str, str], connections: int, requests: int, folder: Path) -> list[str]:
    body = json.dumps({"applications": [application_pool()[0]]}).encode()
    with Server("credit-risk:latest", folder / "serve.log", env) as server:
        url = f"{server.url}/score"
        burst(url, body, connections, 30)  # warm-up, not counted
        root = psutil.Process(server.process.pid)
        processes = [root, *root.children(recursive=True)]
        before = {p.pid: thread_seconds(p) for p in processes}
        result = burst(url, body, connections, requests)
        answered = sum(result.outcomes.values())
        lines = [f"  {result.requests_per_s:.0f} req/s, outcomes {dict(result.outcomes)}"]
        for process in processes:
            spent = {
                tid: seconds - before[process.pid].get(tid, 0.0)
                for tid, seconds in thread_seconds(process).items()
            }
            total = sum(spent.values()) / answered * 1e6
            busiest = sorted(spent.values(), reverse=True)[:3]
            threads = ", ".join(f"{s / answered * 1e6:.0f}" for s in busiest)
            name = " ".join(process.cmdline()[1:5])[-60:]
            lines.append(f"  pid {process.pid} {name}: {total:.0f} µs/request (threads {threads})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200, help="per connection")
    args = parser.parse_args()
    with TemporaryDirectory() as folder:
        for name, overrides in VARIANTS.items():
            env = dict(os.environ) | NO_CHALLENGER | overrides
            print(name, flush=True)
            for line in measure(env, args.connections, args.requests, Path(folder)):
                print(line, flush=True)


if __name__ == "__main__":
    main()
