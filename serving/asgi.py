"""The ASGI types every handler here is written against (the API's and the runner's), the one
way they read a request body, the one way they write a response, and the guarantee that every
request is answered (``answered``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from serving.log_summary import RepeatedWarnings

log = logging.getLogger(__name__)
# A request left unanswered is told once with its traceback, then one line per interval with
# a count: while a dependency is away every readiness probe fails the same way.
TOLD: set[str] = set()
TOLD_MAX = 256  # distinct reasons remembered (paths come from clients): then forgotten, retold
UNANSWERED_AGAIN = RepeatedWarnings(log)

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
    ``BodyTooLargeError`` on the chunk that crosses the limit, without reading further.

    After None the caller returns without answering, which is right: uvicorn hands the app
    ``http.disconnect`` before the response only once the connection is lost
    (``RequestResponseCycle.receive``), drops anything sent after it, and does not log an
    unanswered request whose client is gone."""
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


UNANSWERED = error_json("the request failed before it was answered, see the server log")


async def answered(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``app`` on one HTTP request, which ends answered or with its client gone.

    Why: BentoML's ``TimeoutMiddleware`` (``traffic.timeout``, outside every user middleware)
    runs the request in a task of its own and waits only for the first message sent or its
    timeout. A request that raised before answering, or returned without a word, was held for
    the whole timeout (15 s on the API), then returned unanswered with its error unseen:
    uvicorn logged "ASGI callable returned without starting response." at ERROR and sent a
    bare 500 (upstream: bentoml/BentoML PR #5670, open). BentoML's own ``/readyz`` does
    raise: its probe of the runner lets a refused connection, or a runner slower than 5 s to
    answer (aiohttp's ``TimeoutError``), escape. Here such a request is answered 500 at once
    and the error logged (the first time with its traceback, then one line per interval).
    An error after the response started is raised as before (the response can no longer be
    changed), and so is the cancellation of the request itself (BentoML's timeout, which
    answers 504). A client that went away gets no answer and no ERROR: nothing can reach it,
    and uvicorn does not log its unanswered request either."""
    started = False
    gone = False

    async def watched_receive() -> Message:
        nonlocal gone
        message = await receive()
        gone = gone or message["type"] == "http.disconnect"
        return message

    async def watched_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    error: BaseException | None = None
    try:
        await app(scope, watched_receive, watched_send)
    except asyncio.CancelledError as cancelled:
        task = asyncio.current_task()
        if started or (task is not None and task.cancelling()):
            raise  # the request itself was cancelled
        error = cancelled  # an inner future's cancellation, not the request's
    except Exception as raised:
        if started:
            raise
        error = raised
    if started:
        return
    request = f"{scope.get('method')} {scope.get('path')}"
    failure = "returned" if error is None else f"raised {type(error).__name__}"
    if gone:
        log.debug("%s %s before answering, its client gone", request, failure, exc_info=error)
        return
    reason = f"{request} {failure} before answering: answered 500"
    if reason in TOLD:
        UNANSWERED_AGAIN.warning(reason)
    else:
        if len(TOLD) >= TOLD_MAX:
            TOLD.clear()
        TOLD.add(reason)
        log.error("%s", reason, exc_info=error)
    await respond(send, 500, UNANSWERED, [(b"connection", b"close")])
