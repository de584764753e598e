"""The canary's live share in the shared table: a rollback holds against the bandit and is
lifted only by an operator; a worker whose rollback could not be written keeps trying; a
worker never hands the canary traffic before it has read the table."""

from __future__ import annotations

import pytest

from api.canary import CanarySplit
from model_artifact.champion import CanaryTag
from monitoring.canary_guard import Breach
from monitoring.credentials import PredictionLogError
from monitoring.settings import CanarySettings
from monitoring.traffic_split import TrafficSplitStore

TAG, SINCE = "credit-risk:mlflow-v2", "2026-12-04T00:00:00+00:00"


@pytest.fixture
def store(tmp_path):
    opened = TrafficSplitStore(f"sqlite:///{tmp_path / 'log.db'}")
    yield opened
    opened.close()


def test_a_bandit_row_after_a_rollback_does_not_bring_the_canary_back(store):
    store.set_share(TAG, SINCE, 0.4, "bandit", "evidence")
    store.set_share(TAG, SINCE, 0.0, "rollback", "errors: 9 of 10 failed")
    store.set_share(TAG, SINCE, 0.6, "bandit", "read the log before the rollback")
    state = store.state(TAG, SINCE)
    assert state.rolled_back
    assert state.share == 0.0
    store.set_share(TAG, SINCE, 0.1, "operator", "fixed, try again at 10%")
    assert store.state(TAG, SINCE).share == 0.1
    assert not store.state(TAG, SINCE).rolled_back


def test_the_bandit_writes_nothing_over_a_rollback(store):
    store.set_share(TAG, SINCE, 0.0, "rollback", "latency")
    assert store.set_share(TAG, SINCE, 0.7, "bandit", "late", unless_rolled_back=True) is None
    assert [change.source for change in store.history(TAG, SINCE)] == ["rollback"]


def test_an_untouched_canary_has_its_promoted_share(store):
    assert store.state(TAG, SINCE).share is None
    split = CanarySplit(CanaryTag(TAG, SINCE, 0.25), store, CanarySettings())
    assert split.share == 0.0  # nothing before the table has been read
    split.refresh()
    assert split.share == 0.25


class FailingWrites(TrafficSplitStore):
    """The shared table readable, but refusing writes (a database in read-only failover)."""

    refuse = True

    def set_share(self, *args, **kwargs):
        if self.refuse:
            raise PredictionLogError("prediction log sqlite:///… cannot be written: read-only")
        return super().set_share(*args, **kwargs)


def test_a_rollback_that_could_not_be_written_holds_here_and_is_written_later(tmp_path):
    store = FailingWrites(f"sqlite:///{tmp_path / 'log.db'}")
    split = CanarySplit(CanaryTag(TAG, SINCE, 0.25), store, CanarySettings())
    split.refresh()
    split.roll_back([Breach("errors", "5 of 5 failed")])
    split.refresh()
    assert split.share == 0.0  # the table still says 0.25, this worker holds its rollback
    assert split.pending_rollback is not None
    store.refuse = False
    split.refresh()
    assert split.pending_rollback is None
    assert store.state(TAG, SINCE).rolled_back  # now every worker drops it
    store.close()
