"""One piece of a batch job as a worker runs it: read its rows, score them through
``batch.score``'s path with this process's cached model, write one Parquet part of scores and
one of rejects. Nothing here knows the engine: a Dask task calls ``score_piece``, and a Spark
or Ray task could call the same function.

Everything that decides a row's outcome (the model tag and folder, the thresholds, the reason
settings) is resolved once by the client and shipped in ``Job``, so every worker scores with
the same model and policy whatever its own environment says.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from batch.score import score_frame
from batch.sources import Piece, read_piece
from credit_risk.decision import DecisionThresholds
from credit_risk.reasons import ReasonPolicy
from model_artifact.loaded_model import LoadedModel
from model_artifact.torch_scorer import DeviceChoice, select_device

SCORES = "scores"
REJECTS = "rejects"
_VERDICT_TEXT = pa.dictionary(pa.int8(), pa.string())  # batch.score's categorical columns
# Fixed schemas: every part reads back as one table, empty parts and all-null ids included.
SCHEMAS = {
    SCORES: pa.schema(
        [
            ("row", pa.int64()),
            ("request_id", pa.string()),
            ("probability_default", pa.float32()),
            ("decision", _VERDICT_TEXT),
            ("reasons", _VERDICT_TEXT),
            ("principal_reasons", pa.string()),
            ("model_tag", pa.string()),
        ]
    ),
    REJECTS: pa.schema([("row", pa.int64()), ("field", pa.string()), ("reason", pa.string())]),
}


@dataclass(frozen=True)
class ModelSource:
    """Which model a job scores with: the BentoML tag the client resolved, and its MLflow
    model folder as the workers see it (a shared store, or a copy at that path)."""

    tag: str
    folder: str
    device: DeviceChoice = "auto"
    torch_threads: int = 1  # one core per worker process: scale workers, not threads


@dataclass(frozen=True)
class Job:
    model: ModelSource
    output: str  # the job's output folder, as the workers see it
    thresholds: DecisionThresholds
    reasons: ReasonPolicy
    explain_all: bool = False


@dataclass(frozen=True)
class PieceReport:
    """What a piece did, and where: the client's summary and its model-load check."""

    index: int
    rows: int
    scored: int
    rejected: int  # rows refused (a row may have several reject lines)
    worker: str  # host:pid
    models_loaded: int  # loads in that worker process so far: 1 when cached


@functools.cache
def worker_model(source: ModelSource) -> LoadedModel:
    """The model, loaded once per worker process and kept for every later piece and job."""
    torch.set_num_threads(source.torch_threads)
    return LoadedModel.from_mlflow_dir(
        source.tag, Path(source.folder), select_device(source.device)
    )


def part_path(output: str, kind: str, index: int) -> Path:
    return Path(output) / kind / f"part-{index:05d}.parquet"


def write_part(frame: pd.DataFrame, kind: str, path: Path) -> None:
    """Written under a hidden name, then renamed: a reader never sees half a part, and a
    piece the engine runs again (a lost worker) replaces its part whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table = pa.Table.from_pandas(frame, schema=SCHEMAS[kind], preserve_index=False)
    pq.write_table(table, partial)
    partial.replace(path)


def score_piece(index: int, piece: Piece, job: Job) -> PieceReport:
    """Read, score and write piece ``index``; row numbers are the input's."""
    model = worker_model(job.model)
    frame = read_piece(piece)
    results, rejects = score_frame(
        frame, model, job.thresholds, job.reasons, job.explain_all, first_row=piece.first_row
    )
    write_part(results, SCORES, part_path(job.output, SCORES, index))
    write_part(rejects, REJECTS, part_path(job.output, REJECTS, index))
    return PieceReport(
        index=index,
        rows=len(frame),
        scored=len(results),
        rejected=int(rejects["row"].nunique()),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        models_loaded=worker_model.cache_info().misses,
    )
