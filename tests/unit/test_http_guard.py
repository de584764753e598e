"""The JSON body guard answers 415/413 in the validation error shape and passes the rest."""

from __future__ import annotations

import asyncio
import json

import pytest

from credit_risk.http_guard import JSONBodyGuard, check_headers


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
    asyncio.run(JSONBodyGuard(app, paths=("/score",))(scope, receive, send))
    return sent, bool(reached)


def test_guard_refuses_wrong_media_type_on_guarded_route():
    sent, reached = run_guard("POST", "/score", b"text/plain")
    assert not reached
    assert sent[0]["status"] == 415


def test_guard_passes_other_routes_and_methods():
    assert run_guard("POST", "/other", b"text/plain")[1]
    assert run_guard("GET", "/score", b"text/plain")[1]
    assert run_guard("POST", "/score", b"application/json")[1]
