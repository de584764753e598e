"""The runner's model calls in the matrix wire format, answered at the ASGI layer.

Why: through BentoML's ``@bentoml.api(batchable=True)`` route, a call from the API paid pickle,
a pydantic IO model, a per-call context and the batching dispatcher, about 1.5 ms of runner CPU
for a model call that takes tenths of that (``docs/performance.md``). A POST to ``/predict``,
``/predict_challenger`` or ``/explain`` whose content type is ``serving.matrix_wire.MEDIA_TYPE``
is answered here instead: the body is decoded in place and scored through the service's
coalescer, so calls arriving together from every API worker share one model call (the runner's
adaptive batching, with no waiting window). Any other content type falls through to the
BentoML route of the same name, which still serves BentoML's clients.

BentoML's request metrics, tracing and timeout middlewares sit outside every user middleware, so
these calls keep their metrics; ``DrainGate`` sits outside this one and counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from serving import matrix_wire
from serving.asgi import (
    ASGIApp,
    BodyTooLargeError,
    Receive,
    Scope,
    Send,
    error_json,
    read_body,
    respond,
)

log = logging.getLogger(__name__)

ScoreMatrix = Callable[[np.ndarray], Awaitable[np.ndarray]]
MEDIA_TYPE = matrix_wire.MEDIA_TYPE.encode()
SHAPE_HEADER = matrix_wire.SHAPE_HEADER.encode()


@dataclass(frozen=True)
class ModelRoute:
    """One model call as the endpoint serves it: the (coalesced) call, and the columns its
    model takes (None: no model behind it; the call raises ``LookupError``). A matrix of any
    other width is refused before it is read, so it can never join, and break, the model call
    of other callers."""

    score: ScoreMatrix
    width: int | None


class ServesMatrices(Protocol):
    """What the endpoint needs from the service instance: its model routes by path."""

    model_routes: Mapping[str, ModelRoute]


class MatrixEndpoint:
    """Answers POST ``/<call>`` in the matrix format with ``service().model_routes[path]``;
    everything else passes through. ``service`` returns the live service instance (BentoML
    creates it after the middleware stack is built, so it is looked up per request)."""

    def __init__(self, app: ASGIApp, service: Callable[[], ServesMatrices], max_rows: int) -> None:
        self.app = app
        self.service = service
        self.max_rows = max_rows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", ())) if scope["type"] == "http" else {}
        if scope.get("method") != "POST" or headers.get(b"content-type") != MEDIA_TYPE:
            await self.app(scope, receive, send)
            return
        route = self.service().model_routes.get(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            shape = matrix_wire.parse_shape(
                headers.get(SHAPE_HEADER, b"").decode("latin-1"), self.max_rows
            )
            if route.width is not None and shape[1:] != (route.width,):
                raise matrix_wire.MatrixFormatError(
                    f"{scope['path']} takes rows x {route.width} columns, not shape {shape}"
                )
            body = await read_body(receive, matrix_wire.body_size(shape))
            if body is None:  # the caller went away
                return
            matrix = matrix_wire.decode(body, shape)
        except matrix_wire.MatrixFormatError as error:
            await answer_error(send, 400, str(error))
            return
        except BodyTooLargeError:
            await answer_error(send, 400, f"body longer than shape {shape} needs (float32)")
            return
        try:
            scores = await route.score(matrix)
        except LookupError as error:  # no challenger configured
            await answer_error(send, 404, str(error))
            return
        except Exception:
            log.exception("%s failed", scope["path"])
            await answer_error(send, 500, "model call failed, see the runner's log")
            return
        payload, shape_value = matrix_wire.encode(scores)
        await respond(send, 200, payload, [(SHAPE_HEADER, shape_value.encode())], MEDIA_TYPE)


async def answer_error(send: Send, status: int, reason: str) -> None:
    # after a 400 the rest of an over-long body is left unread: the connection ends with it
    headers = [(b"connection", b"close")] if status == 400 else []
    await respond(send, status, error_json(reason), headers)
