# mypy: disallow-untyped-calls=False
# (Dask's Client and LocalCluster carry no annotations.)
"""Score files too big for one process on a Dask cluster, through the same contract, features,
model, rules and reasons as ``python -m batch.score`` (the same functions, called per piece).

    python -m batch.distributed INPUT OUT_DIR [--scheduler tcp://host:8786 | --workers N]

INPUT is a CSV or Parquet file, a folder of them or a glob. The client cuts the input into
pieces of ``--partition-rows`` rows (``batch/sources.py``); each worker reads its pieces,
scores them with a model it loads once per process (``batch/partition.py``) and writes
``OUT_DIR/scores/part-NNNNN.parquet`` and ``OUT_DIR/rejects/part-NNNNN.parquet`` (input row,
field, reason, as the CLI's rejects file). ``OUT_DIR/summary.json`` is written last: a job
without it did not finish. No data passes through the client.

With ``--scheduler`` the job runs on that cluster: INPUT, OUT_DIR and the model folder must be
at the same paths on every worker (a shared mount), ``--model-dir`` naming the folder where
the workers see it if that differs. Without it, ``--workers`` local worker processes are
started for the job (a ``distributed.LocalCluster``). See docs/batch.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import bentoml
from distributed import Client, LocalCluster

from batch.partition import REJECTS, SCORES, Job, ModelSource, PieceReport, score_piece
from batch.score import BLOCK_ROWS
from batch.sources import Piece, input_files, plan
from model_artifact.bundle import mlflow_folder
from model_artifact.champion import resolve_served_tags
from model_artifact.settings import DecisionSettings, ReasonSettings, RegistrySettings
from model_artifact.torch_scorer import DeviceChoice

PARTITION_ROWS = 8 * BLOCK_ROWS  # 65,536 rows: seconds of work per piece, a few MB per part
SUMMARY = "summary.json"


@dataclass(frozen=True)
class JobSummary:
    files: list[str]
    pieces: int
    rows: int
    scored: int
    rejected: int
    model_tag: str
    seconds: float
    models_loaded: dict[str, int]  # per worker process (host:pid): 1 means loaded once


def champion_source(
    registry: RegistrySettings, device: DeviceChoice, model_dir: Path | None
) -> ModelSource:
    """The served champion (``champion.json`` or ``CREDIT_RISK_MODEL_TAG``), resolved once
    here so a promotion during the job cannot mix two models in one output. Its folder is the
    client's BentoML store unless ``model_dir`` says where the workers find it."""
    tag = resolve_served_tags(registry).champion
    folder = model_dir or mlflow_folder(bentoml.models.get(tag))
    return ModelSource(tag=tag, folder=str(folder), device=device)


def prepare_output(output: Path, overwrite: bool) -> None:
    """Refuse to mix parts of two runs: an earlier job's output goes only when asked."""
    earlier = [output / name for name in (SCORES, REJECTS, SUMMARY) if (output / name).exists()]
    if earlier and not overwrite:
        raise FileExistsError(f"{output} holds an earlier job's output: pass --overwrite")
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def run_job(client: Client, pieces: list[Piece], job: Job) -> list[PieceReport]:
    """One task per piece; a failing piece fails the job with its error."""
    futures = client.map(score_piece, range(len(pieces)), pieces, job=job, pure=False)
    reports: list[PieceReport] = client.gather(futures)
    return reports


def summarize(
    files: list[Path], reports: list[PieceReport], tag: str, seconds: float
) -> JobSummary:
    loads: dict[str, int] = {}
    for report in reports:
        loads[report.worker] = max(loads.get(report.worker, 0), report.models_loaded)
    return JobSummary(
        files=[str(path) for path in files],
        pieces=len(reports),
        rows=sum(r.rows for r in reports),
        scored=sum(r.scored for r in reports),
        rejected=sum(r.rejected for r in reports),
        model_tag=tag,
        seconds=round(seconds, 3),
        models_loaded=loads,
    )


def score_input(
    client: Client,
    source: str,
    output: Path,
    model: ModelSource,
    partition_rows: int = PARTITION_ROWS,
    explain_all: bool = False,
    overwrite: bool = False,
) -> JobSummary:
    """The whole job on a running cluster: plan, score every piece, write the summary."""
    start = time.perf_counter()
    files = input_files(source)
    pieces = plan(files, partition_rows)
    prepare_output(output, overwrite)
    job = Job(model, str(output.resolve()), DecisionSettings(), ReasonSettings(), explain_all)
    reports = run_job(client, pieces, job)
    summary = summarize(files, reports, model.tag, time.perf_counter() - start)
    (output / SUMMARY).write_text(json.dumps(asdict(summary), indent=1))
    return summary


def local_cluster(workers: int) -> LocalCluster:
    """``workers`` worker processes on this machine, one thread each (torch runs one thread
    per worker: scale workers, not threads); the scheduler and its HTTP endpoint on free
    ports, so jobs and tests side by side never collide."""
    return LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )


@contextmanager
def connect(scheduler: str | None, workers: int) -> Iterator[Client]:
    """A client of the cluster at ``scheduler``, or of a local cluster that lives as long as
    the job."""
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with local_cluster(workers) as cluster, Client(cluster) as client:
        yield client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m batch.distributed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="CSV or Parquet file, a folder of them, or a glob")
    parser.add_argument("output", type=Path, help="folder for scores/, rejects/, summary.json")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler")
    where.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument(
        "--partition-rows",
        type=int,
        default=PARTITION_ROWS,
        help=f"rows per piece, a multiple of {BLOCK_ROWS}",
    )
    parser.add_argument(
        "--model-dir", type=Path, help="the champion's MLflow model folder as workers see it"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--explain-all", action="store_true", help="reasons for every row")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    args = parser.parse_args(argv)
    model = champion_source(RegistrySettings(), args.device, args.model_dir)
    with connect(args.scheduler, args.workers) as client:
        summary = score_input(
            client,
            args.input,
            args.output,
            model,
            args.partition_rows,
            args.explain_all,
            args.overwrite,
        )
    print(
        f"rows={summary.rows} scored={summary.scored} rejected={summary.rejected} "
        f"pieces={summary.pieces} workers={len(summary.models_loaded)} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
