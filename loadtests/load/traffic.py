"""Request bodies for load tests: real applications sampled from the credit data, and the
classes of bad input upstream producers actually send."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any

Record = dict[str, Any]


@lru_cache(maxsize=1)
def application_pool() -> tuple[Record, ...]:
    """Every row of the data set as a contract record; loaded once, from the installed package."""
    from credit_risk.records import contract_records
    from training.data import load_credit_data

    return tuple(contract_records(load_credit_data()))


def good_body(rng: random.Random, batch: int = 1) -> bytes:
    pool = application_pool()
    return json.dumps({"applications": [rng.choice(pool) for _ in range(batch)]}).encode()


def _corrupt(mutate: Callable[[Record], None]) -> Callable[[random.Random], bytes]:
    def make(rng: random.Random) -> bytes:
        record = dict(rng.choice(application_pool()))
        mutate(record)
        return json.dumps({"applications": [record]}).encode()

    return make


BAD_BODIES: dict[str, Callable[[random.Random], bytes]] = {
    "string_in_number": _corrupt(lambda r: r.update(age=str(r["age"]))),
    "unknown_category": _corrupt(lambda r: r.update(home="castle")),
    "missing_field": _corrupt(lambda r: r.pop("amount")),
    "extra_field": _corrupt(lambda r: r.update(favourite_colour="blue")),
    "out_of_range": _corrupt(lambda r: r.update(age=7)),
    "empty_batch": lambda rng: b'{"applications": []}',
    "not_json": lambda rng: b"applications=1",
}


def bad_body(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(sorted(BAD_BODIES))
    return kind, BAD_BODIES[kind](rng)
