"""Shared constants for tests (fixtures live in conftest.py)."""

TINY_CONFIG = {"epochs": 4, "hidden": (16,), "golden_rows": 12, "patience": 2}
