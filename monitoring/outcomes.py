"""Join observed outcomes to the prediction log and report how the live model really does.

    python -m monitoring.outcomes outcomes.csv [--log-url URL]   # default: the service's log
                                   [--period 1D] [--out-dir reports/outcomes]

``outcomes.csv`` has ``request_id`` and ``label`` (1 = defaulted), optionally ``observed_at``.
Writes ``outcomes.md`` (overall and per-period ROC AUC, log loss, calibration error, score PSI
against the training reference) and ``outcomes.png``; prints the overall line.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from credit_risk.quality import calibration_table, evaluate
from monitoring.drift import numeric_shares, psi
from monitoring.prediction_log import read_predictions
from monitoring.settings import MonitoringSettings


@dataclass(frozen=True)
class OutcomeReport:
    overall: dict[str, float]
    periods: pd.DataFrame
    calibration: list[dict[str, float]]
    unmatched_outcomes: int


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
        rows.append({"period": start, **metrics, "score_psi": score_psi(scores, reference)})
    return pd.DataFrame(rows)


def build_report(
    predictions: pd.DataFrame, outcomes: pd.DataFrame, period: str, reference: dict[str, Any] | None
) -> OutcomeReport:
    joined, unmatched = join(predictions, outcomes)
    if joined.empty:
        raise ValueError("no outcome matches a logged request id")
    labels, scores = joined["label"].to_numpy(), joined["probability_default"].to_numpy()
    overall = evaluate(labels, scores, "live") | {"live_score_psi": score_psi(scores, reference)}
    return OutcomeReport(
        overall=overall,
        periods=period_metrics(joined, period, reference),
        calibration=calibration_table(labels, scores.astype(np.float64)),
        unmatched_outcomes=unmatched,
    )


def write_report(report: OutcomeReport, folder: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / "outcomes.md"
    overall = pd.DataFrame([report.overall]).round(4)
    markdown.write_text(
        "# Live model performance from joined outcomes\n\n## Overall\n\n"
        + overall.to_markdown(index=False)
        + f"\n\nOutcomes with no logged prediction: {report.unmatched_outcomes}\n"
        + "\n## Per period\n\n"
        + report.periods.round(4).to_markdown(index=False)
        + "\n"
    )
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    calibration = pd.DataFrame(report.calibration)
    left.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    left.plot(calibration["mean_predicted"], calibration["observed_rate"], marker="o", label="live")
    left.set(
        xlabel="mean predicted probability", ylabel="observed default rate", title="Calibration"
    )
    left.legend()
    periods = report.periods
    if "live_roc_auc" in periods:
        right.plot(periods["period"], periods["live_roc_auc"], marker="o", label="ROC AUC")
    right.plot(periods["period"], periods["score_psi"], marker="s", label="score PSI")
    right.set(xlabel="period", title="Over time")
    right.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    image = folder / "outcomes.png"
    figure.savefig(image, dpi=110)
    plt.close(figure)
    return markdown, image


def reference_for(model_tag: str) -> dict[str, Any] | None:
    """The training score reference of the model that scored the rows, if it is in the store."""
    import bentoml
    from bentoml.exceptions import NotFound

    from model_artifact.bundle import read_bundle
    from model_artifact.loaded_model import mlflow_folder

    try:
        folder = mlflow_folder(bentoml.models.get(model_tag))
    except NotFound:
        return None
    score: dict[str, Any] = read_bundle(folder).reference["score"]
    return score


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
    reference = reference_for(tags[0]) if len(tags) == 1 else None
    report = build_report(predictions, outcomes, args.period, reference)
    markdown, image = write_report(report, args.out_dir)
    print(
        f"rows={int(report.overall['live_rows'])} roc_auc={report.overall['live_roc_auc']:.4f} "
        f"log_loss={report.overall['live_log_loss']:.4f} ece={report.overall['live_ece']:.4f} "
        f"unmatched={report.unmatched_outcomes} -> {markdown}, {image}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
