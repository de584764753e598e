"""The ASGI types every middleware here is written against (the API's and the runner's), and
the one way they read a request body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLargeError(Exception):
    """The body crossed the size limit while it arrived."""


async def read_body(receive: Receive, max_body_bytes: int) -> bytes | None:
    """The whole request body, or None when the client went away first; raises
    ``BodyTooLargeError`` on the chunk that crosses the limit, without reading further."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body_bytes:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
