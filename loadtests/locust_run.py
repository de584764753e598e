"""Run the Locust scenario headless and read back its aggregate line (tests, sizing checks)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from credit_risk.config import REPO_ROOT

LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"


def run_locust(host: str, users: int, seconds: int, *options: str) -> dict[str, dict[str, str]]:
    """Locust's CSV stats rows by name ("Aggregated" included, with the process's exit code and
    its failures by message as ``failure_kinds``); raises if Locust failed to run."""
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
                str(users),
                "-t",
                f"{seconds}s",
                "--only-summary",
                "--csv",
                f"{folder}/locust",
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
        with (Path(folder) / "locust_failures.csv").open() as handle:
            failures = Counter()
            for row in csv.DictReader(handle):
                failures[row["Error"]] += int(row["Occurrences"])
    rows["Aggregated"]["exit_code"] = str(completed.returncode)
    rows["Aggregated"]["failure_kinds"] = json.dumps(failures)
    return rows
