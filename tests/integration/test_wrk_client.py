"""The benchmark's wrk client against a real HTTP server on loopback: the body it sends, the
outcomes it counts, and the latency sample it returns. wrk is required (``make test`` installs
it as root, like promtool): the bench's figures depend on reading it right."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtests.load import wrk

BODY = b'{"applications": [{"income": 129}]}'
WRK_HINT = "wrk is not on PATH: run `make wrk` as root (Debian's wrk package)"


class Handler(BaseHTTPRequestHandler):
    """200 for POST /ok with the expected body, 400 for any other body, 503 elsewhere."""

    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        intact = body == BODY and self.headers["Content-Type"] == "application/json"
        status = 503 if self.path != "/ok" else 200 if intact else 400
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return None


class Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return None  # wrk resets its connections when it stops: nothing to report


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not wrk.available():
        pytest.fail(WRK_HINT)
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_counts_answers_and_reads_latencies(server):
    result = wrk.wrk_burst(f"{server}/ok", BODY, connections=4, duration_s=1)
    assert result.requests > 50
    assert result.errors == 0, result.outcomes  # the body and content type arrived intact
    assert 0.9 < result.elapsed_s < 3
    assert len(result.latencies_s) == wrk.QUANTILES
    assert 0 < result.percentile_ms(50) <= result.percentile_ms(99) < 1000


def test_counts_refusals_as_errors(server):
    result = wrk.wrk_burst(f"{server}/busy", BODY, connections=2, duration_s=1)
    assert result.requests > 0
    assert result.errors == result.requests
    assert result.error_kinds == {"non-2xx": result.requests}
