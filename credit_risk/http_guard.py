"""An ASGI guard in front of the scoring routes: refuse a body that is not declared JSON (415)
or is larger than the contract allows (413), with the same error shape as validation errors,
before BentoML spends any work on it."""

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


class JSONBodyGuard:
    """Applies ``check_headers`` to POSTs on ``paths``; everything else passes untouched."""

    def __init__(
        self,
        app: ASGIApp,
        paths: tuple[str, ...],
        max_body_bytes: int = MAX_BODY_BYTES,
        on_rejected: Callable[[bytes], None] | None = None,
    ):
        self.app = app
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self.on_rejected = on_rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            problem = check_headers(dict(scope["headers"]), self.max_body_bytes)
            if problem is not None:
                status, body = problem
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                if self.on_rejected is not None:
                    self.on_rejected(body)
                return
            if self.on_rejected is not None:
                send = self._watch_rejections(send, self.on_rejected)
        await self.app(scope, receive, send)

    @staticmethod
    def _watch_rejections(send: Send, on_rejected: Callable[[bytes], None]) -> Send:
        """Pass messages through; hand the body of a 4xx answer to ``on_rejected``."""
        status = 0
        chunks: list[bytes] = []

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and 400 <= status < 500:
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    on_rejected(b"".join(chunks))
            await send(message)

        return watching
