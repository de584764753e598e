"""``POST /score`` answered at the ASGI layer, in front of BentoML's route machinery.

Why: BentoML's ``@bentoml.api`` route costs more per request than the whole scoring pipeline
(Starlette routing, a per-call context, IO-model dispatch, a response object and background
task per request; ``docs/performance.md`` has the profile). This middleware answers the same
path with the same contract and the same errors, and does only what the route needs: read the
body, validate it with the very input model BentoML generated from ``CreditRiskAPI.score``
(so the accepted requests, the 400s and their messages cannot drift from the OpenAPI
document and ``/schema.json``, which BentoML still serves from that declaration), run the
service's pipeline, and write the response model as JSON.

BentoML's own middlewares (HTTP metrics, tracing, timeout) sit outside every user middleware,
so ``/score`` keeps its request metrics and spans; the request guard sits outside this one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ValidationError

from api.guard import MAX_BODY_BYTES
from credit_risk.contract import Application, ScoreResponse
from runner.asgi import ASGIApp, Receive, Scope, Send, read_body

log = logging.getLogger(__name__)

JSON_HEADERS = [(b"content-type", b"application/json")]
UNEXPECTED = {"error": "An unexpected error has occurred, please check the server log."}


class Answering(Protocol):
    """What the endpoint needs from the service instance."""

    async def answer(self, applications: list[Application], explain: bool) -> ScoreResponse: ...


class ScoreEndpoint:
    """Answers POST ``path`` with ``service().answer(...)``; everything else passes through.

    ``input_model``: BentoML's generated input model of the declared API (its fields are the
    API method's parameters); ``service``: returns the live service instance (BentoML creates
    it after the middleware stack is built, so it is looked up per request)."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        input_model: type[BaseModel],
        service: Callable[[], Answering],
    ) -> None:
        self.app = app
        self.path = path
        self.input_model = input_model
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, MAX_BODY_BYTES)  # the guard has bounded it already
        if body is None:  # the client went away before sending its request
            return
        status, payload = await self.respond(body)
        headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def respond(self, body: bytes) -> tuple[int, bytes]:
        """Status and JSON body for one request body: the answer, or the error BentoML's
        route gives for the same failure (same status, same shape)."""
        try:
            request: Any = self.input_model.model_validate_json(body)
            response = await self.service().answer(request.applications, request.explain)
        except ValidationError as error:
            return 400, dumps(validation_error(error))
        except BentoMLException as error:  # e.g. the model stage unavailable: 503
            log.warning("/score answered %d: %s", error.error_code.value, error)
            return error.error_code.value, dumps({"error": str(error), "detail": []})
        except Exception:
            log.exception("/score failed")
            return 500, dumps(UNEXPECTED)
        return 200, response.__pydantic_serializer__.to_json(response)


def dumps(payload: object) -> bytes:
    """Compact JSON, as Starlette's JSONResponse writes it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def validation_error(error: ValidationError) -> dict[str, Any]:
    """The 400 body BentoML's route writes for a validation failure: a summary and pydantic's
    error list, without the offending input (it may hold personal data)."""
    return {
        "error": f"{error.error_count()} validation error for {error.title}",
        "detail": error.errors(include_context=False, include_input=False),
    }
