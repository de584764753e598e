"""Run the Locust scenario headless and read back what it measured: the smoke test's plain run,
and the sizing's paced open-loop steps (``paced_run``)."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from loadtests.load_result import LoadResult
from loadtests.pacing import read_result

LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RATE_PER_USER = 4.0  # req/s each Poisson-paced user offers, so each is rarely busy
WARM_UP_S = 2.0  # users spawn and open their connections before the window
DRAIN_S = 10.0  # the longest a paced run waits for its window's last answers


@dataclass(frozen=True)
class LocustRun:
    stats: dict[str, dict[str, str]]  # Locust's CSV stats rows by name, "Aggregated" included
    exit_code: int
    failure_kinds: Counter[str]  # Locust's failures by message
    arrivals: LoadResult  # each request's outcome and latency (``--window``: windowed only)

    @property
    def total(self) -> dict[str, str]:
        return self.stats["Aggregated"]


def run_locust(host: str, users: int, seconds: float, *options: str) -> LocustRun:
    """``users`` users for at most ``seconds`` (a ``--window`` run ends once it is answered);
    raises if Locust failed to run."""
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
                f"{seconds:.0f}s",
                "--only-summary",
                "--csv",
                f"{folder}/locust",
                "--result-out",
                f"{folder}/arrivals.json",
                *options,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            cwd=folder,
            check=False,
        )
        stats = Path(folder) / "locust_stats.csv"
        if not stats.is_file():
            raise RuntimeError(f"locust did not run:\n{completed.stderr[-3000:]}")
        with stats.open() as handle:
            rows = {row["Name"]: row for row in csv.DictReader(handle)}
        failures: Counter[str] = Counter()
        with (Path(folder) / "locust_failures.csv").open() as handle:
            for row in csv.DictReader(handle):
                failures[row["Error"]] += int(row["Occurrences"])
        arrivals = read_result(Path(folder) / "arrivals.json")
    return LocustRun(rows, completed.returncode, failures, arrivals)


def paced_users(rate: float) -> int:
    """Enough Poisson-paced users that each is rarely busy, so the rate stays open-loop."""
    return max(16, math.ceil(rate / RATE_PER_USER))


def paced_run(host: str, rate: float, seconds: float, bad_share: float) -> LocustRun:
    """The scenario as an open-loop Poisson source at ``rate`` over a ``seconds`` window that
    opens once every user is connected (``loadtests/pacing.py``)."""
    return run_locust(
        host,
        paced_users(rate),
        WARM_UP_S + seconds + DRAIN_S,
        *("--rate", f"{rate:.1f}", "--bad-share", f"{bad_share}"),
        *("--warm-up", f"{WARM_UP_S}", "--window", f"{seconds}"),
    )
