"""Test tiers by folder (unit / integration / e2e), and one throw-away workspace per session.

The workspace (MLflow SQLite store, artifact folder, BentoML home, champion file) lives in a
temporary folder set through the environment before any test imports bentoml, so no test
touches the developer's real stores. Training happens only in fixtures that ask for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from tests_support import TINY_CONFIG

TIERS = ("unit", "integration", "e2e")
_WORKSPACE = Path(tempfile.mkdtemp(prefix="credit-risk-tests-"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ["BENTOML_HOME"] = str(_WORKSPACE / "bentoml")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_WORKSPACE / 'mlflow.db'}"
    os.environ["CREDIT_RISK_MLFLOW_ARTIFACT_LOCATION"] = str(_WORKSPACE / "mlartifacts")
    os.environ["CREDIT_RISK_CHAMPION_FILE"] = str(_WORKSPACE / "champion.json")
    os.environ["CREDIT_RISK_PREDICTION_LOG_URL"] = f"sqlite:///{_WORKSPACE / 'predictions.db'}"
    os.environ["CREDIT_RISK_PREDICTION_LOG_SPOOL_DIR"] = str(_WORKSPACE / "spool")
    for tier in TIERS:
        config.addinivalue_line("markers", f"{tier}: tests in tests/{tier}/")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_WORKSPACE, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(item.fspath).parent.name
        if tier in TIERS:
            item.add_marker(tier)
        if tier == "e2e":
            item.add_marker("slow")


@pytest.fixture(scope="session")
def workspace() -> Path:
    return _WORKSPACE


VALID_RECORD: dict[str, object] = {
    "seniority": 9,
    "home": "rent",
    "time": 60,
    "age": 30,
    "marital": "married",
    "records": "no",
    "job": "freelance",
    "expenses": 73,
    "income": 129.0,
    "assets": 0.0,
    "debt": 0.0,
    "amount": 800,
    "price": 846,
}


@pytest.fixture
def make_record():
    """A contract-valid application; keyword overrides change or (with ...) drop fields."""

    def build(**overrides: object) -> dict[str, object]:
        record = dict(VALID_RECORD)
        for field, value in overrides.items():
            if value is ...:
                record.pop(field, None)
            else:
                record[field] = value
        return record

    return build


@pytest.fixture(scope="session")
def credit_splits():
    from training.data import load_credit_data, split

    return split(load_credit_data(), seed=42)


@pytest.fixture(scope="session")
def fitted_params(credit_splits):
    from credit_risk.features import fit_feature_params, raw_columns_from_records
    from credit_risk.records import contract_records

    return fit_feature_params(raw_columns_from_records(contract_records(credit_splits.train)))


@pytest.fixture(scope="session")
def champion(workspace):
    """A tiny model trained on the full data, registered in MLflow and promoted into BentoML."""
    from model_artifact.settings import RegistrySettings
    from training.promote import promote
    from training.settings import TrainingConfig
    from training.train import train

    settings = RegistrySettings()
    result = train(TrainingConfig(**TINY_CONFIG), settings)
    report = promote(settings, version=result.registered_version)
    assert report.promoted, report.gates
    return settings, result, report


@pytest.fixture
def candidate(champion):
    """A freshly trained, registered, not yet promoted version (another seed than the champion)."""
    from training.settings import TrainingConfig
    from training.train import train

    settings, _, _ = champion
    return train(TrainingConfig(**TINY_CONFIG, seed=7), settings)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the session, started on first use
    (tests/postgres_server.py; as ``nobody`` when the tests run as root). Tests make their own
    database with ``postgres.create_database(name)``; one that stops the server starts it again."""
    from postgres_server import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()
