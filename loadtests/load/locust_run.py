"""Run the Locust scenario headless and read back what it measured: the smoke test's plain run,
and the sizing's and the benchmark's paced open-loop steps (``paced_run``), the scenario's
applications or one fixed request (``FixedRequest``).

One Python process cannot drive a fleet, and on a shared host a single generator process that
runs out of CPU would be read as the server's knee, so a run is a master and ``processes``
workers (Locust's ``--processes``; -1: one per core, 0: a single process), the master bound to
loopback on a free port so concurrent runs never meet. Whatever the worker count, ``--rate`` is
the total offered rate (the locustfile splits it per user over every worker).
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from loadtests.load.load_result import LoadResult
from loadtests.load.pacing import read_result
from loadtests.load.server import free_port

LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RATE_PER_USER = 4.0  # req/s each Poisson-paced user offers, so each is rarely busy
WARM_UP_S = 2.0  # users spawn and open their connections before the window
DRAIN_S = 10.0  # the longest a paced run waits for its window's last answers
REPORT_S = 10.0  # for the workers to start, connect and report, beyond the run's own time
PROCESSES = -1  # Locust workers: one per core (Locust's own -1); 0 runs a single process


@dataclass(frozen=True)
class FixedRequest:
    """One body posted to ``path`` for every request instead of the scenario's applications, for
    a server that does not speak the API contract; a paced user opens its connection with a GET
    of ``connect_path`` (any path the server answers)."""

    path: str
    body: bytes
    connect_path: str = "/livez"

    def options(self) -> list[str]:
        return [
            *("--path", self.path, "--body", self.body.decode()),
            *("--connect-path", self.connect_path),
        ]


@dataclass(frozen=True)
class LocustRun:
    stats: dict[str, dict[str, str]]  # Locust's CSV stats rows by name, "Aggregated" included
    exit_code: int
    failure_kinds: Counter[str]  # Locust's failures by message
    arrivals: LoadResult  # each request's outcome and latency (``--window``: windowed only)

    @property
    def total(self) -> dict[str, str]:
        return self.stats["Aggregated"]


def distributed(processes: int) -> list[str]:
    """Locust's options for a master and ``processes`` local workers on loopback (none for 0)."""
    if not processes:
        return []
    port = str(free_port())
    return [
        *("--processes", str(processes)),
        *("--master-bind-host", "127.0.0.1", "--master-bind-port", port),
        *("--master-host", "127.0.0.1", "--master-port", port),
    ]


def run_locust(
    host: str, users: int, seconds: float, *options: str, processes: int = PROCESSES
) -> LocustRun:
    """``users`` users for at most ``seconds`` (a ``--window`` run ends once it is answered) on
    ``processes`` workers; raises if Locust failed to run."""
    with tempfile.TemporaryDirectory() as folder:
        completed = subprocess.run(
            [
                LOCUST,
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                host,
                "-u",
                str(users),
                "-r",
                str(2 * users),
                "-t",
                f"{math.ceil(seconds)}s",
                "--only-summary",
                "--csv",
                f"{folder}/locust",
                "--result-out",
                f"{folder}/arrivals.json",
                *distributed(processes),
                *options,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + REPORT_S + 120,
            cwd=folder,
            check=False,
        )
        stats = Path(folder) / "locust_stats.csv"
        arrivals_file = Path(folder) / "arrivals.json"
        if not stats.is_file() or not arrivals_file.is_file():
            raise RuntimeError(f"locust did not run:\n{completed.stderr[-3000:]}")
        with stats.open() as handle:
            rows = {row["Name"]: row for row in csv.DictReader(handle)}
        failures: Counter[str] = Counter()
        with (Path(folder) / "locust_failures.csv").open() as handle:
            for row in csv.DictReader(handle):
                failures[row["Error"]] += int(row["Occurrences"])
        arrivals = read_result(arrivals_file)
    return LocustRun(rows, completed.returncode, failures, arrivals)


def paced_users(rate: float) -> int:
    """Enough Poisson-paced users that each is rarely busy, so the rate stays open-loop."""
    return max(16, math.ceil(rate / RATE_PER_USER))


def paced_options(rate: float, seconds: float, bad_share: float) -> list[str]:
    """The locustfile's options for an open-loop Poisson source at ``rate`` in all over a
    ``seconds`` window that opens once every user is connected (``loadtests/load/pacing.py``)."""
    return [
        *("--rate", f"{rate:.1f}", "--bad-share", f"{bad_share}"),
        *("--warm-up", f"{WARM_UP_S}", "--window", f"{seconds}", "--drain", f"{DRAIN_S}"),
    ]


def paced_seconds(seconds: float) -> float:
    """The ``-t`` of a paced run: it ends once its window is answered, this only backs it up."""
    return WARM_UP_S + seconds + DRAIN_S + REPORT_S


def paced_run(
    host: str,
    rate: float,
    seconds: float,
    bad_share: float,
    processes: int = PROCESSES,
    request: FixedRequest | None = None,
) -> LocustRun:
    """The scenario (or ``request`` alone) paced at ``rate`` over a ``seconds`` window
    (``paced_options``) on ``processes`` workers."""
    return run_locust(
        host,
        paced_users(rate),
        paced_seconds(seconds),
        *paced_options(rate, seconds, bad_share),
        *(request.options() if request else ()),
        processes=processes,
    )
