"""The ASGI types every handler here is written against (the API's and the runner's), the one
way they read a request body, and the one way they write a response."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]

JSON = b"application/json"


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


async def discard_body(receive: Receive, max_bytes: int, max_s: float) -> None:
    """Read and drop what is left of a request body, at most ``max_bytes`` and ``max_s``.

    Why: a server that answers an oversized upload and closes while the client is still
    sending makes the client's next write fail with "Connection reset by peer", and clients
    that write the whole body before reading (Python's urllib and requests, among many) never
    see the answer. Reading the rest first lets them finish writing and read it. (The ASGI
    server hands the app no more of the body once the response is complete, so this comes
    before the answer, not after.)"""
    size = 0
    try:
        async with asyncio.timeout(max_s):
            while size <= max_bytes:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


async def respond(
    send: Send, status: int, body: bytes, headers: Headers = (), content_type: bytes = JSON
) -> None:
    """A whole response in two messages, with its type and length."""
    start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    start.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def error_json(reason: str, detail: list[Any] | None = None) -> bytes:
    """The error shape every refusal here shares (``credit_risk.contract.ErrorResponse``)."""
    return json.dumps({"error": reason, "detail": detail or []}, separators=(",", ":")).encode()
