"""A closed-loop burst from wrk: N connections each sending requests back to back, for a while.

The benchmark's speed targets are stated as wrk measures them (16 connections, one application
per request). wrk is C: it takes a fraction of a core where the aiohttp burst
(``loadtests/load/burst.py``) takes about half of one, so on a 2-core host the servers keep
the CPU they would have against remote clients, and the ratios between systems are not
flattened by the client's own cost. wrk keeps a latency histogram, not each request: the
result carries its 1,000 quantiles as the latency sample, so percentiles read as for the burst.

Debian packages it (``apt-get install wrk``); ``available()`` says whether it is on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from loadtests.load.load_result import LoadResult

QUANTILES = 1000
THREADS = 2
# POSTs the body in the file named by WRK_BODY; at the end, one JSON line of the summary
SCRIPT = """
local QUANTILES = tonumber(os.getenv("WRK_QUANTILES"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("WRK_BODY"), "rb"):read("*a")

done = function(summary, latency, requests)
  local quantiles = {}
  for i = 1, QUANTILES do
    quantiles[i] = latency:percentile(100 * (i - 0.5) / QUANTILES)
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "quantiles_us": [%s]}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    table.concat(quantiles, ",")))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def wrk_burst(url: str, body: bytes, connections: int, duration_s: float) -> LoadResult:
    """``connections`` connections POSTing ``body`` to ``url`` for ``duration_s`` seconds.
    Outcomes: "200" for every answer wrk counts as 2xx/3xx, "non-2xx", and each socket error
    kind wrk reports (connect, read, write, timeout)."""
    with tempfile.TemporaryDirectory() as folder:
        script, body_file = Path(folder) / "post.lua", Path(folder) / "body.json"
        script.write_text(SCRIPT)
        body_file.write_bytes(body)
        completed = subprocess.run(
            [
                "wrk",
                f"-t{min(THREADS, connections)}",
                f"-c{connections}",
                f"-d{duration_s:g}s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={
                "WRK_BODY": str(body_file),
                "WRK_QUANTILES": str(QUANTILES),
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            },
        )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    result = LoadResult(elapsed_s=summary["duration_us"] / 1e6)
    non_2xx = summary["status"]
    if summary["requests"] > non_2xx:
        result.outcomes["200"] = summary["requests"] - non_2xx
    if non_2xx:
        result.outcomes["non-2xx"] = non_2xx
    for kind in ("connect", "read", "write", "timeout"):
        if summary[kind]:
            result.outcomes[kind] = summary[kind]
    result.latencies_s = [us / 1e6 for us in summary["quantiles_us"]]
    return result
