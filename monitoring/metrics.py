"""Prometheus metrics of what the service sees, beside BentoML's own request metrics.

Plain ``prometheus_client`` objects: under ``bentoml serve`` they land in BentoML's
multiprocess registry and appear on ``/metrics``. Everything here is counted per request in
O(fields) vectorised work; drift is computed elsewhere, off the request path.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from credit_risk.contract import CATEGORICAL_FIELDS, NUMERIC_FIELDS
from credit_risk.features import FeatureParams, numeric_block

PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

SCORES = Histogram(
    "credit_risk_probability_default",
    "Predicted probability of default.",
    ["role"],
    buckets=PROBABILITY_BUCKETS,
)
DECISIONS = Counter(
    "credit_risk_decisions", "Decisions returned, by the model that decided.", ["role", "decision"]
)
MISSING = Counter("credit_risk_feature_missing", "Applications with the field missing.", ["field"])
OUT_OF_RANGE = Counter(
    "credit_risk_feature_out_of_training_range",
    "Values outside the training range (clipped by the features).",
    ["field", "side"],
)
REJECTIONS = Counter(
    "credit_risk_contract_rejections", "Contract violations in refused requests.", ["field", "type"]
)
RUNNER_BATCH_ROWS = Histogram(
    "credit_risk_runner_batch_rows",
    "Rows per model call after adaptive batching.",
    ["role"],
    buckets=BATCH_BUCKETS,
)
RUNNER_CALL_RETRIES = Counter(
    "credit_risk_runner_call_retries",
    "Runner calls tried again after a dropped connection or a shed answer.",
    ["error"],
)
RUNNER_BUSY = Counter(
    "credit_risk_runner_busy",
    "Requests answered 503 because the model stage was busy (queued too long, or a deadline "
    "missed while the runner still answered), the breaker left alone.",
)
MODEL_INFO = Gauge(
    "credit_risk_model_info",
    "The served model (value 1).",
    ["model_tag", "mlflow_version", "mlflow_run_id", "contract_version"],
    multiprocess_mode="mostrecent",
)
DRIFT_PSI = Gauge(
    "credit_risk_drift_psi",
    "Population stability index of the live window vs training.",
    ["feature"],
    multiprocess_mode="mostrecent",
)
DRIFT_WINDOW = Gauge(
    "credit_risk_drift_window_rows",
    "Rows in the live drift window.",
    multiprocess_mode="mostrecent",
)
DRIFT_THRESHOLD = Gauge(
    "credit_risk_drift_alert_threshold",
    "PSI above which a feature alerts.",
    multiprocess_mode="mostrecent",
)
DRIFT_ALERT = Gauge(
    "credit_risk_drift_alert",
    "1 when the feature's PSI exceeds the threshold.",
    ["feature"],
    multiprocess_mode="mostrecent",
)

# Performance before labels (credit_risk/estimate.py): refreshed with the drift gauges; the
# training values are set once per process, so alert rules can compare the two.
ESTIMATED_ROC_AUC = Gauge(
    "credit_risk_estimated_roc_auc",
    "Expected ROC AUC of the live window, estimated from the calibrated scores (no labels).",
    multiprocess_mode="mostrecent",
)
ESTIMATED_DEFAULT_RATE = Gauge(
    "credit_risk_estimated_default_rate",
    "Expected default rate of the live window: the mean predicted probability.",
    multiprocess_mode="mostrecent",
)
TRAINING_ROC_AUC = Gauge(
    "credit_risk_training_roc_auc",
    "Realized ROC AUC of the served model on its test split at training time.",
    multiprocess_mode="mostrecent",
)
TRAINING_DEFAULT_RATE = Gauge(
    "credit_risk_training_default_rate",
    "Realized default rate of the served model's test split at training time.",
    multiprocess_mode="mostrecent",
)
TRAINING_ESTIMATED_ROC_AUC = Gauge(
    "credit_risk_training_estimated_roc_auc",
    "The same label-free estimate on the test split at training time: what the live estimate "
    "is compared to, so a model's own calibration error does not read as a drop.",
    multiprocess_mode="mostrecent",
)
ESTIMATED_AUC_ALERT = Gauge(
    "credit_risk_estimated_auc_alert",
    "1 when the estimated ROC AUC is more than the allowed drop below training's.",
    multiprocess_mode="mostrecent",
)

# A canary beside the champion (api/scoring.py, api/canary.py): what each arm decided, how it
# fared, and the share this worker gives the canary (0 once rolled back), so alerts compare the
# arms like for like.
CANARY_SHARE = Gauge(
    "credit_risk_canary_share",
    "Share of applications the canary decides in this worker (0: none, or rolled back).",
    multiprocess_mode="mostrecent",
)
CANARY_ROLLBACKS = Counter(
    "credit_risk_canary_rollbacks",
    "Automatic canary rollbacks (share set to 0), by the bound the canary breached.",
    ["reason"],
)
ARM_REQUESTS = Counter(
    "credit_risk_arm_requests",
    "Requests an arm was given rows of (a split request counts once per arm), by result: "
    "answered by it, or failed (its rows then answered by the champion).",
    ["role", "result"],
)
ARM_LATENCY = Histogram(
    "credit_risk_arm_latency_seconds",
    "Time an arm takes to score and explain its rows of one request.",
    ["role"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
ARM_ESTIMATED_ROC_AUC = Gauge(
    "credit_risk_arm_estimated_roc_auc",
    "Label-free estimated ROC AUC of each arm's live window.",
    ["role"],
    multiprocess_mode="mostrecent",
)
CANARY_SCORE_PSI = Gauge(
    "credit_risk_canary_score_psi",
    "PSI of the canary's live scores against the champion's live scores (same traffic).",
    multiprocess_mode="mostrecent",
)

LOG_BACKLOG = Gauge(
    "credit_risk_prediction_log_backlog_rows",
    "Answered rows not yet written to the prediction log (in memory or in the spool).",
    multiprocess_mode="livesum",
)
LOG_OLDEST_AGE = Gauge(
    "credit_risk_prediction_log_oldest_unshipped_age_seconds",
    "Age of the oldest answered row not yet in the prediction log's database (0: none).",
    multiprocess_mode="livemax",
)
LOG_UNWRITABLE = Counter(
    "credit_risk_prediction_log_unwritable_rows",
    "Answered rows the prediction log could not write (the database refused the row, or it "
    "could not be serialised); kept in the spool file's unwritable table.",
)
LOG_SHIP_RETRIES = Counter(
    "credit_risk_prediction_log_ship_retries",
    "Failed writes of a batch into the prediction log's database, retried with backoff.",
)


def observe_inputs(raw: Mapping[str, np.ndarray], params: FeatureParams) -> None:
    """Missing and out-of-training-range counts per contract field: one pass over the batch's
    numeric block, and a counter touched only where a count is not zero."""
    numeric = numeric_block(raw)
    low, high = params.plan.low[: len(NUMERIC_FIELDS)], params.plan.high[: len(NUMERIC_FIELDS)]
    counts = np.stack(
        [np.isnan(numeric).sum(axis=0), (numeric < low).sum(axis=0), (numeric > high).sum(axis=0)]
    )
    for row, column in zip(*np.nonzero(counts), strict=True):
        count = int(counts[row, column])
        field = NUMERIC_FIELDS[column]
        if row == 0:
            MISSING.labels(field).inc(count)
        else:
            OUT_OF_RANGE.labels(field, "below" if row == 1 else "above").inc(count)
    for field in CATEGORICAL_FIELDS:
        missing = sum(value is None for value in raw[field].tolist())
        if missing:
            MISSING.labels(field).inc(missing)


def observe_outputs(
    probabilities: Iterable[float], decisions: Iterable[str], role: str = "champion"
) -> None:
    histogram = SCORES.labels(role)
    for probability in probabilities:
        histogram.observe(probability)
    for decision, count in collections.Counter(decisions).items():
        DECISIONS.labels(role, decision).inc(count)


def observe_rejection(errors: Iterable[Mapping[str, object]]) -> None:
    """Count each contract violation by field (the last name in its location) and type."""
    for error in errors:
        location = error.get("loc")
        parts = location if isinstance(location, list | tuple) else []
        names = [part for part in parts if isinstance(part, str)]
        field = names[-1] if names else "<body>"
        REJECTIONS.labels(field, str(error.get("type", "unknown"))).inc()
