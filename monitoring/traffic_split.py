"""The canary's live share, one value every worker and replica reads: a table beside the
prediction log in the same database.

Promotion sets the share a Bento starts with (``champion.json``); what changes it while the
service runs (an automatic rollback, the bandit, an operator) appends a row here, and every API
worker reads the newest row for its canary every ``CREDIT_RISK_SPLIT_REFRESH_S``. Rows are keyed
by the canary's tag *and* the time it was promoted, so a canary promoted again (or a new one)
starts from its promoted share, never from what an earlier canary was rolled back to. The table
is append-only: it is the audit trail of who moved the share, when and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from monitoring.credentials import redacted_errors
from monitoring.prediction_log import create_table, open_engine

METADATA = sa.MetaData()
SPLITS = sa.Table(
    "traffic_split",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("canary_tag", sa.String(128), nullable=False),
    sa.Column("promoted_at", sa.String(40), nullable=False, doc="The canary's promotion."),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("set_at", sa.Float, nullable=False, doc="Unix time of the change."),
    sa.Column("source", sa.String(32), nullable=False, doc="rollback, bandit or operator."),
    sa.Column("reason", sa.String(512), nullable=False),
    sa.Index("ix_traffic_split_canary", "canary_tag", "promoted_at", "id"),
)


def create_split_table(engine: sa.Engine, attempts: int = 6) -> None:
    """The table and its index, unless they exist (``prediction_log.create_table``: workers
    starting together race for it). SQLite answers a writer that meets another's schema change
    "database is locked" at once rather than waiting, so the creation is tried again after a
    short pause."""
    for attempt in range(attempts):
        try:
            create_table(engine, SPLITS)
            with engine.begin() as connection:
                for index in SPLITS.indexes:
                    connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))
            return
        except sa.exc.DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)


@dataclass(frozen=True)
class ShareChange:
    share: float
    set_at: float
    source: str
    reason: str


class TrafficSplitStore:
    """The split table at ``url`` (the prediction log's SQLAlchemy URL). Blocking calls: the
    service runs them off its event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: sa.Engine | None = None

    def _engine(self) -> sa.Engine:
        if self.engine is None:
            engine = open_engine(self.url)
            create_split_table(engine)
            self.engine = engine
        return self.engine

    def latest(self, canary_tag: str, promoted_at: str) -> ShareChange | None:
        """The newest change of this canary's share since its promotion, if any."""
        with redacted_errors(self.url, "cannot be read"):
            query = (
                sa.select(SPLITS.c.share, SPLITS.c.set_at, SPLITS.c.source, SPLITS.c.reason)
                .where(SPLITS.c.canary_tag == canary_tag, SPLITS.c.promoted_at == promoted_at)
                .order_by(SPLITS.c.id.desc())
                .limit(1)
            )
            with self._engine().connect() as connection:
                row = connection.execute(query).first()
        return None if row is None else ShareChange(*row)

    def history(self, canary_tag: str, promoted_at: str) -> list[ShareChange]:
        """Every change of this canary's share, oldest first."""
        with redacted_errors(self.url, "cannot be read"):
            query = (
                sa.select(SPLITS.c.share, SPLITS.c.set_at, SPLITS.c.source, SPLITS.c.reason)
                .where(SPLITS.c.canary_tag == canary_tag, SPLITS.c.promoted_at == promoted_at)
                .order_by(SPLITS.c.id)
            )
            with self._engine().connect() as connection:
                return [ShareChange(*row) for row in connection.execute(query)]

    def set_share(
        self, canary_tag: str, promoted_at: str, share: float, source: str, reason: str
    ) -> ShareChange:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"a share is within [0, 1], not {share}")
        change = ShareChange(share, time.time(), source, reason[:512])
        with redacted_errors(self.url, "cannot be written"), self._engine().begin() as connection:
            connection.execute(
                SPLITS.insert().values(
                    canary_tag=canary_tag,
                    promoted_at=promoted_at,
                    share=share,
                    set_at=change.set_at,
                    source=source,
                    reason=change.reason,
                )
            )
        return change

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
