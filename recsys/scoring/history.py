"""Every user's latest events, in memory, up to the last landed part.

The real-time path must react to what a user did seconds ago, between model updates, and must
never hold the feature store (DuckDB allows one writer or many readers, and the pipeline's
writers must not wait for a web service). So the index reads the immutable landing parts
itself: all of them at start, then only parts with a higher ingestion sequence on each
``refresh()``. Ingestion already refuses event ids it has landed before, so parts need no
deduplication against each other. Memory: about 1 KB per user at 50 events each.

Events posted over HTTP are added by ``add_events`` the moment they are durable, a second or so
before the part they are sealed into lands; ``History.add`` skips an exact (ts, item, type)
repeat so that part does not add them twice. (Two distinct events of one user on the same item,
type and microsecond count once here: the history is the model's input, not a ledger.)
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from recsys import sql
from recsys.config import FeatureConfig, Paths
from recsys.data import forget_log
from recsys.data.landing import LandingZone, part_seq


@dataclass
class History:
    ts: list[dt.datetime] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)

    def add(self, ts: dt.datetime, item_id: str, event_type: str, max_len: int) -> bool:
        """Insert in time order (late events too); False for an exact repeat, not added."""
        at = bisect.bisect_right(self.ts, ts)
        for j in range(bisect.bisect_left(self.ts, ts, hi=at), at):
            if self.item_ids[j] == item_id and self.event_types[j] == event_type:
                return False
        self.ts.insert(at, ts)
        self.item_ids.insert(at, item_id)
        self.event_types.insert(at, event_type)
        if len(self.ts) > max_len:
            del self.ts[:-max_len], self.item_ids[:-max_len], self.event_types[:-max_len]
        return True


class RecentHistories:
    def __init__(self, paths: Paths, max_len: int = 50, popular_n: int = 100,
                 popular_window_days: float | None = None):
        self.zone = LandingZone(paths)
        self.max_len, self.popular_n = max_len, popular_n
        self.window = popular_window_days or FeatureConfig().popularity_window_days
        self.users: dict[str, History] = {}
        self.popular: list[str] = []
        self.seq = 0  # highest landing part read
        self._lock = threading.Lock()
        self.refresh()

    def get(self, user_id: str) -> History | None:
        with self._lock:
            h = self.users.get(user_id)
            return History(list(h.ts), list(h.item_ids), list(h.event_types)) if h else None

    def forget(self, user_hashes: set[str]) -> int:
        """Drop users whose id hashes to one of ``user_hashes`` (forget-user requests)."""
        with self._lock:
            gone = [u for u in self.users if forget_log.user_hash(u) in user_hashes]
            for u in gone:
                del self.users[u]
        return len(gone)

    def add_events(self, events: Iterable[tuple[str, dt.datetime, str, str]]) -> int:
        """Add ``(user_id, ts, item_id, event_type)`` events now; returns how many were new."""
        added = 0
        with self._lock:
            for user_id, ts, item_id, event_type in events:
                history = self.users.setdefault(user_id, History())
                added += history.add(ts, item_id, event_type, self.max_len)
        return added

    def _parts(self) -> list[Path]:
        return [p for p in self.zone.event_parts() if (part_seq(p) or 0) > self.seq]

    def refresh(self) -> int:
        """Read landing parts newer than the last one read; returns how many events were new."""
        parts = self._parts()
        if not parts:
            return 0
        with sql.connect() as con:
            # By name: parts written before request_id existed lack the column.
            con.read_parquet([str(p) for p in parts], union_by_name=True).create_view("landed")
            rows = sql.query(con, "recent_histories", max_len=self.max_len).fetchall()
            popular = [r[0] for r in sql.query(con, "recent_popular", n=self.popular_n,
                                               window_days=self.window).fetchall()]
        added = 0
        with self._lock:
            for user_id, items, types, stamps in rows:
                history = self.users.setdefault(user_id, History())
                for item, kind, ts in zip(items, types, stamps, strict=True):
                    added += history.add(ts, item, kind, self.max_len)
            if popular and (not self.popular or self.seq == 0):
                self.popular = popular
            elif popular:  # newer activity first, then the standing favourites
                self.popular = list(dict.fromkeys(popular + self.popular))[:self.popular_n]
            self.seq = max(part_seq(p) or 0 for p in parts)
        return added
