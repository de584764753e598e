"""Where the load tools write: one folder per run under loadtests/reports/ (ignored by git),
named for the tool and the run's start, so runs never overwrite each other and the newest is
found by name; loadtests/results/ holds the committed reference runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

LOADTESTS = Path(__file__).resolve().parent
REPORTS = LOADTESTS / "reports"
RESULTS = LOADTESTS / "results"


def new_run(tool: str, root: Path = REPORTS) -> Path:
    """A fresh folder ``<tool>-YYYYMMDD-HHMM`` (UTC) under ``root``."""
    folder = root / f"{tool}-{datetime.now(UTC):%Y%m%d-%H%M}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def newest_run(tool: str, holding: str, root: Path = REPORTS) -> Path:
    """The newest ``<tool>-*`` folder under ``root`` that holds ``holding`` (a run that stopped
    half-way has none); raises if there is none."""
    finished = [f for f in sorted(root.glob(f"{tool}-*")) if (f / holding).is_file()]
    if not finished:
        raise FileNotFoundError(f"no {tool} run with {holding} under {root}")
    return finished[-1]
