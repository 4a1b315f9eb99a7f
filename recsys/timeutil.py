"""Time in one place: model ages and the lap clock jobs report their steps with.

Naive timestamps are UTC throughout the project.
"""

from __future__ import annotations

import datetime as dt
import time


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def seconds_since(then: dt.datetime | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from ``then`` to ``now`` (default: the current time); None if ``then`` is."""
    if then is None:
        return None
    now = utc_now() if now is None else now.replace(tzinfo=None)
    return (now - then.replace(tzinfo=None)).total_seconds()


def parse_ts(raw: str | None) -> dt.datetime | None:
    """An ISO timestamp as stored in tags and model metadata; empty means unknown."""
    return dt.datetime.fromisoformat(raw) if raw else None


class LapClock:
    """Seconds per named step of a job; a step timed twice adds up."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._t
        self._t = now


def human_age(seconds: float) -> str:
    """An age as people read it: seconds under an hour, hours under two days, then days.

    >>> human_age(42), human_age(5400), human_age(24_634_648)
    ('42 s', '1.5 h', '285.1 days')
    """
    if abs(seconds) < 3600:
        return f"{seconds:,.0f} s"
    if abs(seconds) < 2 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} days"
