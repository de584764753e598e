"""An ASGI guard in front of the scoring routes: refuse a body that is not declared JSON (415)
or is larger than the contract allows (413), with the same error shape as validation errors,
before BentoML spends any work on it; bound the requests in flight per worker; and give every
shed request (503) a ``Retry-After``, so clients back off instead of hammering an overloaded
server. (BentoML's own ``traffic.max_concurrency`` answers 429 without one, from outside any
user middleware, so the limit lives here instead.)"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1_048_576  # 256 applications of ~400 bytes fit with ample room
RETRY_AFTER_S = b"1"


def error_body(status: int, field: str, reason: str) -> tuple[int, bytes]:
    payload = {"error": reason, "detail": [{"loc": ["header", field], "msg": reason}]}
    return status, json.dumps(payload).encode()


def check_headers(headers: dict[bytes, bytes], max_body_bytes: int) -> tuple[int, bytes] | None:
    """The error to answer for these request headers, or None when they are acceptable."""
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if media_type != b"application/json":
        return error_body(415, "content-type", "content-type must be application/json")
    length = headers.get(b"content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
        return error_body(413, "content-length", f"body larger than {max_body_bytes} bytes")
    return None


class RequestGuard:
    """Applies ``check_headers`` and the in-flight bound to POSTs on ``paths``; everything else
    (health, metrics, lineage) passes untouched, so probes still answer under overload."""

    def __init__(
        self,
        app: ASGIApp,
        paths: tuple[str, ...],
        max_in_flight: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        on_rejected: Callable[[bytes], None] | None = None,
    ):
        self.app = app
        self.paths = frozenset(paths)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.max_body_bytes = max_body_bytes
        self.on_rejected = on_rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            problem = check_headers(dict(scope["headers"]), self.max_body_bytes)
            if problem is None and self.max_in_flight and self.in_flight >= self.max_in_flight:
                problem = (
                    503,
                    json.dumps({"error": "overloaded, retry later", "detail": []}).encode(),
                )
            if problem is not None:
                status, body = problem
                headers = [(b"content-type", b"application/json")]
                if status == 503:
                    headers.append((b"retry-after", RETRY_AFTER_S))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                if self.on_rejected is not None:
                    self.on_rejected(body)
                return
            self.in_flight += 1
            try:
                await self.app(scope, receive, self._watch_responses(send, self.on_rejected))
            finally:
                self.in_flight -= 1
            return
        await self.app(scope, receive, send)

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
