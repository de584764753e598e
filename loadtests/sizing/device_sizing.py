"""The runner stage per device, for the sizing report: reads the runner sweeps stored under
loadtests/results/ (`make runner-sweep`, run where a GPU is lent, measures CPU and CUDA side by
side) and prices each device's best batching configuration per SLO."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SWEEP_GLOB = "runner-sweep-*.json"
# What a sweep's device runs on: one torch thread is one vCPU of the CPU instance; a GPU row
# takes the whole GPU instance.
CPU_INSTANCE, GPU_INSTANCE = "cpu-2", "gpu-h100"


def load_sweeps(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob(SWEEP_GLOB))]


def usd_per_hour(device: str, sweep: dict[str, Any], prices: Mapping[str, Any]) -> float:
    if device == "cuda":
        return float(prices["instances"][GPU_INSTANCE]["usd_per_hour"])
    instance = prices["instances"][CPU_INSTANCE]
    return float(instance["usd_per_hour"] / instance["vcpu"] * sweep["torch_threads"])


def best_rows(
    sweep: dict[str, Any], prices: Mapping[str, Any], headroom: float, only_slo: float | None = None
) -> list[dict[str, Any]]:
    """Per (device, model, SLO): the batching configuration with the most rows/s, its cost per
    million rows at ``headroom`` of capacity, and the single-row call latency."""
    single = {(t["device"], t["model"]): t["p50_ms"] for t in sweep["timings"] if t["batch"] == 1}
    best: dict[tuple[str, str, float], dict[str, Any]] = {}
    for option in sweep["capacities"]:
        key = (option["model"], option["device"], option["slo_p99_ms"])
        wanted = only_slo is None or option["slo_p99_ms"] == only_slo
        if wanted and option["rows_per_s"] > best.get(key, {}).get("rows_per_s", -1):
            best[key] = option
    rows = []
    for (model, device, slo), option in sorted(best.items()):
        hourly = usd_per_hour(device, sweep, prices)
        capacity = option["rows_per_s"]
        rows.append(
            {
                "device": device,
                "model": model,
                "slo_p99_ms": slo,
                "max_batch_size": option["max_batch_size"],
                "max_wait_ms": option["max_wait_ms"],
                "rows_per_s": capacity,
                "batch1_p50_ms": single[(device, model)],
                "usd_per_million_rows": hourly / (capacity * headroom * 3600) * 1e6
                if capacity
                else math.inf,
            }
        )
    return rows


def markdown(sweeps: list[dict[str, Any]], prices: Mapping[str, Any], headroom: float) -> list[str]:
    if not sweeps:
        return ["No runner sweep is stored (run `make runner-sweep` on a GPU machine)."]
    lines: list[str] = []
    for sweep in sweeps:
        rows = best_rows(sweep, prices, headroom)
        lines += [
            f"Measured {sweep['measured_at']} on {sweep['machine']}, torch {sweep['torch']}, "
            f"{sweep['torch_threads']} CPU thread(s); CUDA vs CPU probabilities of the served "
            f"model differ by at most {sweep.get('cuda_vs_cpu_max_abs_diff', float('nan')):.1e}. "
            f"CPU priced as {sweep['torch_threads']} vCPU of {CPU_INSTANCE}, CUDA as one "
            f"{GPU_INSTANCE}; cost at {headroom:.0%} of capacity.",
            "",
            "| model | device | SLO p99 | best max_batch_size | capacity (rows/s) "
            "| batch-1 call p50 ms | $ per million rows |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['device']} | {r['slo_p99_ms']:.0f} ms | {r['max_batch_size']} "
            f"| {r['rows_per_s']:,.0f} | {r['batch1_p50_ms']:.3f} "
            f"| {r['usd_per_million_rows']:.2g} |"
            for r in rows
        ]
        lines += ["", *device_verdicts(rows), ""]
    return lines


def device_verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Which device serves each model's runner stage cheaper, at the loosest SLO."""
    loosest = max(r["slo_p99_ms"] for r in rows)
    verdicts = []
    for model in dict.fromkeys(r["model"] for r in rows):
        options = [r for r in rows if r["model"] == model and r["slo_p99_ms"] == loosest]
        cheapest = min(options, key=lambda r: r["usd_per_million_rows"])
        others = [r for r in options if r is not cheapest]
        ratio = (
            f", {others[0]['usd_per_million_rows'] / cheapest['usd_per_million_rows']:.1f}x "
            f"cheaper than {others[0]['device']}"
            if others and cheapest["usd_per_million_rows"]
            else ""
        )
        verdicts.append(
            f"- {model}: runner on **{cheapest['device']}** at p99 <= {loosest:.0f} ms{ratio}."
        )
    return verdicts


def plot(sweeps: list[dict[str, Any]], prices: Mapping[str, Any], path: Path) -> None:
    """Runner capacity per model and device at the loosest SLO of the latest sweep, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not sweeps:
        return
    slo = max(option["slo_p99_ms"] for option in sweeps[-1]["capacities"])
    rows = best_rows(sweeps[-1], prices, 1.0, only_slo=slo)
    labels = [f"{r['model']} / {r['device']}" for r in rows]
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.barh(labels, [max(r["rows_per_s"], 1) for r in rows], color="tab:green")
    axis.set(
        xscale="log",
        xlabel="rows/s per runner replica (log)",
        title=f"Runner stage capacity at p99 <= {slo:.0f} ms\n{sweeps[-1]['machine']}",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
