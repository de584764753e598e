"""Side-by-side comparisons: the same closed-loop load against the same service under two or
more configurations, in one run, reported as ratios to the first.

    python -m loadtests.compare renewal     # BentoML runner-session renewal vs off, retries
    python -m loadtests.compare monitoring  # metrics + drift + prediction log on vs off
    python -m loadtests.compare shadow      # champion latency with and without a challenger
    python -m loadtests.compare runner      # separate runner vs scoring inside the API

Serves `service:CreditRiskAPI` from this checkout against the promoted champion (`make bento`
first; `shadow` also needs a challenger: `python -m training.promote --version N --as
challenger`). The load generator shares the machine with the server, so absolute figures are
lower bounds; the ratios are the point. Loopback only, bounded by request count.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from credit_risk.config import REPO_ROOT
from loadtests.burst import BurstResult, burst
from loadtests.server import NO_CHALLENGER, Server

SCENARIOS: dict[str, dict[str, dict[str, str]]] = {
    "renewal": {
        "renewal off, 2 retries (project default)": NO_CHALLENGER,
        "renewal off, no retry": NO_CHALLENGER | {"CREDIT_RISK_RUNNER_RETRIES": "0"},
        "BentoML default renewal (100), no retry": NO_CHALLENGER
        | {"CREDIT_RISK_RUNNER_SESSION_MAX_REQUESTS": "100", "CREDIT_RISK_RUNNER_RETRIES": "0"},
    },
    "monitoring": {
        "monitoring on (default)": NO_CHALLENGER,
        "monitoring off": NO_CHALLENGER | {"CREDIT_RISK_MONITORING_ENABLED": "false"},
    },
    "runner": {
        "remote runner (1 API + 1 runner worker)": NO_CHALLENGER,
        "in-process, 1 API worker": NO_CHALLENGER | {"CREDIT_RISK_RUNNER_MODE": "inprocess"},
        "in-process, 2 API workers": NO_CHALLENGER
        | {"CREDIT_RISK_RUNNER_MODE": "inprocess", "CREDIT_RISK_API_WORKERS": "2"},
    },
    "shadow": {
        "champion only": NO_CHALLENGER,
        "champion + shadow challenger": {},
    },
}


def run_variant(
    env: dict[str, str], log_dir: Path, body: bytes, connections: int, requests: int
) -> BurstResult:
    log_url = f"sqlite:///{log_dir / 'predictions.db'}"
    with Server(
        "service:CreditRiskAPI",
        log_dir / "serve.log",
        env | {"CREDIT_RISK_PREDICTION_LOG_URL": log_url},
        cwd=REPO_ROOT,
    ) as server:
        burst(f"{server.url}/score", body, connections, 20)  # warm-up, not counted
        return burst(f"{server.url}/score", body, connections, requests)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=150, help="per connection")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; median kept")
    args = parser.parse_args()
    body = (REPO_ROOT / "loadtests" / "example_request.json").read_bytes()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; closed loop, "
        f"{args.connections} connections x {args.requests} requests, 2 applications each"
    )
    print(
        "| variant (median of repeats) | req/s | ratio | p50 ms | p99 ms | non-200 (all repeats) |"
    )
    print("|---|---|---|---|---|---|")
    variants = SCENARIOS[args.scenario]
    rounds: dict[str, list[BurstResult]] = {name: [] for name in variants}
    for _ in range(args.repeats):  # A B A B ...: slow drifts of the machine hit all variants
        for name, extra in variants.items():
            with tempfile.TemporaryDirectory() as folder:
                rounds[name].append(
                    run_variant(
                        os.environ | extra, Path(folder), body, args.connections, args.requests
                    )
                )
    baseline = None
    for name, results in rounds.items():
        result = sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]
        baseline = baseline or result.requests_per_s
        failures = sum(v for r in results for k, v in r.outcomes.items() if k != "200")
        print(
            f"| {name} | {result.requests_per_s:.0f} | {result.requests_per_s / baseline:.2f} | "
            f"{result.percentile_ms(50):.1f} | {result.percentile_ms(99):.1f} | {failures} |"
        )


if __name__ == "__main__":
    main()
