"""Model age arithmetic in one place: naive timestamps are UTC throughout the project."""

from __future__ import annotations

import datetime as dt


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
