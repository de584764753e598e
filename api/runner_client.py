"""The API's client for the runner's model calls, in the matrix wire format.

Why not the ``bentoml.depends`` proxy for these calls: it pickles the arguments for BentoML's
batchable route and renews its session every 100 requests (``runners/matrix_endpoint.py`` and
``docs/performance.md`` have the cost). The proxy still finds the runner (a spawned local
runner's Unix socket, or ``CREDIT_RISK_RUNNER_URL``), answers readiness probes and ``describe``;
this client only sends matrices to the same address.

Why not a general HTTP client (aiohttp, as before): under load its request and response
machinery (a writer task, payload objects, header multidicts, stream readers) was the largest
piece of an API worker after the HTTP server itself (``docs/performance.md``). A model call is
one request line, four headers and a sized body: here it is one write on a kept-alive
connection, and the answer is read by httptools, the parser uvicorn serves with, so keep-alive,
chunked bodies and servers that close are handled as HTTP/1.1 says.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlparse

import httptools
import numpy as np
from bentoml.exceptions import BentoMLException, NotFound, ServiceUnavailable

from serving import matrix_wire

LOCAL_HOST = "127.0.0.1:3000"  # the Host of requests over a Unix socket
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # far above any matrix answer: a runner gone wrong is cut off


class RunnerCallError(BentoMLException):
    """The runner answered a model call with an error that a retry would not change (500)."""


class RunnerConnectionError(ConnectionError):
    """No whole answer: the connection could not be made, or it broke or was closed before
    the answer ended, or the answer was not HTTP. A retry may reach a runner that is back."""


@dataclass(frozen=True)
class Address:
    """Where the runner listens, from its URL: a Unix socket path, or host, port and TLS."""

    host_header: str
    unix_path: str | None = None
    host: str = ""
    port: int = 0
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Address:
        """``file://`` Unix socket (a spawned local runner), ``tcp://host:port`` (BentoML's
        own form for a deployed one) or ``http(s)://host[:port]``."""
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return cls(LOCAL_HOST, unix_path=parsed.path)
        if parsed.scheme not in ("tcp", "http", "https") or not parsed.hostname:
            raise ValueError(f"runner URL {url!r}: expected file://, tcp://, http:// or https://")
        tls = parsed.scheme == "https"
        port = parsed.port or (443 if tls else 80)
        return cls(parsed.netloc, host=parsed.hostname, port=port, tls=tls)


@dataclass
class Answer:
    """A whole HTTP answer: status, headers (names lower-cased) and body."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)


class Connection(asyncio.Protocol):
    """One kept-alive connection carrying one call at a time. Parser callbacks
    (``on_header``, ``on_body``, ``on_message_complete``) fill the answer; a connection that
    breaks, answers garbage or says it will close is closed, and a closing one is never used
    again."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Answer] | None = None
        self.answer = Answer()
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.fail(RunnerConnectionError(f"the runner closed the connection ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.fail(RunnerConnectionError(f"the runner's answer is not HTTP: {error}"))
            self.close()

    def on_message_begin(self) -> None:
        self.answer = Answer()
        self.size = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answer.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_ANSWER_BYTES:
            self.fail(RunnerConnectionError(f"answer longer than {MAX_ANSWER_BYTES} bytes"))
            self.close()
            return
        self.answer.body.append(body)

    def on_message_complete(self) -> None:
        self.answer.status = self.parser.get_status_code()
        if not self.parser.should_keep_alive():
            self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.answer)

    def fail(self, error: RunnerConnectionError) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    @property
    def closing(self) -> bool:
        """Closed by either side, or on its way (``connection_lost`` not called yet)."""
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes) -> Answer:
        """Send ``request`` (whole, one write) and wait for its answer. A call cancelled
        midway (the caller's deadline) leaves an answer on its way: the connection closes."""
        if self.closing or self.transport is None:  # (None: for the type checker)
            raise RunnerConnectionError("the connection to the runner is closing")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        except BaseException:
            self.close()
            raise
        finally:
            self.waiter = None


class MatrixClient:
    """POSTs matrices to the runner at ``url`` over a pool of kept-alive connections (one per
    call in flight; the coalescers bound how many): a 503 raises ``ServiceUnavailable``
    (retried by the caller), a failed or broken connection ``RunnerConnectionError`` (retried
    too), a 404 ``NotFound``, any other error ``RunnerCallError``."""

    def __init__(self, url: str, max_rows: int) -> None:
        self.url = url
        self.address = Address.parse(url)
        self.max_rows = max_rows
        self.idle: list[Connection] = []
        self.tls = ssl.create_default_context() if self.address.tls else None
        self.closed = False

    async def connect(self) -> Connection:
        """A new connection to the runner; ``RunnerConnectionError`` when there is none."""
        loop = asyncio.get_running_loop()
        address = self.address
        try:
            if address.unix_path is not None:
                _, connection = await loop.create_unix_connection(Connection, address.unix_path)
            else:
                _, connection = await loop.create_connection(
                    Connection, address.host, address.port, ssl=self.tls
                )
        except OSError as error:
            raise RunnerConnectionError(
                f"cannot connect to the runner at {self.url}: {error}"
            ) from error
        return connection

    async def take(self) -> Connection:
        """An idle connection the runner has not closed, or a new one."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.closing:
                return connection
        return await self.connect()

    def request(self, method: str, matrix: np.ndarray) -> bytes:
        body, shape = matrix_wire.encode(matrix)
        head = (
            f"POST /{method} HTTP/1.1\r\nhost: {self.address.host_header}\r\n"
            f"content-type: {matrix_wire.MEDIA_TYPE}\r\n{matrix_wire.SHAPE_HEADER}: {shape}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode("latin-1") + body

    async def post(self, method: str, matrix: np.ndarray) -> Answer:
        """One call's whole answer; the connection goes back to the pool if it can."""
        request = self.request(method, matrix)
        connection = await self.take()
        answer = await connection.exchange(request)
        if not connection.closing and not self.closed:
            self.idle.append(connection)
        else:
            connection.close()
        return answer

    async def call(self, method: str, matrix: np.ndarray) -> np.ndarray:
        """``method``'s answer for ``matrix``: probabilities (n,) or attributions (n, width)."""
        answer = await self.post(method, matrix)
        payload = b"".join(answer.body)
        if answer.status == 200:
            shape = matrix_wire.parse_shape(
                answer.headers.get(matrix_wire.SHAPE_HEADER), self.max_rows
            )
            return matrix_wire.decode(payload, shape)
        reason = payload.decode(errors="replace")[:500]
        if answer.status == 503:
            raise ServiceUnavailable(f"runner /{method}: {reason}")
        if answer.status == 404:
            raise NotFound(f"runner /{method}: {reason}")
        raise RunnerCallError(f"runner /{method} answered {answer.status}: {reason}")

    async def close(self) -> None:
        """Close the idle connections; those in use close when their call ends."""
        self.closed = True
        while self.idle:
            self.idle.pop().close()
