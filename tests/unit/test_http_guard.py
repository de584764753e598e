"""The JSON body guard answers 415/413 in the validation error shape and passes the rest."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.guard import RequestGuard, check_headers

SCORE_SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/score",
    "headers": [(b"content-type", b"application/json")],
}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({b"content-type": b"application/json"}, None),
        ({b"content-type": b"Application/JSON; charset=utf-8"}, None),
        ({b"content-type": b"text/plain"}, 415),
        ({b"content-type": b"application/x-www-form-urlencoded"}, 415),
        ({}, 415),
        ({b"content-type": b"application/json", b"content-length": b"2000000"}, 413),
        ({b"content-type": b"application/json", b"content-length": b"-1"}, 413),
    ],
)
def test_check_headers(headers, status):
    problem = check_headers(headers, max_body_bytes=1_048_576)
    assert (problem[0] if problem else None) == status
    if problem:
        body = json.loads(problem[1])
        assert body["detail"][0]["loc"][0] == "header"


def run_guard(method: str, path: str, content_type: bytes) -> tuple[list[dict], bool]:
    sent: list[dict] = []
    reached = []

    async def app(scope, receive, send):
        reached.append(True)

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-type", content_type)],
    }
    asyncio.run(RequestGuard(app, paths=("/score",))(scope, receive, send))
    return sent, bool(reached)


def test_guard_refuses_wrong_media_type_on_guarded_route():
    sent, reached = run_guard("POST", "/score", b"text/plain")
    assert not reached
    assert sent[0]["status"] == 415


def test_guard_passes_other_routes_and_methods():
    assert run_guard("POST", "/other", b"text/plain")[1]
    assert run_guard("GET", "/score", b"text/plain")[1]
    assert run_guard("POST", "/score", b"application/json")[1]


def answer_with(status: int, headers: list) -> list[dict]:
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(RequestGuard(app, paths=("/score",))(SCORE_SCOPE, receive, send))
    return sent


def test_shed_requests_get_retry_after():
    headers = dict(answer_with(503, [])[0]["headers"])
    assert headers[b"retry-after"] == b"1"
    kept = dict(answer_with(503, [(b"retry-after", b"5")])[0]["headers"])
    assert kept[b"retry-after"] == b"5"
    assert b"retry-after" not in dict(answer_with(200, [])[0]["headers"])


def test_requests_beyond_the_in_flight_bound_are_shed_with_retry_after():
    release = asyncio.Event()
    statuses: list[int] = []

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = RequestGuard(slow_app, paths=("/score",), max_in_flight=2)
    scope = SCORE_SCOPE

    async def receive():
        return {"type": "http.request", "body": b""}

    async def one() -> None:
        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                if message["status"] == 503:
                    assert dict(message["headers"])[b"retry-after"] == b"1"

        await guard(scope, receive, send)

    async def scenario() -> None:
        tasks = [asyncio.create_task(one()) for _ in range(3)]
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*tasks)
        assert guard.in_flight == 0
        await one()  # capacity is back once the first two finished

    asyncio.run(scenario())
    assert sorted(statuses) == [200, 200, 200, 503]
