"""An ASGI guard in front of the scoring routes: it refuses what the contract's validation
should never have to read, before BentoML spends any work on it, in the error shape of
validation errors (``credit_risk.contract.ErrorResponse``):

- a body not declared JSON (415);
- a body over 1 MiB, whether declared (``Content-Length``) or counted while a chunked body
  arrives (413 as soon as the limit is crossed; the connection is closed, not read to its end);
- a body that is not UTF-8 or not JSON, nests deeper than the contract ever needs, repeats a
  key in an object, or holds an array longer than the contract allows (400 naming where).
  A repeated key is refused because parsers disagree on which copy wins: a proxy, an audit
  log and this service could each read a different applicant from the same bytes.

It also bounds the requests in flight per worker and gives every shed request (503) a
``Retry-After``, so clients back off instead of hammering an overloaded server. (BentoML's own
``traffic.max_concurrency`` answers 429 without one, from outside any user middleware, so the
limit lives here instead.)

The JSON checks cost one parse by pydantic's parser (the one that reads the body next, so both
accept the same texts) and a walk over the containers only; repeated keys are searched for
only when the parsed objects hold fewer keys than the text has ``:`` separators.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from pydantic_core import from_json

from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST, ErrorDetail, ErrorResponse
from runner.asgi import ASGIApp, BodyTooLargeError, Message, Receive, Scope, Send, read_body

Problem = tuple[int, bytes]  # status and JSON body of a refusal

MAX_BODY_BYTES = 1_048_576  # 256 applications of ~400 bytes fit with ample room
MAX_JSON_DEPTH = 8  # the contract needs 3: the body, its applications array, an application
MAX_ARRAY_ITEMS = MAX_APPLICATIONS_PER_REQUEST  # no array in the contract may be longer
RETRY_AFTER_S = b"1"
_CONTAINERS = frozenset((dict, list))
_DICTS = frozenset((dict,))


def error_body(status: int, loc: list[str | int], reason: str, kind: str) -> Problem:
    detail = [ErrorDetail(loc=loc, msg=reason, type=kind)]
    return status, ErrorResponse(error=reason, detail=detail).model_dump_json().encode()


OVERLOADED: Problem = (
    503,
    ErrorResponse(error="overloaded, retry later", detail=[]).model_dump_json().encode(),
)


def too_large(max_body_bytes: int, loc: list[str | int]) -> Problem:
    return error_body(413, loc, f"body larger than {max_body_bytes} bytes", "body_too_large")


def check_headers(headers: dict[bytes, bytes], max_body_bytes: int) -> Problem | None:
    """The error to answer for these request headers, or None when they are acceptable."""
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if media_type != b"application/json":
        return error_body(
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


def check_json(
    body: bytes, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_ARRAY_ITEMS
) -> Problem | None:
    """The 400 to answer for this body, or None when the contract's validation may read it."""
    try:
        document = from_json(body)
    except ValueError as error:
        return error_body(400, [], *unparsable(body, error, max_depth))
    try:
        pairs = (
            count_pairs(document, 1, max_depth, max_items) if type(document) in _CONTAINERS else 0
        )
        if pairs != body.count(b":"):  # a repeated key, or a ':' inside a string
            find_repeated_key(body)
    except RefusalError as refusal:
        return error_body(400, refusal.loc, str(refusal), refusal.kind)
    return None


def unparsable(body: bytes, error: ValueError, max_depth: int) -> tuple[str, str]:
    """Reason and type for a body the parser refused, naming the cause a client can fix."""
    try:
        body.decode()
    except UnicodeDecodeError as bad:
        return f"body is not valid UTF-8 (byte {bad.start})", "utf8_invalid"
    if "recursion limit" in str(error):  # the parser's own bound (200 levels)
        return f"JSON nested deeper than {max_depth} levels", "too_deep"
    return f"Invalid JSON: {error}", "json_invalid"


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
            except RefusalError as refusal:
                refusal.loc.insert(0, key)
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
        except RefusalError as refusal:
            refusal.loc.insert(0, key)
            raise


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body read here, then the client's later events."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replaying() -> Message:
        return pending.pop() if pending else await receive()

    return replaying


class RequestGuard:
    """Applies the checks above and the in-flight bound to POSTs on ``paths``; everything else
    (health, metrics, lineage, the OpenAPI document) passes untouched, so probes still answer
    under overload."""

    def __init__(
        self,
        app: ASGIApp,
        paths: tuple[str, ...],
        max_in_flight: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        on_rejected: Callable[[bytes], None] | None = None,
        max_json_depth: int = MAX_JSON_DEPTH,
        max_array_items: int = MAX_ARRAY_ITEMS,
    ):
        self.app = app
        self.paths = frozenset(paths)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.max_body_bytes = max_body_bytes
        self.on_rejected = on_rejected
        self.max_json_depth = max_json_depth
        self.max_array_items = max_array_items

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        problem = check_headers(dict(scope["headers"]), self.max_body_bytes)
        if problem is None and self.max_in_flight and self.in_flight >= self.max_in_flight:
            problem = OVERLOADED
        if problem is not None:
            await self.refuse(send, problem)
            return
        self.in_flight += 1  # from the first byte read: a slow upload holds memory too
        try:
            await self.admit(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read and check the body, then hand it to the app."""
        try:
            body = await read_body(receive, self.max_body_bytes)
        except BodyTooLargeError:
            await self.refuse(send, too_large(self.max_body_bytes, []))
            return
        if body is None:
            return
        problem = check_json(body, self.max_json_depth, self.max_array_items)
        if problem is not None:
            await self.refuse(send, problem)
            return
        await self.app(scope, replay(body, receive), self._watch_responses(send, self.on_rejected))

    async def refuse(self, send: Send, problem: Problem) -> None:
        status, body = problem
        headers = [(b"content-type", b"application/json")]
        if status == 503:
            headers.append((b"retry-after", RETRY_AFTER_S))
        if status == 413:  # the rest of the body is never read: end the connection with it
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if self.on_rejected is not None:
            self.on_rejected(body)

    @staticmethod
    def _watch_responses(send: Send, on_rejected: Callable[[bytes], None] | None) -> Send:
        """Add ``Retry-After`` to a 503; hand the body of a 4xx answer to ``on_rejected``."""
        status = 0
        chunks: list[bytes] = []

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if status == 503 and not any(k.lower() == b"retry-after" for k, _ in headers):
                    message = {**message, "headers": [*headers, (b"retry-after", RETRY_AFTER_S)]}
            elif (
                on_rejected is not None
                and message["type"] == "http.response.body"
                and 400 <= status < 500
            ):
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    on_rejected(b"".join(chunks))
            await send(message)

        return watching
