"""The API service called in-process (its runner spawned locally by bentoml.depends)."""

from __future__ import annotations

import asyncio

import pytest

from credit_risk.contract import Application


@pytest.fixture(scope="module")
def api(champion):
    from service import CreditRiskAPI

    return CreditRiskAPI()


def score(api, records):
    return asyncio.run(api.score([Application.model_validate(r) for r in records])).results


def test_scores_each_application_with_id_probability_decision_and_tag(api, champion, make_record):
    _, _, report = champion
    results = score(api, [make_record(request_id="abc-1"), make_record(records="yes", income=None)])
    assert results[0].request_id == "abc-1"
    assert len(results[1].request_id) == 32
    for result in results:
        assert 0 < result.probability_default < 1
        assert result.decision in {"approve", "review", "decline"}
        assert result.model_tag == report.bento_model_tag
        assert result.reasons


def test_model_endpoint_shows_lineage_and_runner(api, champion):
    _, result, report = champion
    info = asyncio.run(api.model())
    assert info["model_tag"] == report.bento_model_tag
    assert info["labels"]["mlflow_run_id"] == result.run_id
    assert info["runner"]["model_tag"] == report.bento_model_tag
    assert info["runner"]["device"] == "cpu"


def test_contract_endpoint(api):
    assert asyncio.run(api.contract())["version"] == "1.0.0"
