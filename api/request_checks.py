"""What ``POST /score`` refuses before the contract's validation reads a body, in the error
shape of validation errors (``credit_risk.contract.ErrorResponse``):

- a body not declared JSON (415);
- a body over 1 MiB, whether declared (``Content-Length``) or counted while a chunked body
  arrives (413);
- a body that is not UTF-8 or not JSON, nests deeper than the contract ever needs, repeats a
  key in an object, or holds an array longer than the contract allows (400 naming where).
  A repeated key is refused because parsers disagree on which copy wins: a proxy, an audit
  log and this service could each read a different applicant from the same bytes;
- more requests in flight than a worker admits (503 with ``Retry-After``).

Pure functions over headers, bytes and the parsed document: ``api/score_handler.py`` calls them
in order. The JSON checks walk the containers of the document the handler parsed once (with
pydantic's parser, the one validation uses); repeated keys are searched for only when the
parsed objects hold fewer keys than the text has ``:`` separators.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from pydantic_core import from_json

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST, ErrorDetail, ErrorResponse

MAX_BODY_BYTES = 1_048_576  # 256 applications of ~400 bytes fit with ample room
MAX_JSON_DEPTH = 8  # the contract needs 3: the body, its applications array, an application
MAX_ARRAY_ITEMS = MAX_APPLICATIONS_PER_REQUEST  # no array in the contract may be longer
_CONTAINERS = frozenset((dict, list))
_DICTS = frozenset((dict,))


@dataclass(frozen=True)
class Refusal:
    """A refused request: its status and what the client reads (the reason, and where)."""

    status: int
    reason: str
    detail: tuple[ErrorDetail, ...] = ()

    def body(self) -> bytes:
        return ErrorResponse(error=self.reason, detail=list(self.detail)).model_dump_json().encode()


def refusal(status: int, loc: list[str | int], reason: str, kind: str) -> Refusal:
    return Refusal(status, reason, (ErrorDetail(loc=loc, msg=reason, type=kind),))


OVERLOADED = Refusal(503, "overloaded, retry later")


def too_large(max_body_bytes: int, loc: list[str | int]) -> Refusal:
    return refusal(413, loc, f"body larger than {max_body_bytes} bytes", "body_too_large")


def check_headers(headers: dict[bytes, bytes], max_body_bytes: int) -> Refusal | None:
    """The refusal for these request headers, or None when they are acceptable."""
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if media_type != b"application/json":
        return refusal(
            415,
            ["header", "content-type"],
            "content-type must be application/json",
            "unsupported_media_type",
        )
    length = headers.get(b"content-length")
    # digits only, and few enough for int() (which refuses over 4,300 of them)
    if length is not None and (
        not length.isdigit() or len(length) > 18 or int(length) > max_body_bytes
    ):
        return too_large(max_body_bytes, ["header", "content-length"])
    return None


class RefusalError(Exception):
    """A problem found inside the body; ``loc`` is filled in as the search unwinds, so the
    path is built only when there is something to report."""

    def __init__(self, reason: str, kind: str, loc: list[str | int] | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.loc = loc or []


def parse_body(
    body: bytes, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_ARRAY_ITEMS
) -> tuple[Any, Refusal | None]:
    """The body parsed once (pydantic's parser, the one validation uses), and the 400 to answer
    when the contract's validation should not read it (then the document is None)."""
    try:
        document = from_json(body)
    except ValueError as error:
        return None, unparsable(body, error, max_depth)
    refused = check_json(document, body, max_depth, max_items)
    return (None, refused) if refused else (document, None)


def check_json(
    document: Any, body: bytes, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_ARRAY_ITEMS
) -> Refusal | None:
    """The 400 for a parsed ``document`` (from ``body``), or None when the contract's
    validation may read it."""
    try:
        pairs = (
            count_pairs(document, 1, max_depth, max_items) if type(document) in _CONTAINERS else 0
        )
        if pairs != body.count(b":"):  # a repeated key, or a ':' inside a string
            find_repeated_key(body)
    except RefusalError as error:
        return refusal(400, error.loc, str(error), error.kind)
    return None


def unparsable(body: bytes, error: ValueError, max_depth: int = MAX_JSON_DEPTH) -> Refusal:
    """The 400 for a body the parser refused, naming the cause a client can fix."""
    try:
        body.decode()
    except UnicodeDecodeError as bad:
        return refusal(400, [], f"body is not valid UTF-8 (byte {bad.start})", "utf8_invalid")
    if "recursion limit" in str(error):  # the parser's own bound (200 levels)
        return refusal(400, [], f"JSON nested deeper than {max_depth} levels", "too_deep")
    return refusal(400, [], f"Invalid JSON: {error}", "json_invalid")


def count_pairs(
    node: dict[str, Any] | list[Any], depth: int, max_depth: int, max_items: int
) -> int:
    """Keys in every object within ``node``; refuses a container nested deeper than
    ``max_depth`` or an array longer than ``max_items``."""
    if depth > max_depth:
        raise RefusalError(f"JSON nested deeper than {max_depth} levels", "too_deep")
    children: Iterable[Any]
    if isinstance(node, dict):
        pairs, children = len(node), node.values()
    elif len(node) > max_items:
        raise RefusalError(f"array of {len(node)} items, more than {max_items}", "too_long")
    elif depth < max_depth and flat_objects(node):
        return sum(map(len, node))  # a batch of applications, checked in one pass in C
    else:
        pairs, children = 0, node
    if _CONTAINERS.isdisjoint(map(type, children)):
        return pairs  # nothing inside to visit (the loop below is the cost)
    entries = node.items() if type(node) is dict else enumerate(node)
    for key, child in entries:
        if type(child) in _CONTAINERS:
            try:
                pairs += count_pairs(child, depth + 1, max_depth, max_items)
            except RefusalError as found:
                found.loc.insert(0, key)
                raise
    return pairs


def flat_objects(items: list[Any]) -> bool:
    """Whether every item is an object holding no object or array."""
    if not _DICTS.issuperset(map(type, items)):
        return False
    return _CONTAINERS.isdisjoint(map(type, chain.from_iterable(map(dict.values, items))))


class KeyValuePairs(list[tuple[str, Any]]):
    """An object as written, repeated keys kept (what ``dict`` would silently drop)."""


def find_repeated_key(body: bytes) -> None:
    """Refuse the first key an object repeats; pass when every extra ``:`` is inside a string."""
    try:
        document = json.loads(body.decode(), object_pairs_hook=KeyValuePairs)
    except ValueError:  # only pydantic's parser reads it (an integer past Python's digit limit)
        return
    raise_repeated_key(document)


def raise_repeated_key(node: Any) -> None:
    if isinstance(node, KeyValuePairs):
        seen: set[str] = set()
        for key, _ in node:
            if key in seen:
                raise RefusalError(
                    f"duplicate key {json.dumps(key)} in an object", "duplicate_key", [key]
                )
            seen.add(key)
        entries: Any = node
    elif isinstance(node, list):
        entries = enumerate(node)
    else:
        return
    for key, child in entries:
        try:
            raise_repeated_key(child)
        except RefusalError as found:
            found.loc.insert(0, key)
            raise
