"""Crash-safe file primitives: an inter-process lock and atomic Parquet writes.

Readers glob ``part-*.parquet``; writers write ``.tmp-*`` files in the same
folder, fsync them and ``os.replace`` them into place. A crash therefore leaves
either the old set of files or the new one visible, never half a file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.faults import crash_point

TMP_PREFIX = ".tmp-"


class StorageError(OSError):
    """A write could not complete (disk full, permission denied, read-only file system).

    Raised after the temp file is removed: the destination is unchanged.
    """


class LockTimeout(TimeoutError):
    """Another process held the lock for longer than we were willing to wait."""


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 600.0, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing).

    The kernel releases the lock when the holder dies, so a SIGKILLed writer
    never leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LockTimeout(f"could not lock {path} within {timeout:.0f}s") from None
                time.sleep(poll)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a new or removed name in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_parquet(table: pa.Table, dest: Path) -> Path:
    """Write ``table`` to ``dest`` so that readers see all of it or nothing.

    Raises the underlying ``OSError`` (disk full, permission denied) after
    removing the temp file, so a failed write leaves no trace.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{dest.name}"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        crash_point("files.before_rename")
        os.replace(tmp, dest)
        crash_point("files.after_rename")
        fsync_dir(dest.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(exc.errno, f"cannot write {dest}: "
                               f"{exc.strerror or exc}; nothing was written there") from exc
        raise
    return dest


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temp files left by writers that died; call only under the writer lock."""
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n
