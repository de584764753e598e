"""The request guard, called as an ASGI app: 415/413/400/503 in the documented error shape for
what the contract's validation should never read (wrong media type, a body over the limit
declared or chunked, not UTF-8, too deep, repeated keys, arrays too long), the rest passed on
with its body intact."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.guard import MAX_ARRAY_ITEMS, MAX_JSON_DEPTH, RequestGuard, check_headers, check_json
from credit_risk.contract import ErrorResponse

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
        ({b"content-type": b"application/json", b"content-length": b"9" * 5000}, 413),
        ({b"content-type": b"application/json", b"content-length": b"0" * 30 + b"1"}, 413),
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
        return {"type": "http.request", "body": b"{}"}

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
        return {"type": "http.request", "body": b"{}"}

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
        return {"type": "http.request", "body": b"{}"}

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


APPLICATION = (
    b'{"request_id":"loan:42","seniority":9,"home":"rent","time":60,"age":30,"marital":null,'
    b'"records":"no","job":"freelance","expenses":73,"income":129.0,"amount":800,"price":846}'
)


def applications(*items: bytes) -> bytes:
    return b'{"applications":[' + b",".join(items) + b'],"explain":false}'


def with_members(extra: bytes) -> bytes:
    return APPLICATION[:-1] + extra + b"}"


@pytest.mark.parametrize(
    "body",
    [
        applications(APPLICATION),
        applications(*[APPLICATION] * MAX_ARRAY_ITEMS),  # the largest batch the contract allows
        b'{"applications":[{"request_id":"a:b:c","note":"{[\\"x\\":1]}"}]}',  # ':' in strings
        b'{"a":{"b":{"c":[[[[[1]]]]]}}}',  # exactly MAX_JSON_DEPTH (8) levels
        b"42",
        b'"a:b"',
        b'{"expenses":NaN,"price":1e400}',  # the contract names these fields, not the guard
    ],
    ids=["one", "largest_batch", "colons_in_strings", "max_depth", "scalar", "string", "nan"],
)
def test_bodies_for_the_contract_to_judge_pass(body):
    assert check_json(body) is None


BAD_BODIES = [
    # (name, body, type, loc)
    ("not_json", b"applications=1", "json_invalid", []),
    ("empty", b"", "json_invalid", []),
    ("truncated", applications(APPLICATION)[:-3], "json_invalid", []),
    ("invalid_utf8", applications(with_members(b',"job":"\xc3\x28"')), "utf8_invalid", []),
    ("overlong_utf8", b'{"a":"\xc0\xaf"}', "utf8_invalid", []),
    ("utf8_surrogate", b'{"a":"\xed\xa0\x80"}', "utf8_invalid", []),
    ("beyond_unicode", b'{"a":"\xf4\x90\x80\x80"}', "utf8_invalid", []),
    ("latin1", b'{"a":"caf\xe9"}', "utf8_invalid", []),
    ("utf16", '{"a":1}'.encode("utf-16"), "utf8_invalid", []),
    ("nine_levels", b"[" * 9 + b"]" * 9, "too_deep", [0] * 8),
    (
        "deep_in_a_field",
        applications(with_members(b',"x":{"y":[[[[[1]]]]]}')),
        "too_deep",
        ["applications", 0, "x", "y", 0, 0, 0, 0],
    ),
    ("past_the_parser_bound", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_deep", []),
    (
        "repeated_key",
        applications(with_members(b',"age":17')),
        "duplicate_key",
        ["applications", 0, "age"],
    ),
    (
        "repeated_key_later_item",
        applications(APPLICATION, APPLICATION, with_members(b',"home":null')),
        "duplicate_key",
        ["applications", 2, "home"],
    ),
    (
        "repeated_top_key",
        b'{"applications":[],"applications":[]}',
        "duplicate_key",
        ["applications"],
    ),
    ("repeated_key_with_colons", b'{"a:b":1,"x":{"c":"d:e","c":1}}', "duplicate_key", ["x", "c"]),
    (
        "too_many_applications",
        applications(*[b"{}"] * (MAX_ARRAY_ITEMS + 1)),
        "too_long",
        ["applications"],
    ),
    ("huge_array_of_small_items", applications(*[b"1"] * 500_000), "too_long", ["applications"]),
    (
        "huge_array_in_a_field",
        applications(with_members(b',"job":[' + b",".join([b"0"] * 300) + b"]")),
        "too_long",
        ["applications", 0, "job"],
    ),
    ("huge_top_array", b"[" + b",".join([b"0"] * 300) + b"]", "too_long", []),
]


@pytest.mark.parametrize(
    ("name", "body", "kind", "loc"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bodies_the_contract_should_never_read_get_400_naming_where(name, body, kind, loc):
    problem = check_json(body)
    assert problem is not None
    status, payload = problem
    assert status == 400
    error = ErrorResponse.model_validate_json(payload)
    assert [(d.type, d.loc) for d in error.detail] == [(kind, loc)]
    assert error.error == error.detail[0].msg


def test_depth_and_array_bounds_are_the_documented_ones():
    assert MAX_JSON_DEPTH == 8
    assert MAX_ARRAY_ITEMS == 256


class Client:
    """Feeds a guard the body in ``chunks`` as an ASGI server would, and records everything."""

    def __init__(self, chunks: list[bytes], disconnect_after: int | None = None) -> None:
        self.chunks = chunks
        self.disconnect_after = disconnect_after
        self.received = 0  # how many receive() calls the guard or app made
        self.sent: list[dict] = []
        self.app_bodies: list[bytes] = []
        self.app_events: list[str] = []
        self.rejected: list[bytes] = []

    async def receive(self) -> dict:
        self.received += 1
        index = self.received - 1
        if index >= len(self.chunks) or index == self.disconnect_after:
            return {"type": "http.disconnect"}
        more = index < len(self.chunks) - 1
        return {"type": "http.request", "body": self.chunks[index], "more_body": more}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    async def app(self, scope, receive, send) -> None:
        first = await receive()
        self.app_bodies.append(first["body"])
        assert first["more_body"] is False
        self.app_events.append((await receive())["type"])  # later events: the client's own
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def run(self, max_body_bytes: int = 1_000, headers=None) -> RequestGuard:
        guard = RequestGuard(
            self.app, ("/score",), max_body_bytes=max_body_bytes, on_rejected=self.rejected.append
        )
        scope = {**SCORE_SCOPE, "headers": headers or SCORE_SCOPE["headers"]}
        asyncio.run(guard(scope, self.receive, self.send))
        return guard

    @property
    def status(self) -> int | None:
        return self.sent[0]["status"] if self.sent else None


def test_chunked_body_reaches_the_app_whole_and_in_one_message():
    body = applications(APPLICATION)
    client = Client([body[i : i + 50] for i in range(0, len(body), 50)])
    client.run(max_body_bytes=len(body))
    assert client.status == 200
    assert client.app_bodies == [body]
    assert client.app_events == ["http.disconnect"]


def test_chunked_body_is_refused_on_the_chunk_that_crosses_the_limit():
    client = Client([b'{"applications":[' + b" " * 400] * 10)  # no Content-Length: chunked
    guard = client.run(max_body_bytes=1_000)
    assert client.status == 413
    assert client.received == 3  # 3 x 418 bytes crosses 1,000: nothing more is read
    assert not client.app_bodies
    assert (b"connection", b"close") in client.sent[0]["headers"]
    error = ErrorResponse.model_validate_json(client.sent[1]["body"])
    assert [(d.type, d.loc) for d in error.detail] == [("body_too_large", [])]
    assert client.rejected == [client.sent[1]["body"]]  # counted in the rejection metric
    assert guard.in_flight == 0


def test_declared_oversized_body_is_refused_before_reading_it():
    client = Client([b"{}"])
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1001")]
    client.run(max_body_bytes=1_000, headers=headers)
    assert client.status == 413
    assert client.received == 0
    assert (b"connection", b"close") in client.sent[0]["headers"]


def test_client_gone_mid_body_ends_quietly():
    client = Client([b'{"applications":', b"[]}"], disconnect_after=1)
    guard = client.run()
    assert not client.sent
    assert not client.app_bodies
    assert guard.in_flight == 0


def test_bad_json_is_answered_by_the_guard_and_counted():
    client = Client([applications(with_members(b',"age":17'))])
    client.run()
    assert client.status == 400
    assert not client.app_bodies
    error = ErrorResponse.model_validate_json(client.rejected[0])
    assert error.detail[0].loc == ["applications", 0, "age"]
