"""The Locust scenario itself, headless against the served Bento: zero failures, and every
bad request answered 4xx (the locustfile marks anything else a failure)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from credit_risk.config import REPO_ROOT

LOCUST = str(Path(sys.executable).with_name("locust"))


def test_locust_smoke_run_has_no_failures(server, tmp_path):
    completed = subprocess.run(
        [
            LOCUST,
            "-f",
            str(REPO_ROOT / "loadtests" / "locustfile.py"),
            "--headless",
            "--host",
            server.url,
            "-u",
            "8",
            "-r",
            "8",
            "-t",
            "8s",
            "--only-summary",
            "--csv",
            str(tmp_path / "smoke"),
            "--exit-code-on-error",
            "1",
            "--bad-share",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    with (tmp_path / "smoke_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 100
    assert int(total["Failure Count"]) == 0
    assert any(name.startswith("/score [bad:") for name in rows)
