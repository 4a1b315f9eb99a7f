"""The intake journal on disk: sealed twice lands nothing twice, a dead writer's segments are
recovered (a live one's never), a line cut short by a crash is dropped."""

from __future__ import annotations

import os
import shutil

from recsys.config import IntakeConfig
from recsys.data.intake import Intake
from recsys.data.journal import read_segment, recover, seal_segment
from tests.unit.data.test_intake import event, landed, post, quarantined

SLOW_SEAL = IntakeConfig(seal_interval_s=60)  # the tests seal by hand


def test_sealing_a_segment_twice_lands_nothing_twice(paths, tmp_path):
    """A crash between publishing the part and deleting the segment: sealed again later."""
    intake = Intake(paths, SLOW_SEAL)
    intake.start()
    post(intake, [event(n) for n in range(20)] + [event(99, event_type="??")],
         [event(n, event_id=f"id{n}") for n in range(20, 30)])
    intake.rotate()
    [segment] = intake._closed
    copy = tmp_path / "copy.jsonl"
    shutil.copy(segment, copy)
    intake.seal_closed()
    first_events, first_quarantine = landed(paths), quarantined(paths)
    assert len(first_events) == 30 and len(first_quarantine) == 1
    shutil.copy(copy, segment)  # the segment survived the crash
    report = seal_segment(paths, segment)
    assert (report.accepted, report.duplicates_dropped, report.rows_read) == (0, 30, 31)
    assert len(landed(paths)) == 30 and len(quarantined(paths)) == 1
    assert not segment.exists()
    intake.close()


def test_recover_seals_a_dead_writers_segments_and_leaves_a_live_ones(paths):
    dead = Intake(paths, SLOW_SEAL)
    dead.start()
    post(dead, [event(n) for n in range(5)])
    live = Intake(paths, SLOW_SEAL)
    live.start()
    post(live, [event(n) for n in range(100, 103)])
    assert recover(paths) == []  # both writers hold their locks
    # The writer dies: its threads stop answering and the kernel drops its lock.
    dead._stop.set()
    dead._jobs.put(None)
    os.close(dead._boot_lock)
    dead._boot_lock = None
    [report] = recover(paths)
    assert report.accepted == 5 and report.source.startswith(f"http:seg-{dead.boot_id}-")
    assert not list(paths.intake.glob(f"*{dead.boot_id}*"))
    assert list(paths.intake.glob(f"seg-{live.boot_id}-*"))  # untouched
    live.close()
    assert len(landed(paths)) == 8 and recover(paths) == []


def test_a_line_cut_short_by_a_crash_is_dropped_and_a_garbled_one_quarantined(paths):
    paths.intake.mkdir(parents=True)
    segment = paths.intake / "seg-0badcafe-000001.jsonl"
    lines = [b'{"user_id":"u","item_id":"i","event_type":"view","ts":"2024-01-01","_row":1}',
             b"{garbled", b'{"user_id":"u","item_id":"j","event_type":"vi']
    segment.write_bytes(b"\n".join(lines))  # the last line has no newline: never fsynced
    chunk = read_segment(segment)
    assert chunk.table.num_rows == 1 and [m.row_number for m in chunk.malformed] == [2]
    [report] = recover(paths)
    assert (report.accepted, report.n_quarantined) == (1, 1)
