"""The canary's live share, one value every worker and replica reads: a table beside the
prediction log in the same database.

Promotion sets the share a Bento starts with (``champion.json``); what changes it while the
service runs (an automatic rollback, the bandit, an operator) appends a row here, and every API
worker reads its canary's rows every ``CREDIT_RISK_CANARY_REFRESH_S`` (``SplitState``: a
rollback holds until an operator lifts it). Rows are keyed
by the canary's tag *and* the time it was promoted, so a canary promoted again (or a new one)
starts from its promoted share, never from what an earlier canary was rolled back to. The table
is append-only: it is the audit trail of who moved the share, when and why.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from model_artifact.champion import read_champion
from model_artifact.settings import RegistrySettings
from monitoring.credentials import redacted_errors
from monitoring.prediction_log import create_table, open_engine
from monitoring.settings import MonitoringSettings

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
    "database is locked" at once rather than waiting, so that is tried again after a short
    pause; any other failure (a database that cannot be reached) is raised at once, so a
    refresh fails fast and the worker keeps its share until the next one."""
    for attempt in range(attempts):
        try:
            create_table(engine, SPLITS)
            with engine.begin() as connection:
                for index in SPLITS.indexes:
                    connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))
            return
        except sa.exc.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)


@dataclass(frozen=True)
class ShareChange:
    id: int
    share: float
    set_at: float
    source: str  # rollback | bandit | operator
    reason: str


@dataclass(frozen=True)
class SplitState:
    """What the table says a canary's share is now. ``share`` is None while nothing changed it
    since its promotion (the promoted share holds). A rollback can be lifted only by an
    operator: a bandit row written after a rollback (its update raced the rollback, or read
    the table before it) does not bring the canary back."""

    share: float | None
    last: ShareChange | None
    rolled_back: bool
    last_operator_id: int

    @classmethod
    def from_history(cls, history: list[ShareChange]) -> SplitState:
        share: float | None = None
        rolled_back = False
        last_operator_id = 0
        for change in history:
            if change.source == ROLLBACK:
                share, rolled_back = 0.0, True
            elif change.source == OPERATOR:
                share, rolled_back, last_operator_id = change.share, False, change.id
            elif not rolled_back:
                share = change.share
        return cls(share, history[-1] if history else None, rolled_back, last_operator_id)


ROLLBACK, BANDIT, OPERATOR = "rollback", "bandit", "operator"


class TrafficSplitStore:
    """The split table at ``url`` (the prediction log's SQLAlchemy URL). Blocking calls: the
    service runs them off its event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: sa.Engine | None = None

    def _engine(self) -> sa.Engine:
        if self.engine is None:
            engine = open_engine(self.url)
            try:
                create_split_table(engine)
            except Exception:
                engine.dispose()
                raise
            self.engine = engine
        return self.engine

    def history(self, canary_tag: str, promoted_at: str) -> list[ShareChange]:
        """Every change of this canary's share since its promotion, oldest first."""
        with redacted_errors(self.url, "cannot be read"), self._engine().connect() as connection:
            return self._history(connection, canary_tag, promoted_at)

    def state(self, canary_tag: str, promoted_at: str) -> SplitState:
        return SplitState.from_history(self.history(canary_tag, promoted_at))

    @staticmethod
    def _history(connection: sa.Connection, canary_tag: str, promoted_at: str) -> list[ShareChange]:
        query = (
            sa.select(
                SPLITS.c.id, SPLITS.c.share, SPLITS.c.set_at, SPLITS.c.source, SPLITS.c.reason
            )
            .where(SPLITS.c.canary_tag == canary_tag, SPLITS.c.promoted_at == promoted_at)
            .order_by(SPLITS.c.id)
        )
        return [ShareChange(*row) for row in connection.execute(query)]

    def set_share(
        self,
        canary_tag: str,
        promoted_at: str,
        share: float,
        source: str,
        reason: str,
        unless_rolled_back: bool = False,
    ) -> ShareChange | None:
        """Append a change; with ``unless_rolled_back`` (the bandit) nothing is written when
        the canary stands rolled back, checked in the same transaction as the write."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"a share is within [0, 1], not {share}")
        reason = reason[:512]
        set_at = time.time()
        with redacted_errors(self.url, "cannot be written"), self._engine().begin() as connection:
            if unless_rolled_back:
                history = self._history(connection, canary_tag, promoted_at)
                if SplitState.from_history(history).rolled_back:
                    return None
            inserted = connection.execute(
                SPLITS.insert().values(
                    canary_tag=canary_tag,
                    promoted_at=promoted_at,
                    share=share,
                    set_at=set_at,
                    source=source,
                    reason=reason,
                )
            )
            (row_id,) = inserted.inserted_primary_key or (0,)
        return ShareChange(int(row_id), share, set_at, source, reason)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``show`` the recorded canary's live share and its changes; ``set`` it now for every
    worker and replica (within a refresh): ``--share 0`` stops a canary without a rebuild, and
    an operator's share is the one change that lifts an automatic rollback."""
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.traffic_split", description=main.__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="the canary's live share and every change since promotion")
    setter = commands.add_parser("set", help="set the canary's live share (source: operator)")
    setter.add_argument("--share", type=float, required=True, help="in [0, 1]")
    setter.add_argument("--reason", required=True, help="why (recorded)")
    args = parser.parse_args(argv)
    record = read_champion(RegistrySettings().champion_file)
    if record is None or record.canary is None:
        print("no canary recorded in the champion record")
        return 1
    canary = record.canary
    store = TrafficSplitStore(MonitoringSettings().prediction_log_url)  # never on a command line
    try:
        if args.command == "set":
            store.set_share(
                canary.bento_model_tag, canary.promoted_at, args.share, OPERATOR, args.reason
            )
        state = store.state(canary.bento_model_tag, canary.promoted_at)
        history = store.history(canary.bento_model_tag, canary.promoted_at)
    finally:
        store.close()
    live = record.canary_share if state.share is None else state.share
    print(
        f"canary {canary.bento_model_tag}: live share {live} (promoted {record.canary_share}"
        f"{', rolled back' if state.rolled_back else ''})"
    )
    for change in history:
        when = datetime.fromtimestamp(change.set_at, UTC).isoformat(timespec="seconds")
        print(f"  {when}  {change.source:<8} {change.share:.3f}  {change.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
