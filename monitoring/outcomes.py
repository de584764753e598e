"""Join observed outcomes to the prediction log and report how the live model really does.

    python -m monitoring.outcomes outcomes.csv [--log-url URL]   # default: the service's log
                                   [--period 1D] [--out-dir reports/outcomes]

``outcomes.csv`` has ``request_id`` and ``label`` (1 = defaulted), optionally ``observed_at``.
Writes ``outcomes.md`` (overall and per-period ROC AUC, log loss, calibration error, score PSI
against the training reference) and ``outcomes.png``; prints the overall line. These describe
the champion's rows.

Beside every realized metric sits the label-free estimate the service published before the
labels existed (``credit_risk.estimate``, computed here from the same rows' scores), and the
test-split value the model was trained with: where realized and estimated part, the model is
no longer calibrated on live traffic and the live estimate can no longer be trusted.

When the log holds rows a canary decided (role ``canary``), the report adds a section "Per
arm" and a printed line per arm, then one for the AUC difference: each canary model against
the champion's rows logged while it ran (its first to its last joined row), since an
applicant's arm is drawn at random (``credit_risk.traffic``) and the two arms are disjoint
samples of the same traffic. A request id logged by both arms counts in the one whose answer
came last. Per arm: ROC AUC, default rate, calibration gap (mean predicted probability minus
the observed default rate: positive over-predicts) and log loss, each with a 95% interval,
and the difference canary - champion with its own. The intervals are analytic, so the same
rows always give the same report and a log of millions of rows costs a sort: DeLong's
variance for ROC AUC, the normal approximation of a mean for the other three (each is a mean
over rows); a difference's variance is the sum of the arms' (independent samples). They
assume independent rows: an applicant who applies twice counts twice.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from credit_risk.estimate import estimate_performance, training_performance
from credit_risk.quality import calibration_table, evaluate
from monitoring.drift import numeric_shares, psi
from monitoring.prediction_log import read_predictions
from monitoring.settings import MonitoringSettings

COMPARED = ("roc_auc", "default_rate", "log_loss", "brier")
ARM_METRICS = ("roc_auc", "default_rate", "calibration_gap", "log_loss")
# +1: higher is better, -1: lower is better, 0: a difference has no better side (the default
# rate of the rows with outcomes is the arm's selection; the gap's sign says which way it errs)
BETTER_WHEN = {"roc_auc": 1, "default_rate": 0, "calibration_gap": 0, "log_loss": -1}
BOUNDS = {
    "roc_auc": (0.0, 1.0),
    "default_rate": (0.0, 1.0),
    "calibration_gap": (-1.0, 1.0),
    "log_loss": (0.0, math.inf),
}
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals
CLIP = 1e-7  # as credit_risk.quality.evaluate clips scores


@dataclass(frozen=True)
class Estimate:
    """A metric and the variance of its estimate (NaN where the rows cannot define it)."""

    value: float
    variance: float

    def interval(self, bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
        """The 95% normal interval, cut to the metric's range."""
        half = Z_95 * math.sqrt(self.variance)
        return max(self.value - half, bounds[0]), min(self.value + half, bounds[1])


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def delong_roc_auc(labels: np.ndarray, scores: np.ndarray) -> Estimate:
    """ROC AUC (ties count one half, as scikit-learn's) and DeLong's variance of it, from the
    placement values: per default, the share of non-defaults scored below it; per
    non-default, the share of defaults scored above it. Both average to the AUC; its variance
    is the sum of their variances over their counts. NaN with fewer than two of either."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    m, n = len(positive), len(negative)
    if m < 2 or n < 2:
        return Estimate(math.nan, math.nan)
    combined = midranks(np.concatenate([positive, negative]))
    per_default = (combined[:m] - midranks(positive)) / n
    per_repaid = 1.0 - (combined[m:] - midranks(negative)) / m
    variance = per_default.var(ddof=1) / m + per_repaid.var(ddof=1) / n
    return Estimate(float(per_default.mean()), float(variance))


def mean_estimate(values: np.ndarray) -> Estimate:
    """A mean over rows and the variance of that mean; NaN with fewer than two rows."""
    if len(values) < 2:
        return Estimate(math.nan, math.nan)
    return Estimate(float(values.mean()), float(values.var(ddof=1) / len(values)))


def arm_estimates(labels: np.ndarray, scores: np.ndarray) -> dict[str, Estimate]:
    """``ARM_METRICS`` of one arm's joined rows."""
    labels = labels.astype(np.float64)
    scores = np.clip(scores.astype(np.float64), CLIP, 1 - CLIP)
    losses = -(labels * np.log(scores) + (1.0 - labels) * np.log1p(-scores))
    return {
        "roc_auc": delong_roc_auc(labels, scores),
        "default_rate": mean_estimate(labels),
        "calibration_gap": mean_estimate(scores - labels),
        "log_loss": mean_estimate(losses),
    }


@dataclass(frozen=True)
class Arm:
    role: str
    model_tags: tuple[str, ...]
    rows: int
    estimates: dict[str, Estimate]

    @classmethod
    def of(cls, role: str, joined: pd.DataFrame) -> Arm:
        labels, scores = joined["label"].to_numpy(), joined["probability_default"].to_numpy()
        tags = tuple(sorted(joined["model_tag"].unique()))
        return cls(role, tags, len(joined), arm_estimates(labels, scores))

    def cell(self, metric: str) -> str:
        estimate = self.estimates[metric]
        low, high = estimate.interval(BOUNDS[metric])
        return f"{estimate.value:.3f} [{low:.3f}, {high:.3f}]"

    def summary(self) -> str:
        """The printed line of this arm."""
        metrics = " ".join(f"{name}={self.cell(name)}" for name in ARM_METRICS)
        return f"arm={self.role} model={','.join(self.model_tags)} rows={self.rows} {metrics}"


@dataclass(frozen=True)
class ArmComparison:
    """One canary model against the champion's rows logged while it ran."""

    champion: Arm
    canary: Arm
    window: tuple[float, float]  # Unix times of the canary's first and last joined rows

    def difference(self, metric: str) -> Estimate:
        """Canary - champion; disjoint applicants, so the variances add."""
        canary, champion = self.canary.estimates[metric], self.champion.estimates[metric]
        return Estimate(canary.value - champion.value, canary.variance + champion.variance)

    def verdict(self, metric: str) -> str:
        """better / worse (or higher / lower where no side is better) when the difference's
        95% interval excludes 0; otherwise not distinguishable."""
        low, high = self.difference(metric).interval()
        if not (low > 0 or high < 0):  # also NaN: undefined on these rows
            return "not distinguishable from the champion"
        if BETTER_WHEN[metric] == 0:
            return "higher" if low > 0 else "lower"
        return "better" if (low > 0) == (BETTER_WHEN[metric] > 0) else "worse"

    def statement(self, metric: str) -> str:
        difference = self.difference(metric)
        low, high = difference.interval()
        return (
            f"canary {self.verdict(metric)} on {metric}: difference {difference.value:+.3f} "
            f"[{low:+.3f}, {high:+.3f}], n={self.canary.rows} canary / "
            f"{self.champion.rows} champion"
        )

    def table(self) -> pd.DataFrame:
        rows = []
        for metric in ARM_METRICS:
            difference = self.difference(metric)
            low, high = difference.interval()
            rows.append(
                {
                    "metric": metric,
                    "champion": self.champion.cell(metric),
                    "canary": self.canary.cell(metric),
                    "canary - champion": f"{difference.value:+.3f} [{low:+.3f}, {high:+.3f}]",
                    "verdict": self.verdict(metric),
                }
            )
        return pd.DataFrame(rows)


def compare_arms(
    champion: pd.DataFrame, canary: pd.DataFrame, outcomes: pd.DataFrame
) -> list[ArmComparison]:
    """Per canary model tag, its joined rows against the champion's joined rows logged from
    its first to its last; a request id in both arms counts in the one that answered last."""
    joined, _ = join(pd.concat([champion, canary], ignore_index=True), outcomes)
    champion_joined = joined[joined["role"] == "champion"]
    comparisons = []
    for _, rows in joined[joined["role"] == "canary"].groupby("model_tag"):
        start, end = float(rows["logged_at"].min()), float(rows["logged_at"].max())
        control = champion_joined[champion_joined["logged_at"].between(start, end)]
        comparisons.append(
            ArmComparison(Arm.of("champion", control), Arm.of("canary", rows), (start, end))
        )
    return comparisons


@dataclass(frozen=True)
class OutcomeReport:
    overall: dict[str, float]
    periods: pd.DataFrame
    calibration: list[dict[str, float]]
    unmatched_outcomes: int
    training: dict[str, float | None] = field(default_factory=dict)
    arms: list[ArmComparison] = field(default_factory=list)

    def side_by_side(self) -> pd.DataFrame:
        """Per metric: realized from the joined labels, estimated from the same rows' scores
        alone, and the test-split value at training time (NaN when unknown)."""
        return pd.DataFrame(
            [
                {
                    "metric": name,
                    "realized": self.overall[f"live_{name}"],
                    "estimated": self.overall[f"estimated_{name}"],
                    "training": self.training.get(name),
                }
                for name in COMPARED
            ]
        ).astype({"realized": float, "estimated": float, "training": float})


def join(predictions: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Inner join on request id (the latest prediction per id); also count outcomes with none."""
    latest = predictions.sort_values("logged_at").drop_duplicates("request_id", keep="last")
    joined = latest.merge(outcomes[["request_id", "label"]], on="request_id", how="inner")
    return joined, len(outcomes) - len(joined)


def score_psi(scores: np.ndarray, reference: dict[str, Any] | None) -> float:
    if reference is None:
        return float("nan")
    expected, actual = numeric_shares({**reference, "missing_share": 0.0}, scores)
    return psi(expected, actual)


def estimated_metrics(scores: np.ndarray) -> dict[str, float]:
    """``estimated_*`` metrics of scores alone (NaN where undefined, e.g. one distinct score)."""
    estimate = estimate_performance(scores).as_dict()
    metrics = {}
    for name in COMPARED:
        value = estimate[name]
        metrics[f"estimated_{name}"] = float("nan") if value is None else float(value)
    return metrics


def period_metrics(
    joined: pd.DataFrame, period: str, reference: dict[str, Any] | None
) -> pd.DataFrame:
    joined = joined.assign(period=pd.to_datetime(joined["logged_at"], unit="s").dt.floor(period))
    rows = []
    for start, group in joined.groupby("period"):
        labels, scores = group["label"].to_numpy(), group["probability_default"].to_numpy()
        both_classes = labels.min() != labels.max()
        metrics = (
            evaluate(labels, scores, "live") if both_classes else {"live_rows": float(len(group))}
        )
        rows.append(
            {
                "period": start,
                **metrics,
                **estimated_metrics(scores),
                "score_psi": score_psi(scores, reference),
            }
        )
    return pd.DataFrame(rows)


def build_report(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    period: str,
    reference: dict[str, Any] | None,
    training_metrics: Mapping[str, Any] | None = None,
    canary: pd.DataFrame | None = None,
) -> OutcomeReport:
    """``predictions``: the champion's rows. ``training_metrics``: what training logged for the
    model that scored them (its BentoML metadata ``metrics``), shown beside realized and
    estimated when given. ``canary``: rows a canary decided, compared per arm when given."""
    joined, unmatched = join(predictions, outcomes)
    if joined.empty:
        raise ValueError("no outcome matches a logged request id")
    arms = []
    if canary is not None and not canary.empty:
        _, unmatched = join(pd.concat([predictions, canary], ignore_index=True), outcomes)
        arms = compare_arms(predictions, canary, outcomes)
    labels, scores = joined["label"].to_numpy(), joined["probability_default"].to_numpy()
    overall = (
        evaluate(labels, scores, "live")
        | estimated_metrics(scores)
        | {"live_score_psi": score_psi(scores, reference)}
    )
    return OutcomeReport(
        overall=overall,
        periods=period_metrics(joined, period, reference),
        calibration=calibration_table(labels, scores.astype(np.float64)),
        unmatched_outcomes=unmatched,
        training=training_performance(training_metrics),
        arms=arms,
    )


def per_arm_markdown(comparisons: list[ArmComparison]) -> str:
    if not comparisons:
        return ""
    parts = [
        "\n## Per arm\n\nThe sections above describe the champion's rows. Here each canary "
        "model's rows against the champion's rows logged while it ran (disjoint applicants, "
        "drawn at random). 95% intervals, analytic: DeLong's for ROC AUC, the normal "
        "approximation of a mean for the default rate, the calibration gap (mean predicted "
        "probability - observed default rate) and the log loss; a difference's variance is the "
        "sum of the arms'.\n"
    ]
    for comparison in comparisons:
        start, end = (
            pd.to_datetime(moment, unit="s").strftime("%Y-%m-%d %H:%M")
            for moment in comparison.window
        )
        parts.append(
            f"\n### canary {', '.join(comparison.canary.model_tags)} vs champion "
            f"{', '.join(comparison.champion.model_tags) or '(no rows)'}\n\n"
            f"Rows logged {start} to {end} UTC: canary {comparison.canary.rows}, champion "
            f"{comparison.champion.rows}.\n\n"
            + comparison.table().to_markdown(index=False)
            + "\n\n"
            + "".join(f"- {comparison.statement(metric)}\n" for metric in ARM_METRICS)
        )
    return "".join(parts)


def write_report(report: OutcomeReport, folder: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / "outcomes.md"
    overall = pd.DataFrame([report.overall]).round(4)
    markdown.write_text(
        "# Live model performance from joined outcomes\n\n## Realized vs estimated\n\n"
        "Realized: from the joined labels. Estimated: from the same rows' scores alone, as the "
        "service published it before any label existed (assumes calibration). Training: the "
        "model's test split when it was trained.\n\n"
        + report.side_by_side().round(4).to_markdown(index=False)
        + "\n\n## Overall\n\n"
        + overall.to_markdown(index=False)
        + f"\n\nOutcomes with no logged prediction: {report.unmatched_outcomes}\n"
        + "\n## Per period\n\n"
        + report.periods.round(4).to_markdown(index=False)
        + "\n"
        + per_arm_markdown(report.arms)
    )
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.5))
    calibration = pd.DataFrame(report.calibration)
    left.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    left.plot(calibration["mean_predicted"], calibration["observed_rate"], marker="o", label="live")
    left.set(
        xlabel="mean predicted probability", ylabel="observed default rate", title="Calibration"
    )
    left.legend()
    periods = report.periods
    plot_realized_vs_estimated(middle, periods, "roc_auc", ("realized", "estimated (no labels)"))
    if report.training.get("roc_auc") is not None:
        middle.axhline(report.training["roc_auc"], color="grey", linestyle=":", label="training")
    middle.set(xlabel="period", ylabel="ROC AUC", title="ROC AUC: realized vs estimated")
    middle.legend()
    plot_realized_vs_estimated(
        right, periods, "default_rate", ("observed", "expected (mean score)")
    )
    right.plot(periods["period"], periods["score_psi"], marker="s", label="score PSI")
    right.set(xlabel="period", title="Default rate and score drift")
    right.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    image = folder / "outcomes.png"
    figure.savefig(image, dpi=110)
    plt.close(figure)
    return markdown, image


def plot_realized_vs_estimated(
    axis: Any, periods: pd.DataFrame, metric: str, labels: tuple[str, str]
) -> None:
    """One metric per period: realized from labels where a period has both classes, and the
    label-free estimate from the same rows' scores, dashed."""
    realized, estimated = labels
    if f"live_{metric}" in periods:
        axis.plot(periods["period"], periods[f"live_{metric}"], marker="o", label=realized)
    axis.plot(
        periods["period"],
        periods[f"estimated_{metric}"],
        marker="x",
        linestyle="--",
        label=estimated,
    )


def model_facts(model_tag: str) -> tuple[dict[str, Any] | None, Mapping[str, Any] | None]:
    """The training score reference and the training metrics (BentoML metadata) of the model
    that scored the rows, if it is in the store."""
    import bentoml
    from bentoml.exceptions import NotFound

    from model_artifact.bundle import mlflow_folder, read_bundle

    try:
        model = bentoml.models.get(model_tag)
    except NotFound:
        return None, None
    score: dict[str, Any] = read_bundle(mlflow_folder(model)).reference["score"]
    metrics = model.info.metadata.get("metrics")
    return score, metrics if isinstance(metrics, dict) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.outcomes", description=__doc__)
    parser.add_argument("outcomes", type=Path, help="CSV with request_id and label")
    parser.add_argument("--log-url", default=None, help="prediction log (default: settings)")
    parser.add_argument("--period", default="1D", help="pandas frequency of the time buckets")
    parser.add_argument("--out-dir", type=Path, default=Path("reports/outcomes"))
    args = parser.parse_args(argv)
    log_url = args.log_url or MonitoringSettings().prediction_log_url
    predictions = pd.DataFrame(read_predictions(log_url))
    canary = pd.DataFrame(read_predictions(log_url, "canary"))
    outcomes = pd.read_csv(args.outcomes, dtype={"request_id": str})
    tags = predictions["model_tag"].unique() if len(predictions) else []
    reference, training = model_facts(tags[0]) if len(tags) == 1 else (None, None)
    report = build_report(predictions, outcomes, args.period, reference, training, canary)
    markdown, image = write_report(report, args.out_dir)
    print(
        f"rows={int(report.overall['live_rows'])} roc_auc={report.overall['live_roc_auc']:.4f} "
        f"estimated_roc_auc={report.overall['estimated_roc_auc']:.4f} "
        f"log_loss={report.overall['live_log_loss']:.4f} ece={report.overall['live_ece']:.4f} "
        f"unmatched={report.unmatched_outcomes} -> {markdown}, {image}"
    )
    for comparison in report.arms:
        print(comparison.champion.summary())
        print(comparison.canary.summary())
        print(comparison.statement("roc_auc"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
