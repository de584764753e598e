# mypy: disallow-untyped-decorators=False
# (BentoML's decorators carry no types.)
"""Reference endpoints for the benchmark: what the framework and the HTTP stack cost when the
endpoint does nothing. Both take the same request body as /score and return a constant."""

from __future__ import annotations

from typing import Any

import bentoml

from serving.settings import WorkerSettings
from serving.worker import service_logging

CONSTANT = {"results": [{"probability_default": 0.5, "decision": "review"}]}
CONSTANT_BYTES = b'{"results":[{"probability_default":0.5,"decision":"review"}]}'


@bentoml.service(
    name="trivial_floor",
    workers=2,
    resources={"cpu": "1"},
    logging=service_logging(WorkerSettings()),
)
class TrivialBento:
    """BentoML's own floor: an async endpoint with the same body shape, no work; two workers,
    the same two processes, and the same logging configuration as the project's API."""

    @bentoml.api(route="/score")
    async def score(self, applications: list[dict[str, Any]]) -> dict[str, Any]:
        return CONSTANT


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The HTTP floor: a raw ASGI app under uvicorn that drains the body and answers."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": CONSTANT_BYTES})
