"""`make size`: measure each declared configuration's capacity at each latency SLO, size the
API and runner deployments for a target load at the least cost, and write a report.

    python -m loadtests.size [--grid loadtests/sizing.yaml] [--prices loadtests/prices.yaml]
    python -m loadtests.size --verify     # rerun the recommendation at its predicted capacity

For every configuration in the grid it serves the built Bento (`credit-risk:latest`) with that
configuration's environment and raises open-loop Poisson arrivals (the Locust scenario, paced
per user on a Poisson schedule) step by step until p99 passes the largest SLO or errors pass the
budget, then bisects each SLO's knee, recording latency percentiles, errors by kind, server CPU
and memory per step. It also measures the runner alone with pre-built matrices (per-stage
sizing; the aiohttp open-loop generator, since the Locust scenario speaks the API contract).
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
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import psutil
import yaml

from credit_risk.config import REPO_ROOT, Settings
from credit_risk.pipeline import records_to_matrix
from loadtests import device_sizing
from loadtests.burst import burst
from loadtests.locust_run import run_locust
from loadtests.openloop import confirmed, open_loop
from loadtests.server import NO_CHALLENGER, Server
from loadtests.traffic import application_pool
from runners.batch_score import load_served_model

REPORTS = REPO_ROOT / "loadtests" / "reports"
RESULTS = REPO_ROOT / "loadtests" / "results"
ERROR_BUDGET = 0.001
RATE_PER_LOCUST_USER = 4.0  # req/s each Poisson-paced Locust user offers
WARM_UP_S = 8.0


@dataclass
class Step:
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    requests: int
    server_cpu_percent: float
    server_rss_mb: float
    error_kinds: dict[str, int] = field(default_factory=dict)  # status or exception: count

    def held(self, slo_p99_ms: float) -> bool:
        return self.p99_ms <= slo_p99_ms and self.errors <= ERROR_BUDGET * self.requests


@dataclass
class Measured:
    name: str
    instance: str
    env: dict[str, str]
    steps: list[Step] = field(default_factory=list)

    def capacity(self, slo_p99_ms: float) -> float:
        """The highest offered rate that held, below the lowest rate that broke (the ramp and
        its refinement steps may come in any order)."""
        broke = min((s.offered_rps for s in self.steps if not s.held(slo_p99_ms)), default=math.inf)
        return max(
            (s.offered_rps for s in self.steps if s.held(slo_p99_ms) and s.offered_rps < broke),
            default=0.0,
        )


def tree_usage(process: psutil.Process) -> tuple[float, float]:
    """Total CPU seconds and resident MB of a server and all its workers."""
    members = [process, *process.children(recursive=True)]
    cpu, rss = 0.0, 0.0
    for member in members:
        try:
            times = member.cpu_times()
            cpu += times.user + times.system
            rss += member.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return cpu, rss


@dataclass(frozen=True)
class Sample:
    """One load step as its generator saw it."""

    requests: int
    ok: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    elapsed_s: float
    error_kinds: dict[str, int]

    def breaks(self, slo_p99_ms: float) -> bool:
        errors = self.requests - self.ok
        return self.p99_ms > slo_p99_ms or errors > ERROR_BUDGET * self.requests


Load = Callable[[float, float], Sample]  # (rate, seconds) -> what one step saw


def locust_users(rate: float) -> int:
    """Enough Poisson-paced users that each is rarely busy, so the rate stays open-loop."""
    return max(16, math.ceil(rate / RATE_PER_LOCUST_USER))


def locust_load(host: str) -> Load:
    """The Locust scenario (real rows, good input only), Poisson arrivals at the step's rate."""

    def run(rate: float, seconds: float) -> Sample:
        options = ("--rate", f"{rate:.1f}", "--bad-share", "0")
        row = run_locust(host, locust_users(rate), math.ceil(seconds), *options)["Aggregated"]
        requests, rps = int(row["Request Count"]), float(row["Requests/s"])
        return Sample(
            requests=requests,
            ok=requests - int(row["Failure Count"]),
            p50_ms=float(row["50%"]),
            p95_ms=float(row["95%"]),
            p99_ms=float(row["99%"]),
            elapsed_s=requests / rps if rps else seconds,
            error_kinds=json.loads(row["failure_kinds"]),
        )

    return run


def open_loop_load(url: str, body: bytes) -> Load:
    """The aiohttp open-loop generator, for what the Locust scenario does not speak (the
    runner's matrix API)."""

    def run(rate: float, seconds: float) -> Sample:
        result = open_loop(url, body, rate, seconds)
        return Sample(
            requests=sum(result.outcomes.values()),
            ok=result.outcomes.get("200", 0),
            p50_ms=result.percentile_ms(50),
            p95_ms=result.percentile_ms(95),
            p99_ms=result.percentile_ms(99),
            elapsed_s=result.elapsed_s,
            error_kinds={kind: n for kind, n in result.outcomes.items() if kind != "200"},
        )

    return run


def run_step(server: Server, load: Load, rate: float, seconds: float, tightest_slo: float) -> Step:
    """One step at ``rate``, with the server's CPU and memory over it; a step that breaks the
    tightest SLO is ``confirmed`` like the bench's."""
    process = psutil.Process(server.process.pid)

    def watched() -> tuple[Sample, float, float]:
        cpu_before, _ = tree_usage(process)
        sample = load(rate, seconds)
        cpu_after, rss = tree_usage(process)
        return sample, (cpu_after - cpu_before) / sample.elapsed_s * 100, rss

    sample, cpu_percent, rss = confirmed(
        lambda _seed: watched(), lambda got: got[0].breaks(tightest_slo)
    )
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
    )


def ramp(
    server: Server, path: str, body: bytes, load: Load, grid: dict[str, Any], measured: Measured
) -> None:
    """Geometric steps until the loosest SLO breaks, then bisect each SLO's knee: a coarse
    ramp alone under-reports capacity by up to one growth factor."""
    url = f"{server.url}{path}"
    burst(url, body, 8, 25)  # warm the batcher's latency model; not counted
    open_loop(url, body, grid["start_rps"], WARM_UP_S)  # first-use paths; not counted

    def step(rate: float) -> Step:
        done = run_step(server, load, rate, grid["step_seconds"], min(grid["slos_p99_ms"]))
        measured.steps.append(done)
        print(
            f"  {measured.name}: {done.offered_rps} req/s -> p99 {done.p99_ms} ms, "
            f"errors {done.errors} {done.error_kinds or ''}, cpu {done.server_cpu_percent}%",
            flush=True,
        )
        return done

    rate = grid["start_rps"]
    while rate <= grid["max_rps"] and step(rate).held(max(grid["slos_p99_ms"])):
        rate *= grid["growth"]
    for slo in grid["slos_p99_ms"]:
        for _ in range(grid.get("refine_steps", 0)):
            held = measured.capacity(slo)
            broke = min((s.offered_rps for s in measured.steps if not s.held(slo)), default=0)
            if not held or not broke:
                break
            step(math.sqrt(held * broke))


def measure_configuration(config: dict[str, Any], grid: dict[str, Any], folder: Path) -> Measured:
    measured = Measured(config["name"], config["instance"], dict(config["env"]))
    body = json.dumps({"applications": [application_pool()[0]]}).encode()
    env = dict(os.environ) | measured.env | NO_CHALLENGER
    with Server("credit-risk:latest", folder / "serve.log", env) as server:
        ramp(server, "/score", body, locust_load(server.url), grid, measured)
    return measured


def measure_runner_alone(grid: dict[str, Any], folder: Path, settings: Settings) -> Measured:
    """The model stage by itself: the runner service fed pre-built one-row matrices."""
    model = load_served_model(settings)
    row = records_to_matrix([application_pool()[0]], model.bundle.feature_params).tolist()
    measured = Measured("runner alone (pre-built matrices)", "cpu-2", {})
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
        axis.plot(
            [s.offered_rps for s in result.steps],
            [s.p99_ms for s in result.steps],
            marker="o",
            label=result.name,
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
        f"user per {RATE_PER_LOCUST_USER:.0f} req/s; the runner alone: aiohttp), "
        f"{grid['step_seconds']} s per step, one application per request; error budget "
        f"{ERROR_BUDGET:.1%}. The served configurations are CPU only (no GPU here); the runner "
        "stage on a GPU is in its own section below.",
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


def verify(grid: dict[str, Any], folder: Path) -> None:
    """Rerun the first recommendation around its predicted capacity and report the deviation."""
    option = json.loads((folder / "recommendation.json").read_text())[0]
    predicted = option["capacity_rps_per_replica"]
    rerun = dict(grid, start_rps=predicted * 0.7, growth=1.1, max_rps=predicted * 1.6)
    config = {"name": option["configuration"], "instance": option["instance"], "env": option["env"]}
    with tempfile.TemporaryDirectory() as logs:
        measured = measure_configuration(config, rerun, Path(logs))
    measured_capacity = measured.capacity(option["slo_p99_ms"])
    at_prediction = min(measured.steps, key=lambda s: abs(s.offered_rps - predicted))
    deviation = measured_capacity / predicted - 1
    verdict = (
        "HELD"
        if at_prediction.p99_ms <= option["slo_p99_ms"] and at_prediction.errors == 0
        else "BROKEN"
    )
    text = (
        f"Verification of '{option['configuration']}' at p99 <= {option['slo_p99_ms']:.0f} ms: "
        f"predicted {predicted:.0f} req/s; at {at_prediction.offered_rps:.0f} req/s p99 was "
        f"{at_prediction.p99_ms:.0f} ms ({verdict}); measured capacity {measured_capacity:.0f} "
        f"req/s ({deviation:+.0%} vs prediction, "
        f"{'within' if abs(deviation) <= 0.15 else 'outside'} +/-15%)."
    )
    text += "\n" + locust_below_capacity(config, predicted * grid["headroom"])
    print(text)
    (folder / "verification.md").write_text(text + "\n")


def locust_below_capacity(config: dict[str, Any], rate: float) -> str:
    """The Locust scenario (realistic rows, 5% bad input) paced to ``rate``: expect 0 failures."""
    env = dict(os.environ) | config["env"] | NO_CHALLENGER
    with (
        tempfile.TemporaryDirectory() as folder,
        Server("credit-risk:latest", Path(folder) / "s.log", env) as server,
    ):
        total = run_locust(server.url, locust_users(rate), 20, "--rate", f"{rate:.1f}")
        total = total["Aggregated"]
    return (
        f"Locust at {rate:.0f} req/s ({config['name']}, 20 s, 5% bad input): "
        f"{total['Request Count']} requests, {total['Failure Count']} failures, "
        f"p99 {total['99%']} ms."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", type=Path, default=REPO_ROOT / "loadtests" / "sizing.yaml")
    parser.add_argument("--prices", type=Path, default=REPO_ROOT / "loadtests" / "prices.yaml")
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    grid = yaml.safe_load(args.grid.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    if args.verify:
        verify(grid, args.out)
        return
    prices = yaml.safe_load(args.prices.read_text())
    measured = []
    with tempfile.TemporaryDirectory() as logs:
        for config in grid["configurations"]:
            measured.append(measure_configuration(config, grid, Path(logs)))
        measured.append(measure_runner_alone(grid, Path(logs), Settings()))
    for option in write_report(measured, grid, prices, args.out):
        print(
            f"p99 <= {option['slo_p99_ms']} ms: {option['configuration']} x{option['replicas']} "
            f"({option['usd_per_million_predictions']} $ per million predictions)"
        )
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
