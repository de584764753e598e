"""The canary bandit end to end: a real SQLite prediction log with rows the champion and the
canary decided, an outcomes CSV, ``python -m monitoring.bandit update`` writing the share the
serving workers read; and a small replay of the simulation over the credit data."""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from credit_risk.bandit import DecisionCosts, ThompsonSplit
from credit_risk.decision import DecisionThresholds
from loadtests.bench.bandit_sim import SCENARIOS, Replay, report, run, train_pool
from model_artifact.champion import ChampionRecord, Promotion, write_champion
from monitoring.bandit import main
from monitoring.prediction_log import METADATA, PREDICTIONS
from monitoring.traffic_split import TrafficSplitStore

CHAMPION_TAG, CANARY_TAG = "credit-risk:mlflow-v1", "credit-risk:mlflow-v2"
PROMOTED_AT = "2026-01-01T00:00:00+00:00"


def promotion(tag: str) -> Promotion:
    return Promotion(
        bento_model_tag=tag,
        registered_model="credit-risk",
        mlflow_version=tag[-1],
        mlflow_run_id="run",
        promoted_at=PROMOTED_AT,
    )


@pytest.fixture
def live(tmp_path, monkeypatch):
    """A champion record with a canary at 30 %, and an empty SQLite log at a temporary path."""
    champion_file = tmp_path / "champion.json"
    record = ChampionRecord(
        current=promotion(CHAMPION_TAG), canary=promotion(CANARY_TAG), canary_share=0.3
    )
    write_champion(champion_file, record)
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("CREDIT_RISK_CHAMPION_FILE", str(champion_file))
    monkeypatch.setenv("CREDIT_RISK_PREDICTION_LOG_URL", url)
    engine = sa.create_engine(url)
    METADATA.create_all(engine)
    yield url, engine, champion_file
    engine.dispose()


def log_decisions(
    engine, role: str, tag: str, rows: int, default_rate: float, seed: int, first: int = 0
):
    """``rows`` decided applications of one arm, one a second from ``first`` seconds after the
    promotion; returns their outcomes (declines have none)."""
    generator = np.random.default_rng(seed)
    decisions = generator.choice(["approve", "review", "decline"], rows, p=[0.6, 0.25, 0.15])
    start = datetime.fromisoformat(PROMOTED_AT).timestamp() + first
    ids = [f"{role}-{i}" for i in range(rows)]
    with engine.begin() as connection:
        connection.execute(
            PREDICTIONS.insert(),
            [
                {
                    "request_id": ids[i],
                    "logged_at": start + i,
                    "role": role,
                    "model_tag": tag,
                    "probability_default": 0.2,
                    "decision": str(decisions[i]),
                    "reasons": "",
                    "features": {},
                    "principal_reasons": None,
                }
                for i in range(rows)
            ],
        )
    labelled = decisions != "decline"
    labels = (generator.random(rows) < default_rate).astype(int)
    return pd.DataFrame({"request_id": np.array(ids)[labelled], "label": labels[labelled]})


def write_outcomes(tmp_path, *frames: pd.DataFrame):
    path = tmp_path / "outcomes.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_a_worse_canary_falls_to_the_floor(live, tmp_path, capsys):
    """The canary's approvals default more often; the champion is judged from the canary's
    first decision on (its earlier 1,000 rows are left out)."""
    url, engine, _ = live
    canary = log_decisions(engine, "canary", CANARY_TAG, 1_000, 0.35, seed=2, first=1_000)
    outcomes = write_outcomes(
        tmp_path, log_decisions(engine, "champion", CHAMPION_TAG, 2_000, 0.10, seed=1), canary
    )
    assert main(["update", "--outcomes", str(outcomes), "--seed", "0"]) == 0
    line = capsys.readouterr().out.strip()
    assert "0.300 -> 0.050" in line, line
    change = TrafficSplitStore(url).state(CANARY_TAG, PROMOTED_AT).last
    assert change is not None
    assert change.share == ThompsonSplit().floor
    assert change.source == "bandit"
    assert "P(canary better)=0.000" in change.reason
    assert f"canary {len(canary)} outcomes of 1000 decided" in change.reason
    assert re.search(r"champion \d+ outcomes of 1000 decided", change.reason)  # same window


def test_a_dry_run_writes_nothing_and_thin_evidence_holds_the_share(live, tmp_path, capsys):
    url, engine, _ = live
    outcomes = write_outcomes(
        tmp_path,
        log_decisions(engine, "champion", CHAMPION_TAG, 2_000, 0.10, seed=1),
        log_decisions(engine, "canary", CANARY_TAG, 100, 0.35, seed=2),  # < min_outcomes
    )
    assert main(["update", "--outcomes", str(outcomes), "--dry-run", "--log-url", url]) == 0
    assert "0.300 -> 0.200" in capsys.readouterr().out  # capped at the unproven ceiling
    assert TrafficSplitStore(url).state(CANARY_TAG, PROMOTED_AT).last is None


def test_a_rolled_back_canary_is_left_alone(live, tmp_path, capsys):
    url, engine, _ = live
    outcomes = write_outcomes(
        tmp_path, log_decisions(engine, "canary", CANARY_TAG, 500, 0.01, seed=2)
    )
    store = TrafficSplitStore(url)
    store.set_share(CANARY_TAG, PROMOTED_AT, 0.0, "rollback", "error rate")
    assert main(["update", "--outcomes", str(outcomes)]) == 0
    assert "left" in capsys.readouterr().out
    assert [c.source for c in store.history(CANARY_TAG, PROMOTED_AT)] == ["rollback"]


def test_without_a_canary_there_is_nothing_to_move(live, tmp_path, capsys):
    _, _, champion_file = live
    write_champion(champion_file, ChampionRecord(current=promotion(CHAMPION_TAG)))
    outcomes = write_outcomes(tmp_path, pd.DataFrame({"request_id": ["x"], "label": [0]}))
    assert main(["update", "--outcomes", str(outcomes)]) == 0
    assert "no canary" in capsys.readouterr().out
    champion_file.unlink()
    assert main(["update", "--outcomes", str(outcomes)]) == 1


@pytest.fixture(scope="module")
def pool():
    return train_pool(DecisionCosts(), DecisionThresholds(), max_epochs=15)


def test_the_simulated_bandit_beats_a_fixed_split_and_ends_on_the_better_model(pool):
    setup = Replay(arrivals=10_000, delay=500, update_every=250)
    policy, costs = ThompsonSplit(), DecisionCosts()
    results = run(pool, SCENARIOS[:2], setup, seeds=3, policy=policy, costs=costs)
    for name, runs in results.items():
        for result in runs:
            bandit = result.cost["bandit"] - result.cost["oracle"]
            half = result.cost["50/50"] - result.cost["oracle"]
            assert bandit < half, name
            assert result.better_final_share >= 0.8, name
            assert result.outcomes_to[0.8] is not None
    text = report(pool, results, setup, 3, policy, costs, "test", 0.0)
    assert "## better canary" in text
    assert "| bandit |" in text
