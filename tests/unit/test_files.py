"""Atomic publication and the writer lock survive crashes."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import files
from recsys.data.landing import LandingZone, list_parts, part_name
from recsys.files import LockTimeout, atomic_write_parquet, file_lock


def _die_mid_write(dest: str) -> None:
    """Child process: start writing a part, then die (SIGKILL-like) before the rename."""
    real = pq.write_table

    def half_then_die(table, where, **kw):
        real(table.slice(0, 10), where, **kw)
        os._exit(9)

    pq.write_table = half_then_die
    atomic_write_parquet(pa.table({"x": list(range(1000))}), __import__("pathlib").Path(dest))


def test_crash_mid_write_leaves_no_visible_part(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    p = mp.get_context("fork").Process(target=_die_mid_write, args=(str(folder / part_name(1)),))
    p.start()
    p.join()
    assert p.exitcode == 9
    assert list_parts(folder) == [], "readers must not see a half-written part"
    leftovers = [f for f in folder.iterdir() if f.name.startswith(files.TMP_PREFIX)]
    assert leftovers, "the dead writer's temp file is there..."
    assert files.remove_stale_temp_files(folder) == len(leftovers)  # ...until the next writer


def test_failed_write_removes_its_temp_file(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        atomic_write_parquet(pa.table({"x": [1]}), tmp_path / part_name(1))
    assert list(tmp_path.iterdir()) == []


def _hold_lock(path: str, seconds: float) -> None:
    with file_lock(__import__("pathlib").Path(path)):
        time.sleep(seconds)


def test_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path):
    lock = tmp_path / ".lock"
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_hold_lock, args=(str(lock), 30))
    p.start()
    time.sleep(0.5)
    with pytest.raises(LockTimeout), file_lock(lock, timeout=0.3):
        pass
    p.kill()  # SIGKILL: the kernel drops the flock with the process
    p.join()
    with file_lock(lock, timeout=2):
        pass


def test_sequences_only_grow_across_folders(paths):
    zone = LandingZone(paths)
    with zone.writer() as w:
        s1 = w.allocate()
        w.publish_quarantine(s1, pa.table({"x": [1]}))
    with zone.writer() as w:
        s2 = w.allocate()
        w.publish_events(s2, pa.table({"x": [1]}))
    assert (s1, s2) == (1, 2)
    assert zone.max_seq() == 2 and zone.event_watermark() == 2
