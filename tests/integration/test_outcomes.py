"""Outcome join: the test split scored by the service, joined to its true labels, gives back
the test-split ROC AUC that training logged."""

from __future__ import annotations

import asyncio
import os

import pandas as pd
import pytest

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST, Application
from credit_risk.records import contract_records
from monitoring.outcomes import main
from training.data import TARGET, load_credit_data, split


def test_joined_outcomes_reproduce_the_logged_test_auc(champion, tmp_path, capsys):
    from api.service import CreditRiskAPI

    _, result, _ = champion
    test_rows = split(load_credit_data(), seed=42).test
    records = contract_records(test_rows)
    for index, record in enumerate(records):
        record["request_id"] = f"outcome-{index}"
    api = CreditRiskAPI()
    for start in range(0, len(records), MAX_APPLICATIONS_PER_REQUEST):
        chunk = records[start : start + MAX_APPLICATIONS_PER_REQUEST]
        asyncio.run(api.score([Application.model_validate(r) for r in chunk]))
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
    assert (out_dir / "outcomes.png").stat().st_size > 10_000
