"""Repeated warnings: the first at once, then one line per interval with the count."""

from __future__ import annotations

import logging

from serving.log_summary import RepeatedWarnings


def test_a_repeated_warning_is_one_line_per_interval_with_its_count(caplog):
    now = [0.0]
    warnings = RepeatedWarnings(logging.getLogger("t"), interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for second in range(25):  # 100 refusals a second for 25 s
            now[0] = float(second)
            for _ in range(100):
                warnings.warning("prediction log backlog full")
        warnings.warning("runner busy")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "prediction log backlog full",
        "prediction log backlog full (x1000 in the last 10 s)",
        "prediction log backlog full (x1000 in the last 10 s)",
        "runner busy",
    ]
