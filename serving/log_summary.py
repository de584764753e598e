"""Repeated warnings as one line per interval, with a count and the reason.

Under overload every shed request and every retried runner call has the same story: one
WARNING line each wrote 78,805 lines in 40 s on a 16-core machine, burying everything else
in the log. The metrics keep the exact counts; the log says what happens, once per interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RepeatedWarnings:
    """``warning(reason)`` logs the first occurrence of a reason at once, then at most one line
    per ``interval_s`` for it, saying how many times it happened since the last line."""

    logger: logging.Logger
    interval_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    last_logged: dict[str, float] = field(default_factory=dict)
    unlogged: dict[str, int] = field(default_factory=dict)

    def warning(self, reason: str) -> None:
        now = self.clock()
        last = self.last_logged.get(reason)
        if last is not None and now - last < self.interval_s:
            self.unlogged[reason] = self.unlogged.get(reason, 0) + 1
            return
        repeated = self.unlogged.pop(reason, 0)
        if last is None:
            self.logger.warning("%s", reason)
        else:
            self.logger.warning("%s (x%d in the last %.0f s)", reason, repeated + 1, now - last)
        self.last_logged[reason] = now
