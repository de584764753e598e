"""The sizing run's output, in one run folder: report.md (what was measured, capacity per
configuration and SLO, the recommendation, the runner stage per device), steps.csv (every
measured step, linked from the report), the latency and capacity plots, recommendation.json (what
``--verify`` reads) and deployment.yaml (per recommendation, each stage's replicas, CPU and
memory, and autoscaling: ``recommend.deployment``'s values, the ones the profiles deploy)."""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from loadtests.load.locust_run import RATE_PER_USER
from loadtests.runs import RESULTS
from loadtests.sizing import device_sizing, knee
from loadtests.sizing.knee import Measured, Step
from loadtests.sizing.recommend import Deployment, Option, deployment

# Step's fields, labelled with what the step measured; error kinds last (free text).
STEP_COLUMNS = [
    "configuration",
    "offered_rps",
    "achieved_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "errors",
    "requests",
    "server_cpu_percent",
    "server_rss_mb",
    "window_s",
    "generator_cpu_percent",
    "generator_peak_cpu_percent",
    "generator_processes",
    "sent_late",
    "generator_saturated",
    "error_kinds",
]


def error_kinds_text(kinds: Mapping[str, int]) -> str:
    """``status 503: 2; unfinished: 1`` (empty when there were no errors)."""
    return "; ".join(f"{kind}: {count}" for kind, count in kinds.items())


def write_steps(path: Path, rows: Iterable[tuple[str, Step]]) -> None:
    """One CSV line per step, labelled with what it measured, in the order given."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, STEP_COLUMNS)
        writer.writeheader()
        for label, step in rows:
            values = asdict(step) | {
                "generator_saturated": step.generator_saturated,
                "error_kinds": error_kinds_text(step.error_kinds),
            }
            writer.writerow({"configuration": label, **values})


def capacity_cell(measured: Measured, slo_p99_ms: float) -> str:
    """The capacity, or where the generator set the limit, the lower bound marked as such."""
    capacity = f"{measured.capacity(slo_p99_ms):.0f}"
    return f">= {capacity} (generator-bound)" if measured.generator_bound(slo_p99_ms) else capacity


def generator_text(measured: list[Measured]) -> str:
    """Which Locust processes generated the load, read from the steps themselves."""
    processes = max((s.generator_processes for m in measured for s in m.steps), default=0)
    if processes > 1:
        return f"a Locust master and {processes - 1} worker processes"
    return "one Locust process" if processes == 1 else "Locust"


def sizing_markdown(
    configurations: list[Measured],
    runner: Measured,
    options: list[Option],
    grid: Mapping[str, Any],
    sweep_lines: list[str],
    model_tag: str,
) -> str:
    slos = grid["slos_p99_ms"]
    lines = [
        f"# Sizing report ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"model {model_tag})",
        "",
        f"Measured on {platform.machine()}, {os.cpu_count()} cores, load generator co-located "
        "(capacities are lower bounds). Open-loop Poisson arrivals from "
        f"{generator_text(configurations)} (one Poisson-paced user per {RATE_PER_USER:.0f} "
        f"req/s over all workers, connections opened before a {grid['step_seconds']} s "
        "measured window, latency timed from each scheduled arrival; the runner alone: the "
        "same source posting one pre-built matrix), one application per request; error budget "
        f"{knee.ERROR_BUDGET:.1%}. Capacity: where a line fitted to log(p99) against the rate "
        "over the steps near the SLO meets it (`loadtests/sizing/knee.py`). The served "
        "configurations are CPU only (no GPU here); the runner stage on a GPU is in its own "
        "section below.",
        "",
        "The generator's own CPU is measured beside the server's. A step whose generator was "
        f"saturated (a generator process above {knee.GENERATOR_CPU_LIMIT:.0f}% of one core over "
        f"the window, or more than {knee.LATE_SHARE:.0%} of the arrivals sent late by the "
        "generator itself) measured the generator: it is no point of the fit, and a capacity "
        "that rests on such steps reads **generator-bound**, a lower bound, not the server's "
        "capacity.",
        "",
        "| configuration | "
        + " | ".join(f"capacity @p99<={s:.0f} ms (req/s)" for s in slos)
        + " | server peak CPU % | generator peak CPU %, all (busiest process) | RSS MB |",
        "|---|" + "---|" * len(slos) + "---|---|---|",
    ]
    for result in [*configurations, runner]:
        peak = max(result.steps, key=lambda s: s.server_cpu_percent)
        generator = max(s.generator_cpu_percent for s in result.steps)
        busiest = max(s.generator_peak_cpu_percent for s in result.steps)
        lines.append(
            f"| {result.name} | "
            + " | ".join(capacity_cell(result, s) for s in slos)
            + f" | {peak.server_cpu_percent:.0f} | {generator:.0f} ({busiest:.0f}) "
            f"| {peak.server_rss_mb:.0f} |"
        )
    lines += [
        "",
        "Every step in the order run (rate, latency percentiles, errors by kind, server CPU and "
        "memory, the generator's CPU and late sends): [steps.csv](steps.csv).",
        "",
        f"## Recommendation for {grid['target_rps']} req/s at {grid['headroom']:.0%} of capacity",
        "",
        "| SLO p99 | configuration | replicas | instance | $/hour | $ per million predictions |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {option['slo_p99_ms']:.0f} ms | {option['configuration']} | {option['replicas']} | "
        f"{option['instance']} | {option['usd_per_hour']} | "
        f"{option['usd_per_million_predictions']} |"
        for option in options
    ]
    lines += [
        "",
        "## Per stage",
        "",
        f"Runner alone (pre-built one-row matrices): {capacity_cell(runner, max(slos))} req/s at "
        f"p99 <= {max(slos):.0f} ms. The API stage is not measured alone: the in-process "
        "configurations are the API with the model inside it (no runner hop).",
        "",
        "![latency](latency.png) ![capacity](capacity.png)",
        "",
        "## Runner stage by device: CPU vs GPU",
        "",
        "The TorchScorer alone (no HTTP) under simulated open-loop arrivals with batching, from "
        "`make runner-sweep` on a lent GPU machine, CPU and CUDA in one run; "
        "larger random-weight variants of the network show where a GPU starts to pay.",
        "",
        *sweep_lines,
        "![runner by device](runner_devices.png)",
    ]
    return "\n".join(lines) + "\n"


def write_deployment(folder: Path, deployments: list[Deployment]) -> None:
    """deployment.yaml: one document per recommendation, the tightest SLO first."""
    values = [d.values() for d in deployments]
    (folder / "deployment.yaml").write_text(yaml.safe_dump_all(values, sort_keys=False))


def plot(measured: list[Measured], slos: list[float], folder: Path) -> None:
    """latency.png (p99 against offered load per configuration, SLOs dashed) and capacity.png
    (capacity per configuration and SLO)."""
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


def write_sizing_report(
    folder: Path,
    configurations: list[Measured],
    runner: Measured,
    options: list[Option],
    grid: Mapping[str, Any],
    prices: Mapping[str, Any],
    model_tag: str,
) -> None:
    """Every file of a sizing run into ``folder``; the runner sweeps come from
    loadtests/results/."""
    measured = [*configurations, runner]
    sweeps = device_sizing.load_sweeps(RESULTS)
    sweep_lines = device_sizing.markdown(sweeps, prices, grid["headroom"])
    text = sizing_markdown(configurations, runner, options, grid, sweep_lines, model_tag)
    (folder / "report.md").write_text(text)
    write_steps(folder / "steps.csv", ((m.name, s) for m in measured for s in m.steps))
    (folder / "recommendation.json").write_text(json.dumps(options, indent=1))
    write_deployment(
        folder,
        [deployment(o, configurations, runner, grid, prices, model_tag) for o in options],
    )
    plot(measured, grid["slos_p99_ms"], folder)
    device_sizing.plot(sweeps, prices, folder / "runner_devices.png")
