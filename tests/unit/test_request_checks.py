"""What POST /score refuses before validation, as pure checks: 415/413 from the headers,
400 in the documented error shape for bodies the contract's validation should never read (not
UTF-8, not JSON, too deep, repeated keys, arrays too long), naming where. The handler that
applies them in order is tested in test_score_handler.py."""

from __future__ import annotations

import json

import pytest

from api.request_checks import MAX_ARRAY_ITEMS, MAX_JSON_DEPTH, check_headers, parse_body
from credit_risk.contract import ErrorResponse


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
    refusal = check_headers(headers, max_body_bytes=1_048_576)
    assert (refusal.status if refusal else None) == status
    if refusal:
        body = json.loads(refusal.body())
        assert body["detail"][0]["loc"][0] == "header"


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
    document, refusal = parse_body(body)
    assert refusal is None
    assert document is not None or body == b"null"


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
    document, refusal = parse_body(body)
    assert document is None
    assert refusal is not None
    assert refusal.status == 400
    error = ErrorResponse.model_validate_json(refusal.body())
    assert [(d.type, d.loc) for d in error.detail] == [(kind, loc)]
    assert error.error == error.detail[0].msg


def test_depth_and_array_bounds_are_the_documented_ones():
    assert MAX_JSON_DEPTH == 8
    assert MAX_ARRAY_ITEMS == 256
