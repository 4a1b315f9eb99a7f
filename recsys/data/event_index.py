"""Which landing parts may hold an event id: the duplicate check reads those parts only.

Why: each chunk's events are checked against every event that already landed, so that an id
lands once. Read from the parts themselves, that check scans every part's ``event_id``:
0.5 s of one core at 10M events, growing with the zone, and the service's sealer runs it
every second or so. This index answers "which parts?" from a B-tree instead.

What it holds: ``(key, seq)`` pairs, ``key`` being 63 bits of the id's MD5
(``event_id_key`` in ``sql/macros.sql``: stable across DuckDB versions, unlike ``hash``)
and ``seq`` the part it landed in. It is a filter, not the truth: the exact check
(``sql/events_already_landed.sql``) still runs, on the parts the keys name. Two ids that
share a key cost one more part read, never a wrong answer.

It must never miss an id that landed. It records the highest event part it covers; every
writer section first indexes the parts above that one (a crash between publishing a part
and indexing it; a zone that landed before the index existed). ``forget-user`` rewrites
parts and leaves the removed events' keys here, which holds no user id: a forgotten event
sent again is read for, not found, and lands again, as before the index.

One SQLite file beside the parts, touched only under the landing lock (the single
writer), derived data throughout: an unreadable file is rebuilt from the parts.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from recsys import sql
from recsys.data.landing import LandingZone, part_name, part_seq
from recsys.faults import crash_point

log = logging.getLogger(__name__)

# SQLite bounds the parameters of one statement (32,766 since 3.32).
_LOOKUP_CHUNK = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS landed (
    key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS covered (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    through_seq INTEGER NOT NULL
);
"""


class EventIndex:
    """The index of one landing zone; open it inside ``LandingZone.writer()`` only."""

    def __init__(self, zone: LandingZone, cache_mb: int = 256):
        self.zone = zone
        self.path = zone.paths.root / "landing" / "event_ids.sqlite"
        self._cache_mb = cache_mb
        self.con = self._open()
        self._caught_up = False

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.OperationalError:  # locked, disk full, permissions: not ours to delete
            raise
        except sqlite3.DatabaseError as exc:  # corrupt: derived data, rebuilt from the parts
            log.warning("event id index %s is unreadable (%s): rebuilding it from the landing "
                        "parts", self.path, exc)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None)
        try:
            # WAL + NORMAL: a lost last transaction loses its rows and its coverage mark
            # together, and catching up re-indexes that part.
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute(f"PRAGMA cache_size = -{int(self._cache_mb) * 1024}")
            con.executescript(_SCHEMA)
            con.execute("SELECT count(*) FROM covered").fetchone()
        except sqlite3.DatabaseError:
            con.close()
            raise
        return con

    def close(self) -> None:
        self.con.close()

    @property
    def covered_through(self) -> int:
        """The highest event part sequence whose ids are all here (0: none)."""
        row = self.con.execute("SELECT through_seq FROM covered").fetchone()
        return int(row[0]) if row else 0

    def catch_up(self, con) -> int:
        """Index the event parts above ``covered_through``; returns how many it read.

        ``con``: a DuckDB connection with the project's macros (``sql.connect``).
        """
        through = self.covered_through
        parts = [p for p in self.zone.event_parts() if (part_seq(p) or 0) > through]
        self._caught_up = True
        if not parts:
            return 0
        if len(parts) > 1:
            log.info("indexing the event ids of %d landing parts (after part %d)",
                     len(parts), through)
        table = sql.query(con, "event_id_keys", parts=[str(p) for p in parts]).to_arrow_table()
        self._add(table.column("id_key").to_numpy(), table.column("seq").to_numpy(),
                  max(part_seq(p) or 0 for p in parts))
        return len(parts)

    def parts_holding(self, keys: np.ndarray) -> list[Path]:
        """The existing event parts that may hold one of ``keys``, in sequence order."""
        self._check_caught_up()
        seqs: set[int] = set()
        unique = np.unique(keys).tolist()
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            seqs.update(s for (s,) in self.con.execute(
                f"SELECT DISTINCT seq FROM landed WHERE key IN ({marks})", chunk))
        folder = self.zone.paths.landing_events
        return [p for p in (folder / part_name(s) for s in sorted(seqs)) if p.exists()]

    def add(self, seq: int, keys: np.ndarray) -> None:
        """Record one just-published part's ids (call after it is durable)."""
        self._check_caught_up()
        self._add(keys, np.full(len(keys), seq, dtype=np.int64), seq)

    def _check_caught_up(self) -> None:
        # Without it, a part published by a section that died before indexing it would be
        # skipped for good once a later part moves the coverage mark past it.
        if not self._caught_up:
            raise RuntimeError("EventIndex.catch_up must run first in each writer section")

    def _add(self, keys: np.ndarray, seqs: np.ndarray, through: int) -> None:
        order = np.argsort(keys, kind="stable")  # B-tree inserts in key order touch fewer pages
        rows: Iterable = zip(keys[order].tolist(), seqs[order].tolist(), strict=True)
        self.con.execute("BEGIN")
        try:
            self.con.executemany("INSERT OR IGNORE INTO landed (key, seq) VALUES (?, ?)", rows)
            self.con.execute(
                "INSERT INTO covered (one, through_seq) VALUES (1, ?) ON CONFLICT (one) "
                "DO UPDATE SET through_seq = max(through_seq, excluded.through_seq)", (through,))
            crash_point("event_index.before_commit")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
