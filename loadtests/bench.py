"""`make bench`: the same model served several ways on the same machine, back to back.

1. this project's full pipeline: `bentoml serve credit-risk:latest` (contract, features,
   runner hop, batching, decision, monitoring all on; no shadow challenger, so every system
   serves the one champion model), and the same Bento with the runner in-process;
2. `mlflow models serve` of the champion registered model (`--env-manager local`);
3. a trivial BentoML endpoint returning a constant (BentoML's floor) and a bare uvicorn ASGI
   app doing the same (the HTTP floor);
4. in-process: the TorchScorer scoring rows at the runner's batch size (the model floor);
5. the batch scoring path over the data set (rows/s);
6. the cost of principal reasons: the in-process project answering a declined application,
   with reasons (the default for a decline) and with them off
   (``CREDIT_RISK_REASONS_FOR_DECISIONS=requested``), so every request of the pair differs by
   exactly one attribution.

Closed-loop figures: 16 connections, one application per request, the aiohttp burst client
(lighter than Locust's HttpUser; it shares the cores with the server, so absolute req/s are
lower bounds and the ratios are the result). Capacity of all but the floors: open-loop Poisson
arrivals, read with the sizing's knee search on a small grid (``GRID``, `loadtests/knee.py`).
Prints a Markdown report and writes it to loadtests/reports/bench-YYYYMMDD-HHMM/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import torch

from batch.score import score_frame
from credit_risk.decision import DecisionThresholds
from credit_risk.pipeline import records_to_matrix
from loadtests import knee, measure, runs
from loadtests.burst import burst
from loadtests.load_result import LoadResult
from loadtests.server import NO_CHALLENGER, Server
from loadtests.traffic import application_pool
from model_artifact.champion import load_served_model
from model_artifact.loaded_model import LoadedModel
from model_artifact.settings import SOURCE_ROOT, RegistrySettings
from model_artifact.torch_scorer import select_device
from runner.settings import RunnerSettings

CONNECTIONS = 16
PER_CONNECTION = 150
SLO_P99_MS = 100.0
# The capacity search: 6 s steps from 50 req/s by x1.25 until p99 passes the SLO (a break is
# run once more), then two bisections of the knee; about a minute and a half per system.
GRID: dict[str, Any] = {
    "slos_p99_ms": [SLO_P99_MS],
    "start_rps": 50,
    "growth": 1.25,
    "max_rps": 5000,
    "refine_steps": 2,
    "step_seconds": 6,
}
BIN = Path(sys.executable).parent
TOOL = "bench"  # run folders are loadtests/reports/bench-YYYYMMDD-HHMM
PROJECT = "project: bentoml serve credit-risk:latest"
IN_PROCESS = "project, in-process runner, 2 API workers"
MLFLOW = "mlflow models serve (2 uvicorn workers)"
TRIVIAL = "trivial BentoML endpoint"
BARE = "bare uvicorn ASGI endpoint"
REASONS_ON = "in-process, 2 workers, a decline: principal reasons on"
REASONS_OFF = "in-process, 2 workers, a decline: principal reasons off"
FLOORS = (TRIVIAL, BARE)  # no capacity search: they do nothing
IN_PROCESS_ENV = (("CREDIT_RISK_RUNNER_MODE", "inprocess"), ("CREDIT_RISK_API_WORKERS", "2"))


@dataclass(frozen=True)
class System:
    name: str
    path: str
    body: bytes
    command: list[str] | None = None
    target: str = ""
    ready_path: str = "/readyz"
    env: tuple[tuple[str, str], ...] = ()


def systems(
    registry: RegistrySettings,
    record: dict[str, object],
    matrix_row: list[float],
    declined: dict[str, object],
) -> list[System]:
    """The servers, each with the body its API takes for one application."""
    score_body = json.dumps({"applications": [record]}).encode()
    decline_body = json.dumps({"applications": [declined]}).encode()
    mlflow_uri = f"models:/{registry.registered_model_name}@{registry.champion_alias}"
    return [
        System(PROJECT, "/score", score_body, target="credit-risk:latest"),
        System(IN_PROCESS, "/score", score_body, target="credit-risk:latest", env=IN_PROCESS_ENV),
        System(
            MLFLOW,
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
        System(TRIVIAL, "/score", score_body, target="loadtests.floors:TrivialBento"),
        System(
            BARE,
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
        System(REASONS_ON, "/score", decline_body, target="credit-risk:latest", env=IN_PROCESS_ENV),
        System(
            REASONS_OFF,
            "/score",
            decline_body,
            target="credit-risk:latest",
            env=(*IN_PROCESS_ENV, ("CREDIT_RISK_REASONS_FOR_DECISIONS", "requested")),
        ),
    ]


def first_declined(model: LoadedModel, thresholds: DecisionThresholds) -> dict[str, object]:
    """A real application the served model declines: every request with it needs reasons."""
    pool = list(application_pool()[:2000])
    results, _ = score_frame(pd.DataFrame(pool), model, thresholds)
    declined = results.loc[results["decision"] == "decline", "row"]
    if declined.empty:
        raise LookupError("the served model declines none of the first 2,000 applications")
    return dict(pool[int(declined.iloc[0])])


def measure_system(
    system: System, folder: Path, with_capacity: bool
) -> tuple[LoadResult, float | None]:
    """The closed-loop burst (after a warm-up burst), then the capacity at the SLO if asked."""
    server = Server(
        system.target,
        folder / f"{abs(hash(system.name))}.log",
        # the venv's bin on PATH: `mlflow models serve` starts `uvicorn` by name
        dict(os.environ)
        | {"PATH": f"{BIN}:{os.environ['PATH']}"}
        | NO_CHALLENGER
        | dict(system.env),
        cwd=SOURCE_ROOT,
        command=system.command,
        ready_path=system.ready_path,
    )
    with server:
        url = f"{server.url}{system.path}"
        burst(url, system.body, CONNECTIONS, 20)  # warm-up, not counted
        closed = burst(url, system.body, CONNECTIONS, PER_CONNECTION)
        capacity = None
        if with_capacity:
            load = measure.open_loop_load(url, system.body)
            steps = measure.search(server, load, GRID, system.name)
            capacity = knee.capacity(steps, SLO_P99_MS)
    return closed, capacity


def in_process_rows_per_s(model: LoadedModel, batch: int) -> float:
    """The TorchScorer alone on ``batch``-row matrices, for two seconds."""
    records = list(application_pool()[:batch])
    matrix = records_to_matrix(records, model.bundle.feature_params)
    model.scorer.predict(matrix)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        model.scorer.predict(matrix)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def batch_scoring_rows_per_s(model: LoadedModel, thresholds: DecisionThresholds) -> float:
    """The batch scoring path over the whole data set (after a small warm-up)."""
    frame = pd.DataFrame(list(application_pool()))
    score_frame(frame[:200], model, thresholds)
    start = time.perf_counter()
    results, _ = score_frame(frame, model, thresholds)
    return len(results) / (time.perf_counter() - start)


def method() -> str:
    return (
        f"Closed loop: {CONNECTIONS} connections x {PER_CONNECTION} requests, one application "
        "each, aiohttp client on the same machine. Capacity: open-loop Poisson arrivals, "
        f"{GRID['step_seconds']} s steps from {GRID['start_rps']} req/s by x{GRID['growth']} "
        f"until p99 > {SLO_P99_MS:.0f} ms or > {knee.ERROR_BUDGET:.1%} errors (a break is run "
        f"once more), then {GRID['refine_steps']} bisections; the rate where a line fitted to "
        f"log(p99) meets {SLO_P99_MS:.0f} ms (`loadtests/knee.py`, as the sizing reads it)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=runs.REPORTS, metavar="FOLDER", help="where run folders go"
    )
    args = parser.parse_args(argv)
    np.seterr(all="ignore")
    torch.set_num_threads(1)  # the runner worker's setting: one core per worker
    registry = RegistrySettings()
    record = dict(application_pool()[0])
    model = load_served_model(registry, select_device("cpu"))
    matrix_row = records_to_matrix([record], model.bundle.feature_params)[0].tolist()
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, bentoml {bentoml.__version__}; "
        f"model {model.tag}."
    )
    lines = [
        f"# Benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        machine,
        method(),
        "",
        "| system | req/s | p50 ms | p99 ms | non-2xx | "
        f"capacity at p99 <= {SLO_P99_MS:.0f} ms (req/s) |",
        "|---|---|---|---|---|---|",
    ]
    throughput: dict[str, float] = {}
    tail_ms: dict[str, float] = {}
    thresholds = DecisionThresholds()
    declined = first_declined(model, thresholds)
    with tempfile.TemporaryDirectory() as folder:
        for system in systems(registry, record, matrix_row, declined):
            closed, capacity = measure_system(
                system, Path(folder), with_capacity=system.name not in FLOORS
            )
            throughput[system.name] = closed.requests_per_s
            tail_ms[system.name] = closed.percentile_ms(99)
            lines.append(
                f"| {system.name} | {closed.requests_per_s:.0f} | {closed.percentile_ms(50):.1f} | "
                f"{closed.percentile_ms(99):.1f} | {closed.errors} | "
                f"{'' if capacity is None else f'{capacity:.0f}'} |"
            )
            print(lines[-1], flush=True)
    batch_size = RunnerSettings().runner_max_batch_size
    in_process = in_process_rows_per_s(model, batch_size)
    in_process_single = in_process_rows_per_s(model, 1)
    batch = batch_scoring_rows_per_s(model, thresholds)
    project, inprocess = throughput[PROJECT], throughput[IN_PROCESS]
    mlflow_serve, trivial, bare = throughput[MLFLOW], throughput[TRIVIAL], throughput[BARE]
    reasons = throughput[REASONS_ON] / throughput[REASONS_OFF]
    lines += [
        "",
        f"In-process TorchScorer: {in_process:,.0f} rows/s at batch {batch_size}, "
        f"{in_process_single:,.0f} rows/s at batch 1. Batch scoring path: {batch:,.0f} rows/s.",
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| project (remote runner) / mlflow serve | {project / mlflow_serve:.2f} | >= 2.0 |",
        f"| project (in-process) / mlflow serve | {inprocess / mlflow_serve:.2f} | >= 2.0 |",
        f"| project (remote runner) / trivial BentoML | {project / trivial:.2f} | >= 0.60 |",
        f"| project (in-process) / trivial BentoML | {inprocess / trivial:.2f} | >= 0.60 |",
        f"| trivial BentoML / bare uvicorn | {trivial / bare:.2f} | (framework cost) |",
        f"| batch scoring (reasons for adverse rows) / in-process scorer | "
        f"{batch / in_process:.2f} | >= 0.50 |",
        f"| a decline with reasons / without (req/s) | {reasons:.2f} | (cost of reasons) |",
        f"| p99 of a decline with reasons / without | "
        f"{tail_ms[REASONS_ON] / tail_ms[REASONS_OFF]:.2f} | (cost of reasons) |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    path = runs.new_run(TOOL, args.out) / "report.md"
    path.write_text(report)
    print(f"report: {path}")


if __name__ == "__main__":
    main()
