"""Batch scoring: same outputs as the online path, bad rows rejected with reasons, not fatal."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from batch.score import main
from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST, Application
from credit_risk.records import contract_records
from training.data import TARGET, load_credit_data, split


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_batch_scoring_matches_online_path_and_rejects_bad_rows(champion, tmp_path, suffix, capsys):
    from service import CreditRiskAPI

    _, _, report = champion
    test_rows = split(load_credit_data(), seed=42).test.drop(columns=[TARGET])
    file_rows = test_rows.astype(object)
    file_rows.loc[3, "age"] = "thirty"
    file_rows.loc[10, "home"] = "castle"
    file_rows.loc[20, "amount"] = None
    source = tmp_path / f"applications{suffix}"
    if suffix == ".csv":
        file_rows.to_csv(source, index=False)
    else:
        file_rows.astype(str).replace({"nan": None, "None": None}).to_parquet(source, index=False)

    assert main([str(source), str(tmp_path / f"scored{suffix}")]) == 0
    assert "rejected=3" in capsys.readouterr().out
    scored = (pd.read_csv if suffix == ".csv" else pd.read_parquet)(tmp_path / f"scored{suffix}")
    rejects = pd.read_csv(tmp_path / "scored.rejects.csv")
    assert sorted(rejects["row"]) == [3, 10, 20]
    assert set(rejects["field"]) == {"age", "home", "amount"}
    assert len(scored) == len(test_rows) - 3
    assert set(scored["model_tag"]) == {report.bento_model_tag}

    api = CreditRiskAPI()
    good = [r for i, r in enumerate(contract_records(test_rows)) if i not in {3, 10, 20}]
    online = []
    for start in range(0, len(good), MAX_APPLICATIONS_PER_REQUEST):
        chunk = [
            Application.model_validate(r)
            for r in good[start : start + MAX_APPLICATIONS_PER_REQUEST]
        ]
        online += asyncio.run(api.score(chunk)).results
    np.testing.assert_allclose(
        scored["probability_default"], [r.probability_default for r in online], atol=1e-6
    )
    assert list(scored["decision"]) == [r.decision for r in online]
