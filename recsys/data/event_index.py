"""Which landing parts may hold an event id: the duplicate check reads those parts only.

Why: each chunk's events are checked against every event that already landed, so that an id
lands once. Read from the parts themselves, that check scans every part's ``event_id``:
0.68 s of one core at 10M events, growing with the zone, and the service's sealer runs it
every second or so. This index answers "which parts?" from a B-tree instead.

What it holds: ``(key, seq)`` pairs, ``key`` being 63 bits of the id's MD5
(``event_id_key`` in ``sql/macros.sql``: stable across DuckDB versions, unlike ``hash``)
and ``seq`` the part it landed in. It is a filter, not the truth: the exact check
(``sql/events_already_landed.sql``) still runs, on the parts the keys name. Two ids that
share a key cost one more part read, never a wrong answer.

It must never miss an id that landed. It records the highest event part it covers, and it
is opened only through :meth:`EventIndex.open`, which first indexes the parts above that
one (a crash between publishing a part and indexing it; a zone that landed before the index
existed), in batches of parts committed in sequence order, so a catch-up that dies keeps
what it committed and misses nothing. ``forget-user`` rewrites
parts and leaves the removed events' keys here, which holds no user id: a forgotten event
sent again is read for, not found, and lands again, as before the index.

One SQLite file beside the parts, touched only under the landing lock (the single
writer), derived data throughout: a file SQLite finds damaged (on opening or in use), or
one written with another key function or layout, is deleted and rebuilt from the parts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow.parquet as pq

from recsys import sql
from recsys.data.landing import LandingZone, part_name, part_seq
from recsys.faults import crash_point
from recsys.files import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")

# The layout and key function this code writes; a file with another is rebuilt.
_LAYOUT = 2  # 1: without covered.key_probe
_KEY_PROBE = "recsys event id index"  # its key is stored, so a changed key function shows
# Rows per catch-up transaction: bounds memory when a whole zone is indexed at once.
_CATCH_UP_ROWS = 1_000_000

_SCHEMA = """
CREATE TABLE landed (
    key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE TABLE covered (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    through_seq INTEGER NOT NULL,
    key_probe INTEGER NOT NULL
);
"""


class EventIndex:
    """The index of one landing zone, caught up; use it inside ``LandingZone.writer()`` only."""

    def __init__(self, zone: LandingZone, duck, cache_mb: int):
        """Use :meth:`open`: an index that has not caught up may miss ids."""
        self.zone, self.duck = zone, duck
        self.path = zone.paths.root / "landing" / "event_ids.sqlite"
        self._cache_mb = cache_mb
        self._probe = int(duck.execute("SELECT event_id_key(?)", [_KEY_PROBE]).fetchall()[0][0])
        self.con: sqlite3.Connection | None = None

    @classmethod
    def open(cls, zone: LandingZone, duck, cache_mb: int = 256) -> EventIndex:
        """Open (or rebuild) the index and index every event part it does not cover yet.

        ``duck``: a DuckDB connection with the project's macros (``sql.connect``).
        """
        index = cls(zone, duck, cache_mb)
        try:
            index._recovering(index._open_and_catch_up)
        except BaseException:
            index.close()
            raise
        return index

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    # -- reading and writing -------------------------------------------------------------
    @property
    def covered_through(self) -> int:
        """The highest event part sequence whose ids are all here (0: none)."""
        row = self.con.execute("SELECT through_seq FROM covered").fetchone()
        return int(row[0]) if row else 0

    def parts_holding(self, keys: np.ndarray) -> list[Path]:
        """The existing event parts that may hold one of ``keys``, in sequence order."""
        seqs = self._recovering(lambda: self._seqs_of(np.unique(keys).tolist()))
        folder = self.zone.paths.landing_events
        return [p for p in (folder / part_name(s) for s in sorted(seqs)) if p.exists()]

    def add(self, seq: int, keys: np.ndarray) -> None:
        """Record one just-published part's ids (call after it is durable)."""
        self._recovering(lambda: self._add(keys, np.full(len(keys), seq, dtype=np.int64), seq))

    # -- inside ----------------------------------------------------------------------------
    def _recovering(self, step: Callable[[], T]) -> T:
        """Run ``step``; if SQLite finds the file damaged, rebuild it and run ``step`` again.

        A rebuild catches up on every part, the one ``add`` was about to record included.
        OperationalError (locked, disk full, no permission) is not damage: it is raised as a
        ``StorageError`` naming the file, which ingestion reports like a full disk.
        """
        try:
            return step()
        except sqlite3.OperationalError as exc:
            raise StorageError(errno.EIO, f"event id index {self.path}: {exc} (derived data: "
                               "if it stays unusable, delete it and the next ingestion "
                               "rebuilds it from the landing parts)") from exc
        except sqlite3.DatabaseError as exc:
            log.warning("event id index %s is damaged (%s): rebuilding it from the landing "
                        "parts", self.path, exc)
            self._delete()
            self._open_and_catch_up()
            return step()

    def _delete(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _open_and_catch_up(self) -> None:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = self._connect()
        if not self._current():
            log.warning("event id index %s was written with another layout or key function: "
                        "rebuilding it from the landing parts", self.path)
            self._delete()
            self.con = self._connect()
        self._catch_up()

    def _connect(self) -> sqlite3.Connection:
        """Open the file; a new one gets this code's layout, an existing one is left as is."""
        con = sqlite3.connect(self.path, isolation_level=None)
        try:
            # WAL + NORMAL: a lost last transaction loses its rows and its coverage mark
            # together, and catching up re-indexes that part.
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute(f"PRAGMA cache_size = -{int(self._cache_mb) * 1024}")
            if not con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                con.executescript(_SCHEMA)
                con.execute(f"PRAGMA user_version = {_LAYOUT}")
        except BaseException:
            con.close()
            raise
        return con

    def _current(self) -> bool:
        """Written by this layout and key function (a file from another version is not)."""
        if self.con.execute("PRAGMA user_version").fetchone()[0] != _LAYOUT:
            return False
        row = self.con.execute("SELECT key_probe FROM covered").fetchone()
        return row is None or int(row[0]) == self._probe

    def _catch_up(self) -> int:
        """Index the event parts above ``covered_through``, in ascending batches."""
        through = self.covered_through
        parts = [p for p in self.zone.event_parts() if (part_seq(p) or 0) > through]
        if len(parts) > 1:
            log.info("indexing the event ids of %d landing parts (after part %d)",
                     len(parts), through)
        for batch in _batches(parts, _CATCH_UP_ROWS):
            table = sql.query(self.duck, "event_id_keys",
                              parts=[str(p) for p in batch]).to_arrow_table()
            self._add(table.column("id_key").to_numpy(), table.column("seq").to_numpy(),
                      part_seq(batch[-1]) or 0)
        return len(parts)

    def _seqs_of(self, keys: list[int]) -> set[int]:
        seqs: set[int] = set()
        chunk = min(30_000, self.con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        for start in range(0, len(keys), chunk):
            some = keys[start:start + chunk]
            seqs.update(s for (s,) in self.con.execute(
                f"SELECT DISTINCT seq FROM landed WHERE key IN ({','.join('?' * len(some))})",
                some))
        return seqs

    def _add(self, keys: np.ndarray, seqs: np.ndarray, through: int) -> None:
        order = np.argsort(keys, kind="stable")  # B-tree inserts in key order touch fewer pages
        rows: Iterable = zip(keys[order].tolist(), seqs[order].tolist(), strict=True)
        self.con.execute("BEGIN")
        try:
            self.con.executemany("INSERT OR IGNORE INTO landed (key, seq) VALUES (?, ?)", rows)
            self.con.execute(
                "INSERT INTO covered (one, through_seq, key_probe) VALUES (1, ?, ?) "
                "ON CONFLICT (one) DO UPDATE SET "
                "through_seq = max(through_seq, excluded.through_seq)", (through, self._probe))
            crash_point("event_index.before_commit")
            self.con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.con.execute("ROLLBACK")
            raise


def _batches(parts: list[Path], rows: int) -> Iterator[list[Path]]:
    """Consecutive runs of parts holding about ``rows`` events each (at least one part)."""
    batch: list[Path] = []
    n = 0
    for part in parts:
        batch.append(part)
        n += pq.read_metadata(part).num_rows
        if n >= rows:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch
