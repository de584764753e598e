"""The canary's live share in one API worker: read from the shared split table
(``monitoring.traffic_split``), checked against the champion (``monitoring.canary_guard``), and
set to 0 there when the canary breaches a bound, so every worker and replica drops it within
one refresh.

A worker starts with share 0 and gives the canary traffic only once it has read the table: a
restarted worker must not bring back a canary that another worker rolled back while the
database is unreachable. It also never raises the share above 0 again after rolling back
itself, unless an operator's change in the table lifts it (a bandit's never does; a new
promotion is a new canary).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from credit_risk.traffic import canary_rows
from model_artifact.champion import CanaryTag
from monitoring.canary_guard import (
    BREACH_REASONS,
    ArmWindow,
    Breach,
    canary_breaches,
    score_psi,
)
from monitoring.credentials import PredictionLogError
from monitoring.metrics import (
    ARM_ESTIMATED_ROC_AUC,
    ARM_REQUESTS,
    CANARY_ROLLBACKS,
    CANARY_SCORE_PSI,
    CANARY_SHARE,
)
from monitoring.settings import CanarySettings
from monitoring.traffic_split import ROLLBACK, ShareChange, TrafficSplitStore
from serving.log_summary import RepeatedWarnings

log = logging.getLogger(__name__)
UNREADABLE = RepeatedWarnings(log)


class CanarySplit:
    def __init__(self, canary: CanaryTag, store: TrafficSplitStore, bounds: CanarySettings) -> None:
        self.canary = canary
        self.store = store
        self.bounds = bounds
        self.share = 0.0  # until the table has been read
        self.last_change: ShareChange | None = None
        # a rollback by this worker: the newest table row it had seen then (only an operator's
        # later row lifts it), and its reason while the table has not recorded it
        self.rolled_back_after: int | None = None
        self.pending_rollback: str | None = None
        self.windows = {
            role: ArmWindow(bounds.window_requests, bounds.window_rows)
            for role in ("champion", "canary")
        }
        CANARY_SHARE.set(0.0)
        # every series from the start, so a rate() sees the first failure or rollback
        for role in self.windows:
            for result in ("answered", "failed"):
                ARM_REQUESTS.labels(role, result)
        for reason in BREACH_REASONS:
            CANARY_ROLLBACKS.labels(reason)

    def rows(self, request_ids: Sequence[str]) -> np.ndarray:
        """Which of these applicants the canary decides (sticky: ``credit_risk.traffic``)."""
        return canary_rows(request_ids, self.share, self.canary.tag)

    def refresh(self) -> None:
        """Read the live share (blocking: the service runs it in a thread), and record a
        rollback whose write failed before. An unreadable table keeps the share this worker
        has."""
        try:
            if self.pending_rollback is not None:
                self.record_rollback(self.pending_rollback)
            state = self.store.state(self.canary.tag, self.canary.promoted_at)
        except PredictionLogError as error:
            UNREADABLE.warning(f"canary share not refreshed: {error}")
            return
        self.last_change = state.last
        share = self.canary.share if state.share is None else state.share
        if self.rolled_back_after is not None:
            if state.last_operator_id > self.rolled_back_after:  # an operator lifted it
                self.rolled_back_after = None
            else:
                share = 0.0
        self.set_share(share)

    def set_share(self, share: float) -> None:
        self.share = share
        CANARY_SHARE.set(share)

    def check(self) -> list[Breach]:
        """The canary's breaches now (none while it gets no traffic); publishes per-arm
        gauges. Cheap: a few sorts of at most ``window_rows`` scores."""
        champion, canary = self.windows["champion"], self.windows["canary"]
        for role, window in self.windows.items():
            auc = window.estimated_auc()
            ARM_ESTIMATED_ROC_AUC.labels(role).set(float("nan") if auc is None else auc)
        if (
            len(champion.scores) >= self.bounds.min_rows
            and len(canary.scores) >= self.bounds.min_rows
        ):
            CANARY_SCORE_PSI.set(score_psi(champion.score_array(), canary.score_array()))
        return canary_breaches(champion, canary, self.bounds) if self.share > 0 else []

    def roll_back(self, breaches: Sequence[Breach]) -> None:
        """Share 0 here at once and in the table for every other worker (blocking). A table
        that cannot be written leaves this worker rolled back, and the write is tried again
        at every refresh until it is recorded."""
        reason = "; ".join(f"{b.reason}: {b.detail}" for b in breaches)
        self.rolled_back_after = self.last_change.id if self.last_change else 0
        self.set_share(0.0)
        for breach in breaches:
            CANARY_ROLLBACKS.labels(breach.reason).inc()
        log.error("canary %s rolled back: %s", self.canary.tag, reason)
        for window in self.windows.values():
            window.clear()
        try:
            self.record_rollback(reason)
        except PredictionLogError as error:
            log.error("canary rollback not yet recorded for other workers (retried): %s", error)

    def record_rollback(self, reason: str) -> None:
        self.pending_rollback = reason
        self.last_change = self.store.set_share(
            self.canary.tag, self.canary.promoted_at, 0.0, ROLLBACK, reason
        )
        self.pending_rollback = None

    def describe(self) -> dict[str, object]:
        change = self.last_change
        return {
            "model_tag": self.canary.tag,
            "promoted_at": self.canary.promoted_at,
            "promoted_share": self.canary.share,
            "share": self.share,
            "last_change": None
            if change is None
            else {
                "share": change.share,
                "source": change.source,
                "reason": change.reason,
                "set_at": change.set_at,
            },
        }
