"""`make bench`: the same model served five ways on the same machine, back to back.

1. this project's full pipeline: `bentoml serve credit-risk:latest` (contract, features,
   runner hop, batching, decision, monitoring all on; no shadow challenger, so every system
   serves the one champion model), and the same Bento with the runner in-process;
2. `mlflow models serve` of the champion registered model (`--env-manager local`);
3. a trivial BentoML endpoint returning a constant (BentoML's floor) and a bare uvicorn ASGI
   app doing the same (the HTTP floor);
4. in-process: the torch core scoring rows at the runner's batch size (the model floor);
5. the batch scoring path over the data set (rows/s).

Closed-loop figures: 16 connections, one application per request, the aiohttp burst client
(lighter than Locust's HttpUser; it shares the 2 cores with the server, so absolute req/s are
lower bounds and the ratios are the result). Capacity: open-loop Poisson arrivals raised until
p99 > 100 ms. Prints a Markdown report and writes it to loadtests/results/.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import torch

from credit_risk.config import REPO_ROOT, Settings
from credit_risk.pipeline import records_to_matrix
from loadtests.burst import BurstResult, burst
from loadtests.openloop import capacity_at_slo, open_loop
from loadtests.server import NO_CHALLENGER, Server
from loadtests.traffic import application_pool
from runners.batch_score import load_served_model, score_frame

CONNECTIONS = 16
PER_CONNECTION = 150
SLO_P99_MS = 100.0
STEP_S = 8.0
BIN = Path(sys.executable).parent
RESULTS = REPO_ROOT / "loadtests" / "results"


@dataclass(frozen=True)
class System:
    name: str
    path: str
    body: bytes
    command: list[str] | None = None
    target: str = ""
    ready_path: str = "/readyz"
    env: tuple[tuple[str, str], ...] = ()


def systems(settings: Settings, record: dict[str, object], matrix_row: list[float]) -> list[System]:
    score_body = json.dumps({"applications": [record]}).encode()
    mlflow_uri = f"models:/{settings.registered_model_name}@{settings.champion_alias}"
    return [
        System(
            "project: bentoml serve credit-risk:latest",
            "/score",
            score_body,
            target="credit-risk:latest",
        ),
        System(
            "project, in-process runner, 2 API workers",
            "/score",
            score_body,
            target="credit-risk:latest",
            env=(
                ("CREDIT_RISK_RUNNER_MODE", "inprocess"),
                ("CREDIT_RISK_API_WORKERS", "2"),
            ),
        ),
        System(
            "mlflow models serve (2 uvicorn workers)",
            "/invocations",
            json.dumps({"inputs": [matrix_row]}).encode(),
            command=[
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                mlflow_uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                "{port}",
                "-w",
                "2",
            ],
            ready_path="/ping",
        ),
        System(
            "trivial BentoML endpoint", "/score", score_body, target="loadtests.floors:TrivialBento"
        ),
        System(
            "bare uvicorn ASGI endpoint",
            "/score",
            score_body,
            command=[
                str(BIN / "uvicorn"),
                "loadtests.floors:bare_asgi",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            ready_path="/",
        ),
    ]


def measure(system: System, folder: Path, with_capacity: bool) -> tuple[BurstResult, float | None]:
    server = Server(
        system.target,
        folder / f"{abs(hash(system.name))}.log",
        # the venv's bin on PATH: `mlflow models serve` starts `uvicorn` by name
        dict(os.environ)
        | {"PATH": f"{BIN}:{os.environ['PATH']}"}
        | NO_CHALLENGER
        | dict(system.env),
        cwd=REPO_ROOT,
        command=system.command,
        ready_path=system.ready_path,
    )
    with server:
        url = f"{server.url}{system.path}"
        burst(url, system.body, CONNECTIONS, 20)  # warm-up, not counted
        closed = burst(url, system.body, CONNECTIONS, PER_CONNECTION)
        capacity = None
        if with_capacity:
            capacity, _ = capacity_at_slo(
                lambda rate, seed: open_loop(url, system.body, rate, STEP_S, seed),
                SLO_P99_MS,
                start_rate=50,
                factor=1.25,
            )
    return closed, capacity


def in_process_rows_per_s(settings: Settings, batch: int) -> float:
    model = load_served_model(settings)
    records = list(application_pool()[:batch])
    matrix = records_to_matrix(records, model.bundle.feature_params)
    model.scorer.predict(matrix)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        model.scorer.predict(matrix)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def batch_scoring_rows_per_s(settings: Settings) -> float:
    model = load_served_model(settings)
    frame = pd.DataFrame(list(application_pool()))
    score_frame(frame[:200], model, settings.decision)
    start = time.perf_counter()
    results, _ = score_frame(frame, model, settings.decision)
    return len(results) / (time.perf_counter() - start)


def main() -> None:
    settings = Settings()
    torch.set_num_threads(1)  # the runner worker's setting: one core per worker
    record = dict(application_pool()[0])
    model = load_served_model(settings)
    matrix_row = records_to_matrix([record], model.bundle.feature_params)[0].tolist()
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, bentoml {bentoml.__version__}; "
        f"model {model.tag}."
    )
    method = (
        f"Closed loop: {CONNECTIONS} connections x {PER_CONNECTION} requests, one application "
        "each, aiohttp client on the same machine. Capacity: open-loop Poisson arrivals, "
        f"{STEP_S:.0f} s per step, highest rate with p99 <= {SLO_P99_MS:.0f} ms, < 0.1% errors."
    )
    lines = [
        f"# Benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        machine,
        method,
        "",
        "| system | req/s | p50 ms | p99 ms | non-2xx | capacity at p99 <= 100 ms (req/s) |",
        "|---|---|---|---|---|---|",
    ]
    throughput: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for index, system in enumerate(systems(settings, record, matrix_row)):
            closed, capacity = measure(system, Path(folder), with_capacity=index < 3)
            throughput[system.name] = closed.requests_per_s
            failures = sum(v for k, v in closed.outcomes.items() if k != "200")
            lines.append(
                f"| {system.name} | {closed.requests_per_s:.0f} | {closed.percentile_ms(50):.1f} | "
                f"{closed.percentile_ms(99):.1f} | {failures} | "
                f"{'' if capacity is None else f'{capacity:.0f}'} |"
            )
            print(lines[-1], flush=True)
    batch_size = settings.runner_max_batch_size
    in_process = in_process_rows_per_s(settings, batch_size)
    in_process_single = in_process_rows_per_s(settings, 1)
    batch = batch_scoring_rows_per_s(settings)
    project, inprocess, mlflow_serve, trivial, bare = throughput.values()
    lines += [
        "",
        f"In-process torch core: {in_process:,.0f} rows/s at batch {batch_size}, "
        f"{in_process_single:,.0f} rows/s at batch 1. Batch scoring path: {batch:,.0f} rows/s.",
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| project (remote runner) / mlflow serve | {project / mlflow_serve:.2f} | >= 2.0 |",
        f"| project (in-process) / mlflow serve | {inprocess / mlflow_serve:.2f} | >= 2.0 |",
        f"| project (remote runner) / trivial BentoML | {project / trivial:.2f} | >= 0.60 |",
        f"| project (in-process) / trivial BentoML | {inprocess / trivial:.2f} | >= 0.60 |",
        f"| trivial BentoML / bare uvicorn | {trivial / bare:.2f} | (framework cost) |",
        f"| batch scoring / in-process core | {batch / in_process:.2f} | >= 0.50 |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench-{datetime.now(UTC):%Y%m%d-%H%M}.md").write_text(report)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
