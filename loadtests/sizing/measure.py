"""Measuring a served configuration: start the built Bento under its environment, warm it, and run
the knee search with one bounded load step at a time, each with the server's CPU and memory.

One load drives every step: the Locust scenario paced as an open-loop Poisson source, a master
and worker processes (``loadtests/load/locust_run.py``), with the API's real applications, or
with one fixed body: for a server that does not speak the API contract (the runner's matrix API
here, other servers in the benchmark), and for requests of several applications each (a body of
that many real applications, sampled once: ``score_body``), searched on the batch size's own
step grid (``grid.step_grid``) so that no step asks for an absurd rate of rows. Each step keeps
the generator's own CPU beside the server's, so a step the generator could not drive is known
(``knee.Step.generator_saturated``). Loopback only; every step is bounded in time and rate.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bentoml
import psutil

from credit_risk.pipeline import records_to_matrix
from loadtests.load.burst import burst
from loadtests.load.load_result import LoadResult
from loadtests.load.locust_run import PROCESSES, FixedRequest, paced_run
from loadtests.load.server import NO_CHALLENGER, Server
from loadtests.load.traffic import application_pool
from loadtests.sizing import knee
from loadtests.sizing.grid import step_grid
from loadtests.sizing.knee import Measured, Step
from model_artifact.loaded_model import load_served_model
from model_artifact.settings import RegistrySettings
from model_artifact.torch_scorer import select_device

WARM_UP_S = 8.0
SAMPLE_SEED = 7  # which real applications a batched body holds: the same in every run
RUNNER_ALONE = "runner alone (pre-built matrices)"

Load = Callable[[float, float], LoadResult]  # (rate, seconds) -> what one step saw


def locust_load(host: str, processes: int = PROCESSES, request: FixedRequest | None = None) -> Load:
    """The Locust scenario (real rows, good input only), or ``request`` alone, paced at the
    step's rate in all over ``processes`` workers; each step (a rerun included) draws its own
    arrival sequence."""
    return lambda rate, seconds: paced_run(host, rate, seconds, 0, processes, request).arrivals


def tree_usage(process: psutil.Process) -> tuple[float, float]:
    """Total CPU seconds and resident MB of a server and all its workers. A process's CPU
    includes its reaped children's, so a helper process that ends during a step does not take
    its CPU time out of the total (that once gave a step negative CPU)."""
    members = [process, *process.children(recursive=True)]
    cpu, rss = 0.0, 0.0
    for member in members:
        try:
            times = member.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += member.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return cpu, rss


def run_step(
    server: Server, load: Load, rate: float, seconds: float, applications: int = 1
) -> Step:
    """One step at ``rate`` requests/s of ``applications`` each, with the server's CPU and
    memory over it. Server CPU is its CPU time over the whole call (a Locust warm-up adds one
    connection per user) per second of the measured window."""
    process = psutil.Process(server.process.pid)
    cpu_before, _ = tree_usage(process)
    result = load(rate, seconds)
    cpu_after, rss = tree_usage(process)
    cpu_percent = (cpu_after - cpu_before) / result.elapsed_s * 100
    return Step.of(rate, seconds, result, cpu_percent, rss, applications)


def search(
    server: Server, load: Load, grid: Mapping[str, Any], name: str, applications: int = 1
) -> list[Step]:
    """The knee search (``knee.search``) with ``load`` on ``grid`` (already the batch size's
    own), printing each step as it ends. Every step has the same window: a longer one meets
    more of the host's stalls, so steps of different lengths near the knee would not lie on one
    latency curve."""

    def step(rate: float) -> Step:
        done = run_step(server, load, rate, grid["step_seconds"], applications)
        print(
            f"  {name}: {done.offered_rps} req/s ({done.offered_rows_per_s} rows/s) -> "
            f"p99 {done.p99_ms} ms, "
            f"errors {done.errors} {done.error_kinds or ''}, cpu {done.server_cpu_percent}%, "
            f"generator cpu {done.generator_cpu_percent}% (busiest process "
            f"{done.generator_peak_cpu_percent}%, late {done.sent_late})"
            + (" SATURATED" if done.generator_saturated else ""),
            flush=True,
        )
        return done

    return knee.search(step, grid)


def warm(url: str, body: bytes, load: Load, rate: float) -> None:
    """Requests that are not measured: a burst of ``body`` to ``url`` for the batcher's latency
    model, then ``load`` at ``rate`` through the first-use paths, as the steps will send it."""
    burst(url, body, 8, 25)
    load(rate, WARM_UP_S)


@contextmanager
def serving(env: Mapping[str, str]) -> Iterator[Server]:
    """The built Bento under one configuration, with a prediction log of its own: load-test
    rows stay out of the real log, and every run starts from the same empty one."""
    with tempfile.TemporaryDirectory() as folder:
        own_log = {"CREDIT_RISK_PREDICTION_LOG_URL": f"sqlite:///{folder}/predictions.db"}
        environment = dict(os.environ) | dict(env) | NO_CHALLENGER | own_log
        with Server("credit-risk:latest", Path(folder) / "serve.log", environment) as server:
            yield server


def score_body(applications: int = 1) -> bytes:
    """A body of real applications: the first of the data set alone (the warm-up body of
    one-application requests), or ``applications`` of them sampled once with a fixed seed
    (the fixed body of batched requests)."""
    pool = application_pool()
    chosen = (
        [pool[0]] if applications == 1 else random.Random(SAMPLE_SEED).sample(pool, applications)
    )
    return json.dumps({"applications": chosen}).encode()


def measure_configuration(
    config: Mapping[str, Any],
    grid: Mapping[str, Any],
    processes: int = PROCESSES,
    applications: int = 1,
) -> Measured:
    """One grid configuration (name, instance, env) served fresh and searched with the Locust
    load on ``processes`` workers, in requests of ``applications`` each: the scenario's real
    applications one at a time, or one fixed body of that many, on the batch size's own step
    grid."""
    measured = Measured(
        config["name"], config["instance"], dict(config["env"]), [], tuple(grid["slos_p99_ms"])
    )
    steps = step_grid(grid, applications)
    body = score_body(applications)
    with serving(measured.env) as server:
        fixed = FixedRequest("/score", body) if applications > 1 else None
        load = locust_load(server.url, processes, fixed)
        warm(f"{server.url}/score", body, load, steps["start_rps"])
        label = f"{measured.name} x{applications}" if applications > 1 else measured.name
        measured.steps = search(server, load, steps, label, applications)
    return measured


def measure_runner_alone(
    grid: Mapping[str, Any], logs: Path, processes: int = PROCESSES
) -> Measured:
    """The model stage by itself: the built Bento's runner service fed pre-built one-row
    matrices of the served model, by the paced Locust source on ``processes`` workers."""
    model = load_served_model(RegistrySettings(), select_device("cpu"))
    row = records_to_matrix([application_pool()[0]], model.bundle.feature_params).tolist()
    body = json.dumps({"matrix": row}).encode()
    measured = Measured(RUNNER_ALONE, "cpu-2", {}, [], tuple(grid["slos_p99_ms"]))
    bento = Path(bentoml.bentos.get("credit-risk:latest").path) / "src"
    env = dict(os.environ) | NO_CHALLENGER
    with Server("runners.service:ModelRunner", logs / "runner.log", env, cwd=bento) as runner:
        load = locust_load(runner.url, processes, FixedRequest("/predict", body))
        warm(f"{runner.url}/predict", body, load, grid["start_rps"])
        measured.steps = search(runner, load, grid, measured.name)
    return measured
