"""Events over HTTP, durable before the acknowledgement: a group-committed journal, sealed.

Why not a landing part per request: a part takes a Parquet file, a sequence number and the
landing lock, and that lock is held for minutes by a large file ingestion or a forget-user
rewrite; a web request must not wait behind them, and thousands of requests a second must not
make thousands of tiny parts. So the path from a request to a landed event has two stages.

1. **Journal (group commit).** One writer thread owns an append-only journal in
   ``Paths.intake``: segments ``seg-<boot id>-<n:06d>.jsonl``, one JSON object per line (the
   event's fields as text, ``_row`` its line number, ``_nonscalar`` when a field held an object
   or a list, ``_malformed`` and ``raw`` when the entry was not an object at all). The writer
   takes every request waiting; after the first it waits ``IntakeConfig.group_window_ms`` for
   more. It checks all of their rows in ONE DuckDB call of ``sql/check_events.sql`` (the
   file ingestion's row checks, so the same reasons), appends every row, good and bad, then
   ``fsync``s once and only then settles each request. A 2xx therefore means "on disk"; a
   request whose journal write fails gets a 503 and nothing it sent counts as accepted.
2. **Seal.** A sealer thread rotates to a new segment every ``IntakeConfig.seal_interval_s`` and
   ingests each closed segment as one chunk through ``Ingestor`` under ``LandingZone.writer()``:
   the same lock, validation, sequence numbers, quarantine (bad rows with their reasons) and
   atomic rename as any file, with source ``http:<segment name>``. Then it deletes the segment.

Sealing, why a segment sealed twice lands nothing twice, and the recovery of a dead process's
segments are ``recsys.data.journal``'s; this module is the request side and the writer.

Rows that pass the pre-validation can still be refused at sealing in one case the request path
does not check (it would mean reading every landed part per request): a client ``event_id`` that
already landed with different content is quarantined as ``duplicate_event_id`` then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from recsys import sql
from recsys.config import IngestConfig, IntakeConfig, Paths
from recsys.data.ingest import EVENT_RAW_COLUMNS, check_event_rows
from recsys.data.journal import (
    MALFORMED,
    ROW,
    dumps,
    recover,
    seal_segment,
    segment_name,
    try_lock,
)
from recsys.data.readers import NONSCALAR, json_row
from recsys.files import fsync_dir
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)

SEALER_NICE = 10  # the sealer thread's nice value (0 = as important as the requests)

# (user_id, ts, item_id, event_type) of an accepted event, for the service's histories.
Accepted = tuple[str, object, str, str]

_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}


class IntakeUnavailable(RuntimeError):
    """The journal could not be written (disk full, not writable) or the intake is stopped.

    Nothing of the request was acknowledged; the client may send it again.
    """


def request_rows(entries: Sequence[object]) -> list[dict]:
    """A request's entries as journal rows: text fields of an object, else ``_malformed``.

    >>> request_rows([{"user_id": 7, "ts": "2024-01-01"}, [1]])[1]
    {'_malformed': 'entry 1: expected a JSON object, got an array', 'raw': '[1]'}
    """
    rows = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            rows.append({k: v for k, v in json_row(entry, EVENT_RAW_COLUMNS).items()
                         if v is not None})
        else:
            rows.append({MALFORMED: f"entry {i}: expected a JSON object, got {json_kind(entry)}",
                         "raw": dumps(entry).decode()[:4096]})
    return rows


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words ("an array", "a string", ...)."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


class UnreadableRequest(ValueError):
    """The request's content broke validation itself (not one row's reason); nothing kept."""


@dataclass
class Outcome:
    """What became of one request's entries; ``rejected``: index (0-based), reason, detail."""

    accepted: int = 0
    rejected: list[dict] = field(default_factory=list)


@dataclass
class _Job:
    rows: list[dict]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Intake:
    """The journal writer and sealer of one process; see the module docstring.

    ``on_durable`` receives the accepted events of each group after its fsync and before any
    of its requests is answered (the service adds them to its in-memory histories).
    """

    def __init__(self, paths: Paths, config: IntakeConfig | None = None,
                 ingest: IngestConfig | None = None,
                 on_durable: Callable[[list[Accepted]], None] | None = None):
        self.paths, self.config = paths, config or IntakeConfig()
        self.ingest = ingest or IngestConfig()
        self.on_durable = on_durable
        self.folder = paths.intake
        self.folder.mkdir(parents=True, exist_ok=True)
        self.boot_id = uuid.uuid4().hex[:8]
        self._boot_lock = try_lock(self.folder / f"{self.boot_id}.lock")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._segment_lock = threading.Lock()  # the writer's append against the sealer's rotation
        self._fd: int | None = None
        self._segment: Path | None = None
        self._lines = self._size = 0  # lines and bytes in the open segment
        self._n = 0  # segments opened by this process
        self._closed: list[Path] = []  # rotated, waiting to be sealed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.running = False
        self.fsyncs = self.groups = self.rows = 0  # counters for /health and the tests
        self.last_seal_s: float | None = None

    # ------------------------------------------------------------ request path
    async def submit(self, rows: list[dict]) -> Outcome:
        """Journal ``rows`` (from ``request_rows``); returns once they are on disk."""
        if not self.running:
            raise IntakeUnavailable("the event intake is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Job(rows, future, loop))
        return await future

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the writer and the sealer (which first recovers orphaned segments)."""
        self.running = True
        for target, name in ((self._write_loop, "intake-writer"),
                             (self._seal_loop, "intake-sealer")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, seal_timeout: float = 30.0) -> None:
        """Answer what is queued, stop, and seal every segment.

        A segment that cannot be sealed now (the landing lock is busy) stays for ``recover``.
        """
        self.running = False
        self._stop.set()
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads = []
        self.rotate()
        sealed = self.seal_closed(seal_timeout)
        if self._boot_lock is not None:
            if sealed:  # nothing left to recover: the lock file goes too
                with contextlib.suppress(OSError):
                    (self.folder / f"{self.boot_id}.lock").unlink()
            os.close(self._boot_lock)
            self._boot_lock = None

    # ------------------------------------------------------------------ writer
    def _write_loop(self) -> None:
        con = sql.connect()
        # A group is a few rows; DuckDB's thread pool costs more to wake than it saves (about
        # a fifth of the call), and the cores are the event loop's and the model's.
        con.execute("SET threads = 1")
        try:
            while (first := self._jobs.get()) is not None:
                jobs, stop = self._gather(first)
                try:
                    self._commit(con, jobs)
                except Exception as exc:  # a bug must not leave every later request waiting
                    log.exception("the intake writer failed on a group of %d", len(jobs))
                    _settle(jobs, [(IntakeUnavailable(f"the event intake failed: {exc}"), None)]
                            * len(jobs))
                if stop:
                    break
        finally:
            con.close()
            while True:  # requests queued behind the stop get an answer, not a hang
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    _settle([job], [(IntakeUnavailable("the event intake is stopping"), None)])

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first request and every one arriving within the group window after it."""
        jobs = [first]
        deadline = time.monotonic() + self.config.group_window_ms / 1000
        while True:
            left = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=left) if left > 0 else self._jobs.get_nowait()
            except queue.Empty:
                return jobs, False
            if job is None:
                return jobs, True
            jobs.append(job)

    def _commit(self, con, jobs: list[_Job]) -> None:
        """Validate, journal and fsync one group, then settle its requests."""
        rows = [row for job in jobs for row in job.rows]
        try:
            verdicts = _prevalidate(con, rows, self.ingest)
        except Exception as exc:
            if len(jobs) > 1:  # one request's content broke the call: the others go on alone
                for job in jobs:
                    self._commit(con, [job])
                return
            log.warning("could not validate a request of %d entries: %s", len(rows), exc)
            _settle(jobs, [(UnreadableRequest(f"the events could not be read: {exc}"), None)])
            return
        try:
            self._append(rows)
        except Exception as exc:
            log.error("could not journal %d posted events: %s", len(rows), exc)
            error = exc if isinstance(exc, IntakeUnavailable) else IntakeUnavailable(
                f"the event journal cannot be written ({_why(exc)}); nothing was accepted, "
                "send the events again later")
            _settle(jobs, [(error, None)] * len(jobs))
            return
        self.groups += 1
        self.rows += len(rows)
        accepted: list[Accepted] = []
        outcomes = []
        start = 0
        for job in jobs:
            outcome = Outcome()
            for index in range(len(job.rows)):
                verdict = verdicts[start + index]
                if verdict[0] == "rejected":
                    outcome.rejected.append({"index": index, "reason": verdict[1],
                                             "detail": verdict[2]})
                else:
                    outcome.accepted += 1
                    if verdict[0] == "accepted":
                        accepted.append(verdict[1])
            start += len(job.rows)
            outcomes.append(outcome)
        if self.on_durable is not None and accepted:
            try:
                self.on_durable(accepted)
            except Exception:  # the events are durable: answer anyway
                log.exception("could not hand posted events to the service")
        _settle(jobs, [(None, outcome) for outcome in outcomes])

    def _append(self, rows: list[dict]) -> None:
        """Append ``rows`` to the open segment and fsync; on failure leave no partial line."""
        with self._segment_lock:
            if self._fd is None:
                self._open_segment()
            fd, first = self._fd, self._lines
            data = b"".join(dumps(row | {ROW: first + n}) + b"\n"
                            for n, row in enumerate(rows, start=1))
            offset = self._size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                self._abandon_segment(offset)
                raise
            self._lines += len(rows)
            self._size += len(data)
            self.fsyncs += 1

    def _open_segment(self) -> None:
        self._n += 1
        path = self.folder / segment_name(self.boot_id, self._n)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fsync_dir(self.folder)  # the new name must survive a power cut, like its lines
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._fd, self._segment, self._lines, self._size = fd, path, 0, 0

    def _abandon_segment(self, offset: int) -> None:
        """After a failed write: cut the segment back to its acknowledged lines and close it.

        The next write opens a fresh segment; an empty one is removed, one with lines waits to
        be sealed.
        """
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, offset)
        os.close(self._fd)
        if self._lines == 0:
            with contextlib.suppress(OSError):
                self._segment.unlink()
        else:
            self._closed.append(self._segment)
        self._fd, self._segment, self._lines = None, None, 0

    # ------------------------------------------------------------------ sealer
    def rotate(self) -> None:
        """Close the open segment (if it holds lines); the next write starts a new one."""
        with self._segment_lock:
            if self._fd is not None and self._lines:
                os.close(self._fd)
                self._closed.append(self._segment)
                self._fd, self._segment, self._lines = None, None, 0

    def seal_closed(self, timeout: float = 600.0) -> bool:
        """Seal the rotated segments in order; False if one failed (it is retried later)."""
        while self._closed:
            path = self._closed[0]
            started = time.monotonic()
            try:
                seal_segment(self.paths, path, self.ingest, timeout, threads=1)
            except Exception as exc:
                log.warning("could not seal %s yet: %s", path.name, exc)
                return False
            self.last_seal_s = time.monotonic() - started
            self._closed.pop(0)
        return True

    def _seal_loop(self) -> None:
        # Sealing is background work: on a small machine its burst every second (a DuckDB
        # ingest of a tenth of a second or more) took the cores from the requests waiting on
        # the writer, and set their p99. One DuckDB thread (``seal_closed``) and a lower
        # scheduling priority for this thread (Linux: a thread's own nice value) leave them
        # first in line.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SEALER_NICE)
        try:
            recover(self.paths, self.ingest)
        except Exception:
            log.exception("recovering orphaned intake segments failed")
        while not self._stop.wait(self.config.seal_interval_s):
            self.rotate()
            self.seal_closed()

    def waiting(self) -> int:
        """Segments not yet sealed (the open one included)."""
        return len(self._closed) + (self._fd is not None)


# ---------------------------------------------------------------- validation
def _prevalidate(con, rows: list[dict], config: IngestConfig) -> list[tuple]:
    """Per row: ("accepted", Accepted), ("duplicate",) or ("rejected", reason, detail).

    The row checks are file ingestion's (``sql/check_events.sql`` runs the ``checked_events``
    macro that ``validate_events.sql`` runs). Repeats inside the group are compared here, by the
    rule of ``validate_events.sql``: the first row of an event id (the client's, else the
    content) is accepted, a later one with the same content is a duplicate, one with different
    content is ``duplicate_event_id``. Repeats across groups are found when the journal is
    sealed.
    """
    objects = [n for n, row in enumerate(rows) if MALFORMED not in row]
    verdicts: list[tuple] = [("rejected", "malformed_row", row.get(MALFORMED))
                             for row in rows]
    if not objects:
        return verdicts
    table = pa.table({c: pa.array([rows[n].get(c) for n in objects], pa.string())
                      for c in (*EVENT_RAW_COLUMNS, NONSCALAR)}
                     | {ROW: pa.array(objects, pa.int64())})
    checked = check_event_rows(con, table, config, utc_now())
    first: dict[tuple, tuple] = {}  # event id -> content of its first valid row
    for n, problem, event_id, user, item, kind, ts, value in zip(
            checked[ROW], checked["problem"], checked["event_id"], checked["user_id"],
            checked["item_id"], checked["event_type"], checked["ts"], checked["value"],
            strict=True):
        if problem is not None:
            reason, _, detail = problem.partition("|")
            verdicts[n] = ("rejected", reason, detail)
            continue
        content = (user, item, kind, ts, value)
        key = ("id", event_id) if event_id is not None else ("content", content)
        if key not in first:
            first[key] = content
            verdicts[n] = ("accepted", (user, ts, item, kind))
        elif first[key] == content:
            verdicts[n] = ("duplicate",)
        else:
            verdicts[n] = ("rejected", "duplicate_event_id",
                           f"event_id {event_id} repeats an earlier event posted with it, with "
                           "different content")
    return verdicts


# ------------------------------------------------------------------- helpers
def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _settle(jobs: list[_Job], results: list[tuple[Exception | None, Outcome | None]]) -> None:
    """Hand each request its result, with one wake-up of each event loop for the whole group.

    A wake-up is a write to the loop's self-pipe, a system call that gives up the GIL; getting
    it back can take the interpreter's switch interval (5 ms) while the loop is busy, so one
    call per request made a group of 30 wait well over 100 ms to be answered.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for job, result in zip(jobs, results, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, *result))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the event loop is gone (the service stopped)
            loop.call_soon_threadsafe(_set_all, settled)


def _set_all(settled: list[tuple[asyncio.Future, Exception | None, Outcome | None]]) -> None:
    for future, error, outcome in settled:
        if future.done():  # the client went away; its events are journaled all the same
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)
