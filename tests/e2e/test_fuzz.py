"""Bad input against the served Bento: schemathesis generates valid and invalid requests for
``POST /score`` from the OpenAPI document the server publishes, as served; then the bodies a
schema fuzzer never sends (chunked past the size limit, invalid UTF-8, deep nesting, repeated
keys, huge arrays of small items) go over raw HTTP. No 5xx, every refusal a 4xx in the
documented error shape naming where, and the server still answers afterwards."""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import multiprocessing
import select
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_30

from credit_risk.contract import ErrorResponse

# Cases per mode, each run in WORKERS processes side by side: 10,000 in all. Generation, not
# the server, is the bottleneck (about 22 ms of client CPU per case, mostly hypothesis).
WORKERS = 2
CASES_PER_WORKER = {GenerationMode.POSITIVE.value: 1_000, GenerationMode.NEGATIVE.value: 4_000}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,  # a 4xx body against the documented ErrorResponse
]


def schema_valid_but_refused(response: requests.Response) -> str | None:
    """A schema-valid request must be scored; the one rule a JSON Schema cannot state
    (seniority at most age) may refuse it, and only that rule."""
    if response.status_code == 200:
        return None
    detail = response.json().get("detail", []) if response.status_code == 400 else []
    if detail and all("seniority" in error["msg"] for error in detail):
        return None
    return f"schema-valid request refused: {response.status_code} {response.text[:300]}"


def fuzz(url: str, mode: str, cases: int) -> tuple[collections.Counter[str], list[str]]:
    """Run ``cases`` generated requests of one mode; statuses seen, and the failures."""
    operation = schemathesis.openapi.from_url(f"{url}/docs.json")["/score"]["POST"]
    generation = GenerationMode(mode)
    checks = [*CHECKS, negative_data_rejection] if generation is GenerationMode.NEGATIVE else CHECKS
    session = requests.Session()
    statuses: collections.Counter[str] = collections.Counter()
    failures: list[str] = []

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation))
    def one(case: schemathesis.Case) -> None:
        try:
            response = case.call(session=session, base_url=url)
        except requests.RequestException as error:  # a dropped connection: the worst answer
            failures.append(f"{mode}: no answer: {error!r}\n{case.as_curl_command()}")
            return
        statuses[str(response.status_code)] += 1
        problems = []
        try:
            case.validate_response(response, checks=checks)
        except (AssertionError, FailureGroup) as error:  # keep going: report them all
            problems.append(str(error)[:1500])
        if 400 <= response.status_code < 500:
            try:
                ErrorResponse.model_validate_json(response.content)
            except ValueError as error:
                problems.append(f"4xx body not in the error shape: {error}")
        if generation is GenerationMode.POSITIVE and (
            refused := schema_valid_but_refused(response)
        ):
            problems.append(refused)
        failures.extend(f"{mode}: {problem}\n{case.as_curl_command()}" for problem in problems)

    one()
    return statuses, failures


def test_served_document_is_valid_openapi_30(server):
    document = requests.get(f"{server.url}/docs.json", timeout=10).json()
    jsonschema.Draft4Validator(OPENAPI_30).validate(document)
    operation = document["paths"]["/score"]["post"]
    assert operation["requestBody"]["required"] is True
    assert {"200", "400", "413", "415", "503"} <= set(operation["responses"])


def test_ten_thousand_generated_requests_no_5xx_every_refusal_in_the_error_shape(server):
    jobs = [(server.url, mode, n) for mode, n in CASES_PER_WORKER.items()] * WORKERS
    started = time.monotonic()
    # fork: the workers need only this module's function, not a fresh interpreter's imports
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(fuzz, *zip(*jobs, strict=True)))
    statuses = sum((counts for counts, _ in results), collections.Counter())
    failures = [failure for _, found in results for failure in found]
    print(f"{sum(statuses.values())} cases in {time.monotonic() - started:.0f} s: {statuses}")
    assert sum(statuses.values()) >= 10_000
    assert not failures, f"{len(failures)} failures, first ones:\n" + "\n\n".join(failures[:5])
    assert not any(status.startswith("5") for status in statuses)
    positive, negative = (n * WORKERS for n in CASES_PER_WORKER.values())
    assert statuses["200"] > positive // 4  # scored (about half break seniority <= age)
    assert sum(n for status, n in statuses.items() if status.startswith("4")) >= negative


def raw_post(server, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` exactly as given, with its Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/score", body, {"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def chunked_post(server, chunks: Iterable[bytes]) -> tuple[int, dict[str, str], bytes, int]:
    """POST ``chunks`` with chunked transfer encoding (no Content-Length), as a client that
    stops sending once the server has answered; also returns the bytes it sent."""
    head = (
        "POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    )
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered early
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed while we were sending: read its answer
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read(), sent


def refusal(status: int, body: bytes) -> dict:
    assert 400 <= status < 500, body[:300]
    return ErrorResponse.model_validate_json(body).detail[0].model_dump()


def applications(*items: bytes) -> bytes:
    return b'{"applications":[' + b",".join(items) + b"]}"


def record(make_record, extra: bytes = b"") -> bytes:
    """A valid application as JSON text, with ``extra`` spliced in as its last members."""
    text = json.dumps(make_record()).encode()
    return text[:-1] + extra + b"}" if extra else text


def test_chunked_body_is_scored_under_the_limit_and_refused_once_past_it(server, make_record):
    body = applications(*[record(make_record)] * 3)
    status, _, answer, _ = chunked_post(
        server, [body[i : i + 100] for i in range(0, len(body), 100)]
    )
    assert status == 200, answer[:300]
    endless = itertools.chain([b'{"applications":['], itertools.repeat(b" " * 65_536, 800))
    status, headers, answer, sent = chunked_post(server, endless)  # 50 MiB offered
    assert status == 413
    assert refusal(status, answer)["type"] == "body_too_large"
    assert headers.get("connection") == "close"
    # answered once past 1 MiB and the 8 MiB read and dropped so that a client that writes
    # before it reads sees the answer (api/score_handler.py), not after all 50 MiB
    assert sent < 20 * 2**20
    status, _, answer = raw_post(server, applications(record(make_record)))
    assert status == 200, answer[:300]  # and the server is still healthy


HAND_MADE = [
    # (name, body from make_record, type, loc)
    (
        "invalid_utf8",
        lambda r: applications(record(r, b',"request_id":"\xc3\x28"')),
        "utf8_invalid",
        [],
    ),
    (
        "overlong_utf8",
        lambda r: applications(record(r, b',"request_id":"\xc0\xaf"')),
        "utf8_invalid",
        [],
    ),
    (
        "utf8_surrogate",
        lambda r: applications(record(r, b',"request_id":"\xed\xa0\x80"')),
        "utf8_invalid",
        [],
    ),
    ("stray_byte", lambda r: b"\xff" + applications(record(r)), "utf8_invalid", []),
    ("deep_nesting", lambda r: b"[" * 100_000 + b"]" * 100_000, "too_deep", []),
    (
        "nesting_in_a_field",
        lambda r: applications(record(r, b',"income":' + b"[" * 9 + b"]" * 9)),
        "too_deep",
        ["applications", 0, "income", 0, 0, 0, 0, 0],
    ),
    (
        "duplicate_key",
        lambda r: applications(record(r), record(r, b',"age":17')),
        "duplicate_key",
        ["applications", 1, "age"],
    ),
    (
        "duplicate_top_key",
        lambda r: applications(record(r))[:-1] + b',"applications":[]}',
        "duplicate_key",
        ["applications"],
    ),
    ("huge_array", lambda r: applications(*[b"1"] * 500_000), "too_long", ["applications"]),
    (
        "huge_array_in_a_field",
        lambda r: applications(record(r, b',"request_id":[' + b",".join([b"0"] * 400_000) + b"]")),
        "too_long",
        ["applications", 0, "request_id"],
    ),
]


@pytest.mark.parametrize(("name", "build", "kind", "loc"), HAND_MADE, ids=[h[0] for h in HAND_MADE])
def test_what_a_schema_fuzzer_never_sends_is_refused_naming_where(
    server, make_record, name, build, kind, loc
):
    status, _, body = raw_post(server, build(make_record))
    assert status == 400
    detail = refusal(status, body)
    assert (detail["type"], detail["loc"]) == (kind, loc)
    assert detail["msg"]
