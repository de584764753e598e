"""Locust scenario: credit applications posted to ``/score``, mostly good, some bad.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:3000 -u 10 -t 30s

A good request must answer 200 with one result per application; a bad one must answer 4xx
(anything else, a 5xx included, is a failure). ``--bad-share``, ``--batch-size`` and
``--rate`` tune it. With ``--rate`` the users together are an open-loop Poisson source: each
user follows its own Poisson schedule of ``rate / users`` requests/s, fixed in advance and not
moved by response times (a slow answer makes the user late, and it catches up at once), and
independent Poisson sources add up to one at the total rate. Give it enough users that each is
rarely busy (``loadtests/size.py`` uses one per 4 req/s).
"""

from __future__ import annotations

import random
import time

import gevent
from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser

from loadtests.traffic import application_pool, bad_body, good_body

HEADERS = {"content-type": "application/json"}


@events.init_command_line_parser.add_listener
def _options(parser: LocustArgumentParser) -> None:
    parser.add_argument("--bad-share", type=float, default=0.05, help="share of bad requests")
    parser.add_argument("--batch-size", type=int, default=1, help="applications per request")
    parser.add_argument(
        "--rate", type=float, default=0, help="total Poisson arrivals/s over all users (0: no wait)"
    )


@events.test_start.add_listener
def _warm(environment, **_: object) -> None:
    application_pool()  # load the data before the clock starts, not inside a request


class CreditApplicant(FastHttpUser):
    """A client with no think time: each user is one concurrent connection."""

    def on_start(self) -> None:
        self.rng = random.Random()
        options = self.environment.parsed_options
        self.bad_share = options.bad_share if options else 0.05
        self.batch_size = options.batch_size if options else 1
        if options and options.rate:
            self.per_user_rate = options.rate / options.num_users
            first = time.monotonic() + self.rng.expovariate(self.per_user_rate)
            self.next_at = first + self.rng.expovariate(self.per_user_rate)
            self.wait_time = self.poisson_wait
            gevent.sleep(first - time.monotonic())  # no burst of every user's first request

    def poisson_wait(self) -> float:
        """Until this user's next scheduled arrival; the schedule ignores response times."""
        delay = self.next_at - time.monotonic()
        self.next_at += self.rng.expovariate(self.per_user_rate)
        return max(0.0, delay)

    @task
    def score(self) -> None:
        if self.rng.random() < self.bad_share:
            kind, body = bad_body(self.rng)
            with self.client.post(
                "/score",
                data=body,
                headers=HEADERS,
                name=f"/score [bad:{kind}]",
                catch_response=True,
            ) as response:
                if 400 <= response.status_code < 500:
                    response.success()
                else:
                    response.failure(f"bad input {kind} answered {response.status_code}")
            return
        with self.client.post(
            "/score",
            data=good_body(self.rng, self.batch_size),
            headers=HEADERS,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif len(response.json()["results"]) != self.batch_size:
                response.failure("wrong number of results")
