"""`make bench`: the same model served several ways on the same machine, back to back.

1. this project's full pipeline: `bentoml serve credit-risk:latest` (contract, features,
   runner hop, batching, decision, monitoring all on; no shadow challenger, so every system
   serves the one champion model), and the same Bento with the runner in-process;
2. `mlflow models serve` of the champion registered model (`--env-manager local`), with its
   default single worker and with two (the project's default runs two processes: the API and
   the runner);
3. a trivial BentoML endpoint returning a constant (BentoML's floor) and a bare uvicorn ASGI
   app doing the same (the HTTP floor);
4. in-process: the TorchScorer scoring rows at the runner's batch size (the model floor);
5. the batch scoring path over the data set (rows/s);
6. the cost of principal reasons: the in-process project answering a declined application,
   with reasons (the default for a decline) and with them off
   (``CREDIT_RISK_REASONS_FOR_DECISIONS=requested``), so every request of the pair differs by
   exactly one attribution;
7. the cost of a canary split: the default topology with the champion's own model pinned as a
   canary deciding 25% of applications (``CREDIT_RISK_CANARY_TAG``/``…_SHARE``), so the pair
   differs by the split alone (assignment, a second coalescer per call, per-arm monitoring),
   not by a model's speed;
8. the garbage collector's thresholds: the default topology with Python's default thresholds
   (``CREDIT_RISK_GC_THRESHOLDS=[700, 10, 10]``) beside the project's.

Every server is started first and stays up; the closed-loop bursts then go round the systems
``ROUNDS`` times, so a slow minute of a shared host hits every system alike, and each figure is
a median with its range across rounds. Closed loop: 16 connections, one application per
request, from wrk for ``ROUND_S`` seconds (as the speed targets are stated;
`loadtests/load/wrk.py`), or without wrk on PATH (``--client burst``) the aiohttp burst client,
``PER_CONNECTION`` requests per connection (Python on the same cores: it takes back much of
what a server saves, which flattens the ratios); either shares the cores with the servers, so
absolute req/s are lower bounds and the ratios are the result; beside it, the server's own CPU
per request (all its processes), which other load on the host disturbs far less than req/s.
Capacity of all but the floors: open-loop Poisson arrivals from the sizing's paced Locust
source (``--processes`` workers, each system's own body: `loadtests/load/locust_run.py`), read
with the sizing's knee search on a small grid (``GRID``, `loadtests/sizing/knee.py`). Prints a
Markdown report and writes it to loadtests/reports/bench-YYYYMMDD-HHMM/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import psutil
import torch

from batch.score import score_frame
from credit_risk.decision import DecisionThresholds
from credit_risk.pipeline import records_to_matrix
from loadtests import runs
from loadtests.load import wrk
from loadtests.load.burst import burst
from loadtests.load.load_result import LoadResult
from loadtests.load.locust_run import PROCESSES, FixedRequest
from loadtests.load.server import NO_CHALLENGER, Server
from loadtests.load.traffic import application_pool
from loadtests.sizing import knee, measure
from model_artifact.loaded_model import LoadedModel, load_served_model
from model_artifact.settings import SOURCE_ROOT, DecisionSettings, RegistrySettings
from model_artifact.torch_scorer import select_device
from serving.settings import WorkerSettings

CONNECTIONS = 16
PER_CONNECTION = 150  # the burst client's requests per connection and round
ROUND_S = 5  # wrk's seconds per round
WARM_UP_S = 3  # wrk's seconds of warm-up per system
ROUNDS = 3
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
MLFLOW = "mlflow models serve (its default: 1 uvicorn worker)"
MLFLOW_2 = "mlflow models serve (2 uvicorn workers)"
TRIVIAL = "trivial BentoML endpoint"
BARE = "bare uvicorn ASGI endpoint"
REASONS_ON = "in-process, 2 workers, a decline: principal reasons on"
REASONS_OFF = "in-process, 2 workers, a decline: principal reasons off"
CANARY = "project with a canary deciding 25% (the champion's model again)"
DEFAULT_GC = "project with Python's default GC thresholds"
FLOORS = (TRIVIAL, BARE)  # no capacity search: they do nothing
NO_CAPACITY = (*FLOORS, CANARY, DEFAULT_GC)  # the pairs are compared closed-loop
SYSTEM_KEYS = {
    "project": PROJECT,
    "canary": CANARY,
    "default-gc": DEFAULT_GC,
    "inprocess": IN_PROCESS,
    "mlflow": MLFLOW,
    "mlflow2": MLFLOW_2,
    "trivial": TRIVIAL,
    "bare": BARE,
    "reasons-on": REASONS_ON,
    "reasons-off": REASONS_OFF,
}
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
    champion_tag: str,
    bento: str = "credit-risk:latest",
) -> list[System]:
    """The servers, each with the body its API takes for one application; the project's from
    ``bento`` (an earlier build's tag: that build's code, for a before/after in one run)."""
    score_body = json.dumps({"applications": [record]}).encode()
    decline_body = json.dumps({"applications": [declined]}).encode()
    mlflow_uri = f"models:/{registry.registered_model_name}@{registry.champion_alias}"
    return [
        System(PROJECT, "/score", score_body, target=bento),
        System(
            CANARY,
            "/score",
            score_body,
            target=bento,
            env=(("CREDIT_RISK_CANARY_TAG", champion_tag), ("CREDIT_RISK_CANARY_SHARE", "0.25")),
        ),
        System(
            DEFAULT_GC,
            "/score",
            score_body,
            target=bento,
            env=(("CREDIT_RISK_GC_THRESHOLDS", "[700, 10, 10]"),),
        ),
        System(IN_PROCESS, "/score", score_body, target=bento, env=IN_PROCESS_ENV),
        mlflow_serve(MLFLOW, mlflow_uri, matrix_row, workers=1),
        mlflow_serve(MLFLOW_2, mlflow_uri, matrix_row, workers=2),
        System(TRIVIAL, "/score", score_body, target="loadtests.bench.floors:TrivialBento"),
        System(
            BARE,
            "/score",
            score_body,
            command=[
                str(BIN / "uvicorn"),
                "loadtests.bench.floors:bare_asgi",
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
        System(REASONS_ON, "/score", decline_body, target=bento, env=IN_PROCESS_ENV),
        System(
            REASONS_OFF,
            "/score",
            decline_body,
            target=bento,
            env=(*IN_PROCESS_ENV, ("CREDIT_RISK_REASONS_FOR_DECISIONS", "requested")),
        ),
    ]


def mlflow_serve(name: str, model_uri: str, matrix_row: list[float], workers: int) -> System:
    return System(
        name,
        "/invocations",
        json.dumps({"inputs": [matrix_row]}).encode(),
        command=[
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            "{port}",
            "-w",
            str(workers),
        ],
        ready_path="/ping",
    )


def first_declined(model: LoadedModel, thresholds: DecisionThresholds) -> dict[str, object]:
    """A real application the served model declines: every request with it needs reasons."""
    pool = list(application_pool()[:2000])
    results, _ = score_frame(pd.DataFrame(pool), model, thresholds)
    declined = results.loc[results["decision"] == "decline", "row"]
    if declined.empty:
        raise LookupError("the served model declines none of the first 2,000 applications")
    return dict(pool[int(declined.iloc[0])])


@dataclass
class Measured:
    """One system's closed-loop rounds (req/s, p99, server CPU per request) and its capacity."""

    rounds: list[LoadResult] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    capacity: float | None = None

    @property
    def rps(self) -> list[float]:
        return [r.requests_per_s for r in self.rounds]

    @property
    def p99_ms(self) -> list[float]:
        return [r.percentile_ms(99) for r in self.rounds]

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)


def spread(values: list[float], digits: int = 0) -> str:
    """Median and range across rounds: ``502 (480-530)``."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def start(system: System, folder: Path) -> Server:
    """The system's server, with a prediction log and spool of its own: the systems never
    share (and contend for) one SQLite file, and every run starts from an empty log, not from
    whatever the developer's log has grown to."""
    name = f"{abs(hash(system.name))}"
    own_log = {
        "CREDIT_RISK_PREDICTION_LOG_URL": f"sqlite:///{folder / name}-predictions.db",
        "CREDIT_RISK_PREDICTION_LOG_SPOOL_DIR": str(folder / f"{name}-spool"),
    }
    return Server(
        system.target,
        folder / f"{name}.log",
        # the venv's bin on PATH: `mlflow models serve` starts `uvicorn` by name
        dict(os.environ)
        | {"PATH": f"{BIN}:{os.environ['PATH']}"}
        | NO_CHALLENGER
        | own_log
        | dict(system.env),
        cwd=SOURCE_ROOT,
        command=system.command,
        ready_path=system.ready_path,
    )


def closed_loop(server: Server, system: System, client: str, warm_up: bool = False) -> LoadResult:
    """16 connections of the system's body from ``client``: a round, or (``warm_up``) a shorter
    unmeasured run, so each server's first seconds under load (lazy imports, first code paths,
    connection pools, the log's first commits) fall outside every round."""
    url = f"{server.url}{system.path}"
    if client == "wrk":
        return wrk.wrk_burst(url, system.body, CONNECTIONS, WARM_UP_S if warm_up else ROUND_S)
    return burst(url, system.body, CONNECTIONS, 20 if warm_up else PER_CONNECTION)


def closed_round(server: Server, system: System, client: str) -> tuple[LoadResult, float]:
    """One closed-loop round and the server's CPU milliseconds per request over it."""
    process = psutil.Process(server.process.pid)
    cpu_before, _ = measure.tree_usage(process)
    result = closed_loop(server, system, client)
    cpu_after, _ = measure.tree_usage(process)
    return result, (cpu_after - cpu_before) * 1000 / max(result.requests, 1)


def measure_all(
    systems_: list[System],
    folder: Path,
    processes: int = PROCESSES,
    rounds: int = ROUNDS,
    capacity: bool = True,
    client: str = "wrk",
) -> dict[str, Measured]:
    """Every server up at once; ``rounds`` rounds of bursts across them; then (``capacity``)
    each non-floor system's capacity, one at a time, paced by Locust on ``processes``
    workers."""
    measured = {system.name: Measured() for system in systems_}
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        for system in systems_:
            servers[system.name] = start(system, folder)
            stack.callback(servers[system.name].stop)
        for system in systems_:
            server = servers[system.name].wait_ready(timeout_s=600)
            closed_loop(server, system, client, warm_up=True)
        for round_ in range(1, rounds + 1):
            for system in systems_:
                result, cpu_ms = closed_round(servers[system.name], system, client)
                measured[system.name].rounds.append(result)
                measured[system.name].cpu_ms.append(cpu_ms)
                print(
                    f"  round {round_} {system.name}: {result.requests_per_s:.0f} req/s, "
                    f"p99 {result.percentile_ms(99):.1f} ms, {cpu_ms:.2f} ms CPU/request, "
                    f"errors {result.errors}",
                    flush=True,
                )
        for system in systems_ if capacity else []:
            if system.name in NO_CAPACITY:
                continue
            server = servers[system.name]
            request = FixedRequest(system.path, system.body, system.ready_path)
            load = measure.locust_load(server.url, processes, request)
            steps = measure.search(server, load, GRID, system.name)
            measured[system.name].capacity = knee.capacity(steps, SLO_P99_MS)
    return measured


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


def method(rounds: int, client: str) -> str:
    load = (
        f"wrk, {CONNECTIONS} connections for {ROUND_S} s"
        if client == "wrk"
        else f"the aiohttp burst client, {CONNECTIONS} connections x {PER_CONNECTION} requests"
    )
    return (
        f"Closed loop: every server up at once, {rounds} rounds across the systems of {load}, "
        "one application per request, the client on the same machine; median (range) across "
        "rounds; CPU = the server's own CPU time (all its processes) per request. Capacity: "
        "open-loop Poisson arrivals from the paced Locust source, "
        f"{GRID['step_seconds']} s steps from {GRID['start_rps']} req/s by x{GRID['growth']} "
        f"until p99 > {SLO_P99_MS:.0f} ms or > {knee.ERROR_BUDGET:.1%} errors (a break is run "
        f"once more), then {GRID['refine_steps']} bisections; the rate where a line fitted to "
        f"log(p99) meets {SLO_P99_MS:.0f} ms (`loadtests/sizing/knee.py`, as the sizing reads it)."
    )


def ratio_row(name: str, measured: dict[str, Measured], top: str, bottom: str, target: str) -> str:
    """A ratio of medians, with the same ratio round by round beside it (does it hold?)."""
    if top not in measured or bottom not in measured:
        return f"| {name} | not measured | | {target} |"
    per_round = [a / b for a, b in zip(measured[top].rps, measured[bottom].rps, strict=True)]
    median = statistics.median(measured[top].rps) / statistics.median(measured[bottom].rps)
    rounds = ", ".join(f"{value:.2f}" for value in per_round)
    return f"| {name} | {median:.2f} | {rounds} | {target} |"


def capacity_ratio(measured: dict[str, Measured], top: str, bottom: str) -> str:
    if top not in measured or bottom not in measured:
        return "not measured"
    high, low = measured[top].capacity, measured[bottom].capacity
    return f"{high / low:.2f}" if high and low else "n/a"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.side_by_side",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=runs.REPORTS, metavar="FOLDER", help="where run folders go"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=PROCESSES,
        help="Locust worker processes per capacity step (-1: one per core; 0: one process)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(SYSTEM_KEYS),
        help="measure these systems alone (e.g. `--only project canary` for the split's cost)",
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="closed-loop rounds")
    parser.add_argument(
        "--bento",
        default="credit-risk:latest",
        help="the Bento the project's systems serve (an earlier build's tag: its code)",
    )
    parser.add_argument(
        "--no-capacity", action="store_true", help="closed-loop rounds only, no capacity search"
    )
    parser.add_argument(
        "--client",
        choices=("wrk", "burst"),
        default="wrk" if wrk.available() else "burst",
        help="closed-loop client (default: wrk when on PATH, else the aiohttp burst)",
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
        f"model {model.tag}; the project's systems serve {args.bento}."
    )
    thresholds = DecisionSettings()
    declined = first_declined(model, thresholds)
    with tempfile.TemporaryDirectory() as folder:
        chosen = systems(registry, record, matrix_row, declined, model.tag, args.bento)
        if args.only:
            names = {SYSTEM_KEYS[key] for key in args.only}
            chosen = [system for system in chosen if system.name in names]
        measured = measure_all(
            chosen,
            Path(folder),
            args.processes,
            args.rounds,
            capacity=not args.no_capacity,
            client=args.client,
        )
    lines = [
        f"# Benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        machine,
        method(args.rounds, args.client),
        "",
        "| system | req/s | p99 ms | CPU ms/request | non-2xx | "
        f"capacity at p99 <= {SLO_P99_MS:.0f} ms (req/s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, seen in measured.items():
        capacity = "" if seen.capacity is None else f"{seen.capacity:.0f}"
        lines.append(
            f"| {name} | {spread(seen.rps)} | {spread(seen.p99_ms, 1)} | "
            f"{spread(seen.cpu_ms, 2)} | {seen.errors} | {capacity} |"
        )
    batch_size = WorkerSettings().runner_max_batch_size
    in_process = in_process_rows_per_s(model, batch_size)
    in_process_single = in_process_rows_per_s(model, 1)
    batch = batch_scoring_rows_per_s(model, thresholds)
    lines += [
        "",
        f"In-process TorchScorer: {in_process:,.0f} rows/s at batch {batch_size}, "
        f"{in_process_single:,.0f} rows/s at batch 1. Batch scoring path: {batch:,.0f} rows/s.",
        "",
        "| ratio (req/s) | median | per round | target |",
        "|---|---|---|---|",
        ratio_row(
            "project (default) / mlflow serve (default)", measured, PROJECT, MLFLOW, ">= 3.0"
        ),
        ratio_row(
            "project (default) / mlflow serve, 2 workers", measured, PROJECT, MLFLOW_2, ">= 2.0"
        ),
        ratio_row(
            "project (in-process) / mlflow serve, 2 workers",
            measured,
            IN_PROCESS,
            MLFLOW_2,
            ">= 2.0",
        ),
        ratio_row("project (default) / trivial BentoML", measured, PROJECT, TRIVIAL, ">= 1.5"),
        ratio_row(
            "project (in-process) / trivial BentoML", measured, IN_PROCESS, TRIVIAL, ">= 1.0"
        ),
        ratio_row("trivial BentoML / bare uvicorn", measured, TRIVIAL, BARE, "(framework cost)"),
        ratio_row(
            "project with a canary at 25% / project (default)",
            measured,
            CANARY,
            PROJECT,
            ">= 0.95 (split costs < 5%)",
        ),
        ratio_row(
            "project (default) / with Python's default GC thresholds",
            measured,
            PROJECT,
            DEFAULT_GC,
            "(`CREDIT_RISK_GC_THRESHOLDS`)",
        ),
        ratio_row(
            "a decline with reasons / without",
            measured,
            REASONS_ON,
            REASONS_OFF,
            "(cost of reasons)",
        ),
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| capacity: project (default) / mlflow serve (default) | "
        f"{capacity_ratio(measured, PROJECT, MLFLOW)} | >= 1.5 |",
        f"| capacity: project (default) / mlflow serve, 2 workers | "
        f"{capacity_ratio(measured, PROJECT, MLFLOW_2)} | >= 1.5 |",
        f"| capacity: project (in-process) / mlflow serve, 2 workers | "
        f"{capacity_ratio(measured, IN_PROCESS, MLFLOW_2)} | >= 1.5 |",
        f"| batch scoring (reasons for adverse rows) / in-process scorer | "
        f"{batch / in_process:.2f} | (reasons and decisions on top of the model) |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    path = runs.new_run(TOOL, args.out) / "report.md"
    path.write_text(report)
    print(f"report: {path}")


if __name__ == "__main__":
    main()
