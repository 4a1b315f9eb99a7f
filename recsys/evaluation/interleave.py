"""Team-draft interleaving (Radlinski, Kurup & Joachims, CIKM 2008).

Why interleave: an A/B split compares two groups of users, so the difference between the
models must stand out against the difference between users. Interleaving shows each user one
list drawn from both models, and asks which model's items that user clicked: every request is
its own paired comparison, and the same decision needs one to two orders of magnitude fewer
users (Chapelle, Joachims, Radlinski & Yue, TOIS 2012; Netflix, 2017).

The draft: like captains picking teams, the team with fewer picks so far picks next (a coin
decides when they are level, so neither model owns the top position); it takes its best item
not already in the list. Each item shown is labelled with the team that picked it, which the
impression log records; a click credits that team. When one model has nothing new to offer,
the other fills the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

CONTROL, TREATMENT = "control", "treatment"


def team_draft(control: Sequence[str], treatment: Sequence[str], k: int,
               seed: str) -> tuple[list[str], list[str]]:
    """Interleave two ranked lists into ``k`` items; returns (items, team of each item).

    ``seed`` (the request id) makes the coin flips reproducible: the same request always
    gives the same list, so a logged impression can be recomputed.

    >>> team_draft(["a", "b", "c"], ["b", "d", "e"], 4, seed="r1")
    (['b', 'a', 'd', 'c'], ['treatment', 'control', 'treatment', 'control'])
    """
    flips = _coin_flips(seed)
    items: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    at = {CONTROL: 0, TREATMENT: 0}
    picks = {CONTROL: 0, TREATMENT: 0}
    ranked = {CONTROL: control, TREATMENT: treatment}
    rounds = 0
    while len(items) < k:
        if picks[CONTROL] < picks[TREATMENT]:
            order = (CONTROL, TREATMENT)
        elif picks[TREATMENT] < picks[CONTROL]:
            order = (TREATMENT, CONTROL)
        else:
            order = (CONTROL, TREATMENT) if flips[rounds % len(flips)] else (TREATMENT, CONTROL)
            rounds += 1
        for team in order:  # the other team fills in when this one has nothing new
            item = _next_new(ranked[team], at, team, shown)
            if item is not None:
                items.append(item)
                teams.append(team)
                shown.add(item)
                picks[team] += 1
                break
        else:
            break  # both lists are used up
    return items, teams


def _next_new(ranked: Sequence[str], at: dict[str, int], team: str, shown: set[str]) -> str | None:
    while at[team] < len(ranked):
        item = ranked[at[team]]
        at[team] += 1
        if item not in shown:
            return item
    return None


def _coin_flips(seed: str) -> list[bool]:
    digest = hashlib.blake2b(seed.encode(), digest_size=16).digest()
    return [bool(byte >> bit & 1) for byte in digest for bit in range(8)]


def credit(teams: Sequence[str], clicked: Sequence[bool]) -> int:
    """One request's outcome: +1 treatment wins, -1 control wins, 0 tie.

    The winner is the team whose items got more clicks; no click at all is a tie.
    """
    t = sum(1 for team, c in zip(teams, clicked, strict=True) if c and team == TREATMENT)
    c = sum(1 for team, c in zip(teams, clicked, strict=True) if c and team == CONTROL)
    return (t > c) - (c > t)
