"""Per-arm outcomes: with a canary deciding half the applicants, ``python -m monitoring.outcomes``
tells a worse canary from the champion with the rows it states, names the worse arm, and does
not call two models of the same quality different.

The test split (891 rows) is dealt at random (seed 0) into two disjoint halves, 446 rows for
the champion and 445 for the canary (the service draws an applicant's arm at random too), each
half logged with its arm's scores through the prediction log as the service writes it, and the
true labels written to outcomes.csv. Three models, trained in process with the production
configuration on the training split (about two seconds each):

- ``full``: every feature (test ROC AUC 0.858);
- ``thin``: the loan (amount, price, duration, loan-to-price) and the applicant's age and income
  only, as a canary whose feature pipeline lost the other fields would be (test ROC AUC 0.711);
- ``reseeded``: every feature, another weight seed: a retrained model of the same quality.

Measured (seed 0 halves), ROC AUC canary - champion: full champion (0.860) vs thin canary
(0.703), -0.157 [-0.224, -0.091], n=445 canary / 446 champion; the arms swapped, +0.135
[+0.071, +0.199]; full vs reseeded, -0.002 [-0.056, +0.052]. With some 445 rows an arm, the
interval's half-width is about 0.065: a smaller AUC difference needs more rows to be told.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from credit_risk.pipeline import records_to_matrix
from credit_risk.records import contract_records
from monitoring.outcomes import build_report, main
from monitoring.prediction_log import PredictionLog
from monitoring.settings import MonitoringSettings
from training.data import TARGET
from training.fit import fit
from training.settings import TrainingConfig

THIN_FEATURES = (
    "num__amount",
    "num__price",
    "num__time",
    "ratio__loan_to_price",
    "num__age",
    "num__income",
    "ratio__amount_to_income",
)
SPLIT_SEED = 0
DIFFERENCE = re.compile(
    r"canary (?P<verdict>.+?) on roc_auc: difference (?P<value>\S+) "
    r"\[(?P<low>\S+), (?P<high>\S+)\], n=(?P<canary>\d+) canary / (?P<champion>\d+) champion"
)


@dataclass(frozen=True)
class ScoredHalves:
    labels: np.ndarray
    scores: dict[str, np.ndarray]  # model name -> probability of default per test row
    champion_rows: np.ndarray  # indices of the half the champion decides
    canary_rows: np.ndarray


@pytest.fixture(scope="module")
def halves(credit_splits, fitted_params) -> ScoredHalves:
    matrices = {
        name: records_to_matrix(contract_records(getattr(credit_splits, name)), fitted_params)
        for name in ("train", "validation", "test")
    }
    labels = {name: getattr(credit_splits, name)[TARGET].to_numpy() for name in matrices}
    thin = [fitted_params.feature_names.index(name) for name in THIN_FEATURES]
    models = {"full": (slice(None), 42), "thin": (thin, 42), "reseeded": (slice(None), 7)}
    scores = {}
    for name, (columns, seed) in models.items():
        result = fit(
            matrices["train"][:, columns],
            labels["train"],
            matrices["validation"][:, columns],
            labels["validation"],
            TrainingConfig(seed=seed),
        )
        with torch.no_grad():
            test = torch.from_numpy(np.ascontiguousarray(matrices["test"][:, columns]))
            scores[name] = result.model(test).numpy().astype(np.float64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels["test"]))
    half = (len(order) + 1) // 2
    return ScoredHalves(labels["test"], scores, np.sort(order[:half]), np.sort(order[half:]))


def log_arms(url: str, spool: Path, split: ScoredHalves, champion: str, canary: str) -> None:
    """Each half's rows as its arm's model scored them, through the prediction log."""
    log = PredictionLog(url, settings=MonitoringSettings(prediction_log_spool_dir=str(spool)))
    now = time.time()
    for role, model, rows in (
        ("champion", champion, split.champion_rows),
        ("canary", canary, split.canary_rows),
    ):
        log.write(
            [
                {
                    "request_id": f"arm-{row}",
                    "logged_at": now,
                    "role": role,
                    "model_tag": f"credit-risk:{model}",
                    "probability_default": float(split.scores[model][row]),
                    "decision": "review",
                    "reasons": "",
                    "features": {},
                }
                for row in rows
            ]
        )
    log.close()


def report(tmp_path: Path, split: ScoredHalves, champion: str, canary: str) -> str:
    """Log the two arms, write their outcomes, run the report; outcomes.md's text."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log_arms(url, tmp_path / "spool", split, champion, canary)
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame(
        {"request_id": [f"arm-{row}" for row in range(len(split.labels))], "label": split.labels}
    ).to_csv(outcomes, index=False)
    out_dir = tmp_path / "report"
    assert main([str(outcomes), "--log-url", url, "--out-dir", str(out_dir)]) == 0
    return (out_dir / "outcomes.md").read_text()


def auc_difference(printed: str) -> dict[str, str]:
    match = DIFFERENCE.search(printed)
    assert match, printed
    return match.groupdict()


@pytest.mark.parametrize(
    ("champion", "canary", "verdict"),
    [("full", "thin", "worse"), ("thin", "full", "better")],
)
def test_the_report_tells_the_worse_arm_with_the_rows_it_states(
    halves, tmp_path, capsys, champion, canary, verdict
):
    markdown = report(tmp_path, halves, champion, canary)
    printed = capsys.readouterr().out

    difference = auc_difference(printed)
    assert difference["verdict"] == verdict
    assert (int(difference["canary"]), int(difference["champion"])) == (445, 446)
    low, high = float(difference["low"]), float(difference["high"])
    assert (high < 0) if verdict == "worse" else (low > 0)
    # each arm's AUC is its own half's, as scikit-learn computes it
    for role, rows, model in (
        ("champion", halves.champion_rows, champion),
        ("canary", halves.canary_rows, canary),
    ):
        line = next(line for line in printed.splitlines() if line.startswith(f"arm={role} "))
        assert f"model=credit-risk:{model} rows={len(rows)} " in line
        auc = float(line.split("roc_auc=")[1].split()[0])
        expected = roc_auc_score(halves.labels[rows], halves.scores[model][rows])
        assert auc == pytest.approx(expected, abs=1e-3)  # printed to 3 places
    # the existing champion-only summary stays, and counts every outcome as matched
    assert "rows=446 " in printed
    assert "unmatched=0" in printed
    per_arm = markdown.split("## Per arm")[1]
    assert f"### canary credit-risk:{canary} vs champion credit-risk:{champion}" in per_arm
    assert "canary 445, champion 446" in per_arm
    assert f"- canary {verdict} on roc_auc: difference" in per_arm
    assert "calibration_gap" in per_arm
    assert "log_loss" in per_arm


def test_two_arms_of_the_same_quality_are_not_told_apart(halves, tmp_path, capsys):
    report(tmp_path, halves, "full", "reseeded")
    difference = auc_difference(capsys.readouterr().out)
    assert difference["verdict"] == "not distinguishable from the champion"
    assert float(difference["low"]) < 0 < float(difference["high"])


def logged(role: str, ids: list[str], logged_at: np.ndarray) -> pd.DataFrame:
    scores = np.random.default_rng(len(ids)).uniform(0.05, 0.95, len(ids))
    return pd.DataFrame(
        {
            "request_id": ids,
            "logged_at": logged_at,
            "role": role,
            "model_tag": f"credit-risk:{role}",
            "probability_default": scores,
        }
    )


def test_the_canary_meets_the_champion_rows_logged_while_it_ran():
    """Champion rows from before the canary started are left out of its comparison; a request
    id both arms logged counts once, in the arm that answered last; an outcome matching
    neither arm is unmatched."""
    champion = logged("champion", [f"c{i}" for i in range(200)], np.arange(200.0))
    canary = logged("canary", [f"k{i}" for i in range(100)] + ["c150"], np.r_[100:200, 150.5])
    ids = [f"c{i}" for i in range(200)] + [f"k{i}" for i in range(100)] + ["never-logged"]
    labels = np.random.default_rng(3).integers(0, 2, len(ids))
    outcomes = pd.DataFrame({"request_id": ids, "label": labels})

    result = build_report(champion, outcomes, "1D", None, canary=canary)

    (comparison,) = result.arms
    assert comparison.window == (100.0, 199.0)
    assert (comparison.champion.rows, comparison.canary.rows) == (99, 101)
    assert comparison.champion.model_tags == ("credit-risk:champion",)
    assert result.unmatched_outcomes == 1
    assert result.overall["live_rows"] == 200  # the champion's own sections keep its rows
