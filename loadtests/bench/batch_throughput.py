# mypy: disallow-untyped-calls=False
# (Dask's Client and LocalCluster carry no annotations.)
"""`make batch-bench`: rows/s of batch scoring, the same input scored several ways, side by
side and interleaved in one run, so the machine's noise falls on every system alike.

1. the torch core: ``TorchScorer.predict`` on the model matrix alone, in ``BLOCK_ROWS`` blocks
   (no reading, contract, features, decision or reasons): the model's floor;
2. ``batch.score`` in process: read the Parquet file, contract, features, model, decision,
   principal reasons for declines, write scores and rejects (``score_file``); once more with
   reasons off, to show what they cost;
3. ``python -m batch.score`` as a command: the same, plus interpreter start, imports and model
   load, as a nightly job pays them; as shipped (torch on every core) and at one torch thread;
4. ``batch.distributed`` on a running ``LocalCluster`` of 1 and of 2 worker processes (one
   thread each), warm: each cluster has scored a small file first, so every worker has
   imported torch and loaded the model; plan, score and write every piece.

The input is the credit data resampled with replacement to ``--rows`` rows, written as one
Parquet file with row groups of one piece. In-process figures run at one torch thread (a
worker's setting). Writes report.md and runs.csv under
loadtests/reports/batch-YYYYMMDD-HHMM/.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import torch
from distributed import Client

from batch.distributed import champion_source, local_cluster, score_input
from batch.partition import ModelSource
from batch.score import BLOCK_ROWS, score_file
from credit_risk.pipeline import raw_to_matrix
from credit_risk.reasons import ReasonPolicy
from credit_risk.table_contract import validate_table
from loadtests import runs
from model_artifact.loaded_model import LoadedModel, load_served_model
from model_artifact.settings import DecisionSettings, RegistrySettings
from model_artifact.torch_scorer import select_device
from training.data import TARGET, load_credit_data

TOOL = "batch"
ROWS = 40 * BLOCK_ROWS  # 327,680 rows
PIECE_ROWS = 4 * BLOCK_ROWS  # ten pieces: both workers of two stay busy to the end
REPEATS = 5
BAD_EVERY = 1000
WORKER_COUNTS = (1, 2)
CORE = "torch core (matrix only, 1 thread)"
IN_PROCESS = "batch.score in process (1 thread)"
NO_REASONS = "batch.score in process, reasons off (1 thread)"
COMMAND = "python -m batch.score (process start included)"
COMMAND_ONE_THREAD = "python -m batch.score, OMP_NUM_THREADS=1"


def dask_name(workers: int) -> str:
    return f"batch.distributed, {workers} worker{'s' if workers > 1 else ''}"


def synthesize(rows: int, seed: int) -> pd.DataFrame:
    """Applications resampled from the credit data, one in ``BAD_EVERY`` with a home the
    contract refuses (the data itself has none), so the rejects path runs as in a real file."""
    data = load_credit_data().drop(columns=[TARGET])
    frame = data.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    frame.loc[::BAD_EVERY, "home"] = "castle"
    return frame


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def core_seconds(model: LoadedModel, frame: pd.DataFrame) -> float:
    matrix = raw_to_matrix(validate_table(frame).raw, model.bundle.feature_params)

    def predict_all() -> None:
        for start in range(0, len(matrix), BLOCK_ROWS):
            model.scorer.predict(matrix[start : start + BLOCK_ROWS])

    return timed(predict_all)


def dask_job(
    client: Client, source: Path, output: Path, model: ModelSource
) -> Callable[[], object]:
    """The whole distributed job (plan, score, write, summary) on a running cluster."""
    return lambda: score_input(client, str(source), output, model, PIECE_ROWS, overwrite=True)


def warm_cluster(
    stack: ExitStack, workers: int, warm_up: Path, model: ModelSource, scratch: Path
) -> Client:
    """A running cluster whose workers have scored ``warm_up`` (torch imported, model held)."""
    cluster = stack.enter_context(local_cluster(workers))
    client: Client = stack.enter_context(Client(cluster))
    score_input(client, str(warm_up), scratch / f"warm-{workers}", model, BLOCK_ROWS)
    return client


def summarize(seconds: dict[str, list[float]], rows: int) -> list[str]:
    """One line per system: median rows/s, its spread, and the ratio to the torch core."""
    core = rows / statistics.median(seconds[CORE])
    lines = [
        "| system | rows/s (median) | min - max | median s | vs torch core |",
        "|---|---|---|---|---|",
    ]
    for name, values in seconds.items():
        rates = sorted(rows / s for s in values)
        median = statistics.median(rates)
        lines.append(
            f"| {name} | {median:,.0f} | {rates[0]:,.0f} - {rates[-1]:,.0f} | "
            f"{statistics.median(values):.2f} | {median / core:.3f} |"
        )
    one, two = (statistics.median(seconds[dask_name(n)]) for n in WORKER_COUNTS)
    command = statistics.median(seconds[COMMAND])
    lines += [
        "",
        f"2 workers / 1 worker: {one / two:.2f}x. "
        f"2 workers / the command: {command / two:.2f}x. "
        f"1 worker / in process: {statistics.median(seconds[IN_PROCESS]) / one:.2f}x.",
    ]
    return lines


def measure(frame: pd.DataFrame, repeats: int, scratch: Path) -> tuple[dict[str, list[float]], str]:
    """Seconds per round of every system, and a line on the input and the set-up."""
    registry = RegistrySettings()
    model = load_served_model(registry, select_device("cpu"))
    shipped = champion_source(registry, "cpu", None)
    thresholds = DecisionSettings()
    source, warm_up, out = (
        scratch / "applications.parquet",
        scratch / "warm.parquet",
        scratch / "out",
    )
    frame.to_parquet(source, row_group_size=PIECE_ROWS)
    frame[: 4 * BLOCK_ROWS].to_parquet(warm_up)
    out.mkdir()
    scored, rejects = out / "scores.parquet", out / "rejects.parquet"
    summary = score_file(source, scored, rejects, model, thresholds)
    declines = int((pd.read_parquet(scored)["decision"] == "decline").sum())
    no_reasons = ReasonPolicy(for_decisions="requested")
    command = [sys.executable, "-m", "batch.score", str(source), str(out / "command.parquet")]
    seconds: dict[str, list[float]] = {}
    with ExitStack() as stack:
        start = time.perf_counter()
        clients = {n: warm_cluster(stack, n, warm_up, shipped, scratch) for n in WORKER_COUNTS}
        startup = time.perf_counter() - start
        systems: dict[str, Callable[[], object]] = {
            IN_PROCESS: lambda: score_file(source, scored, rejects, model, thresholds),
            NO_REASONS: lambda: score_file(
                source, scored, rejects, model, thresholds, reasons=no_reasons
            ),
            COMMAND: lambda: subprocess.run(command, check=True, capture_output=True),
            COMMAND_ONE_THREAD: lambda: subprocess.run(
                command, check=True, capture_output=True, env=os.environ | {"OMP_NUM_THREADS": "1"}
            ),
            **{
                dask_name(n): dask_job(clients[n], source, out / f"dask-{n}", shipped)
                for n in WORKER_COUNTS
            },
        }
        for repeat in range(repeats):
            seconds.setdefault(CORE, []).append(core_seconds(model, frame))
            for name, run in systems.items():
                seconds.setdefault(name, []).append(timed(run))
            print(
                f"round {repeat + 1}: "
                + ", ".join(f"{n} {len(frame) / s[-1]:,.0f}" for n, s in seconds.items()),
                flush=True,
            )
    setup = (
        f"Input: {len(frame):,} rows resampled from the credit data, one Parquet file, row "
        f"groups of {PIECE_ROWS:,}; {summary.scored:,} scored ({declines:,} declines, each "
        f"explained with principal reasons), {summary.rejected:,} refused by the contract. "
        f"Dask pieces of {PIECE_ROWS:,} rows ({-(-len(frame) // PIECE_ROWS)} pieces); the two "
        f"local clusters started and warmed in {startup:.1f} s. {repeats} interleaved rounds; "
        f"model {model.tag}."
    )
    return seconds, setup


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.batch_throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the synthetic input")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="rounds over all systems")
    parser.add_argument(
        "--out", type=Path, default=runs.REPORTS, metavar="FOLDER", help="where run folders go"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = runs.new_run(TOOL, args.out)
    with tempfile.TemporaryDirectory() as scratch:
        seconds, setup = measure(synthesize(args.rows, seed=0), args.repeats, Path(scratch))
    lines = [
        f"# Batch scoring throughput {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, dask {version('dask')}; shared "
        f"and noisy (load average {os.getloadavg()[0]:.1f} over the last minute at the end).",
        setup,
        "",
        *summarize(seconds, args.rows),
    ]
    report = "\n".join(lines) + "\n"
    (folder / "report.md").write_text(report)
    pd.DataFrame(
        [(name, i + 1, s) for name, values in seconds.items() for i, s in enumerate(values)],
        columns=["system", "round", "seconds"],
    ).to_csv(folder / "runs.csv", index=False)
    print(report)
    print(f"-> {folder}")


if __name__ == "__main__":
    main()
