"""Replay streams events in time order, window by window, idempotently."""

from __future__ import annotations

import duckdb
import pandas as pd

from recsys.data.landing import LandingZone
from recsys.data.replay import ReplayConfig, replay, windows


def frame():
    ts = pd.to_datetime(["2024-01-01 00:00:30", "2024-01-01 00:00:05", "2024-01-01 00:02:00",
                         "2024-01-01 00:00:05", "2024-01-01 00:01:10"])
    return pd.DataFrame({"user_id": ["a", "b", "c", "d", "e"], "item_id": "i",
                         "event_type": "view", "ts": ts})


def test_windows_are_time_ordered_and_cover_everything():
    cfg = ReplayConfig(speedup=60, tick_seconds=1, realtime=False)  # one minute per tick
    got = [w.user_id.tolist() for w in windows(frame(), cfg)]
    assert got == [["b", "d", "a"], ["e", "c"]], "stable sort keeps file order on ties"


def test_a_fractional_speedup_on_microsecond_timestamps_works():
    events = frame().astype({"ts": "datetime64[us]"})  # as read back from Parquet
    cfg = ReplayConfig(speedup=7.123456789, tick_seconds=5, realtime=False)
    got = [w for w in windows(events, cfg)]
    assert sum(len(w) for w in got) == 5  # found by the soak test: this used to raise


def test_replay_lands_each_window_with_increasing_sequence(paths):
    slept = []
    cfg = ReplayConfig(speedup=60, tick_seconds=1, realtime=True)
    reports = replay(frame(), cfg, paths=paths, sleep=slept.append)
    assert [r.accepted for r in reports] == [3, 2]
    assert len(slept) == 2
    parts = LandingZone(paths).event_parts()
    df = duckdb.sql(f"SELECT user_id, ingest_seq FROM read_parquet({[str(p) for p in parts]!r}) "
                    "ORDER BY ingest_seq, user_id").df()
    order = df.groupby("ingest_seq").user_id.apply(sorted).tolist()
    assert order == [["a", "b", "d"], ["c", "e"]]
    again = replay(frame(), ReplayConfig(speedup=60, tick_seconds=1, realtime=False), paths=paths)
    assert sum(r.accepted for r in again) == 0 and sum(r.duplicates_dropped for r in again) == 5


def test_replay_can_start_later_and_stop_after_ticks(paths):
    cfg = ReplayConfig(speedup=60, tick_seconds=1, realtime=False,
                       start=pd.Timestamp("2024-01-01 00:01:00"), max_ticks=1)
    reports = replay(frame(), cfg, paths=paths)
    assert [r.accepted for r in reports] == [1]
