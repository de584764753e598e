# mypy: disallow-untyped-decorators=False
# (Locust's decorators carry no types.)
"""Locust scenario: credit applications posted to ``/score``, mostly good, some bad.

    locust -f loadtests/load/locustfile.py --headless --host http://127.0.0.1:3000 -u 10 -t 30s

A good request must answer 200 with one result per application; a bad one must answer 4xx
(anything else, a 5xx included, is a failure). ``--bad-share`` and ``--batch-size`` tune it.
``--body JSON`` (with ``--path``) posts that one body instead, expecting 200: for servers that
do not speak the API contract (the runner's matrix API, ``mlflow models serve`` in the
benchmark), so the same paced open-loop source measures them too; ``--connect-path`` is what a
paced user GETs to open its connection (``/livez`` by default, a path every BentoML service has).

Without ``--rate`` each user is one closed-loop connection with no think time. With ``--rate``
the users together are an open-loop Poisson source (``loadtests/load/pacing.py``): each opens its
connection during ``--warm-up`` seconds, then follows its own Poisson schedule of
``rate / users`` requests/s through the ``--window`` (the rest of the run when 0), fixed in
advance and not moved by response times; independent Poisson sources add up to one at the total
rate. Give it enough users that each is rarely busy (the sizing's ``loadtests/load/locust_run.py``
gives one per 4 req/s).
``--result-out FILE`` writes every windowed arrival's outcome and latency, timed from its
scheduled arrival, how many arrivals the generator itself sent late, and each generator
process's CPU over the window, as JSON (what the sizing judges); Locust's own CSV and HTML stay
as usual. A windowed run ends once its arrivals are answered, or ``--drain`` seconds after the
window, counting the rest as unfinished.

Distributed, the same options on the master: ``--processes N`` forks N workers on this
machine; across machines run ``--master --expect-workers N`` on one and ``--worker
--master-host HOST`` on the others (docs/sizing.md). ``--rate`` stays the total: the master
splits it per user over every worker's users and forwards the share with the spawn message.
Each worker sends the master its arrivals and CPU (a custom message), and the master writes
``--result-out`` once every worker has reported.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
import time
from pathlib import Path

import gevent
from gevent.event import AsyncResult
from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.exception import StopUser
from locust.rpc import Message
from locust.runners import MasterRunner, Runner, WorkerRunner

from loadtests.load.load_result import LoadResult, ProcessCpu
from loadtests.load.pacing import (
    OK,
    CpuClock,
    PoissonSchedule,
    Reports,
    ScheduledLatencies,
    Window,
    merge,
    result_from_dict,
    result_to_dict,
    user_rate,
    write_result,
)
from loadtests.load.traffic import application_pool, bad_body, good_body

HEADERS = {"content-type": "application/json"}
CONNECT = "connect (before the window)"
ARRIVALS = "arrivals"  # the custom message a worker's result travels in

_keys = itertools.count()


class _Run:
    """This process's part of the current run (module state: Locust's event hooks are plain
    functions). Workers and a lone process record arrivals; the master and a lone process
    collect the results."""

    pool: AsyncResult | None = None  # the data set, loading in a native thread
    record: ScheduledLatencies | None = None
    clock = CpuClock()
    window_cpu: ProcessCpu | None = None  # this process's CPU over the window, read at its end
    reports: Reports | None = None
    reported = False  # this process's own result has been handed in
    written = False  # --result-out is written
    stopping = False  # the runner is stopping: no early quit any more


@events.init_command_line_parser.add_listener
def _options(parser: LocustArgumentParser) -> None:
    parser.add_argument("--bad-share", type=float, default=0.05, help="share of bad requests")
    parser.add_argument("--batch-size", type=int, default=1, help="applications per request")
    parser.add_argument(
        "--rate", type=float, default=0, help="total Poisson arrivals/s over all users (0: no wait)"
    )
    parser.add_argument("--warm-up", type=float, default=0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=0, help="measured seconds (0: the rest)")
    parser.add_argument(
        "--drain", type=float, default=10, help="seconds after the window for its last answers"
    )
    parser.add_argument("--result-out", default="", help="JSON file of windowed arrivals")
    parser.add_argument(
        "--body", default="", help="one JSON body posted to --path for every request (200 only)"
    )
    parser.add_argument("--path", default="/score", help="where --body goes")
    parser.add_argument(
        "--connect-path", default="/livez", help="GET that opens a paced user's connection"
    )


@events.init.add_listener
def _on_init(environment: Environment, runner: Runner, **_: object) -> None:
    if isinstance(runner, MasterRunner):
        runner.register_message(ARRIVALS, _received)
    else:
        _Run.pool = _load_pool()


def _load_pool() -> AsyncResult:
    """The data set, loaded in a native thread while gevent goes on: a worker whose loop is
    blocked for 3 s sends no heartbeat and the master drops it (loading on a busy host took
    that long)."""
    return gevent.get_hub().threadpool.spawn(application_pool)


@events.test_start.add_listener
def _start(environment: Environment, **_: object) -> None:
    options, runner = environment.parsed_options, environment.runner
    if not isinstance(runner, MasterRunner):  # the master sends no requests
        (_Run.pool or _load_pool()).get()  # the data before the clock starts, not in a request
    if not options or runner is None:
        return
    window = Window(time.monotonic() + options.warm_up, options.window or math.inf)
    _Run.reported = _Run.written = _Run.stopping = False
    _Run.window_cpu = None
    gevent.spawn(_start_clock, window.start)
    if not isinstance(runner, WorkerRunner):
        # forwarded to every worker with the spawn message (a custom option, not a default one)
        options.user_rate = user_rate(options.rate, options.num_users) if options.rate else 0.0
        workers = runner.worker_count if isinstance(runner, MasterRunner) else 1
        _Run.reports = Reports(workers, options.window or math.inf)
    if not isinstance(runner, MasterRunner):
        _Run.record = ScheduledLatencies(window)
        if options.window:
            gevent.spawn(_report_when_answered, environment, _Run.record, options.drain)


def _start_clock(at: float) -> None:
    gevent.sleep(max(0.0, at - time.monotonic()))
    _Run.clock.start()


def _report_when_answered(
    environment: Environment, record: ScheduledLatencies, drain: float
) -> None:
    """Hand in this process's result once the window is over and its last arrival answered,
    or ``drain`` seconds after the window."""
    gevent.sleep(max(0.0, record.window.end - time.monotonic()))
    _Run.window_cpu = _Run.clock.read(_process_name(environment.runner))
    deadline = record.window.end + drain
    while record.in_flight and time.monotonic() < deadline:
        gevent.sleep(0.05)
    _report(environment)


@events.test_stop.add_listener
def _stop(environment: Environment, **_: object) -> None:
    """A run cut off (``-t``, or no window): hand in what was recorded."""
    _Run.stopping = True
    _report(environment)


def _report(environment: Environment) -> None:
    """This process's arrivals and CPU, once: to the master from a worker, else kept here."""
    runner = environment.runner
    if _Run.reported or _Run.record is None or isinstance(runner, MasterRunner):
        return
    _Run.reported = True
    result = _Run.record.close()
    result.generator.append(_Run.window_cpu or _Run.clock.read(_process_name(runner)))
    if isinstance(runner, WorkerRunner):
        runner.send_message(ARRIVALS, result_to_dict(result))
    else:
        _collect(environment, result)


def _process_name(runner: Runner | None) -> str:
    if isinstance(runner, WorkerRunner):
        return f"worker {socket.gethostname()}:{os.getpid()}"
    return "master" if isinstance(runner, MasterRunner) else "local"


def _received(environment: Environment, msg: Message, **_: object) -> None:
    _collect(environment, result_from_dict(msg.data))


def _collect(environment: Environment, result: LoadResult) -> None:
    if _Run.reports is None:
        return
    options = environment.parsed_options
    if _Run.reports.add(result) and options and options.window and not _Run.stopping:
        gevent.spawn(_finish, environment)


def _finish(environment: Environment) -> None:
    """Every worker has reported a windowed run: write the result and end the run."""
    _write(environment)
    if environment.runner is not None:
        environment.runner.quit()


@events.quitting.add_listener
def _write(environment: Environment, **_: object) -> None:
    """The master's (or the lone process's) merged result, once; a worker that never reported
    is counted as missing, so the reader refuses an incomplete result."""
    options, reports = environment.parsed_options, _Run.reports
    if _Run.written or reports is None or not options or not options.result_out:
        return
    _Run.written = True
    merged = merge(reports.received)
    if isinstance(environment.runner, MasterRunner):
        merged.generator.append(_Run.clock.read(_process_name(environment.runner)))
    write_result(merged, Path(options.result_out), reports.missing)


def failure_kind(response: ResponseContextManager) -> str:
    """The status, or the client-side error when there was no answer (status 0)."""
    if response.status_code:
        return f"status {response.status_code}"
    return type(getattr(response, "error", None)).__name__  # set by Locust when unanswered


class CreditApplicant(FastHttpUser):
    """One client connection; closed loop, or one Poisson schedule with ``--rate``; the
    scenario's applications, or ``--body`` alone."""

    def on_start(self) -> None:
        self.rng = random.Random()
        options = self.environment.parsed_options
        self.bad_share = options.bad_share if options else 0.05
        self.batch_size = options.batch_size if options else 1
        self.fixed = (options.path, options.body.encode()) if options and options.body else None
        self.schedule = None
        rate = getattr(options, "user_rate", 0.0)  # set by the master (or lone process)
        if rate and _Run.record:
            self.client.get(options.connect_path if options else "/livez", name=CONNECT)
            self.schedule = PoissonSchedule(rate, _Run.record.window, self.rng)

    def next_arrival(self) -> tuple[float, float | None]:
        """When the next request is due, and when this user woke for it: now and None in closed
        loop; else sleep until this user's next scheduled arrival (None: still busy with the
        previous request when it fell due). A user whose schedule has left the window stops
        (its requests are all answered by then)."""
        if self.schedule is None:
            return time.monotonic(), None
        arrival = self.schedule.take()
        if arrival is None:
            raise StopUser
        wait = arrival - time.monotonic()
        if wait <= 0:
            return arrival, None
        gevent.sleep(wait)
        return arrival, time.monotonic()

    @task
    def score(self) -> None:
        arrival, woke = self.next_arrival()
        key = next(_keys)
        if _Run.record:
            _Run.record.begin(key, arrival, woke)
        if self.fixed:
            outcome = self.post_fixed(*self.fixed)
        elif self.rng.random() < self.bad_share:
            outcome = self.post_bad()
        else:
            outcome = self.post_good()
        if _Run.record:
            _Run.record.end(key, outcome)

    def post_bad(self) -> str:
        kind, body = bad_body(self.rng)
        with self.client.post(
            "/score",
            data=body,  # type: ignore[arg-type]  # bytes go out as they are; the hint says str
            headers=HEADERS,
            name=f"/score [bad:{kind}]",
            catch_response=True,
        ) as response:
            if 400 <= response.status_code < 500:
                response.success()
                return OK
            response.failure(f"bad input {kind} answered {response.status_code}")
            return f"bad input answered {response.status_code}"

    def post_good(self) -> str:
        body = good_body(self.rng, self.batch_size)
        return self.post_fixed("/score", body, results=self.batch_size)

    def post_fixed(self, path: str, body: bytes, results: int | None = None) -> str:
        """One POST that must answer 200 (and ``results`` answers, when given)."""
        with self.client.post(
            path,
            data=body,  # type: ignore[arg-type]  # as above
            headers=HEADERS,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                failure = failure_kind(response)
                response.failure(failure)
                return failure
            if results is not None and len(response.json()["results"]) != results:
                response.failure("wrong number of results")
                return "wrong number of results"
            return OK
