"""``POST /score`` as one handler with fixed steps, answered at the ASGI layer in front of
BentoML's route machinery; and ``GET /docs.json``, the OpenAPI document, built once.

The steps of ``/score``, each a call into its own place:

1. check the request line: content type and declared size (``api/request_checks.py``), then
   admission: at most ``max_in_flight`` requests per worker, the rest 503 + ``Retry-After``;
2. read the body once, bounded in size (an oversized one is read to its end, within bounds,
   and dropped before its 413, so a client that writes before it reads gets the answer);
3. parse it once (pydantic's JSON parser) and check its shape: depth, array lengths, keys
   repeated in an object (``api/request_checks.py``);
4. validate the parsed document with the input model BentoML generated from
   ``CreditRiskAPI.score`` (so the accepted requests and the 400s cannot drift from the OpenAPI
   document and BentoML's clients, which read that declaration);
5. answer: the scoring pipeline (``api/scoring.py``);
6. encode: the response model as JSON, or the refusal in ``ErrorResponse``'s shape.

Every refusal is counted where it is raised (``monitoring.metrics.observe_rejection``), and
every response is written by ``serving.asgi.respond``.

Why at the ASGI layer: BentoML's ``@bentoml.api`` route costs more per request than the whole
scoring pipeline (Starlette routing, a per-call context, IO-model dispatch, a response object
and background task per request; ``docs/performance.md`` has the profile). BentoML's own
middlewares (HTTP metrics, tracing, timeout) sit outside every user middleware, so ``/score``
keeps its request metrics and spans.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ValidationError

from api.openapi import document_refusals, openapi_30
from api.request_checks import (
    MAX_BODY_BYTES,
    OVERLOADED,
    Refusal,
    check_headers,
    parse_body,
    too_large,
)
from credit_risk.contract import Application, ScoreResponse
from monitoring.metrics import observe_rejection
from serving.asgi import (
    ASGIApp,
    BodyTooLargeError,
    Receive,
    Scope,
    Send,
    discard_body,
    read_body,
    respond,
)
from serving.log_summary import RepeatedWarnings

log = logging.getLogger(__name__)
# one line per interval and reason: under overload each shed request would write one
REFUSALS = RepeatedWarnings(log)

SCORE_PATH = "/score"
DOCUMENT_PATH = "/docs.json"
RETRY_LATER = [(b"retry-after", b"1")]
# An oversized body is read and dropped up to these bounds before its 413, so that a client
# that writes its whole body before reading sees the answer (serving.asgi.discard_body).
DISCARD_MAX_BYTES = 8 * 1_048_576  # the 4 MB a client sends for 20,000 applications, twice
DISCARD_MAX_S = 5.0
UNEXPECTED = b'{"error":"An unexpected error has occurred, please check the server log."}'
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, extra headers


class Answering(Protocol):
    """What the handler needs from the scoring pipeline."""

    async def answer(self, applications: list[Application], explain: bool) -> ScoreResponse: ...


class ScoreHandler:
    """Answers ``POST /score`` and ``GET /docs.json``; every other request passes through.

    ``input_model``: BentoML's generated input model of the declared API (its fields are the
    API method's parameters); ``pipeline``: returns the live scoring pipeline (BentoML creates
    the service instance after the middleware stack is built, so it is looked up per request);
    ``document``: BentoML's OpenAPI document, read once on the first ``GET /docs.json``."""

    def __init__(
        self,
        app: ASGIApp,
        input_model: type[BaseModel],
        pipeline: Callable[[], Answering],
        document: Callable[[], dict[str, Any]],
        max_in_flight: int,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.input_model = input_model
        self.pipeline = pipeline
        self.document = document
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.in_flight = 0
        self.served_document: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = (scope["method"], scope["path"])
            if route == ("POST", SCORE_PATH):
                await self.score(scope, receive, send)
                return
            if route == ("GET", DOCUMENT_PATH):
                await respond(send, 200, self.openapi_document())
                return
        await self.app(scope, receive, send)

    async def score(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Steps 1-2 and the response; 3-6 are ``answer``."""
        headers = dict(scope["headers"])
        refused = check_headers(headers, self.max_body_bytes)
        if refused is None and self.in_flight >= self.max_in_flight:
            refused = OVERLOADED
        if refused is not None:
            if refused.status == 413 and not expects_continue(headers):
                await discard_body(receive, DISCARD_MAX_BYTES, DISCARD_MAX_S)
            await self.refuse(send, refused)
            return
        self.in_flight += 1  # from the first byte read: a slow upload holds memory too
        try:
            try:
                body = await read_body(receive, self.max_body_bytes)
            except BodyTooLargeError:
                await discard_body(receive, DISCARD_MAX_BYTES, DISCARD_MAX_S)
                await self.refuse(send, too_large(self.max_body_bytes, []))
                return
            if body is None:  # the client went away: no answer can reach it (read_body)
                return
            await respond(send, *await self.answer(body))
        finally:
            self.in_flight -= 1

    async def answer(self, body: bytes) -> Answer:
        """Status, JSON body and headers for one request body; any error of the service's
        own is answered 500 here, with its traceback in the log."""
        try:
            document, refused = parse_body(body)
            if refused is not None:
                return self.refused(refused)
            request: Any = self.input_model.model_validate(document)
            response = await self.pipeline().answer(request.applications, request.explain)
            return 200, response.__pydantic_serializer__.to_json(response), []
        except ValidationError as error:
            return 400, validation_error(error, self.input_model, body), []
        except BentoMLException as error:  # the model stage unavailable, the log full: 503
            status = error.error_code.value
            REFUSALS.warning(f"{SCORE_PATH} answered {status}: {error}")
            return status, dumps({"error": str(error), "detail": []}), retry_after(status)
        except Exception:
            log.exception("%s failed", SCORE_PATH)
            return 500, UNEXPECTED, []

    @staticmethod
    def refused(refusal: Refusal) -> Answer:
        observe_rejection(detail.model_dump() for detail in refusal.detail)
        headers = retry_after(refusal.status)
        if refusal.status == 413:  # what the client sends past the bound ends with the connection
            headers.append((b"connection", b"close"))
        return refusal.status, refusal.body(), headers

    async def refuse(self, send: Send, refusal: Refusal) -> None:
        await respond(send, *self.refused(refusal))

    def openapi_document(self) -> bytes:
        """BentoML's document in OpenAPI 3.0 forms, with every refusal of ``/score``
        documented (``api/openapi.py``); built on first use, then served as bytes."""
        if self.served_document is None:
            document = document_refusals(openapi_30(self.document()), (SCORE_PATH,))
            self.served_document = json.dumps(document).encode()
        return self.served_document


def expects_continue(headers: dict[bytes, bytes]) -> bool:
    """A client that sent ``Expect: 100-continue`` waits for a go-ahead before its body: the
    413 reaches it before it writes, and nothing needs discarding."""
    return headers.get(b"expect", b"").lower() == b"100-continue"


def retry_after(status: int) -> list[tuple[bytes, bytes]]:
    return list(RETRY_LATER) if status == 503 else []


def dumps(payload: object) -> bytes:
    """Compact JSON, as Starlette's JSONResponse writes it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def validation_error(error: ValidationError, input_model: type[BaseModel], body: bytes) -> bytes:
    """The 400 body BentoML's route writes for a validation failure: a summary and pydantic's
    error list, without the offending input (it may hold personal data); each violation is
    counted by field and type. The bytes are validated again, in JSON mode, for the words a
    JSON client has always read ("Input should be an object", not Python's "a valid
    dictionary"): a second parse, on the refusal path only."""
    try:
        input_model.model_validate_json(body)
    except ValidationError as in_json_words:
        error = in_json_words
    detail = error.errors(include_context=False, include_input=False)
    observe_rejection(detail)
    summary = f"{error.error_count()} validation error for {error.title}"
    return dumps({"error": summary, "detail": detail})
