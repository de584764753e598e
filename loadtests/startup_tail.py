"""Tail latency of a freshly started worker, with and without `gc.freeze()` at start-up.

    python -m loadtests.startup_tail

Serves the built Bento in-process (one worker), warms it briefly, then offers open-loop
Poisson steps of 60, 100, 100 and 150 req/s (6 s each) and prints p99 and max per step for
both settings. Without the freeze, the first full garbage collection under traffic scans the
whole import-time heap and one early step shows a ~300 ms tail.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from loadtests.burst import burst
from loadtests.openloop import open_loop
from loadtests.server import NO_CHALLENGER, Server
from loadtests.traffic import application_pool

STEPS = (60, 100, 100, 150)
VARIANTS = {"gc.freeze at start-up (default)": "true", "no freeze": "false"}


def main() -> None:
    body = json.dumps({"applications": [application_pool()[0]]}).encode()
    print("| variant | offered req/s | p99 ms | max ms |\n|---|---|---|---|")
    for name, freeze in VARIANTS.items():
        with tempfile.TemporaryDirectory() as folder:
            env = (
                dict(os.environ)
                | NO_CHALLENGER
                | {
                    "CREDIT_RISK_RUNNER_MODE": "inprocess",
                    "CREDIT_RISK_GC_FREEZE_AT_STARTUP": freeze,
                    "CREDIT_RISK_PREDICTION_LOG_URL": f"sqlite:///{folder}/log.db",
                }
            )
            with Server("credit-risk:latest", Path(folder) / "serve.log", env) as server:
                url = f"{server.url}/score"
                burst(url, body, 8, 25)
                for rate in STEPS:
                    result = open_loop(url, body, rate, 6)
                    worst = max(result.latencies_s) * 1000
                    print(
                        f"| {name} | {rate} | {result.percentile_ms(99):.0f} | {worst:.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
