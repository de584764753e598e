"""What the API service records about each answered batch: Prometheus metrics, the drift
window and the prediction log, behind one object so the endpoint stays a list of calls."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from credit_risk.contract import ScoreResult
from model_artifact.bundle import ModelBundle
from monitoring import metrics
from monitoring.drift import DriftWindow
from monitoring.prediction_log import PredictionLog
from monitoring.settings import MonitoringSettings


class ServingMonitor:
    def __init__(
        self,
        bundle: ModelBundle,
        model_tag: str,
        labels: Mapping[str, str],
        settings: MonitoringSettings,
    ) -> None:
        self.params = bundle.feature_params
        self.settings = settings
        self.drift = DriftWindow(bundle.reference, settings.drift_window)
        self.log = PredictionLog(
            settings.prediction_log_url,
            batch_rows=settings.prediction_log_batch_rows,
            flush_interval_s=settings.prediction_log_flush_s,
        )
        metrics.MODEL_INFO.labels(
            model_tag,
            labels.get("mlflow_version", "unknown"),
            labels.get("mlflow_run_id", "unknown"),
            bundle.contract.get("version", "unknown"),
        ).set(1)
        metrics.DRIFT_THRESHOLD.set(settings.drift_psi_alert)

    def record_answers(
        self,
        raw: Mapping[str, np.ndarray],
        records: Sequence[Mapping[str, Any]],
        results: Sequence[ScoreResult],
    ) -> None:
        """Metrics, drift window and log rows for one answered batch (no I/O here)."""
        probabilities = np.array([r.probability_default for r in results])
        metrics.observe_inputs(raw, self.params)
        metrics.observe_outputs(probabilities.tolist(), [r.decision for r in results])
        self.drift.add(raw, probabilities)
        now = time.time()
        self.log.write(
            [
                {
                    "request_id": result.request_id,
                    "logged_at": now,
                    "role": "champion",
                    "model_tag": result.model_tag,
                    "probability_default": result.probability_default,
                    "decision": result.decision,
                    "reasons": "|".join(result.reasons),
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
                    "features": {},
                }
            )
        self.log.write(rows)

    def drift_report(self) -> dict[str, Any]:
        """Compute drift now and publish it as gauges."""
        report = self.drift.report(self.settings.drift_psi_alert, self.settings.drift_min_window)
        metrics.DRIFT_WINDOW.set(report["window"])
        for field, values in report["features"].items():
            metrics.DRIFT_PSI.labels(field).set(values["psi"])
            metrics.DRIFT_ALERT.labels(field).set(float(field in report["alerts"]))
        metrics.DRIFT_PSI.labels("score").set(report["score"]["psi"])
        return report

    def close(self) -> None:
        self.log.close()
