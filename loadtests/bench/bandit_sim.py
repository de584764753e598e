"""`make bandit-sim`: the canary bandit (``credit_risk.bandit``) replayed over the credit data,
against a fixed 50/50 split, the promoted share left alone, and the oracle.

    python -m loadtests.bench.bandit_sim [--out loadtests/results/bandit-sim.md] [--seeds 20]
        [--arrivals 20000] [--delay 2000] [--update-every 500] [--max-epochs N]

1. Models: trained in process with the project's training code (``training.fit``, the same
   split, features and matrix as ``training.train``; no MLflow): ``full``, the normal
   configuration; ``form-only``, the same network trained on the application form alone (age,
   term, amount, price, expenses, home, marital status: no employment, income, assets, debt or
   credit records); ``numeric-only``, every numeric field but no categories (close to
   ``full``: the hard case). Each scores the test and validation applications (the pool),
   decided with the default thresholds and costed with the default ``DecisionCosts`` against
   the applicant's real outcome, so every applicant's cost under either model is known.
2. Arrivals: the pool resampled with replacement (``--arrivals``), in that order. The share is
   constant within a block of ``--update-every`` arrivals; each arrival goes to the canary
   with probability the share (what the hash of a fresh request id does).
3. Outcomes: an approved or reviewed applicant's outcome is revealed ``--delay`` arrivals
   later; a declined applicant's never (as in production). After each block the bandit
   weighs each arm's evidence (all its decisions, the outcomes revealed so far) and sets the
   share for the next block.
4. Policies on the same arrivals and draws: the bandit (``ThompsonSplit`` defaults), 50/50,
   the promoted share fixed, and the oracle (always the model with the lower mean cost over
   the pool). Regret: a policy's total cost minus the oracle's on the same arrivals (cost in
   units of the amount lent, summed over all arrivals).

Reported over ``--seeds`` seeds (arrival order, assignment and Monte Carlo draws; the models
are trained once): median and range of the regret, the better model's final share, and the
outcomes (labels revealed, both arms) until the better model first held 80 % and 90 % of the
traffic. Writes markdown to ``--out``; prints the path.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from credit_risk.bandit import ArmEvidence, DecisionCosts, ThompsonSplit
from credit_risk.decision import VERDICTS, DecisionThresholds, verdict_codes
from credit_risk.features import fit_feature_params, raw_columns_from_records
from credit_risk.pipeline import records_to_matrix
from credit_risk.quality import evaluate
from credit_risk.records import contract_records
from training.data import TARGET, load_credit_data, split
from training.fit import fit
from training.settings import TrainingConfig

DEFAULT_OUT = Path("loadtests/results/bandit-sim.md")
THRESHOLDS = (0.8, 0.9)  # the better model's share whose first reach is reported
# model -> feature-name prefixes it is trained on (None: every feature)
MODELS: dict[str, tuple[str, ...] | None] = {
    "full": None,
    "form-only": (
        "num__age",
        "num__time",
        "num__amount",
        "num__price",
        "num__expenses",
        "cat__home",
        "cat__marital",
    ),
    "numeric-only": ("num__", "missing__", "ratio__"),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    champion: str
    canary: str
    promoted_share: float


SCENARIOS = (
    Scenario("better canary", champion="form-only", canary="full", promoted_share=0.1),
    Scenario("worse canary", champion="full", canary="form-only", promoted_share=0.2),
    Scenario("slightly better canary", champion="numeric-only", canary="full", promoted_share=0.1),
)
POLICIES = ("bandit", "50/50", "promoted share fixed", "oracle")


@dataclass(frozen=True)
class Pool:
    """The applications arrivals are drawn from: per model its decision on each, the cost of
    that decision given the applicant's real outcome, and its ROC AUC on the pool."""

    defaulted: np.ndarray
    decisions: dict[str, np.ndarray]
    costs: dict[str, np.ndarray]
    roc_auc: dict[str, float]

    def mean_cost(self, model: str) -> float:
        return float(self.costs[model].mean())


@dataclass(frozen=True)
class Replay:
    arrivals: int = 20_000
    delay: int = 2_000
    update_every: int = 500


@dataclass(frozen=True)
class RunResult:
    """One seed of one scenario: total cost per policy, the better model's final share under
    the bandit, and the outcomes revealed when it first reached each threshold (None: never)."""

    cost: dict[str, float]
    better_final_share: float
    outcomes_to: dict[float, int | None]


def model_columns(feature_names: Sequence[str], prefixes: tuple[str, ...] | None) -> list[int]:
    if prefixes is None:
        return list(range(len(feature_names)))
    return [i for i, name in enumerate(feature_names) if name.startswith(prefixes)]


def train_pool(
    costs: DecisionCosts, thresholds: DecisionThresholds, max_epochs: int | None = None
) -> Pool:
    """Train every model of ``MODELS`` on the training split; score and decide the pool (test
    and validation applications) with each."""
    splits = split(load_credit_data(), TrainingConfig().split_seed)
    records = {name: contract_records(getattr(splits, name)) for name in ("train", "validation")}
    pool_frame = [splits.test, splits.validation]
    pool_records = contract_records(pool_frame[0]) + contract_records(pool_frame[1])
    labels = {name: getattr(splits, name)[TARGET].to_numpy() for name in records}
    defaulted = np.concatenate([frame[TARGET].to_numpy() for frame in pool_frame])
    params = fit_feature_params(raw_columns_from_records(records["train"]))
    matrices = {name: records_to_matrix(rows, params) for name, rows in records.items()}
    pool_raw = raw_columns_from_records(pool_records)
    pool_matrix = records_to_matrix(pool_records, params)
    config = TrainingConfig()
    if max_epochs is not None:
        config = config.model_copy(update={"epochs": min(config.epochs, max_epochs)})
    decisions, model_costs, roc_auc = {}, {}, {}
    for model, prefixes in MODELS.items():
        columns = model_columns(params.feature_names, prefixes)

        def cut(matrix: np.ndarray, columns: list[int] = columns) -> np.ndarray:
            return np.ascontiguousarray(matrix[:, columns])

        result = fit(
            cut(matrices["train"]),
            labels["train"],
            cut(matrices["validation"]),
            labels["validation"],
            config,
        )
        with torch.inference_mode():
            scores = result.model(torch.from_numpy(cut(pool_matrix))).numpy()
        codes = verdict_codes(scores, pool_raw, thresholds)
        decided = np.array([VERDICTS[code].decision for code in codes.tolist()])
        decisions[model] = decided
        model_costs[model] = costs.costs(decided, defaulted)
        roc_auc[model] = evaluate(defaulted, scores, "pool")["pool_roc_auc"]
    return Pool(defaulted.astype(np.float64), decisions, model_costs, roc_auc)


def evidence(
    decisions: np.ndarray, defaulted: np.ndarray, revealed: np.ndarray, costs: DecisionCosts
) -> ArmEvidence:
    """An arm's evidence from its arrivals so far: labels only where revealed."""
    known = np.where(revealed, defaulted, np.nan)
    return ArmEvidence.from_decisions(decisions, known, costs)


def replay(
    pool: Pool,
    scenario: Scenario,
    policy: ThompsonSplit,
    costs: DecisionCosts,
    setup: Replay,
    seed: int,
) -> RunResult:
    """One seed of one scenario: the bandit's run, and the fixed policies on the same arrivals."""
    rng = np.random.default_rng(seed)
    draws = np.random.default_rng([seed, 1])
    order = rng.integers(0, len(pool.defaulted), setup.arrivals)
    point = rng.random(setup.arrivals)  # the arrival's hash point: canary below the share
    arms = (scenario.champion, scenario.canary)
    decisions = [pool.decisions[arm][order] for arm in arms]
    arm_costs = np.stack([pool.costs[arm][order] for arm in arms], axis=1)
    defaulted = pool.defaulted[order]
    canary_better = pool.mean_cost(scenario.canary) < pool.mean_cost(scenario.champion)
    canary = np.zeros(setup.arrivals, dtype=bool)
    share = scenario.promoted_share
    outcomes_to: dict[float, int | None] = dict.fromkeys(THRESHOLDS)
    for start in range(0, setup.arrivals, setup.update_every):
        end = min(start + setup.update_every, setup.arrivals)
        canary[start:end] = point[start:end] < share
        # outcomes of the arrivals older than the delay, unless declined (never observed)
        seen = np.arange(end) < end - setup.delay
        arm_evidence = []
        for index, on_arm in enumerate((~canary[:end], canary[:end])):
            decided: np.ndarray = decisions[index][:end]
            revealed = seen & (decided != "decline")
            arm_evidence.append(
                evidence(decided[on_arm], defaulted[:end][on_arm], revealed[on_arm], costs)
            )
        share = policy.canary_share(arm_evidence[0], arm_evidence[1], share, draws)
        better_share = share if canary_better else 1.0 - share
        for threshold in THRESHOLDS:
            if outcomes_to[threshold] is None and better_share >= threshold:
                outcomes_to[threshold] = arm_evidence[0].count + arm_evidence[1].count
    rows = np.arange(setup.arrivals)
    fixed = point < scenario.promoted_share
    half = point < 0.5
    cost = {
        "bandit": float(arm_costs[rows, canary.astype(int)].sum()),
        "50/50": float(arm_costs[rows, half.astype(int)].sum()),
        "promoted share fixed": float(arm_costs[rows, fixed.astype(int)].sum()),
        "oracle": float(arm_costs[:, int(canary_better)].sum()),
    }
    return RunResult(cost, better_share, outcomes_to)


def spread(values: Sequence[float], digits: int = 1) -> str:
    """``median [min, max]``."""
    return (
        f"{statistics.median(values):.{digits}f} "
        f"[{min(values):.{digits}f}, {max(values):.{digits}f}]"
    )


def reached(values: Sequence[int | None]) -> str:
    """Median and range of the outcomes where the threshold was reached, and in how many runs."""
    hits = [v for v in values if v is not None]
    if not hits:
        return f"never (0/{len(values)})"
    return f"{spread(hits, 0)} ({len(hits)}/{len(values)})"


def scenario_table(results: Sequence[RunResult]) -> list[str]:
    """The markdown rows of one scenario: one per policy."""
    lines = [
        "| policy | total cost | regret vs oracle | regret / 50/50's |",
        "| --- | --- | --- | --- |",
    ]
    for policy in POLICIES:
        costs = [r.cost[policy] for r in results]
        regret = [r.cost[policy] - r.cost["oracle"] for r in results]
        base = [r.cost["50/50"] - r.cost["oracle"] for r in results]
        ratio = [a / b for a, b in zip(regret, base, strict=True) if b > 0]
        lines.append(
            f"| {policy} | {spread(costs)} | {spread(regret)} | "
            f"{spread(ratio, 2) if ratio else 'n/a'} |"
        )
    return lines


def run(
    pool: Pool,
    scenarios: Sequence[Scenario],
    setup: Replay,
    seeds: int,
    policy: ThompsonSplit,
    costs: DecisionCosts,
) -> dict[str, list[RunResult]]:
    return {
        s.name: [replay(pool, s, policy, costs, setup, seed) for seed in range(seeds)]
        for s in scenarios
    }


def report(
    pool: Pool,
    results: dict[str, list[RunResult]],
    setup: Replay,
    seeds: int,
    policy: ThompsonSplit,
    costs: DecisionCosts,
    command: str,
    seconds: float,
) -> str:
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {platform.system()} {platform.release()}"
    )
    lines = [
        "# Canary bandit: simulation over the credit data",
        "",
        f"Command: `{command}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s).",
        f"Machine: {machine}.",
        "",
        f"Arrivals: {setup.arrivals} per run (the {len(pool.defaulted)} test and validation "
        f"applications resampled), outcomes revealed {setup.delay} arrivals after the "
        "decision (approved and reviewed only; a decline's never), the share updated every "
        f"{setup.update_every} arrivals; {seeds} seeds per scenario. Figures: median [min, max] "
        "over the seeds. Cost in units of the amount lent, summed over all arrivals; regret: "
        "cost minus the oracle's (always the model that costs less over the pool) on the same "
        "arrivals.",
        "",
        f"Policy: `{policy.model_dump()}`.",
        f"Costs: `{costs.model_dump()}`.",
        "",
        "| model | pool ROC AUC | mean cost per application | approve / review / decline |",
        "| --- | --- | --- | --- |",
    ]
    for model in MODELS:
        shares = " / ".join(
            f"{np.mean(pool.decisions[model] == d):.2f}" for d in ("approve", "review", "decline")
        )
        lines.append(
            f"| {model} | {pool.roc_auc[model]:.3f} | {pool.mean_cost(model):+.4f} | {shares} |"
        )
    lines.append("")
    for scenario in SCENARIOS:
        if scenario.name not in results:
            continue
        runs = results[scenario.name]
        better = (
            scenario.canary
            if pool.mean_cost(scenario.canary) < pool.mean_cost(scenario.champion)
            else scenario.champion
        )
        lines += [
            f"## {scenario.name}: champion {scenario.champion}, canary {scenario.canary} "
            f"(promoted at {scenario.promoted_share:.0%})",
            "",
            f"Better model: {better}. Under the bandit, its final share "
            f"{spread([r.better_final_share for r in runs], 3)}; outcomes until it first held "
            + "; ".join(f"{t:.0%}: {reached([r.outcomes_to[t] for r in runs])}" for t in THRESHOLDS)
            + ".",
            "",
            *scenario_table(runs),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.bandit_sim",
        description="Replay the canary bandit over the credit data against fixed splits.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown written here")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--arrivals", type=int, default=Replay.arrivals)
    parser.add_argument("--delay", type=int, default=Replay.delay)
    parser.add_argument("--update-every", type=int, default=Replay.update_every)
    parser.add_argument("--max-epochs", type=int, default=None, help="cap training (tests)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    costs, policy = DecisionCosts(), ThompsonSplit()
    setup = Replay(args.arrivals, args.delay, args.update_every)
    pool = train_pool(costs, DecisionThresholds(), args.max_epochs)
    results = run(pool, SCENARIOS, setup, args.seeds, policy, costs)
    command = "python -m loadtests.bench.bandit_sim " + " ".join(argv or sys.argv[1:])
    text = report(
        pool,
        results,
        setup,
        args.seeds,
        policy,
        costs,
        command.strip(),
        time.perf_counter() - started,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
