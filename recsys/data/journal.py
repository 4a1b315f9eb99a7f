"""The intake journal on disk: segment files, sealing them into the landing zone, recovery.

A segment ``Paths.intake / seg-<boot id>-<n:06d>.jsonl`` holds one JSON object per line: an
event's fields as text, ``_row`` (its line number), ``_nonscalar`` when a field held an object or
a list, or ``_malformed`` and ``raw`` for an entry that was not an object at all. Only lines
that were fsynced were acknowledged (``recsys.data.intake`` writes them).

**Sealing** ingests one segment as one chunk through ``Ingestor`` under ``LandingZone.writer()``
(the same lock, validation, sequence numbers, quarantine with reasons and atomic rename as any
file, source ``http:<segment name>``), then deletes the segment.

**Exactly once.** A crash after the part is published and before the segment is deleted leaves
a segment that is sealed again later. Ingestion already refuses an event id that has landed
(ids are the client's ``event_id`` or a hash of the content), so the second seal lands nothing;
its quarantine rows keep their ids (source, line number and text are the same) and are not
written twice. A crash before an fsync loses only rows that were never acknowledged; a last line
cut short by it is dropped when the segment is read.

**Recovery.** Each writing process holds an ``flock`` on ``intake/<boot id>.lock`` while it
lives (the kernel releases it when the process dies, SIGKILL included). ``recover(paths)`` seals
every segment whose owner's lock is free. The service calls it when it starts; the micro-batch
flow can call it too, so events posted to a service that died are not stranded until a restart.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from pathlib import Path

import pyarrow as pa

from recsys.config import IngestConfig, Paths
from recsys.data.ingest import EVENT_RAW_COLUMNS, Ingestor, IngestReport
from recsys.data.landing import LandingZone
from recsys.data.readers import NONSCALAR, Malformed, RawChunk
from recsys.files import fsync_dir

try:  # a few times faster than json for the journal's small objects; prefect brings it
    import orjson

    def dumps(obj: object) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
except ImportError:  # pragma: no cover - the standard library does the same, slower
    import json

    def dumps(obj: object) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    loads = json.loads

log = logging.getLogger(__name__)

SEGMENT_RE = re.compile(r"^seg-([0-9a-f]{8})-(\d{6})\.jsonl$")
LOCK_RE = re.compile(r"^([0-9a-f]{8})\.lock$")
MALFORMED = "_malformed"
ROW = "_row"


def segment_name(boot_id: str, n: int) -> str:
    return f"seg-{boot_id}-{n:06d}.jsonl"


def read_segment(path: Path) -> RawChunk:
    """A journal segment as one ingestion chunk; non-objects become malformed rows.

    A last line without its newline was cut short by a crash before its fsync, so it was never
    acknowledged: it is dropped.
    """
    lines = path.read_bytes().split(b"\n")
    if lines[-1]:
        log.warning("%s: dropped a line cut short by a crash (never acknowledged)", path.name)
    rows, malformed = [], []
    for n, line in enumerate(lines[:-1], start=1):
        try:
            row = loads(line)
        except ValueError:
            text = line.decode("utf-8", errors="replace")[:4096]
            malformed.append(Malformed(n, text, f"journal line {n} is not JSON"))
            continue
        if MALFORMED in row:
            malformed.append(Malformed(row.get(ROW, n), row.get("raw", ""), row[MALFORMED]))
        else:
            rows.append(row)
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string())
                      for c in (*EVENT_RAW_COLUMNS, NONSCALAR)}
                     | {ROW: pa.array([r.get(ROW) for r in rows], pa.int64())})
    return RawChunk(table, 1, malformed)


def seal_segment(paths: Paths, path: Path, config: IngestConfig | None = None,
                 timeout: float = 600.0, threads: int | None = None) -> IngestReport | None:
    """Ingest one segment into the landing zone, then delete it (None if already gone).

    ``threads``: DuckDB's threads for it (``Ingestor``); default every core.
    """
    zone = LandingZone(paths)
    with zone.writer(timeout=timeout) as writer, \
            Ingestor(writer, config or IngestConfig(), threads) as ing:
        if not path.exists():  # sealed meanwhile by a recovery in another process
            return None
        chunk = read_segment(path)
        report = IngestReport(source=f"http:{path.name}")
        if chunk.table.num_rows or chunk.malformed:
            ing.ingest_event_chunk(chunk, report.source, report)
        path.unlink()
        fsync_dir(path.parent)
    log.info(report.summary())
    return report


def recover(paths: Paths, config: IngestConfig | None = None,
            timeout: float = 600.0) -> list[IngestReport]:
    """Seal the segments of intake writers that died; never touches a live writer's.

    Never raises for a segment it cannot seal yet (logged; the next call tries again), so a
    flow can call it before its own work.
    """
    folder = paths.intake
    if not folder.is_dir():
        return []
    by_boot: dict[str, list[Path]] = {}
    for p in folder.iterdir():
        if m := SEGMENT_RE.match(p.name):
            by_boot.setdefault(m.group(1), []).append(p)
        elif m := LOCK_RE.match(p.name):
            by_boot.setdefault(m.group(1), [])
    reports = []
    for boot, segments in sorted(by_boot.items()):
        lock = folder / f"{boot}.lock"
        fd = try_lock(lock)
        if fd is None:  # its writer is alive
            continue
        try:
            for seg in sorted(segments):
                if report := seal_segment(paths, seg, config, timeout):
                    reports.append(report)
            lock.unlink(missing_ok=True)
        except Exception as exc:
            log.warning("could not recover the intake segments of %s yet: %s", boot, exc)
        finally:
            os.close(fd)
    return reports


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd

