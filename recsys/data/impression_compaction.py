"""Hourly compaction of the impressions zone: the parts written in an hour become one file.

Why: the service writes a part per flush (every second under traffic, 3,600 an hour), and a
reader pays for every part it opens (about half a millisecond of CPU), so a day of parts costs
a 24-hour online report some 40 s before it reads a row (bench/online_report.py --parts).

How, crash-safe and invisible to readers:

* the parts named (written) in an hour that closed :data:`SETTLE` ago are copied, row for row,
  into ``hourly/hour-<YYYYmmddHH>.parquet``, written to a temp name, fsynced and renamed;
* readers (:func:`impression_files`) take an hour's file in place of that hour's parts as soon
  as it exists, so the rows are counted once before, during and after compaction;
* the parts are deleted by a later compaction, one that finds their hour already compacted:
  a reader that listed them just before the hourly file appeared still finds them.

One compaction at a time (a lock in the zone); the service's writer is never waited for: it only
ever writes parts named in the current hour.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from recsys import columns as C
from recsys.config import Paths
from recsys.files import TMP_PREFIX, file_lock, fsync_dir, remove_stale_temp_files
from recsys.timeutil import utc_now

HOURLY = "hourly"
SETTLE = dt.timedelta(minutes=5)  # an hour is compacted this long after it ends
_PART = re.compile(r"^part-(\d{10})\d{4}-")  # part-<YYYYmmddHH><MMSS>-<boot id>-<n>.parquet
_HOUR_FILE = re.compile(r"^hour-(\d{10})\.parquet$")


def part_hour(path: Path) -> str | None:
    """``YYYYmmddHH`` of the hour a part was written in (None for a name that does not parse)."""
    m = _PART.match(path.name)
    return m.group(1) if m else None


def hourly_files(paths: Paths) -> dict[str, Path]:
    """Compacted hours: ``YYYYmmddHH`` -> file."""
    folder = paths.impressions / HOURLY
    if not folder.is_dir():
        return {}
    return {m.group(1): p for p in sorted(folder.iterdir()) if (m := _HOUR_FILE.match(p.name))}


def impression_files(paths: Paths) -> list[Path]:
    """Every impression row once: the hourly files, and the parts of hours not compacted yet.

    Parts are listed before the hourly files, so an hour compacted in between is read from its
    file (its parts are deleted only by a later compaction, after this listing has been read).
    """
    folder = paths.impressions
    parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    hours = hourly_files(paths)
    return [p for p in parts if part_hour(p) not in hours] + list(hours.values())


@dataclass
class CompactionReport:
    """What one compaction did: hours written, parts merged into them, parts deleted."""

    hours: list[str] = field(default_factory=list)
    merged: int = 0
    deleted: int = 0


def compact_impressions(paths: Paths, now: dt.datetime | None = None) -> CompactionReport:
    """Merge the parts of each closed hour into its hourly file; delete parts compacted before.

    Safe to run at any time and again after a crash: an hourly file is complete or absent, and
    parts are deleted only once their hour's file existed before this run began.
    """
    now = (now or utc_now()).replace(tzinfo=None)
    closed = (now - SETTLE).strftime("%Y%m%d%H")  # hours before this one are closed
    report = CompactionReport()
    if not paths.impressions.is_dir():
        return report
    with file_lock(paths.impressions / ".compact.lock", timeout=600):
        remove_stale_temp_files(paths.impressions / HOURLY)  # left by a compaction that died
        done = hourly_files(paths)
        by_hour: dict[str, list[Path]] = {}
        for part in sorted(paths.impressions.glob("part-*.parquet")):
            hour = part_hour(part)
            if hour is not None:
                by_hour.setdefault(hour, []).append(part)
        for hour, parts in sorted(by_hour.items()):
            if hour in done:
                for part in parts:
                    with contextlib.suppress(FileNotFoundError):
                        part.unlink()
                        report.deleted += 1
            elif hour < closed:
                _write_hour(paths.impressions / HOURLY / f"hour-{hour}.parquet", parts)
                report.hours.append(hour)
                report.merged += len(parts)
    return report


def _write_hour(dest: Path, parts: list[Path]) -> None:
    """Write ``parts`` into ``dest`` whole or not at all.

    Part by part (an hour of a busy service need not fit in memory), through a temp name,
    fsynced, renamed, the folder fsynced.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{dest.name}"
    try:
        with pq.ParquetWriter(tmp, C.IMPRESSION_SCHEMA, compression="zstd") as writer:
            for part in parts:
                writer.write_table(pq.read_table(part, schema=C.IMPRESSION_SCHEMA))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
