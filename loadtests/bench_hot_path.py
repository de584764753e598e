"""Where a request's CPU time goes, step by step, in-process (no HTTP), for the served model.

    python -m loadtests.bench_hot_path [--rows 1 32] [--repeat 2000]

Times each step of the API's request path on real applications: contract validation from
JSON bytes, features + matrix, the torch core, decisions, and the monitoring record (metrics,
drift window, log queue); plus one drift report over a full window, which runs off the request
path. Prints a table with each step's share of the total; needs a promoted model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from credit_risk.config import Settings
from credit_risk.contract import ScoreRequest, ScoreResult
from credit_risk.decision import decide
from credit_risk.features import raw_columns_from_records
from credit_risk.monitoring import ServingMonitor
from credit_risk.pipeline import raw_to_matrix
from loadtests.traffic import application_pool
from runners.batch_score import load_served_model


def per_call_us(step: Callable[[], object], repeat: int) -> float:
    step()
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return (time.perf_counter() - start) / repeat * 1e6


def bench(rows: int, repeat: int, settings: Settings) -> list[tuple[str, float]]:
    model = load_served_model(settings.model_copy(update={"runner_device": "cpu"}))
    params = model.bundle.feature_params
    body = json.dumps({"applications": list(application_pool()[:rows])}).encode()
    applications = ScoreRequest.model_validate_json(body).applications
    records = [a.model_dump() for a in applications]
    raw = raw_columns_from_records(records)
    matrix = raw_to_matrix(raw, params)
    probabilities = model.scorer.predict(matrix).tolist()
    results = [
        ScoreResult(
            request_id=str(i),
            probability_default=p,
            decision="review",
            reasons=["R"],
            model_tag="t",
        )
        for i, p in enumerate(probabilities)
    ]
    with tempfile.TemporaryDirectory() as folder:
        monitored = settings.model_copy(update={"prediction_log_url": f"sqlite:///{folder}/log.db"})
        monitor = ServingMonitor(model.bundle, model.tag, {}, monitored)
        steps = [
            ("validate JSON (pydantic)", lambda: ScoreRequest.model_validate_json(body)),
            (
                "records + raw columns",
                lambda: raw_columns_from_records([a.model_dump() for a in applications]),
            ),
            ("features + matrix", lambda: raw_to_matrix(raw, params)),
            ("torch core (model)", lambda: model.scorer.predict(matrix)),
            ("decisions", lambda: decide(np.asarray(probabilities), raw, settings.decision)),
            ("monitoring record", lambda: monitor.record_answers(raw, records, results)),
        ]
        timings = [(name, per_call_us(step, repeat)) for name, step in steps]
        for _ in range(settings.drift_window // rows + 1):
            monitor.drift.add(raw, np.asarray(probabilities))
        timings.append(
            ("drift report, full window (off path)", per_call_us(monitor.drift_report, 20))
        )
        monitor.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = Settings()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads 1; µs per call")
    for rows in args.rows:
        timings = bench(rows, args.repeat, settings)
        request_path = sum(t for name, t in timings if "off path" not in name)
        print(f"\n{rows} application(s) per request")
        print("| step | µs | share of request path |\n|---|---|---|")
        for name, micros in timings:
            share = "" if "off path" in name else f"{micros / request_path:.0%}"
            print(f"| {name} | {micros:.0f} | {share} |")
        print(f"| request path total (no HTTP, no runner hop) | {request_path:.0f} | 100% |")


if __name__ == "__main__":
    main()
