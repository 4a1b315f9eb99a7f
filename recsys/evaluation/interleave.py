"""Team-draft interleaving (Radlinski, Kurup & Joachims, CIKM 2008).

Why interleave: an A/B split compares two groups of users, so the difference between the
models must stand out against the difference between users. Interleaving shows each user one
list drawn from both models, and asks which model's items that user clicked: every request is
its own paired comparison, and the same decision needs one to two orders of magnitude fewer
users (Chapelle, Joachims, Radlinski & Yue, TOIS 2012; Netflix, 2017).

The draft, in rounds: each model proposes its best item not already in the list. When both
propose the same item it goes in once, credited to neither team (``BOTH``): the models agree
on it, so a click on it says nothing about which is better, and crediting it to whichever
team a coin let pick it first would only add noise (on the simulated users, crediting no
one cut the impressions to a decision by more than half: docs/experiments.md). When they
propose different items, a coin (from the request id) decides whose goes first, so neither
model owns the top position, and both go in. Each item shown is labelled with its team,
which the impression log records; a click credits that team. When one model has nothing
new to offer, the other fills the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

CONTROL, TREATMENT, BOTH = "control", "treatment", "both"


def team_draft(control: Sequence[str], treatment: Sequence[str], k: int,
               seed: str) -> tuple[list[str], list[str]]:
    """Interleave two ranked lists into ``k`` items; returns (items, team of each item).

    ``seed`` (the request id) makes the coin flips reproducible: the same request always
    gives the same list, so a logged impression can be recomputed. One coin is used per round
    in which the models disagree.

    >>> team_draft(["a", "b", "c"], ["b", "d", "e"], 4, seed="r1")
    (['b', 'a', 'd', 'c'], ['treatment', 'control', 'treatment', 'control'])
    >>> team_draft(["a", "b", "c"], ["a", "c", "b"], 3, seed="r1")
    (['a', 'c', 'b'], ['both', 'treatment', 'control'])
    """
    flips = _coin_flips(seed)
    items: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    at = {CONTROL: 0, TREATMENT: 0}
    ranked = {CONTROL: control, TREATMENT: treatment}
    rounds = 0
    while len(items) < k:
        best = {team: _peek_new(ranked[team], at, team, shown) for team in (CONTROL, TREATMENT)}
        if best[CONTROL] is None and best[TREATMENT] is None:
            break  # both lists are used up
        if best[CONTROL] == best[TREATMENT]:
            order: tuple[str, ...] = (BOTH,)
        else:
            order = (CONTROL, TREATMENT) if flips[rounds % len(flips)] else (TREATMENT, CONTROL)
            rounds += 1
        for team in order:
            if len(items) == k:
                break
            # A team with nothing new lets the other fill in.
            picker = team if team == BOTH or best[team] is not None else _other(team)
            item = best[CONTROL] if picker == BOTH else _peek_new(ranked[picker], at, picker,
                                                                  shown)
            if item is None:
                break
            items.append(item)
            teams.append(picker)
            shown.add(item)
    return items, teams


def _other(team: str) -> str:
    return TREATMENT if team == CONTROL else CONTROL


def _peek_new(ranked: Sequence[str], at: dict[str, int], team: str,
              shown: set[str]) -> str | None:
    """The team's best item not yet shown (its pointer moves past the shown ones)."""
    while at[team] < len(ranked) and ranked[at[team]] in shown:
        at[team] += 1
    return ranked[at[team]] if at[team] < len(ranked) else None


def _coin_flips(seed: str) -> list[bool]:
    digest = hashlib.blake2b(seed.encode(), digest_size=16).digest()
    return [bool(byte >> bit & 1) for byte in digest for bit in range(8)]


def credit(teams: Sequence[str], clicked: Sequence[bool]) -> int:
    """One request's outcome: +1 treatment wins, -1 control wins, 0 tie.

    The winner is the team whose items got more clicks; no click at all is a tie, and so is
    a click on an item both models proposed (``BOTH``) and nothing else.
    """
    t = sum(1 for team, c in zip(teams, clicked, strict=True) if c and team == TREATMENT)
    c = sum(1 for team, c in zip(teams, clicked, strict=True) if c and team == CONTROL)
    return (t > c) - (c > t)
