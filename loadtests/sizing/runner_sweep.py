"""The runner stage alone, per device: batch timings of the TorchScorer, then the capacity of a
batching runner at a latency SLO, for the served model and larger variants of the same network.

    make runner-sweep MODEL_DIR=MLFLOW_MODEL_FOLDER   # on the GPU machine
    python -m loadtests.sizing.runner_sweep [--model-dir FOLDER] [--width N] [--out FILE.json]

Needs only torch and numpy (no BentoML, no MLflow), so it runs as it is on a GPU machine that
has nothing else. Writes loadtests/reports/runner-sweep-YYYYMMDD-HHMM.json by default; copied
into loadtests/results/, it is what ``device_sizing`` prices in the sizing report and what the
GPU profile is sized from. Two parts:

1. Timings: each (device, model, batch size) is called repeatedly on a fixed matrix through
   ``TorchScorer.predict`` (host -> device copy, forward, device -> host copy, as served), giving
   rows/s and per-call p50/p99.
2. Capacity: a discrete-event simulation of one runner worker fed open-loop Poisson arrivals of
   one-row requests, batching up to ``max_batch_size`` rows and waiting at most
   ``max_wait_ms`` for a batch to fill, with each batch's service time drawn from the measured
   timings of part 1. The capacity is the highest arrival rate whose p99 (queueing + batching +
   service) stays under the SLO, found by bisection. HTTP and serialisation are not in these
   figures: they are the same CPU work on either device and are measured by ``make size``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loadtests import runs
from model_artifact.network import TabularMLP
from model_artifact.torch_scorer import TorchScorer, load_exported_module

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LARGER_MODELS: dict[str, tuple[int, ...]] = {"mlp 2x1024": (1024, 1024), "mlp 3x4096": (4096,) * 3}
MAX_BATCH_SIZES = (32, 128, 512)
MAX_WAITS_MS = (0.0, 5.0)
SIMULATED_S = 1.0  # long enough for an overloaded queue to break either SLO
SLOS_P99_MS = (10.0, 100.0)
PARITY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class BatchTiming:
    device: str
    model: str
    batch: int
    rows_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Capacity:
    device: str
    model: str
    max_batch_size: int
    max_wait_ms: float
    slo_p99_ms: float
    rows_per_s: float


def call_times_s(scorer: TorchScorer, matrix: np.ndarray, budget_s: float) -> np.ndarray:
    """Seconds per ``predict`` call, repeated for about ``budget_s`` after a warm-up."""
    for _ in range(5):
        scorer.predict(matrix)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(times) < 20:
        start = time.perf_counter()
        scorer.predict(matrix)
        times.append(time.perf_counter() - start)
    return np.asarray(times)


class ServiceTimes:
    """Measured call times per batch size; other sizes borrow the next measured size up."""

    def __init__(self, samples: dict[int, np.ndarray]) -> None:
        self.sizes = np.array(sorted(samples))
        self.samples = [samples[size] for size in self.sizes]

    def draw(self, batch: int, rng: np.random.Generator) -> float:
        samples = self.samples[min(int(np.searchsorted(self.sizes, batch)), len(self.sizes) - 1)]
        return float(samples[rng.integers(len(samples))])

    def ceiling(self, max_batch: int) -> float:
        """The most rows/s any batch size up to ``max_batch`` sustains (median call time)."""
        return max(
            int(size) / float(np.median(times))
            for size, times in zip(self.sizes, self.samples, strict=True)
            if size <= max_batch
        )


def simulate_p99_ms(
    service: ServiceTimes, rate: float, max_batch: int, max_wait_s: float, arrivals: int, seed: int
) -> float:
    """p99 latency of one batching worker under Poisson arrivals of one-row requests."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate, size=arrivals))
    latencies = np.empty(arrivals)
    clock, head = 0.0, 0
    while head < arrivals:
        start = max(clock, times[head])
        # wait for the batch to fill, but never past the oldest row's wait budget
        full_at = times[min(head + max_batch, arrivals) - 1]
        start = max(start, min(full_at, times[head] + max_wait_s))
        end = int(np.searchsorted(times, start, side="right"))
        batch = max(1, min(end - head, max_batch))
        clock = start + service.draw(batch, rng)
        latencies[head : head + batch] = clock - times[head : head + batch]
        head += batch
    return float(np.percentile(latencies, 99) * 1e3)


def capacity_rows_per_s(
    service: ServiceTimes, max_batch: int, max_wait_ms: float, slo_ms: float
) -> float:
    """Bisect the arrival rate up to the batched ceiling (beyond it the queue only grows,
    however slowly a short simulation sees it)."""
    low, high = 0.0, service.ceiling(max_batch)
    for _ in range(12):
        rate = (low + high) / 2
        arrivals = max(int(rate * SIMULATED_S), 1000)
        if simulate_p99_ms(service, rate, max_batch, max_wait_ms / 1e3, arrivals, 0) <= slo_ms:
            low = rate
        else:
            high = rate
    return low


def scorers(model_dir: Path | None, width: int, device: torch.device) -> dict[str, TorchScorer]:
    """The served network (when given) and larger random-weight variants of the same shape."""
    torch.manual_seed(0)
    found: dict[str, TorchScorer] = {}
    if model_dir is not None:
        found["served"] = TorchScorer(load_exported_module(model_dir), device, width)
    for name, hidden in LARGER_MODELS.items():
        found[name] = TorchScorer(TabularMLP(width, hidden).eval(), device, width)
    return found


def parity(model_dir: Path, matrix: np.ndarray, width: int) -> float:
    """Largest |cuda - cpu| probability difference of the served model on the same matrix."""
    module = load_exported_module(model_dir)
    cpu = TorchScorer(module, torch.device("cpu"), width).predict(matrix)
    cuda = TorchScorer(load_exported_module(model_dir), torch.device("cuda"), width)
    return float(np.max(np.abs(cuda.predict(matrix) - cpu)))


def sweep(
    model_dir: Path | None, width: int, devices: Sequence[str], budget_s: float
) -> dict[str, object]:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((max(BATCH_SIZES), width)).astype(np.float32)
    timings: list[BatchTiming] = []
    capacities: list[Capacity] = []
    for device_name in devices:
        device = torch.device(device_name)
        for model_name, scorer in scorers(model_dir, width, device).items():
            samples = {b: call_times_s(scorer, matrix[:b], budget_s) for b in BATCH_SIZES}
            for batch, times in samples.items():
                timings.append(
                    BatchTiming(
                        device_name,
                        model_name,
                        batch,
                        round(batch / float(np.median(times)), 1),
                        round(float(np.percentile(times, 50)) * 1e3, 4),
                        round(float(np.percentile(times, 99)) * 1e3, 4),
                    )
                )
            service = ServiceTimes(samples)
            for max_batch in MAX_BATCH_SIZES:
                for wait in MAX_WAITS_MS:
                    for slo in SLOS_P99_MS:
                        rows = capacity_rows_per_s(service, max_batch, wait, slo)
                        capacities.append(
                            Capacity(device_name, model_name, max_batch, wait, slo, round(rows))
                        )
            print(f"{device_name} {model_name}: done", flush=True)
    result: dict[str, object] = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_description(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "timings": [asdict(t) for t in timings],
        "capacities": [asdict(c) for c in capacities],
    }
    if model_dir is not None and "cuda" in devices:
        result["cuda_vs_cpu_max_abs_diff"] = parity(model_dir, matrix, width)
    return result


def input_width(module: nn.Module) -> int:
    """The feature width a network takes: the inputs of its first weight matrix (an exported
    program's module holds the parameters but no ``nn.Linear`` layers to ask)."""
    first = next(p for p in module.parameters() if p.dim() == 2)
    return int(first.shape[1])


def default_out() -> Path:
    return runs.REPORTS / f"runner-sweep-{time.strftime('%Y%m%d-%H%M', time.gmtime())}.json"


def machine_description() -> str:
    text = f"{platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.sizing.runner_sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-dir", type=Path, help="MLflow model folder of the served model")
    parser.add_argument(
        "--width", type=int, help="the model's feature width (default: the served model's)"
    )
    parser.add_argument("--out", type=Path, help="the JSON file (default: under loadtests/reports)")
    parser.add_argument("--budget-s", type=float, default=0.3, help="timing per batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (runner: 1)")
    args = parser.parse_args(argv)
    if args.width is None and args.model_dir is None:
        parser.error("--width is needed without --model-dir")
    width = args.width or input_width(load_exported_module(args.model_dir))
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    result = sweep(args.model_dir, width, devices, args.budget_s)
    out: Path = args.out or default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if "cuda_vs_cpu_max_abs_diff" in result:
        diff = result["cuda_vs_cpu_max_abs_diff"]
        print(f"cuda vs cpu, served model: max |diff| {diff:.2e} (tolerance {PARITY_TOLERANCE})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
