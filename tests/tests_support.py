"""Shared constants and helpers for tests (fixtures live in conftest.py)."""

import os

TINY_CONFIG = {"epochs": 4, "hidden": (16,), "golden_rows": 12, "patience": 2}


def serving_env(**extra: str) -> dict[str, str]:
    """The test environment minus the champion-file override, so a Bento serves the champion
    recorded inside it; ``extra`` adds or overrides variables."""
    env = {k: v for k, v in os.environ.items() if k != "CREDIT_RISK_CHAMPION_FILE"}
    return env | extra
