"""Which arm a user sees: a salted hash of the user id, stable and independent.

Stable: the same user gets the same arm on every request of the experiment's life, on every
service process, across restarts (no table of assignments to keep). Independent: each
experiment has its own salt, so being in one experiment's treatment says nothing about the
next one's (a plain ``hash(user) % 2`` would put the same users in every treatment and carry
their reaction from one experiment into the next).
"""

from __future__ import annotations

import hashlib

SCALE = float(1 << 64)


def unit(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, user)."""
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / SCALE


def arm(salt: str, user_id: str, traffic_share: float = 1.0) -> str | None:
    """"control", "treatment", or None for a user outside the experiment's traffic share.

    The share and the split use separate hashes, so changing the share does not move users
    between arms.

    >>> arm("exp-1", "u1") == arm("exp-1", "u1")
    True
    """
    if unit(salt + "/share", user_id) >= traffic_share:
        return None
    return "treatment" if unit(salt + "/arm", user_id) < 0.5 else "control"
