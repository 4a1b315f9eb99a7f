"""Replay streams events in time order, window by window, idempotently."""

from __future__ import annotations

import duckdb
import pandas as pd

from recsys.data.landing import LandingZone
from recsys.data.replay import ReplayConfig, looped_windows, newest_landed_ts, replay, windows


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


def _landed(paths) -> pd.DataFrame:
    parts = [str(p) for p in LandingZone(paths).event_parts()]
    return duckdb.sql(f"SELECT event_id, user_id, ts, ingest_seq FROM read_parquet({parts!r}) "
                      "ORDER BY ingest_seq, ts").df()


def test_doctests():
    import doctest

    from recsys.data import replay as module

    assert doctest.testmod(module).failed == 0


def test_a_looping_replay_dates_each_lap_after_the_previous_one():
    cfg = ReplayConfig(speedup=60, tick_seconds=1, realtime=False, loop=True)
    got = []
    for lap, window in looped_windows(frame(), cfg):
        got.append((lap, window))
        if lap == 2:
            break
    lap0 = pd.concat([w for lap, w in got if lap == 0])
    lap1 = pd.concat([w for lap, w in got if lap == 1])
    assert lap0.user_id.tolist() == lap1.user_id.tolist() == ["b", "d", "a", "e", "c"]
    period = pd.Timedelta("1min55s") + pd.Timedelta("1min")  # the span plus one tick
    assert (lap1.ts.to_numpy() == (lap0.ts + period).to_numpy()).all()
    assert lap1.ts.min() > lap0.ts.max()


def test_a_looping_replay_lands_two_laps_in_order_with_distinct_ids(paths):
    events = frame().assign(event_id=["e1", "e2", "e3", "e4", "e5"])
    ticks = []
    cfg = ReplayConfig(speedup=60, tick_seconds=1, realtime=False, loop=True, max_ticks=5)
    reports = replay(events, cfg, paths=paths, on_tick=ticks.append)
    assert sum(r.accepted for r in reports) == 10 and not any(r.duplicates_dropped
                                                                for r in reports)
    assert [t.lap for t in ticks] == [0, 0, 1, 1, 1]  # windows run on across the lap's seam
    landed = _landed(paths)
    assert landed.ts.is_monotonic_increasing, "event time follows ingestion order"
    assert landed.event_id.tolist() == ["e2", "e4", "e1", "e5", "e3", "e2~lap1", "e4~lap1",
                                        "e1~lap1", "e5~lap1", "e3~lap1"]
    assert newest_landed_ts(paths) == landed.ts.max() == ticks[-1].newest_ts


def test_a_looping_replay_continues_after_what_has_landed(paths):
    replay(frame(), ReplayConfig(speedup=60, tick_seconds=1, realtime=False), paths=paths)
    newest = newest_landed_ts(paths)
    assert newest == pd.Timestamp("2024-01-01 00:02:00")
    ticks = []
    cfg = ReplayConfig(speedup=60, tick_seconds=1, realtime=False, loop=True, start=newest,
                       max_ticks=3)
    reports = replay(frame(), cfg, paths=paths, on_tick=ticks.append)
    # the newest landed event comes round again as a duplicate; the next lap follows it
    assert reports[0].duplicates_dropped == 1 and reports[0].accepted == 0
    assert [t.lap for t in ticks] == [0, 1, 1] and sum(r.accepted for r in reports) == 5
    assert _landed(paths).ts.is_monotonic_increasing


def test_a_loop_that_catches_up_with_the_clock_dates_nothing_in_the_future(paths):
    now = pd.Timestamp("2024-01-01 00:03:00").to_pydatetime()  # inside the gap before lap 1
    cfg = ReplayConfig(speedup=60, tick_seconds=1, realtime=False, loop=True, max_ticks=5)
    replay(frame(), cfg, paths=paths, now=lambda: now)
    landed = _landed(paths)
    assert len(landed) == 10 and landed.ts.max() <= pd.Timestamp(now)
    assert landed.ts.is_monotonic_increasing
    assert landed.user_id.tolist()[5:] == ["b", "d", "a", "e", "c"]
