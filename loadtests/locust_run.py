"""Run the Locust scenario headless and read back what it measured (tests, sizing checks)."""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from credit_risk.config import REPO_ROOT
from loadtests.burst import BurstResult
from loadtests.pacing import read_result

LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"


@dataclass(frozen=True)
class LocustRun:
    stats: dict[str, dict[str, str]]  # Locust's CSV stats rows by name, "Aggregated" included
    exit_code: int
    failure_kinds: Counter[str]  # Locust's failures by message
    arrivals: BurstResult  # each request's outcome and latency (``--window``: windowed only)

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
