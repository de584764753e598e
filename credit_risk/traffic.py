"""Which model decides an application when a canary runs beside the champion.

The assignment is a pure function of the applicant key and the canary: the key is hashed with
the canary's tag into a point in [0, 1), and the canary decides when the point falls below its
share. So the same applicant gets the same model on every worker, replica and restart (no
state to share but the share itself), a new canary draws a new, independent set of applicants
(its tag is the salt), and moving the share up only moves applicants from the champion to the
canary, never back: an applicant who asks twice while a bandit raises the share is not decided
by the canary, then the champion, then the canary again.

BLAKE2b, not Python's ``hash``: that one is salted per process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from typing import Literal

import numpy as np

Arm = Literal["champion", "canary"]
ARMS: tuple[Arm, Arm] = ("champion", "canary")
_SCALE = float(2**64)


@cache
def salt_key(salt: str) -> bytes:
    """BLAKE2b takes a key of at most 64 bytes: the salt's own digest, so no two tags share
    one (a cut to 64 bytes would)."""
    return hashlib.blake2b(salt.encode(), digest_size=32).digest()


def applicant_point(key: str, salt: str) -> float:
    """The key's fixed point in [0, 1) for this salt (the canary's tag)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt_key(salt)).digest()
    return int.from_bytes(digest, "big") / _SCALE


def canary_rows(keys: Sequence[str], share: float, salt: str) -> np.ndarray:
    """A boolean mask: True where the canary decides the application with this key."""
    if share <= 0.0:
        return np.zeros(len(keys), dtype=bool)
    if share >= 1.0:
        return np.ones(len(keys), dtype=bool)
    return np.fromiter((applicant_point(key, salt) < share for key in keys), bool, len(keys))
