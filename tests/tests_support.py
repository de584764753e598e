"""Shared constants and helpers for tests (fixtures live in conftest.py)."""

import os

import requests

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST

TINY_CONFIG = {"epochs": 4, "hidden": (16,), "golden_rows": 12, "patience": 2}


def serving_env(**extra: str) -> dict[str, str]:
    """The test environment minus the champion-file override, so a Bento serves the champion
    recorded inside it; ``extra`` adds or overrides variables."""
    env = {k: v for k, v in os.environ.items() if k != "CREDIT_RISK_CHAMPION_FILE"}
    return env | extra


def served_answers(url: str, records: list[dict]) -> list[dict]:
    """Every record scored over HTTP, in requests of the most applications one may hold."""
    results = []
    for start in range(0, len(records), MAX_APPLICATIONS_PER_REQUEST):
        body = {"applications": records[start : start + MAX_APPLICATIONS_PER_REQUEST]}
        response = requests.post(f"{url}/score", json=body, timeout=30)
        assert response.status_code == 200, response.text
        results += response.json()["results"]
    return results
