"""Hourly compaction of the impressions zone: fewer files, every row read once, crash-safe."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.config import AttributionConfig, Paths
from recsys.data.impression_compaction import (
    HOURLY,
    compact_impressions,
    hourly_files,
    impression_files,
)
from recsys.evaluation.online import impression_parts, online_report
from recsys.files import atomic_write_parquet
from tests.unit.evaluation.test_online import (
    NOW,
    REACTIONS,
    VIEWS,
    at,
    event,
    shown,
    write_events,
)


def write_part(paths: Paths, rows: list[dict], written: dt.datetime, n: int) -> None:
    name = f"part-{written:%Y%m%d%H%M%S}-0badc0de-{n:06d}.parquet"
    atomic_write_parquet(pa.Table.from_pylist(rows, schema=C.IMPRESSION_SCHEMA),
                         paths.impressions / name)


def rows_read(paths: Paths) -> int:
    return sum(pq.read_metadata(p).num_rows for p in impression_files(paths))


def traffic(paths: Paths) -> None:
    """Answers in three parts per hour, 10:xx and 11:xx, one in the open hour 12:xx."""
    n = 0
    for hour in (10, 11):
        for minute in (1, 20, 40):
            n += 1
            write_part(paths, shown(f"r{n}", "u1", ["x", "y"], at(hour, minute)),
                       at(hour, minute, 1), n)
    write_part(paths, shown("late", "u2", ["w"], at(12, 1)), at(12, 1, 1), n + 1)


def test_closed_hours_become_one_file_each_and_their_parts_go_a_run_later(paths):
    traffic(paths)
    assert len(impression_files(paths)) == 7 and rows_read(paths) == 13
    first = compact_impressions(paths, now=at(12, 6))  # 11:xx closed 5 min ago
    assert (first.hours, first.merged, first.deleted) == (["2026030110", "2026030111"], 6, 0)
    assert sorted(hourly_files(paths)) == ["2026030110", "2026030111"]
    assert len(list(paths.impressions.glob("part-*.parquet"))) == 7  # not deleted yet
    assert len(impression_files(paths)) == 3 and rows_read(paths) == 13  # each row once
    second = compact_impressions(paths, now=at(12, 10))
    assert (second.hours, second.merged, second.deleted) == ([], 0, 6)
    assert [p.name[:12] for p in impression_files(paths)] == ["part-2026030", "hour-2026030",
                                                              "hour-2026030"]
    assert rows_read(paths) == 13
    # a report of the hour from 12:30 skips the 10:xx file: written by 11:00, before 12:30 - 1 h
    assert [p.name for p in impression_parts(paths, since=at(12, 30))] == [
        "part-20260301120101-0badc0de-000007.parquet", "hour-2026030111.parquet"]
    table = pq.read_table(hourly_files(paths)["2026030110"])
    assert table.schema == C.IMPRESSION_SCHEMA
    assert table.column(C.REQUEST_ID).to_pylist() == ["r1", "r1", "r2", "r2", "r3", "r3"]


def test_an_hour_still_open_or_just_closed_is_left_alone(paths):
    traffic(paths)
    assert compact_impressions(paths, now=at(12, 4)).hours == ["2026030110"]  # 11:xx settling
    assert compact_impressions(paths, now=at(12, 3)).hours == []  # nothing new; 10's go later


def test_the_report_is_the_same_before_during_and_after_compaction(paths):
    traffic(paths)
    write_events(paths, REACTIONS + VIEWS + [event("c1", "u1", "x", "click", at(10, 21), "r2")])
    cfg = AttributionConfig(k=1)

    def figures():  # sums in another order differ in the last bit
        r = online_report(paths, cfg, now=NOW)
        return r.totals.drop(columns="hour").round(12).to_dict("records"), \
            r.matched.to_dict("records")

    before = figures()
    compact_impressions(paths, now=at(12, 6))
    during = figures()
    compact_impressions(paths, now=at(12, 10))
    assert before == during == figures()
    # c1 by its request id; e1 (its request a1 is not here) and e5 by the window; u2's w was
    # shown after e3 and e4
    assert before[1] == [{"event_type": "click", "exact": 1, "window": 2, "none": 1},
                         {"event_type": "cart", "exact": 0, "window": 1, "none": 0},
                         {"event_type": "purchase", "exact": 0, "window": 0, "none": 1}]
    assert before[0][0]["impressions"] == 13


def test_a_compaction_that_died_left_nothing_a_reader_sees(paths):
    traffic(paths)
    (paths.impressions / HOURLY).mkdir(parents=True)
    stale = paths.impressions / HOURLY / ".tmp-dead-hour-2026030110.parquet"
    stale.write_bytes(b"half a file")
    assert rows_read(paths) == 13
    compact_impressions(paths, now=at(12, 6))
    assert not stale.exists() and rows_read(paths) == 13
