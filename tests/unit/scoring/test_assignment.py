"""Assignment by salted hash: stable, balanced, independent across experiments."""

from __future__ import annotations

import math

from recsys.scoring.assignment import arm


def test_stable_and_balanced():
    users = [f"u{n}" for n in range(20_000)]
    arms = [arm("exp-a", u) for u in users]
    assert arms == [arm("exp-a", u) for u in users]
    share = arms.count("treatment") / len(users)
    assert abs(share - 0.5) < 4 * math.sqrt(0.25 / len(users))


def test_traffic_share_and_independence():
    users = [f"u{n}" for n in range(20_000)]
    in_10 = [arm("exp-a", u, 0.1) for u in users]
    assert abs(sum(a is not None for a in in_10) / len(users) - 0.1) < 0.01
    # raising the share never moves a user between arms
    in_50 = [arm("exp-a", u, 0.5) for u in users]
    assert all(b == a for a, b in zip(in_10, in_50, strict=True) if a is not None)
    # another experiment's treatment is a fresh coin for this one's treated users
    treated = [u for u in users if arm("exp-a", u) == "treatment"]
    again = sum(arm("exp-b", u) == "treatment" for u in treated) / len(treated)
    assert abs(again - 0.5) < 4 * math.sqrt(0.25 / len(treated))
