"""Outcome join: the test split scored by the service, joined to its true labels, gives back
the test-split ROC AUC that training logged, beside the label-free estimate from the same
rows' scores and the training value."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pandas as pd
import pytest

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST, Application
from credit_risk.estimate import estimate_performance
from credit_risk.records import contract_records
from monitoring.outcomes import main
from training.data import TARGET, load_credit_data, split


def test_joined_outcomes_reproduce_the_logged_test_auc(champion, tmp_path, capsys):
    from service import CreditRiskAPI

    _, result, _ = champion
    test_rows = split(load_credit_data(), seed=42).test
    records = contract_records(test_rows)
    for index, record in enumerate(records):
        record["request_id"] = f"outcome-{index}"
    api = CreditRiskAPI()
    scores = []
    for start in range(0, len(records), MAX_APPLICATIONS_PER_REQUEST):
        chunk = records[start : start + MAX_APPLICATIONS_PER_REQUEST]
        response = asyncio.run(api.score([Application.model_validate(r) for r in chunk]))
        scores += [result.probability_default for result in response.results]
    api.monitor.close()  # what the service's shutdown hook does: flush the log

    outcomes = pd.DataFrame(
        {
            "request_id": [f"outcome-{i}" for i in range(len(records))] + ["never-scored"],
            "label": [*test_rows[TARGET].tolist(), 1],
        }
    )
    outcomes.to_csv(tmp_path / "outcomes.csv", index=False)
    out_dir = tmp_path / "report"
    log_url = os.environ["CREDIT_RISK_PREDICTION_LOG_URL"]
    assert (
        main([str(tmp_path / "outcomes.csv"), "--log-url", log_url, "--out-dir", str(out_dir)]) == 0
    )

    printed = capsys.readouterr().out
    auc = float(printed.split("roc_auc=")[1].split()[0])
    assert auc == pytest.approx(result.metrics["test_roc_auc"], abs=1e-4)
    assert "rows=891" in printed
    assert "unmatched=1" in printed
    report = (out_dir / "outcomes.md").read_text()
    assert "live_roc_auc" in report
    assert "score_psi" in report
    # realized vs estimated: the estimate of the same 891 rows' scores, and training's value
    estimated = float(printed.split("estimated_roc_auc=")[1].split()[0])
    assert estimated == pytest.approx(estimate_performance(np.array(scores)).roc_auc, abs=1e-4)
    assert "## Realized vs estimated" in report
    side_by_side = report.split("## Realized vs estimated")[1].split("## Overall")[0]
    roc_row = next(line for line in side_by_side.splitlines() if line.startswith("| roc_auc"))
    realized_cell, estimated_cell, training_cell = (
        float(cell) for cell in roc_row.strip("|").split("|")[1:]
    )
    assert realized_cell == pytest.approx(auc, abs=1e-4)
    assert estimated_cell == pytest.approx(estimated, abs=1e-4)
    assert training_cell == pytest.approx(result.metrics["test_roc_auc"], abs=1e-4)
    assert "estimated_roc_auc" in report.split("## Per period")[1]
    assert (out_dir / "outcomes.png").stat().st_size > 10_000
