"""The append-only landing zone: immutable Parquet parts numbered by ingestion sequence.

Layout under ``Paths.root``::

    landing/events/part-000000000001.parquet   accepted events, one part per chunk
    landing/items/part-000000000002.parquet    accepted catalogue rows
    quarantine/part-000000000001.parquet       rejected rows with their reason
    landing/.lock                              held by the single writer
    landing/event_ids.sqlite                   which part holds which event id (event_index.py)

The sequence number in the file name is also stored on every row
(``ingest_seq``). It is allocated under the lock and only ever grows, so a
reader that has processed everything up to sequence ``w`` (its watermark) can
later ask for ``ingest_seq > w`` and is guaranteed to see every newer event:
a part with a lower number can never appear after one with a higher number.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recsys.config import Paths
from recsys.files import atomic_write_parquet, file_lock, remove_stale_temp_files

_PART_RE = re.compile(r"^part-(\d{12})\.parquet$")


def part_name(seq: int) -> str:
    return f"part-{seq:012d}.parquet"


def part_seq(path: Path) -> int | None:
    m = _PART_RE.match(path.name)
    return int(m.group(1)) if m else None


def list_parts(folder: Path) -> list[Path]:
    """Visible parts of one folder, in sequence order (temp files are never listed)."""
    if not folder.is_dir():
        return []
    parts = [p for p in folder.iterdir() if part_seq(p) is not None]
    return sorted(parts, key=lambda p: part_seq(p) or 0)


@dataclass(frozen=True)
class LandingZone:
    """Handle on the landing zone of one project root."""

    paths: Paths

    @property
    def folders(self) -> tuple[Path, ...]:
        return (self.paths.landing_events, self.paths.landing_items, self.paths.quarantine)

    @property
    def lock_path(self) -> Path:
        return self.paths.root / "landing" / ".lock"

    @contextlib.contextmanager
    def writer(self, timeout: float = 600.0) -> Iterator[Writer]:
        """The single-writer section: allocate sequences and publish parts."""
        with file_lock(self.lock_path, timeout=timeout):
            for folder in self.folders:
                remove_stale_temp_files(folder)
            yield Writer(self)

    def event_parts(self) -> list[Path]:
        return list_parts(self.paths.landing_events)

    def item_parts(self) -> list[Path]:
        return list_parts(self.paths.landing_items)

    def quarantine_parts(self) -> list[Path]:
        return list_parts(self.paths.quarantine)

    def max_seq(self) -> int:
        """Highest sequence published in any folder (0 when empty)."""
        best = 0
        for folder in self.folders:
            parts = list_parts(folder)
            if parts:
                best = max(best, part_seq(parts[-1]) or 0)
        return best

    def event_watermark(self) -> int:
        """Highest sequence that holds accepted events (0 when none)."""
        parts = self.event_parts()
        return (part_seq(parts[-1]) or 0) if parts else 0


class Writer:
    """Publishes parts; only obtainable through ``LandingZone.writer()``."""

    def __init__(self, zone: LandingZone):
        self.zone = zone
        self._next = zone.max_seq() + 1

    def allocate(self) -> int:
        """Reserve the next sequence number for one chunk of work."""
        seq = self._next
        self._next += 1
        return seq

    def publish_events(self, seq: int, table: pa.Table) -> Path | None:
        return self._publish(self.zone.paths.landing_events, seq, table)

    def publish_items(self, seq: int, table: pa.Table) -> Path | None:
        return self._publish(self.zone.paths.landing_items, seq, table)

    def publish_quarantine(self, seq: int, table: pa.Table) -> Path | None:
        return self._publish(self.zone.paths.quarantine, seq, table)

    @staticmethod
    def _publish(folder: Path, seq: int, table: pa.Table) -> Path | None:
        if table.num_rows == 0:
            return None
        return atomic_write_parquet(table, folder / part_name(seq))

    def replace_part(self, path: Path, table: pa.Table) -> Path:
        """Atomically rewrite one existing part (used by ``forget-user``)."""
        return atomic_write_parquet(table, path)
