"""Locust scenario: credit applications posted to ``/score``, mostly good, some bad.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:3000 -u 10 -t 30s

A good request must answer 200 with one result per application; a bad one must answer 4xx
(anything else, a 5xx included, is a failure). ``--bad-share`` and ``--batch-size`` tune it.

Without ``--rate`` each user is one closed-loop connection with no think time. With ``--rate``
the users together are an open-loop Poisson source (``loadtests/pacing.py``): each opens its
connection during ``--warm-up`` seconds, then follows its own Poisson schedule of
``rate / users`` requests/s through the ``--window`` (the rest of the run when 0), fixed in
advance and not moved by response times; independent Poisson sources add up to one at the total
rate. Give it enough users that each is rarely busy (the sizing's ``loadtests/locust_run.py``
gives one per 4 req/s).
``--result-out FILE`` writes every windowed arrival's outcome and latency, timed from its
scheduled arrival, as JSON (what the sizing judges); Locust's own CSV and HTML stay as usual.
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.exception import StopUser

from loadtests.pacing import OK, PoissonSchedule, ScheduledLatencies, Window, write_result
from loadtests.traffic import application_pool, bad_body, good_body

HEADERS = {"content-type": "application/json"}
_record: ScheduledLatencies | None = None
_keys = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: LocustArgumentParser) -> None:
    parser.add_argument("--bad-share", type=float, default=0.05, help="share of bad requests")
    parser.add_argument("--batch-size", type=int, default=1, help="applications per request")
    parser.add_argument(
        "--rate", type=float, default=0, help="total Poisson arrivals/s over all users (0: no wait)"
    )
    parser.add_argument("--warm-up", type=float, default=0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=0, help="measured seconds (0: the rest)")
    parser.add_argument("--result-out", default="", help="JSON file of windowed arrivals")


@events.test_start.add_listener
def _start(environment: Environment, **_: object) -> None:
    global _record
    application_pool()  # load the data before the clock starts, not inside a request
    options = environment.parsed_options
    if options:
        window = Window(time.monotonic() + options.warm_up, options.window or float("inf"))
        _record = ScheduledLatencies(window)
        if options.window:
            gevent.spawn(_quit_when_answered, environment, _record)


def _quit_when_answered(environment: Environment, record: ScheduledLatencies) -> None:
    """End the run once the window is over and its last arrival is answered (``-t`` bounds
    the wait for stragglers)."""
    gevent.sleep(max(0.0, record.window.end - time.monotonic()))
    while record.in_flight:
        gevent.sleep(0.05)
    if environment.runner is not None:
        environment.runner.quit()


@events.quitting.add_listener
def _write(environment: Environment, **_: object) -> None:
    options = environment.parsed_options
    if _record and options and options.result_out:
        write_result(_record.close(), Path(options.result_out))


def failure_kind(response: ResponseContextManager) -> str:
    """The status, or the client-side error when there was no answer (status 0)."""
    if response.status_code:
        return f"status {response.status_code}"
    return type(getattr(response, "error", None)).__name__  # set by Locust when unanswered


class CreditApplicant(FastHttpUser):
    """One client connection; closed loop, or one Poisson schedule with ``--rate``."""

    def on_start(self) -> None:
        self.rng = random.Random()
        options = self.environment.parsed_options
        self.bad_share = options.bad_share if options else 0.05
        self.batch_size = options.batch_size if options else 1
        self.schedule = None
        if options and options.rate and _record:
            self.client.get("/livez", name="connect (before the window)")
            self.schedule = PoissonSchedule(
                options.rate / options.num_users, _record.window, self.rng
            )

    def next_arrival(self) -> float:
        """Now in closed loop; else sleep until this user's next scheduled arrival. A user whose
        schedule has left the window stops (its requests are all answered by then)."""
        if self.schedule is None:
            return time.monotonic()
        arrival = self.schedule.take()
        if arrival is None:
            raise StopUser
        gevent.sleep(max(0.0, arrival - time.monotonic()))
        return arrival

    @task
    def score(self) -> None:
        arrival = self.next_arrival()
        key = next(_keys)
        if _record:
            _record.begin(key, arrival)
        outcome = self.post_bad() if self.rng.random() < self.bad_share else self.post_good()
        if _record:
            _record.end(key, outcome)

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
        with self.client.post(
            "/score",
            data=good_body(self.rng, self.batch_size),  # type: ignore[arg-type]  # as above
            headers=HEADERS,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                failure = failure_kind(response)
                response.failure(failure)
                return failure
            if len(response.json()["results"]) != self.batch_size:
                response.failure("wrong number of results")
                return "wrong number of results"
            return OK
