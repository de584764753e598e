"""`make size`: measure each declared configuration's capacity at each latency SLO, size the
API and runner deployments for a target load at the least cost, and write a report.

    python -m loadtests.size [--grid loadtests/sizing.yaml] [--prices loadtests/prices.yaml]
    python -m loadtests.size --verify     # measure the recommendation again, hold its capacity
    python -m loadtests.size --compare-grids 3   # sweep's vs verification's knee search, alternated

For every configuration in the grid it serves the built Bento (`credit-risk:latest`) with that
configuration's environment and its own empty prediction log, and raises open-loop Poisson
arrivals (the Locust scenario, paced per user on a Poisson schedule, measured over a window
after the connections are open; `loadtests/pacing.py`) step by step until p99 passes the
largest SLO or errors pass the budget, then bisects each SLO's knee, recording latency
percentiles, errors by kind, server CPU and memory per step. Capacity is where the fitted
latency curve meets the SLO (`loadtests/knee.py`). It also measures the runner alone with
pre-built matrices (per-stage sizing; the aiohttp open-loop generator, since the Locust scenario
speaks the API contract).
Output in loadtests/reports/: report.md, latency.png, capacity.png, recommendation.json and
deployment.yaml (replicas, resource requests and autoscaling targets per stage, tagged with the
model version). Loopback only; every step is bounded in time and rate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import psutil
import yaml

from credit_risk.config import REPO_ROOT, Settings
from credit_risk.pipeline import records_to_matrix
from loadtests import device_sizing, knee
from loadtests.burst import BurstResult, burst
from loadtests.knee import Step
from loadtests.locust_run import RATE_PER_USER, paced_run
from loadtests.openloop import open_loop
from loadtests.pacing import OK
from loadtests.server import NO_CHALLENGER, Server
from loadtests.traffic import application_pool
from runners.batch_score import load_served_model

REPORTS = REPO_ROOT / "loadtests" / "reports"
RESULTS = REPO_ROOT / "loadtests" / "results"
WARM_UP_S = 8.0
VERIFY_PASSES = 3  # fresh knee searches the verification judges on (their median)
VERIFY_REPEATS = 3  # steps the verification runs at the predicted capacity
VERIFY_HOLD_S = 30.0  # how long the verification holds the operating point


@dataclass
class Measured:
    name: str
    instance: str
    env: dict[str, str]
    steps: list[Step] = field(default_factory=list)
    slos_p99_ms: tuple[float, ...] = ()

    def capacity(self, slo_p99_ms: float) -> float:
        """Fitted per SLO; a looser SLO never gets less than a tighter one did (each SLO's fit
        sees its own steps, so two close knees can otherwise come out in the wrong order)."""
        tighter = [s for s in self.slos_p99_ms if s < slo_p99_ms]
        return max(knee.capacity(self.steps, s) for s in [*tighter, slo_p99_ms])

    def cpu_ms_per_request(self, slo_p99_ms: float) -> float:
        """Server CPU per request over the steps from half the capacity to the capacity: the
        same work costs more CPU time when the shared host is slow, so comparing this between
        two runs tells drift of the machine from error of the method. Steps past the knee are
        left out (queueing and shedding cost CPU of their own), and so are light ones (fixed
        costs dominate), so two ramps on different grids are compared over the same band."""
        top = self.capacity(slo_p99_ms)
        costs = [
            s.server_cpu_percent * 10 / s.achieved_rps
            for s in self.steps
            if top / 2 <= s.offered_rps <= top and s.achieved_rps
        ]
        return round(statistics.median(costs), 3) if costs else math.nan


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


@dataclass(frozen=True)
class Sample:
    """One load step as its generator saw it: arrivals in the window, latency from schedule."""

    requests: int
    ok: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    elapsed_s: float
    error_kinds: dict[str, int]

    @classmethod
    def of(cls, result: BurstResult, ok_outcome: str) -> Sample:
        return cls(
            requests=sum(result.outcomes.values()),
            ok=result.outcomes.get(ok_outcome, 0),
            p50_ms=result.percentile_ms(50),
            p95_ms=result.percentile_ms(95),
            p99_ms=result.percentile_ms(99),
            elapsed_s=result.elapsed_s,
            error_kinds={kind: n for kind, n in result.outcomes.items() if kind != ok_outcome},
        )

    def breaks(self, slo_p99_ms: float) -> bool:
        within = knee.within_error_budget(self.requests - self.ok, self.requests)
        return self.p99_ms > slo_p99_ms or not within


Load = Callable[[float, float], Sample]  # (rate, seconds) -> what one step saw


def locust_load(host: str) -> Load:
    """The Locust scenario (real rows, good input only), paced at the step's rate."""
    return lambda rate, seconds: Sample.of(paced_run(host, rate, seconds, 0).arrivals, OK)


def open_loop_load(url: str, body: bytes) -> Load:
    """The aiohttp open-loop generator, for what the Locust scenario does not speak (the
    runner's matrix API)."""
    return lambda rate, seconds: Sample.of(open_loop(url, body, rate, seconds), "200")


def run_step(server: Server, load: Load, rate: float, seconds: float) -> Step:
    """One step at ``rate``, with the server's CPU and memory over it. Server CPU is its CPU
    time over the whole call (a Locust warm-up adds one connection per user) per second of the
    measured window."""
    process = psutil.Process(server.process.pid)
    cpu_before, _ = tree_usage(process)
    sample = load(rate, seconds)
    cpu_after, rss = tree_usage(process)
    cpu_percent = (cpu_after - cpu_before) / sample.elapsed_s * 100
    return Step(
        offered_rps=round(rate, 1),
        achieved_rps=round(sample.requests / sample.elapsed_s, 1),
        p50_ms=round(sample.p50_ms, 1),
        p95_ms=round(sample.p95_ms, 1),
        p99_ms=round(sample.p99_ms, 1),
        errors=sample.requests - sample.ok,
        requests=sample.requests,
        server_cpu_percent=round(cpu_percent, 1),
        server_rss_mb=round(rss, 1),
        error_kinds=sample.error_kinds,
        window_s=seconds,
    )


def warm(url: str, body: bytes, rate: float) -> None:
    """Requests that are not measured: the batcher's latency model, then first-use paths."""
    burst(url, body, 8, 25)
    open_loop(url, body, rate, WARM_UP_S)


def ramp(
    server: Server, path: str, body: bytes, load: Load, grid: dict[str, Any], measured: Measured
) -> None:
    """The knee search (``knee.search``) on a warmed server. Every step has the same window:
    a longer one meets more of the host's stalls, so steps of different lengths near the knee
    would not lie on one latency curve."""
    warm(f"{server.url}{path}", body, grid["start_rps"])

    def step(rate: float) -> Step:
        done = run_step(server, load, rate, grid["step_seconds"])
        print(
            f"  {measured.name}: {done.offered_rps} req/s -> p99 {done.p99_ms} ms, "
            f"errors {done.errors} {done.error_kinds or ''}, cpu {done.server_cpu_percent}%",
            flush=True,
        )
        return done

    measured.steps.extend(knee.search(step, grid))


@contextmanager
def serving(env: dict[str, str]) -> Iterator[Server]:
    """The built Bento under one configuration, with a prediction log of its own: load-test
    rows stay out of the real log, and every run starts from the same empty one."""
    with tempfile.TemporaryDirectory() as folder:
        own_log = {"CREDIT_RISK_PREDICTION_LOG_URL": f"sqlite:///{folder}/predictions.db"}
        environment = dict(os.environ) | env | NO_CHALLENGER | own_log
        with Server("credit-risk:latest", Path(folder) / "serve.log", environment) as server:
            yield server


def score_body() -> bytes:
    """The warm-up body: one real application."""
    return json.dumps({"applications": [application_pool()[0]]}).encode()


def measure_configuration(config: dict[str, Any], grid: dict[str, Any]) -> Measured:
    measured = Measured(
        config["name"], config["instance"], dict(config["env"]), [], tuple(grid["slos_p99_ms"])
    )
    with serving(measured.env) as server:
        ramp(server, "/score", score_body(), locust_load(server.url), grid, measured)
    return measured


def measure_runner_alone(grid: dict[str, Any], folder: Path, settings: Settings) -> Measured:
    """The model stage by itself: the runner service fed pre-built one-row matrices."""
    model = load_served_model(settings)
    row = records_to_matrix([application_pool()[0]], model.bundle.feature_params).tolist()
    slos = tuple(grid["slos_p99_ms"])
    measured = Measured("runner alone (pre-built matrices)", "cpu-2", {}, [], slos)
    bento = Path(bentoml.bentos.get("credit-risk:latest").path) / "src"
    env = dict(os.environ) | NO_CHALLENGER
    with Server(
        "runners.model_runner:ModelRunner", folder / "runner.log", env, cwd=bento
    ) as runner:
        body = json.dumps({"matrix": row}).encode()
        ramp(
            runner, "/predict", body, open_loop_load(f"{runner.url}/predict", body), grid, measured
        )
    return measured


def recommend(
    measured: list[Measured], slo: float, grid: dict[str, Any], prices: dict[str, Any]
) -> dict[str, Any] | None:
    """The configuration and replica count carrying the target load at the least cost."""
    options = []
    for result in measured:
        capacity = result.capacity(slo)
        if capacity <= 0 or result.instance not in prices["instances"]:
            continue
        replicas = math.ceil(grid["target_rps"] / (capacity * grid["headroom"]))
        hourly = replicas * prices["instances"][result.instance]["usd_per_hour"]
        options.append(
            {
                "slo_p99_ms": slo,
                "configuration": result.name,
                "env": result.env,
                "instance": result.instance,
                "capacity_rps_per_replica": capacity,
                "server_cpu_ms_per_request": result.cpu_ms_per_request(slo),
                "replicas": replicas,
                "usd_per_hour": round(hourly, 4),
                "usd_per_million_predictions": round(hourly / (grid["target_rps"] * 3600) * 1e6, 4),
            }
        )
    return min(options, key=lambda o: o["usd_per_hour"], default=None)


def deployment_values(
    option: dict[str, Any], prices: dict[str, Any], model_tag: str
) -> dict[str, Any]:
    """What the Kubernetes manifests need per stage, for one recommendation."""
    vcpu = prices["instances"][option["instance"]]["vcpu"]
    in_process = option["env"].get("CREDIT_RISK_RUNNER_MODE") == "inprocess"
    api_cpu = vcpu if in_process else vcpu // 2
    values: dict[str, Any] = {
        "model_tag": model_tag,
        "slo_p99_ms": option["slo_p99_ms"],
        "configuration": option["configuration"],
        "env": option["env"],
        "api": {
            "replicas": option["replicas"],
            "requests": {"cpu": str(api_cpu)},
            "autoscaling": {
                "minReplicas": option["replicas"],
                "targetCPUUtilizationPercentage": 70,
            },
        },
    }
    if not in_process:
        values["runner"] = {
            "replicas": option["replicas"],
            "requests": {"cpu": str(vcpu - api_cpu)},
            "autoscaling": {
                "minReplicas": option["replicas"],
                "targetCPUUtilizationPercentage": 70,
            },
        }
    return values


def plot(measured: list[Measured], slos: list[float], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for result in measured:
        steps = sorted(result.steps, key=lambda s: s.offered_rps)  # measured in search order
        axis.plot(
            [s.offered_rps for s in steps], [s.p99_ms for s in steps], marker="o", label=result.name
        )
    for slo in slos:
        axis.axhline(slo, linestyle="--", color="grey")
    axis.set(
        xlabel="offered load (req/s, Poisson)",
        ylabel="p99 latency (ms)",
        yscale="log",
        title="Latency vs load",
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "latency.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 5))
    names = [m.name for m in measured]
    width = 0.8 / len(slos)
    for index, slo in enumerate(slos):
        axis.barh(
            [i + index * width for i in range(len(names))],
            [m.capacity(slo) for m in measured],
            height=width,
            label=f"p99 <= {slo:.0f} ms",
        )
    axis.set_yticks([i + width / 2 for i in range(len(names))], names, fontsize=8)
    axis.set(xlabel="capacity (req/s per replica)", title="Capacity at SLO")
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "capacity.png", dpi=110)
    plt.close(figure)


def write_report(
    measured: list[Measured], grid: dict[str, Any], prices: dict[str, Any], folder: Path
) -> list[dict[str, Any]]:
    settings = Settings()
    model_tag = settings.served_model_tag()
    slos = grid["slos_p99_ms"]
    sweeps = device_sizing.load_sweeps(RESULTS)
    lines = [
        f"# Sizing report ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"model {model_tag})",
        "",
        f"Measured on {platform.machine()}, {os.cpu_count()} cores, load generator co-located "
        "(capacities are lower bounds). Open-loop Poisson arrivals from Locust (one Poisson-paced "
        f"user per {RATE_PER_USER:.0f} req/s, connections opened before a "
        f"{grid['step_seconds']} s measured window, latency timed from each scheduled arrival; "
        "the runner alone: the aiohttp open-loop generator), one application per request; error "
        f"budget {knee.ERROR_BUDGET:.1%}. Capacity: where a line fitted to log(p99) against the "
        "rate over the steps near the SLO meets it (`loadtests/knee.py`). The served "
        "configurations are CPU only (no GPU here); the runner stage on a GPU is in its own "
        "section below.",
        "",
        "| configuration | "
        + " | ".join(f"capacity @p99<={s:.0f} ms (req/s)" for s in slos)
        + " | peak CPU % | RSS MB |",
        "|---|" + "---|" * len(slos) + "---|---|",
    ]
    for result in measured:
        peak = max(result.steps, key=lambda s: s.server_cpu_percent)
        lines.append(
            f"| {result.name} | "
            + " | ".join(f"{result.capacity(s):.0f}" for s in slos)
            + f" | {peak.server_cpu_percent:.0f} | {peak.server_rss_mb:.0f} |"
        )
    recommendations = [
        r for r in (recommend(measured[:-1], slo, grid, prices) for slo in slos) if r
    ]
    lines += [
        "",
        f"## Recommendation for {grid['target_rps']} req/s at {grid['headroom']:.0%} of capacity",
        "",
    ]
    lines += [
        "| SLO p99 | configuration | replicas | instance | $/hour | $ per million predictions |",
        "|---|---|---|---|---|---|",
    ]
    for option in recommendations:
        lines.append(
            f"| {option['slo_p99_ms']:.0f} ms | {option['configuration']} | {option['replicas']} | "
            f"{option['instance']} | {option['usd_per_hour']} | "
            f"{option['usd_per_million_predictions']} |"
        )
    runner = measured[-1]
    lines += [
        "",
        "## Per stage",
        "",
        f"Runner alone (pre-built one-row matrices): {runner.capacity(max(slos)):.0f} req/s at "
        f"p99 <= {max(slos):.0f} ms. The API stage alone is the in-process configuration "
        "(its CPU per request by step: `python -m loadtests.bench_hot_path`).",
        "",
        "![latency](latency.png) ![capacity](capacity.png)",
        "",
        "## Runner stage by device: CPU vs GPU",
        "",
        "The torch core alone (no HTTP) under simulated open-loop arrivals with batching, from "
        "`python -m loadtests.runner_sweep` on a lent GPU machine, CPU and CUDA in one run; "
        "larger random-weight variants of the network show where a GPU starts to pay.",
        "",
        *device_sizing.markdown(sweeps, prices, grid["headroom"]),
        "![runner by device](runner_devices.png)",
        "",
        "Every step: " + json.dumps({m.name: [asdict(s) for s in m.steps] for m in measured}),
    ]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    (folder / "recommendation.json").write_text(json.dumps(recommendations, indent=1))
    values = [deployment_values(option, prices, model_tag) for option in recommendations]
    (folder / "deployment.yaml").write_text(yaml.safe_dump_all(values, sort_keys=False))
    plot(measured, slos, folder)
    device_sizing.plot(sweeps, prices, folder / "runner_devices.png")
    return recommendations


def first_recommendation(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last report's first recommendation, and it as a grid configuration."""
    option = json.loads((folder / "recommendation.json").read_text())[0]
    config = {"name": option["configuration"], "instance": option["instance"], "env": option["env"]}
    return option, config


def verification_grid(grid: dict[str, Any], predicted: float, slo: float) -> dict[str, Any]:
    """The verification's knee search: one SLO, x1.2 steps from 60% of the prediction."""
    return dict(
        grid, slos_p99_ms=[slo], start_rps=predicted * 0.6, growth=1.2, max_rps=predicted * 2
    )


def compare_grids(grid: dict[str, Any], folder: Path, rounds: int) -> None:
    """The sweep's knee search and the verification's, alternated on fresh servers of the
    recommended configuration: a bias of one grid shows pair by pair, while drift of the host
    moves both together."""
    option, config = first_recommendation(folder)
    predicted, slo = option["capacity_rps_per_replica"], option["slo_p99_ms"]
    for index in range(rounds):
        for name, search in (
            ("sweep", grid),
            ("verification", verification_grid(grid, predicted, slo)),
        ):
            measured = measure_configuration(config, search)
            print(
                f"round {index + 1}, {name} grid: {measured.capacity(slo):.0f} req/s at p99 <= "
                f"{slo:.0f} ms, server CPU {measured.cpu_ms_per_request(slo):.2f} ms per request",
                flush=True,
            )


def verify(grid: dict[str, Any], folder: Path) -> None:
    """Rerun the first recommendation: measure its capacity afresh ``VERIFY_PASSES`` times, each
    on a new server with the same knee search on its own grid around the prediction, and judge
    the median; then, on one more server, run steps at the predicted rate and hold the Locust
    scenario with bad input at the operating point (headroom x capacity)."""
    option, config = first_recommendation(folder)
    predicted, slo = option["capacity_rps_per_replica"], option["slo_p99_ms"]
    search = verification_grid(grid, predicted, slo)
    passes = [measure_configuration(config, search) for _ in range(VERIFY_PASSES)]
    step_s = grid["step_seconds"]
    operating = predicted * grid["headroom"]
    with serving(config["env"]) as server:
        warm(f"{server.url}/score", score_body(), search["start_rps"])
        load = locust_load(server.url)
        at_prediction = [load(predicted, step_s) for _ in range(VERIFY_REPEATS)]
        mixed = paced_run(server.url, operating, VERIFY_HOLD_S, bad_share=0.05)
    capacities = [m.capacity(slo) for m in passes]
    measured_capacity = statistics.median(capacities)
    deviation = measured_capacity / predicted - 1
    held = sum(not sample.breaks(slo) for sample in at_prediction)
    cpu_then = option["server_cpu_ms_per_request"]
    cpu_now = statistics.median(m.cpu_ms_per_request(slo) for m in passes)
    text = (
        f"Verification of '{option['configuration']}' at p99 <= {slo:.0f} ms, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC:\n\n"
        f"- capacity: predicted {predicted:.0f} req/s, measured again {measured_capacity:.0f} "
        f"req/s, the median of {VERIFY_PASSES} passes on fresh servers "
        f"({', '.join(f'{c:.0f}' for c in capacities)}): {deviation:+.1%}, "
        f"{'within' if abs(deviation) <= 0.15 else 'outside'} +/-15%;\n"
        f"- server CPU per request below the knee: {cpu_then:.2f} ms when sized, "
        f"{cpu_now:.2f} ms now ({cpu_now / cpu_then - 1:+.1%}: the same work on a "
        f"{'slower' if cpu_now > cpu_then else 'faster'} host, if far from 0);\n"
        f"- {VERIFY_REPEATS} steps of {step_s} s at the predicted {predicted:.0f} "
        f"req/s: p99 {', '.join(f'{s.p99_ms:.0f}' for s in at_prediction)} ms, errors "
        f"{', '.join(str(s.requests - s.ok) for s in at_prediction)}; the SLO held in {held} "
        f"of {VERIFY_REPEATS} (capacity is the knee, where p99 meets the SLO, so steps there "
        "land on either side of it);\n"
        f"- Locust at the operating point, {operating:.0f} req/s ({grid['headroom']:.0%} of "
        f"capacity), 5% bad input, {VERIFY_HOLD_S:.0f} s: {mixed.total['Request Count']} "
        f"requests, {mixed.total['Failure Count']} failures {dict(mixed.failure_kinds)}, p99 "
        f"{mixed.arrivals.percentile_ms(99):.0f} ms (from schedule).\n\n"
        "Steps of each pass: " + json.dumps([[asdict(s) for s in m.steps] for m in passes])
    )
    print(text)
    (folder / "verification.md").write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", type=Path, default=REPO_ROOT / "loadtests" / "sizing.yaml")
    parser.add_argument("--prices", type=Path, default=REPO_ROOT / "loadtests" / "prices.yaml")
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--verify", action="store_true")
    parser.add_argument(
        "--compare-grids",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="alternate the sweep's and the verification's knee searches on the recommendation",
    )
    args = parser.parse_args()
    grid = yaml.safe_load(args.grid.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    if args.verify:
        verify(grid, args.out)
        return
    if args.compare_grids:
        compare_grids(grid, args.out, args.compare_grids)
        return
    prices = yaml.safe_load(args.prices.read_text())
    measured = []
    for config in grid["configurations"]:
        measured.append(measure_configuration(config, grid))
    with tempfile.TemporaryDirectory() as logs:
        measured.append(measure_runner_alone(grid, Path(logs), Settings()))
    for option in write_report(measured, grid, prices, args.out):
        print(
            f"p99 <= {option['slo_p99_ms']} ms: {option['configuration']} x{option['replicas']} "
            f"({option['usd_per_million_predictions']} $ per million predictions)"
        )
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
