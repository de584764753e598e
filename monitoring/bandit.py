"""Move the canary's live share from the outcomes of the applications each model decided.

    python -m monitoring.bandit update --outcomes outcomes.csv [--log-url URL] [--dry-run]
                                       [--seed N] [--floor F] [--ceiling C] [--min-outcomes M]
                                       [--max-step S]

Reads the canary from the champion record (``CREDIT_RISK_CHAMPION_FILE``), the rows the
champion and the canary decided since the canary's first decision from the prediction log
(roles ``champion`` and ``canary``, each with its own model tag), joins the outcomes
(``request_id,label``, 1 = defaulted) on request id, weighs each arm's evidence
(``credit_risk.bandit``: costs per decision and outcome, declines need no outcome) and appends
the share the policy gives the canary to the traffic-split table the serving workers read
(``monitoring.traffic_split``, source ``bandit``), with the evidence as the reason. Prints one
line. Run it whenever outcomes have been added (a daily job); each run reads everything since
the canary started, so a missed or repeated run is harmless.

A share set to 0 (an automatic rollback, or an operator turning the canary off) is left alone:
the bandit moves a live canary, it never revives a stopped one. Exit status 0 when the share was
computed (or there is no canary to move), 1 when there is no champion record.

The simulation of this policy against a fixed split over the credit data is
``python -m loadtests.bench.bandit_sim`` (it trains models, which this package may not import).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from credit_risk.bandit import ArmEvidence, DecisionCosts, SplitDecision, ThompsonSplit
from model_artifact.champion import ChampionRecord, Promotion, read_champion
from model_artifact.settings import RegistrySettings
from monitoring.credentials import redacted_errors
from monitoring.prediction_log import PREDICTIONS
from monitoring.settings import MonitoringSettings
from monitoring.traffic_split import TrafficSplitStore

SOURCE = "bandit"
ROLES = ("champion", "canary")  # the prediction log's roles of the two deciding models
STOPPED = 0.0  # a share the bandit never moves: rolled back or switched off


@dataclass(frozen=True)
class ArmRows:
    """One arm's decided applications in the window, with their outcome where known."""

    model_tag: str
    decisions: np.ndarray  # approve | review | decline
    defaulted: np.ndarray  # 1.0, 0.0 or NaN (no outcome joined)

    def evidence(self, costs: DecisionCosts) -> ArmEvidence:
        return ArmEvidence.from_decisions(self.decisions, self.defaulted, costs)


@dataclass(frozen=True)
class UpdateResult:
    canary_tag: str
    previous_share: float
    decision: SplitDecision
    evidence: dict[str, ArmEvidence]
    decided: dict[str, int]
    written: bool

    def reason(self) -> str:
        """The evidence behind the share, as stored with it."""
        arms = "; ".join(
            f"{arm} {self.evidence[arm].count} outcomes of {self.decided[arm]} decided, "
            f"mean reward {self.evidence[arm].mean:+.4f} "
            f"(sd {self.evidence[arm].variance ** 0.5:.4f})"
            for arm in ROLES
        )
        return f"{self.decision.note}; {arms}"

    def line(self) -> str:
        outcome = "written" if self.written else "dry run, not written"
        return (
            f"canary {self.canary_tag}: share {self.previous_share:.3f} -> "
            f"{self.decision.share:.3f} ({self.reason()}) [{outcome}]"
        )


def promoted_timestamp(promotion: Promotion) -> float:
    """Unix time of a promotion (``promoted_at`` is ISO 8601; one without a zone is UTC)."""
    moment = datetime.fromisoformat(promotion.promoted_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_decisions(url: str, role: str, model_tag: str, since: float) -> pd.DataFrame:
    """``request_id, logged_at, decision`` of one role and model since ``since``, oldest first
    (only these columns: the log's applications stay in the database)."""
    columns = [PREDICTIONS.c.request_id, PREDICTIONS.c.logged_at, PREDICTIONS.c.decision]
    with redacted_errors(url, "cannot be read"):
        engine = sa.create_engine(url, hide_parameters=True)
        try:
            with engine.connect() as connection:
                if not sa.inspect(connection).has_table(PREDICTIONS.name):
                    return pd.DataFrame(columns=["request_id", "logged_at", "decision"])
                query = (
                    sa.select(*columns)
                    .where(
                        PREDICTIONS.c.role == role,
                        PREDICTIONS.c.model_tag == model_tag,
                        PREDICTIONS.c.logged_at >= since,
                        PREDICTIONS.c.decision.is_not(None),
                    )
                    .order_by(PREDICTIONS.c.logged_at)
                )
                rows = connection.execute(query).all()
        finally:
            engine.dispose()
    return pd.DataFrame(rows, columns=["request_id", "logged_at", "decision"])


def read_outcomes(path: Path) -> pd.Series:
    """``request_id -> label`` (1 = defaulted) from the outcomes CSV; the last of repeated ids."""
    frame = pd.read_csv(path, dtype={"request_id": str})
    missing = {"request_id", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} has no column {sorted(missing)}")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if not labels.isin([0, 1]).all():
        raise ValueError(f"{path}: every label is 0 (repaid) or 1 (defaulted)")
    return pd.Series(labels.to_numpy(np.float64), index=frame["request_id"]).groupby(level=0).last()


def join_outcomes(rows: pd.DataFrame, outcomes: pd.Series, model_tag: str) -> ArmRows:
    """The arm's rows with their outcome (NaN where none has arrived or none ever will)."""
    defaulted = rows["request_id"].map(outcomes).to_numpy(np.float64)
    return ArmRows(model_tag, rows["decision"].to_numpy(str), defaulted)


def arms_since_canary_start(
    log_url: str, record: ChampionRecord, canary: Promotion, outcomes: pd.Series
) -> dict[str, ArmRows]:
    """Both arms over the same window: from the canary's first logged decision (its promotion
    if it has none yet), so the champion is judged on the applicants of the same period."""
    canary_rows = read_decisions(
        log_url, "canary", canary.bento_model_tag, promoted_timestamp(canary)
    )
    start = (
        float(canary_rows["logged_at"].iloc[0]) if len(canary_rows) else promoted_timestamp(canary)
    )
    champion_rows = read_decisions(log_url, "champion", record.bento_model_tag, start)
    return {
        "champion": join_outcomes(champion_rows, outcomes, record.bento_model_tag),
        "canary": join_outcomes(canary_rows, outcomes, canary.bento_model_tag),
    }


def update(
    record: ChampionRecord,
    canary: Promotion,
    log_url: str,
    outcomes: pd.Series,
    policy: ThompsonSplit,
    costs: DecisionCosts,
    rng: np.random.Generator,
    dry_run: bool = False,
) -> UpdateResult | None:
    """Compute (and unless ``dry_run`` store) the canary's next share; None when the live share
    is 0 (rolled back or switched off), which the bandit leaves alone."""
    store = TrafficSplitStore(log_url)
    try:
        state = store.state(canary.bento_model_tag, canary.promoted_at)
        current = record.canary_share if state.share is None else state.share
        if state.rolled_back or current <= STOPPED:
            return None
        arms = arms_since_canary_start(log_url, record, canary, outcomes)
        evidence = {arm: rows.evidence(costs) for arm, rows in arms.items()}
        decision = policy.decide(evidence["champion"], evidence["canary"], current, rng)
        result = UpdateResult(
            canary.bento_model_tag,
            current,
            decision,
            evidence,
            {arm: len(rows.decisions) for arm, rows in arms.items()},
            written=not dry_run,
        )
        if not dry_run:
            written = store.set_share(
                canary.bento_model_tag,
                canary.promoted_at,
                decision.share,
                SOURCE,
                result.reason(),
                unless_rolled_back=True,  # a rollback while the log was read wins
            )
            if written is None:
                return None
        return result
    finally:
        store.close()


def policy_from(args: argparse.Namespace) -> ThompsonSplit:
    """The policy's defaults, with the options given on the command line."""
    given = {
        name: getattr(args, name)
        for name in ("floor", "ceiling", "min_outcomes", "max_step")
        if getattr(args, name) is not None
    }
    return ThompsonSplit(**given)


def run_update(args: argparse.Namespace) -> int:
    champion_file = RegistrySettings().champion_file
    record = read_champion(champion_file)
    if record is None:
        print(f"no champion record at {champion_file}: nothing to update", file=sys.stderr)
        return 1
    if record.canary is None:
        print(f"no canary in {champion_file}: nothing to move")
        return 0
    log_url = args.log_url or MonitoringSettings().prediction_log_url
    result = update(
        record,
        record.canary,
        log_url,
        read_outcomes(args.outcomes),
        policy_from(args),
        DecisionCosts(),
        np.random.default_rng(args.seed),
        dry_run=args.dry_run,
    )
    if result is None:
        print(f"canary {record.canary.bento_model_tag}: share is 0 (rolled back or off), left")
    else:
        print(result.line())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.bandit",
        description="Move the canary's live share by Thompson sampling over joined outcomes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    move = commands.add_parser("update", help="compute and store the canary's next share")
    move.add_argument("--outcomes", type=Path, required=True, help="CSV: request_id,label")
    move.add_argument("--log-url", default=None, help="prediction log (default: settings)")
    move.add_argument("--dry-run", action="store_true", help="print the share, store nothing")
    move.add_argument("--seed", type=int, default=None, help="seed of the Monte Carlo draws")
    move.add_argument("--floor", type=float, default=None, help="least share of either arm")
    move.add_argument("--ceiling", type=float, default=None, help="most share of the canary")
    move.add_argument("--min-outcomes", type=int, default=None, help="per arm, to move at all")
    move.add_argument("--max-step", type=float, default=None, help="most change per update")
    args = parser.parse_args(argv)
    return run_update(args)


if __name__ == "__main__":
    sys.exit(main())
