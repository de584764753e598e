"""What the API service records about each answered batch: Prometheus metrics, the drift
window and the prediction log, behind one object so the endpoint stays a list of calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from credit_risk.contract import ScoreResult
from credit_risk.estimate import estimate_performance, training_performance
from model_artifact.bundle import ModelBundle
from monitoring import metrics
from monitoring.drift import DriftWindow
from monitoring.prediction_log import PredictionLog
from monitoring.settings import MonitoringSettings

ROOM_POLL_S = 0.01  # how often a request waiting for room in the log looks again


class ServingMonitor:
    def __init__(
        self,
        bundle: ModelBundle,
        model_tag: str,
        labels: Mapping[str, str],
        settings: MonitoringSettings,
        training_metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """``training_metrics``: what training logged for the model (the BentoML model's
        ``metadata["metrics"]``), the realized values the label-free estimate is compared to."""
        self.params = bundle.feature_params
        self.settings = settings
        self.training = training_performance(training_metrics)
        self.drift = DriftWindow(bundle.reference, settings.drift_window)
        self.log = PredictionLog(settings.prediction_log_url, settings=settings)
        metrics.MODEL_INFO.labels(
            model_tag,
            labels.get("mlflow_version", "unknown"),
            labels.get("mlflow_run_id", "unknown"),
            bundle.contract.get("version", "unknown"),
        ).set(1)
        metrics.DRIFT_THRESHOLD.set(settings.drift_psi_alert)
        metrics.TRAINING_ROC_AUC.set(gauge_value(self.training["roc_auc"]))
        metrics.TRAINING_DEFAULT_RATE.set(gauge_value(self.training["default_rate"]))
        metrics.TRAINING_ESTIMATED_ROC_AUC.set(gauge_value(self.training["estimated_roc_auc"]))

    def record_answers(
        self,
        raw: Mapping[str, np.ndarray],
        records: Sequence[Mapping[str, Any]],
        results: Sequence[ScoreResult],
        role: str = "champion",
    ) -> None:
        """Metrics, drift window and log rows for one answered batch (no I/O here). ``role``:
        the model that decided, champion or canary; the drift window (and the gauges that
        alert on it) follows the champion's rows, the canary's are compared to them apart
        (``api/canary.py``)."""
        probabilities = np.array([r.probability_default for r in results])
        metrics.observe_inputs(raw, self.params)
        metrics.observe_outputs(probabilities.tolist(), [r.decision for r in results], role)
        if role == "champion":
            self.drift.add(raw, probabilities)
        now = time.time()
        self.log.write(
            [
                {
                    "request_id": result.request_id,
                    "logged_at": now,
                    "role": role,
                    "model_tag": result.model_tag,
                    "probability_default": result.probability_default,
                    "decision": result.decision,
                    "reasons": "|".join(result.reasons),
                    "principal_reasons": [r.model_dump() for r in result.principal_reasons],
                    "features": {k: v for k, v in record.items() if k != "request_id"},
                }
                for record, result in zip(records, results, strict=True)
            ]
        )

    def record_challenger(
        self, request_ids: Sequence[str], probabilities: Sequence[float], model_tag: str
    ) -> None:
        """The challenger's scores, logged beside the champion's rows by request id."""
        histogram = metrics.SCORES.labels("challenger")
        now = time.time()
        rows = []
        for request_id, probability in zip(request_ids, probabilities, strict=True):
            histogram.observe(probability)
            rows.append(
                {
                    "request_id": request_id,
                    "logged_at": now,
                    "role": "challenger",
                    "model_tag": model_tag,
                    "probability_default": probability,
                    "decision": None,  # a challenger decides nothing: it is never answered
                    "reasons": None,
                    "principal_reasons": None,
                    "features": {},
                }
            )
        self.log.write(rows)

    def drift_report(self) -> dict[str, Any]:
        """Compute drift and the label-free performance estimate now; publish both as gauges."""
        report = self.drift.report(self.settings.drift_psi_alert, self.settings.drift_min_window)
        report["performance"] = self.performance_report()
        metrics.DRIFT_WINDOW.set(report["window"])
        for field, values in report["features"].items():
            metrics.DRIFT_PSI.labels(field).set(values["psi"])
            metrics.DRIFT_ALERT.labels(field).set(float(field in report["alerts"]))
        metrics.DRIFT_PSI.labels("score").set(report["score"]["psi"])
        return report

    def performance_report(self) -> dict[str, Any]:
        """The window's expected metrics beside training's, and whether the estimated AUC fell
        too far; gauges updated. The drop is measured against the same estimate on the test
        split at training time (like with like: a model's calibration error on its own test
        data is not a drop), or the realized test AUC for a model trained before that was
        logged. No alert below the drift's minimum window (the estimate of a few rows is
        noise) or without a training AUC to compare to."""
        estimate = estimate_performance(self.drift.live_scores())
        training_auc = self.training["estimated_roc_auc"] or self.training["roc_auc"]
        alert = (
            estimate.rows >= self.settings.drift_min_window
            and estimate.roc_auc is not None
            and training_auc is not None
            and estimate.roc_auc < training_auc - self.settings.estimated_auc_drop_alert
        )
        metrics.ESTIMATED_ROC_AUC.set(gauge_value(estimate.roc_auc))
        metrics.ESTIMATED_DEFAULT_RATE.set(gauge_value(estimate.default_rate))
        metrics.ESTIMATED_AUC_ALERT.set(float(alert))
        return {
            "estimated": estimate.as_dict(),
            "training": self.training,
            "window": estimate.rows,
            "max_auc_drop": self.settings.estimated_auc_drop_alert,
            "alert": alert,
        }

    @property
    def accepting(self) -> bool:
        """Whether the prediction log can take this request's rows (``PredictionLog``)."""
        return self.log.accepting

    async def room_in_log(self) -> bool:
        """Whether the log takes rows now, or within ``prediction_log_admission_wait_s``.

        Backpressure before refusal: batched traffic fills the log's memory bound in bursts
        (20,000 rows is under a second of 256-application requests) that the spooler empties
        within its next commits. A request that waits for that answers 200 a little later, and
        a closed-loop client slows to what the log sustains; only a log that stays full (its
        disk failing, the database away until the spool is full) is refused with 503."""
        if self.log.accepting:
            return True
        deadline = time.monotonic() + self.settings.prediction_log_admission_wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(ROOM_POLL_S)
            if self.log.accepting:
                return True
        return False

    def close(self) -> None:
        self.log.close()


def gauge_value(value: float | None) -> float:
    """An undefined metric (empty window, unknown training value) as NaN on a gauge; JSON keeps
    ``None``, since NaN is not JSON."""
    return float("nan") if value is None else value
