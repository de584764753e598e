"""Side by side: BentoML's runner-session renewal and the API's retries, under concurrency.

    python -m loadtests.session_renewal_check [--connections 16] [--requests 150]

Serves the champion (`bentoml serve service:CreditRiskAPI`, the repo's service) once per
variant and sends the same closed-loop burst; prints outcome counts per variant. Needs a
promoted model (`make bento`). Loopback only, bounded by the request count.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from credit_risk.config import REPO_ROOT
from loadtests.burst import burst
from loadtests.server import Server

VARIANTS = {
    "bentoml default (renew every 100), no retry": {
        "CREDIT_RISK_RUNNER_SESSION_MAX_REQUESTS": "100",
        "CREDIT_RISK_RUNNER_RETRIES": "0",
    },
    "renewal off, no retry": {"CREDIT_RISK_RUNNER_RETRIES": "0"},
    "renewal off, 2 retries (project default)": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=150, help="per connection")
    args = parser.parse_args()
    body = (REPO_ROOT / "loadtests" / "example_request.json").read_bytes()
    total = args.connections * args.requests
    print(f"{args.connections} connections x {args.requests} requests = {total} per variant")
    with tempfile.TemporaryDirectory() as logs:
        for name, extra in VARIANTS.items():
            env = os.environ | extra
            with Server(
                "service:CreditRiskAPI", Path(logs) / "serve.log", env, cwd=REPO_ROOT
            ) as server:
                burst(f"{server.url}/score", body, args.connections, 10)  # warm the batcher
                outcomes = burst(f"{server.url}/score", body, args.connections, args.requests)
            errors = total - outcomes.get("200", 0)
            print(f"{name:45s} errors {errors:5d} ({errors / total:6.2%})  {json.dumps(outcomes)}")


if __name__ == "__main__":
    main()
