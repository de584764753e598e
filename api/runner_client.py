"""The API's client for the runner's model calls, in the matrix wire format.

Why not the ``bentoml.depends`` proxy for these calls: it pickles the arguments for BentoML's
batchable route and renews its session every 100 requests (``runners/matrix_endpoint.py`` and
``docs/performance.md`` have the cost). The proxy still finds the runner (a spawned local
runner's Unix socket, or ``CREDIT_RISK_RUNNER_URL``), answers readiness probes and ``describe``;
this client only sends matrices to the same address over one pooled keep-alive session.
"""

from __future__ import annotations

from urllib.parse import urlparse

import aiohttp
import numpy as np
from bentoml.exceptions import BentoMLException, NotFound, ServiceUnavailable

from serving import matrix_wire

LOCAL_BASE = "http://127.0.0.1:3000"  # the Host of requests over a Unix socket


class RunnerCallError(BentoMLException):
    """The runner answered a model call with an error that a retry would not change (500)."""


class MatrixClient:
    """POSTs matrices to the runner at ``url`` (``file://`` Unix socket, ``tcp://host:port`` or
    ``http(s)://``): a 503 raises ``ServiceUnavailable`` (retried by the caller), a failed
    connection aiohttp's own errors (retried too), any other error ``RunnerCallError``."""

    def __init__(self, url: str, max_rows: int) -> None:
        self.url = url
        self.max_rows = max_rows
        self.session: aiohttp.ClientSession | None = None

    def connect(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the running event loop."""
        if self.session is None or self.session.closed:
            parsed = urlparse(self.url)
            connector: aiohttp.BaseConnector
            if parsed.scheme == "file":
                connector, base = aiohttp.UnixConnector(path=parsed.path), LOCAL_BASE
            elif parsed.scheme == "tcp":
                connector, base = aiohttp.TCPConnector(), f"http://{parsed.netloc}"
            else:
                connector, base = aiohttp.TCPConnector(), self.url.rstrip("/")
            # no timeout here: the caller's deadline (with_retries) bounds every call
            self.session = aiohttp.ClientSession(
                base, connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self.session

    async def call(self, method: str, matrix: np.ndarray) -> np.ndarray:
        """``method``'s answer for ``matrix``: probabilities (n,) or attributions (n, width)."""
        body, shape = matrix_wire.encode(matrix)
        headers = {"content-type": matrix_wire.MEDIA_TYPE, matrix_wire.SHAPE_HEADER: shape}
        async with self.connect().post(f"/{method}", data=body, headers=headers) as response:
            payload = await response.read()
            if response.status == 200:
                answer_shape = matrix_wire.parse_shape(
                    response.headers.get(matrix_wire.SHAPE_HEADER), self.max_rows
                )
                return matrix_wire.decode(payload, answer_shape)
            reason = payload.decode(errors="replace")[:500]
            if response.status == 503:
                raise ServiceUnavailable(f"runner /{method}: {reason}")
            if response.status == 404:
                raise NotFound(f"runner /{method}: {reason}")
            raise RunnerCallError(f"runner /{method} answered {response.status}: {reason}")

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
