"""The sizing run's output, in one run folder: report.md (what was measured, capacity per
configuration, batch size and SLO in requests/s and rows/s, the recommendation, the prediction
log stage, the runner stage per device), steps.csv (every measured step, linked from the
report), log-stage.json (the log's measured rates), the latency and capacity plots,
recommendation.json (what ``--verify`` reads) and deployment.yaml (per recommendation, each
stage's replicas, CPU and memory, and autoscaling: ``recommend.deployment``'s values, the ones
the profiles deploy)."""

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
from loadtests.sizing import device_sizing, knee, log_stage
from loadtests.sizing.grid import applications_mix, target_rows_per_s
from loadtests.sizing.knee import Measured, Step
from loadtests.sizing.log_stage import PER_POD_STORE, LogStage
from loadtests.sizing.recommend import LATENCY_LIMIT, Deployment, Option, deployment, log_notes

# Step's fields, labelled with what the step measured; error kinds last (free text).
STEP_COLUMNS = [
    "configuration",
    "applications_per_request",
    "offered_rps",
    "offered_rows_per_s",
    "achieved_rps",
    "achieved_rows_per_s",
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
    """One CSV line per step, labelled with what it measured, in the order given: requests/s
    and rows/s (requests x applications per request) side by side."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, STEP_COLUMNS)
        writer.writeheader()
        for label, step in rows:
            values = asdict(step)
            values |= {
                "applications_per_request": values.pop("applications"),
                "offered_rows_per_s": step.offered_rows_per_s,
                "achieved_rows_per_s": step.achieved_rows_per_s,
                "generator_saturated": step.generator_saturated,
                "error_kinds": error_kinds_text(step.error_kinds),
            }
            writer.writerow({"configuration": label, **values})


def capacity_cell(measured: Measured, slo_p99_ms: float) -> str:
    """The capacity, or where the generator set the limit, the lower bound marked as such."""
    capacity = f"{measured.capacity(slo_p99_ms):.0f}"
    return f">= {capacity} (generator-bound)" if measured.generator_bound(slo_p99_ms) else capacity


def rows_cell(measured: Measured, slo_p99_ms: float) -> str:
    """The capacity in rows/s (a lower bound where the generator set it)."""
    rows = f"{measured.capacity_rows_per_s(slo_p99_ms):,.0f}"
    return f">= {rows}" if measured.generator_bound(slo_p99_ms) else rows


def mix_text(grid: Mapping[str, Any]) -> str:
    """``95% of 1, 5% of 256 applications per request``."""
    parts = [f"{share:.0%} of {size}" for size, share in applications_mix(grid).items()]
    return ", ".join(parts) + " applications per request"


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
    log: LogStage | None = None,
) -> str:
    slos = grid["slos_p99_ms"]
    sizes = sorted({m.applications for m in configurations} or {1})
    lines = [
        f"# Sizing report ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"model {model_tag})",
        "",
        f"Measured on {platform.machine()}, {os.cpu_count()} cores, load generator co-located "
        "(capacities are lower bounds). Open-loop Poisson arrivals from "
        f"{generator_text(configurations)} (one Poisson-paced user per {RATE_PER_USER:.0f} "
        f"req/s over all workers, connections opened before a {grid['step_seconds']} s "
        "measured window, latency timed from each scheduled arrival; the runner alone: the "
        "same source posting one pre-built matrix), "
        f"{' and '.join(str(size) for size in sizes)} application(s) per request (one request "
        "of several applications: one fixed body of real applications, sampled once), each "
        "batch size on a fresh server with its own ramp; error budget "
        f"{knee.ERROR_BUDGET:.1%}. Capacity: where a line fitted to log(p99) against the rate "
        "over the steps near the SLO meets it (`loadtests/sizing/knee.py`); the SLO bounds a "
        "request's p99 whatever it carries, and rows/s = requests/s x applications per "
        "request. The served configurations are CPU only (no GPU here); the runner stage on a "
        "GPU is in its own section below.",
        "",
        "The generator's own CPU is measured beside the server's. A step whose generator was "
        f"saturated (a generator process above {knee.GENERATOR_CPU_LIMIT:.0f}% of one core over "
        f"the window, or more than {knee.LATE_SHARE:.0%} of the arrivals sent late by the "
        "generator itself) measured the generator: it is no point of the fit, and a capacity "
        "that rests on such steps reads **generator-bound**, a lower bound, not the server's "
        "capacity.",
        "",
        "| configuration | applications/request | "
        + " | ".join(f"capacity @p99<={s:.0f} ms: req/s | rows/s" for s in slos)
        + " | server peak CPU % | generator peak CPU %, all (busiest process) | RSS MB |",
        "|---|---|" + "---|---|" * len(slos) + "---|---|---|",
    ]
    for result in [*configurations, runner]:
        peak = max(result.steps, key=lambda s: s.server_cpu_percent)
        generator = max(s.generator_cpu_percent for s in result.steps)
        busiest = max(s.generator_peak_cpu_percent for s in result.steps)
        lines.append(
            f"| {result.name} | {result.applications} | "
            + " | ".join(f"{capacity_cell(result, s)} | {rows_cell(result, s)}" for s in slos)
            + f" | {peak.server_cpu_percent:.0f} | {generator:.0f} ({busiest:.0f}) "
            f"| {peak.server_rss_mb:.0f} |"
        )
    lines += [
        "",
        "Every step in the order run (requests/s and rows/s, latency percentiles, errors by kind, "
        "server CPU and memory, the generator's CPU and late sends): [steps.csv](steps.csv).",
        "",
        *recommendation_lines(options, grid),
        *log_stage_lines(log, options, grid),
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


def recommendation_lines(options: list[Option], grid: Mapping[str, Any]) -> list[str]:
    """The recommendation per SLO: the mix's capacity, replicas for latency and for the log,
    what set them, the price; then, in words, what the prediction log did to each."""
    lines = [
        f"## Recommendation for {grid['target_rps']} req/s ({mix_text(grid)}: "
        f"{target_rows_per_s(grid):,.0f} rows/s) at {grid['headroom']:.0%} of capacity",
        "",
        "Capacity of the mix per replica: 1 / sum(share / capacity) over its batch sizes "
        "(`recommend.mix_capacity`). Replicas: the more of what the latency SLO needs and what "
        "the prediction log needs per pod (next section). $ per million predictions: per "
        "application scored (one row).",
        "",
        "| SLO p99 | configuration | capacity of the mix per replica: req/s (rows/s) | "
        "replicas: latency, log -> chosen | limited by | instance | $/hour | "
        "$ per million predictions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for option in options:
        log = option.get("log") or {}
        lines.append(
            f"| {option['slo_p99_ms']:.0f} ms | {option['configuration']} | "
            f"{option['capacity_rps_per_replica']:,.0f} "
            f"({option.get('capacity_rows_per_s_per_replica', 0):,.0f}) | "
            f"{option.get('replicas_for_latency', option['replicas'])}, "
            f"{log.get('replicas_for_log') or '-'} -> {option['replicas']} | "
            f"{option.get('limited_by', LATENCY_LIMIT)} | {option['instance']} | "
            f"{option['usd_per_hour']} | {option['usd_per_million_predictions']} |"
        )
    lines.append("")
    for option in options:
        lines += [f"- p99 <= {option['slo_p99_ms']:.0f} ms: {note}" for note in log_notes(option)]
    return [*lines, ""] if lines[-1] else lines


def log_stage_lines(
    log: LogStage | None, options: list[Option], grid: Mapping[str, Any]
) -> list[str]:
    """The prediction log as a stage: what it took per pod and per database, and whether the
    recommendation's replicas and one database carry the target's rows."""
    lines = ["## Prediction log stage", ""]
    if log is None:
        return [*lines, "Not measured in this run: no recommendation here accounts for it.", ""]
    rows = target_rows_per_s(grid)
    lines += [
        "Every answered application is one row. Measured alone (`loadtests/sizing/log_stage.py`, "
        "`log_bench.log_alone`): one writer per API worker, "
        f"{log.write_rows}-row writes, timed until every backlog is in the database; "
        "the median of the runs. Per pod: " + PER_POD_STORE + "; per database: "
        f"{log.database_note}. Run at {grid['headroom']:.0%} of these rates like every stage.",
        "",
        "| store | writers | rows/s (median) | runs |",
        "|---|---|---|---|",
    ]
    for workers, rate in sorted(log.per_pod_rows_per_s.items()):
        runs = log.samples.get(f"sqlite, {workers} writers", [])
        lines.append(
            f"| per pod: SQLite spool + database | {workers} | {rate:,.0f} | "
            f"{', '.join(f'{r:,.0f}' for r in runs)} |"
        )
    if log.per_database_rows_per_s is not None:
        runs = log.samples.get(f"postgresql, {log.database_writers} writers", [])
        lines.append(
            f"| one PostgreSQL database | {log.database_writers} | "
            f"{log.per_database_rows_per_s:,.0f} | {', '.join(f'{r:,.0f}' for r in runs)} |"
        )
    else:
        lines.append(f"| one PostgreSQL database | | {log.database_note} | |")
    lines += ["", f"The target brings {rows:,.0f} rows/s."]
    for option in options:
        plan = option["log"]
        per_pod = plan["rows_per_s_per_pod"]
        carried = (
            f"{option['replicas']} replicas log {option['replicas'] * per_pod:,.0f} rows/s "
            f"({option['replicas'] * per_pod * grid['headroom']:,.0f} at the headroom), "
            f"{plan['replicas_for_log']} needed"
            if per_pod
            else f"per pod not measured for {plan['api_workers_per_pod']} API workers"
        )
        if plan["databases_needed"] is None:
            database = "one database: not measured"
        elif plan["database_is_the_limit"]:
            database = (
                f"**the database is the limit**: one takes {plan['rows_per_s_per_database']:,.0f} "
                f"rows/s, the target needs {plan['databases_needed']}"
            )
        else:
            database = (
                f"one database carries it ({rows / plan['rows_per_s_per_database']:.0%} of its "
                "measured rate)"
            )
        lines.append(
            f"- p99 <= {option['slo_p99_ms']:.0f} ms, {option['configuration']}: {carried}; "
            f"{database}."
        )
    return [*lines, ""]


def write_deployment(folder: Path, deployments: list[Deployment]) -> None:
    """deployment.yaml: one document per recommendation, the tightest SLO first."""
    values = [d.values() for d in deployments]
    (folder / "deployment.yaml").write_text(yaml.safe_dump_all(values, sort_keys=False))


def plot(measured: list[Measured], slos: list[float], folder: Path) -> None:
    """latency.png (p99 against offered rows/s per configuration and batch size, SLOs dashed)
    and capacity.png (capacity in rows/s per configuration, batch size and SLO): rows/s, so
    that batch sizes whose request rates lie a hundredfold apart share one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for result in measured:
        steps = sorted(result.steps, key=lambda s: s.offered_rps)  # measured in search order
        axis.plot(
            [s.offered_rows_per_s for s in steps],
            [s.p99_ms for s in steps],
            marker="o",
            label=result.label,
        )
    for slo in slos:
        axis.axhline(slo, linestyle="--", color="grey")
    axis.set(
        xlabel="offered load (rows/s = Poisson requests/s x applications per request)",
        ylabel="p99 latency of a request (ms)",
        xscale="log",
        yscale="log",
        title="Latency vs load",
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "latency.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 5))
    names = [m.label for m in measured]
    width = 0.8 / len(slos)
    for index, slo in enumerate(slos):
        axis.barh(
            [i + index * width for i in range(len(names))],
            [m.capacity_rows_per_s(slo) for m in measured],
            height=width,
            label=f"p99 <= {slo:.0f} ms",
        )
    axis.set_yticks([i + width / 2 for i in range(len(names))], names, fontsize=8)
    axis.set(xlabel="capacity (rows/s per replica)", xscale="log", title="Capacity at SLO")
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
    log: LogStage | None = None,
) -> None:
    """Every file of a sizing run into ``folder`` (the log stage's figures as log-stage.json,
    which ``profiles.read_run`` reads back); the runner sweeps come from loadtests/results/."""
    measured = [*configurations, runner]
    sweeps = device_sizing.load_sweeps(RESULTS)
    sweep_lines = device_sizing.markdown(sweeps, prices, grid["headroom"])
    text = sizing_markdown(configurations, runner, options, grid, sweep_lines, model_tag, log)
    (folder / "report.md").write_text(text)
    if log is not None:
        log_stage.write(folder, log)
    write_steps(folder / "steps.csv", ((m.name, s) for m in measured for s in m.steps))
    (folder / "recommendation.json").write_text(json.dumps(options, indent=1))
    write_deployment(
        folder,
        [deployment(o, configurations, runner, grid, prices, model_tag) for o in options],
    )
    plot(measured, grid["slos_p99_ms"], folder)
    device_sizing.plot(sweeps, prices, folder / "runner_devices.png")
