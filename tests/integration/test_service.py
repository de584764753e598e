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


def applications_of(records):
    return [Application.model_validate(record) for record in records]


def test_requests_arriving_together_share_one_pass_and_each_gets_its_own_answers(
    api, make_record, monkeypatch
):
    requests = [
        [make_record(request_id=f"r{i}-{j}", income=60 + 10 * i + j) for j in range(i % 3 + 1)]
        for i in range(12)
    ]
    passes: list[int] = []
    answer_rows = api.pipeline.answer_rows

    async def counted(records, ids, sizes, explain):
        passes.append(len(records))
        return await answer_rows(records, ids, sizes, explain)

    monkeypatch.setattr(api.pipeline, "answer_rows", counted)

    async def together():
        return await asyncio.gather(*(api.score(applications_of(r)) for r in requests))

    responses = asyncio.run(together())
    assert len(passes) < len(requests)  # joined: fewer passes than requests
    assert sum(passes) == sum(len(r) for r in requests)
    for records, response in zip(requests, responses, strict=True):
        assert [a.request_id for a in response.results] == [r["request_id"] for r in records]
        alone = score(api, records)  # the same answers as when the request is scored alone
        assert [a.probability_default for a in response.results] == pytest.approx(
            [a.probability_default for a in alone], abs=1e-6
        )
        assert [a.decision for a in response.results] == [a.decision for a in alone]


def test_a_pass_keeps_each_requests_explain_flag(api, make_record):
    record = make_record(request_id="explained")

    async def together():
        return await asyncio.gather(
            api.score(applications_of([record]), explain=True),
            api.score(applications_of([dict(record, request_id="not-explained")])),
        )

    explained, plain = asyncio.run(together())
    assert explained.results[0].principal_reasons
    assert plain.results[0].decision != "decline"  # by default only declines get reasons
    assert not plain.results[0].principal_reasons


def test_a_failing_pass_fails_every_request_in_it_and_answers_none(api, make_record, monkeypatch):
    async def down(matrix, role="champion"):
        raise ConnectionError("runner down")

    monkeypatch.setattr(api.pipeline.scorer, "predict", down)

    async def together():
        return await asyncio.gather(
            *(api.score(applications_of([make_record()])) for _ in range(5)),
            return_exceptions=True,
        )

    outcomes = asyncio.run(together())
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
