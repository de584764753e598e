"""Join observed outcomes to the prediction log and report how the live model really does.

    python -m monitoring.outcomes outcomes.csv [--log-url URL]   # default: the service's log
                                   [--period 1D] [--out-dir reports/outcomes]

``outcomes.csv`` has ``request_id`` and ``label`` (1 = defaulted), optionally ``observed_at``.
Writes ``outcomes.md`` (overall and per-period ROC AUC, log loss, calibration error, score PSI
against the training reference) and ``outcomes.png``; prints the overall line.

Beside every realized metric sits the label-free estimate the service published before the
labels existed (``credit_risk.estimate``, computed here from the same rows' scores), and the
test-split value the model was trained with: where realized and estimated part, the model is
no longer calibrated on live traffic and the live estimate can no longer be trusted.
"""

from __future__ import annotations

import argparse
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


@dataclass(frozen=True)
class OutcomeReport:
    overall: dict[str, float]
    periods: pd.DataFrame
    calibration: list[dict[str, float]]
    unmatched_outcomes: int
    training: dict[str, float | None] = field(default_factory=dict)

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
) -> OutcomeReport:
    """``training_metrics``: what training logged for the model that scored the rows (its
    BentoML metadata ``metrics``), shown beside realized and estimated when given."""
    joined, unmatched = join(predictions, outcomes)
    if joined.empty:
        raise ValueError("no outcome matches a logged request id")
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
    )


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
    outcomes = pd.read_csv(args.outcomes, dtype={"request_id": str})
    tags = predictions["model_tag"].unique() if len(predictions) else []
    reference, training = model_facts(tags[0]) if len(tags) == 1 else (None, None)
    report = build_report(predictions, outcomes, args.period, reference, training)
    markdown, image = write_report(report, args.out_dir)
    print(
        f"rows={int(report.overall['live_rows'])} roc_auc={report.overall['live_roc_auc']:.4f} "
        f"estimated_roc_auc={report.overall['estimated_roc_auc']:.4f} "
        f"log_loss={report.overall['live_log_loss']:.4f} ece={report.overall['live_ece']:.4f} "
        f"unmatched={report.unmatched_outcomes} -> {markdown}, {image}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
