"""The ASGI endpoint that answers POST /score: same contract, same errors as BentoML's route."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import pytest
from bentoml.exceptions import ServiceUnavailable
from pydantic import BaseModel, Field

from api.score_endpoint import ScoreEndpoint
from credit_risk.contract import Application, ScoreResponse, ScoreResult


class Input(BaseModel):
    """The shape BentoML generates from ``CreditRiskAPI.score``'s parameters."""

    applications: Annotated[list[Application], Field(min_length=1, max_length=256)]
    explain: bool = False


class Pipeline:
    """The service side: records what it was asked, answers or raises as told."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[list[Application], bool]] = []
        self.error = error

    async def answer(self, applications: list[Application], explain: bool) -> ScoreResponse:
        self.calls.append((applications, explain))
        if self.error is not None:
            raise self.error
        return ScoreResponse(
            results=[
                ScoreResult(
                    request_id=a.request_id or "new",
                    probability_default=0.25,
                    decision="approve",
                    reasons=[],
                    principal_reasons=[],
                    model_tag="m:1",
                )
                for a in applications
            ]
        )


async def passed_through(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def call(
    endpoint: ScoreEndpoint, body: bytes | list[bytes], method: str = "POST", path: str = "/score"
) -> tuple[int | None, dict[bytes, bytes], bytes]:
    chunks = [body] if isinstance(body, bytes) else body
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(endpoint(scope, receive, send))
    if not sent:
        return None, {}, b""
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m["body"] for m in sent[1:])


def endpoint_for(pipeline: Pipeline) -> ScoreEndpoint:
    return ScoreEndpoint(passed_through, "/score", Input, lambda: pipeline)


def body(records: list[dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"applications": records, **extra}).encode()


def test_a_valid_request_is_answered_by_the_pipeline(make_record):
    pipeline = Pipeline()
    status, headers, payload = call(
        endpoint_for(pipeline), body([make_record(request_id="a-1")], explain=True)
    )
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(payload)
    assert json.loads(payload)["results"][0]["request_id"] == "a-1"
    (applications, explain), *_ = pipeline.calls
    assert applications[0].request_id == "a-1"
    assert explain is True


def test_a_body_in_several_chunks_is_read_whole(make_record):
    whole = body([make_record()])
    status, _, _ = call(endpoint_for(Pipeline()), [whole[:10], whole[10:50], whole[50:]])
    assert status == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/score"), ("POST", "/contract"), ("POST", "/score/x")]
)
def test_other_routes_pass_through(method, path):
    pipeline = Pipeline()
    status, _, _ = call(endpoint_for(pipeline), b"{}", method=method, path=path)
    assert status == 204
    assert pipeline.calls == []


def test_a_validation_failure_is_a_400_in_bentomls_shape(make_record):
    pipeline = Pipeline()
    status, _, payload = call(
        endpoint_for(pipeline), body([make_record(age=-3, home="castle")], explain="maybe")
    )
    answer = json.loads(payload)
    assert status == 400
    assert answer["error"] == "3 validation error for Input"
    locations = [tuple(item["loc"]) for item in answer["detail"]]
    assert sorted(locations, key=str) == [
        ("applications", 0, "age"),
        ("applications", 0, "home"),
        ("explain",),
    ]
    assert all("input" not in item for item in answer["detail"])  # never echoes personal data
    assert pipeline.calls == []


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [(b'{"applications": [', "json_invalid"), (b"[1]", "model_type"), (b"", "json_invalid")],
)
def test_a_body_that_is_not_the_request_object_is_a_400(raw, error_type):
    status, _, payload = call(endpoint_for(Pipeline()), raw)
    assert status == 400
    assert json.loads(payload)["detail"][0]["type"] == error_type


def test_an_unavailable_model_stage_keeps_its_status(make_record):
    pipeline = Pipeline(ServiceUnavailable("model runner unavailable"))
    status, _, payload = call(endpoint_for(pipeline), body([make_record()]))
    assert status == 503
    assert json.loads(payload) == {"error": "model runner unavailable", "detail": []}


def test_an_unexpected_failure_is_a_500_that_names_no_internals(make_record):
    pipeline = Pipeline(RuntimeError("secret internals"))
    status, _, payload = call(endpoint_for(pipeline), body([make_record()]))
    assert status == 500
    assert b"secret" not in payload


def test_a_client_gone_before_its_body_gets_no_answer():
    pipeline = Pipeline()
    endpoint = endpoint_for(pipeline)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(endpoint({"type": "http", "method": "POST", "path": "/score"}, receive, send))
    assert sent == []
    assert pipeline.calls == []
