"""The one handler of POST /score, called as an ASGI app: its steps in order (headers,
admission, one bounded read, one parse and its checks, validation, the pipeline, encoding),
the same contract and errors as BentoML's route, each refusal counted, and the OpenAPI
document built once."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import pytest
from bentoml.exceptions import ServiceUnavailable
from pydantic import BaseModel, Field

from api.score_handler import ScoreHandler
from credit_risk.contract import Application, ErrorResponse, ScoreResponse, ScoreResult
from monitoring.metrics import REJECTIONS

JSON_HEADERS = [(b"content-type", b"application/json")]


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
    endpoint: ScoreHandler,
    body: bytes | list[bytes],
    method: str = "POST",
    path: str = "/score",
    headers: list[tuple[bytes, bytes]] = JSON_HEADERS,
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

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(endpoint(scope, receive, send))
    if not sent:
        return None, {}, b""
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m["body"] for m in sent[1:])


def endpoint_for(pipeline: Pipeline, **options: Any) -> ScoreHandler:
    options = {"max_in_flight": 64, **options}
    return ScoreHandler(passed_through, Input, lambda: pipeline, DOCUMENT.copy, **options)


DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.2",
    "paths": {"/score": {"post": {"responses": {}}}},
    "components": {"schemas": {}},
}


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
    ("method", "path"),
    [("GET", "/score"), ("POST", "/contract"), ("POST", "/score/x"), ("GET", "/")],
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
    status, headers, payload = call(endpoint_for(pipeline), body([make_record()]))
    assert status == 503
    assert json.loads(payload) == {"error": "model runner unavailable", "detail": []}
    assert headers[b"retry-after"] == b"1"


def test_an_unexpected_failure_is_a_500_that_names_no_internals(make_record):
    pipeline = Pipeline(RuntimeError("secret internals"))
    status, _, payload = call(endpoint_for(pipeline), body([make_record()]))
    assert status == 500
    assert b"secret" not in payload


def test_a_failure_in_the_body_checks_is_a_500_too(make_record, monkeypatch):
    """Nothing the handler runs on a body escapes it unanswered (behind BentoML's timeout an
    escaped error went unanswered for the whole timeout: serving.asgi.answered)."""

    def broken(_body: bytes) -> None:
        raise RuntimeError("a bug in the checks")

    monkeypatch.setattr("api.score_handler.parse_body", broken)
    status, _, payload = call(endpoint_for(Pipeline()), body([make_record()]))
    assert status == 500
    assert b"bug" not in payload


def test_a_client_gone_before_its_body_gets_no_answer():
    pipeline = Pipeline()
    endpoint = endpoint_for(pipeline)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": JSON_HEADERS}
    asyncio.run(endpoint(scope, receive, send))
    assert sent == []
    assert pipeline.calls == []


def test_a_wrong_media_type_is_refused_before_the_body_is_read():
    pipeline = Pipeline()
    status, _, payload = call(
        endpoint_for(pipeline), b"{}", headers=[(b"content-type", b"text/plain")]
    )
    assert status == 415
    assert json.loads(payload)["detail"][0]["loc"] == ["header", "content-type"]
    assert pipeline.calls == []


def oversized(headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[list[dict], int]:
    """A body of ``chunks`` chunks of 400 bytes against a 1,000-byte limit: what was sent
    back, and how many chunks the handler read."""
    events = [
        {"type": "http.request", "body": b" " * 400, "more_body": i < chunks - 1}
        for i in range(chunks)
    ]
    sent: list[dict[str, Any]] = []
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": headers}
    asyncio.run(endpoint_for(Pipeline(), max_body_bytes=1_000)(scope, receive, send))
    return sent, min(read, chunks)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_body_is_read_to_its_end_then_answered_413(declared):
    """Read and dropped first, so a client that writes its whole body before reading (urllib,
    requests) finishes writing and reads the 413 instead of a reset connection."""
    length = [(b"content-length", b"4000")] if declared else []
    sent, read = oversized([*JSON_HEADERS, *length], chunks=10)
    assert read == 10
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    error = ErrorResponse.model_validate_json(sent[1]["body"])
    assert error.detail[0].type == "body_too_large"


def test_a_client_that_expects_100_continue_gets_413_before_it_sends():
    headers = [*JSON_HEADERS, (b"content-length", b"4000"), (b"expect", b"100-continue")]
    sent, read = oversized(headers, chunks=10)
    assert read == 0
    assert sent[0]["status"] == 413


def test_what_is_discarded_is_bounded(monkeypatch):
    monkeypatch.setattr("api.score_handler.DISCARD_MAX_BYTES", 2_000)
    sent, read = oversized([*JSON_HEADERS, (b"content-length", b"400000")], chunks=1000)
    assert read <= 10  # 400-byte chunks: the limit crossed, then at most the discard bound
    assert sent[0]["status"] == 413


def test_a_chunked_body_is_refused_on_the_chunk_that_crosses_the_limit_and_counted():
    before = REJECTIONS.labels("<body>", "body_too_large")._value.get()
    handler = endpoint_for(Pipeline(), max_body_bytes=1_000)
    chunks = [b'{"applications":[' + b" " * 400] * 10
    status, headers, payload = call(handler, chunks)
    assert status == 413
    assert headers[b"connection"] == b"close"
    error = ErrorResponse.model_validate_json(payload)
    assert [(d.type, d.loc) for d in error.detail] == [("body_too_large", [])]
    assert REJECTIONS.labels("<body>", "body_too_large")._value.get() == before + 1
    assert handler.in_flight == 0


def test_a_body_the_contract_should_never_read_is_answered_before_validation_and_counted(
    make_record,
):
    before = REJECTIONS.labels("age", "duplicate_key")._value.get()
    pipeline = Pipeline()
    raw = body([make_record()]).replace(b'"age": 30', b'"age": 30, "age": 17')
    status, _, payload = call(endpoint_for(pipeline), raw)
    assert status == 400
    error = ErrorResponse.model_validate_json(payload)
    assert error.detail[0].loc == ["applications", 0, "age"]
    assert REJECTIONS.labels("age", "duplicate_key")._value.get() == before + 1
    assert pipeline.calls == []


def test_validation_failures_are_counted_by_field_and_type(make_record):
    before = REJECTIONS.labels("age", "greater_than_equal")._value.get()
    call(endpoint_for(Pipeline()), body([make_record(age=3)]))
    assert REJECTIONS.labels("age", "greater_than_equal")._value.get() == before + 1


def test_a_client_gone_mid_body_ends_quietly():
    handler = endpoint_for(Pipeline())
    events = [{"type": "http.request", "body": b'{"applications":', "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": JSON_HEADERS}
    asyncio.run(handler(scope, receive, send))
    assert sent == []
    assert handler.in_flight == 0


def test_requests_beyond_the_in_flight_bound_are_shed_with_retry_after(make_record):
    release = asyncio.Event()
    statuses: list[int] = []

    class SlowPipeline(Pipeline):
        async def answer(self, applications, explain):
            await release.wait()
            return await super().answer(applications, explain)

    handler = endpoint_for(SlowPipeline(), max_in_flight=2)
    request = body([make_record()])
    scope = {"type": "http", "method": "POST", "path": "/score", "headers": JSON_HEADERS}

    async def one() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": request}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                if message["status"] == 503:
                    assert dict(message["headers"])[b"retry-after"] == b"1"

        await handler(scope, receive, send)

    async def scenario() -> None:
        tasks = [asyncio.create_task(one()) for _ in range(3)]
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*tasks)
        assert handler.in_flight == 0
        await one()  # capacity is back once the first two finished

    asyncio.run(scenario())
    assert sorted(statuses) == [200, 200, 200, 503]


def test_the_openapi_document_is_converted_documented_and_built_once():
    built = []

    def document() -> dict[str, Any]:
        built.append(True)
        return json.loads(json.dumps(DOCUMENT))

    handler = ScoreHandler(passed_through, Input, Pipeline, document, max_in_flight=1)
    first = call(handler, b"", method="GET", path="/docs.json")
    second = call(handler, b"", method="GET", path="/docs.json")
    assert first == second
    status, headers, payload = first
    served = json.loads(payload)
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert served["openapi"] == "3.0.3"
    assert set(served["paths"]["/score"]["post"]["responses"]) >= {"400", "413", "415", "503"}
    assert built == [True]
