"""Stream a dataset into the landing zone in event-time order at a chosen speed-up.

A replay turns a static dump into a live feed so the micro-batch pipeline can
be demonstrated and tested on real data: with ``speedup=1440`` one day of
events lands per wall-clock minute. Each tick ingests the events whose time
falls in the next window, through the normal ingestion path (validation,
quarantine, idempotent ids), so a replay restarted from the start only drops
duplicates.

A looping replay (``loop=True``, the local stack's live traffic) never runs dry: lap ``k``
is the dataset again with every timestamp moved forward by ``k`` periods, a period being the
dataset's time span plus one tick, so each lap is dated after the previous lap's newest event
and watermarks and event-time order hold. Explicit event ids get a ``~lap<k>`` suffix from
lap 1 on (ids derived from content change with the timestamp anyway). Event time runs
``speedup`` times faster than the wall clock, so a long-running loop catches up with the
present; from then on each window is squeezed into the wall-clock interval since the previous
one (order kept, nothing dated in the future, which ingestion would quarantine).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.config import IngestConfig, Paths
from recsys.data.ingest import IngestReport, ingest_frame
from recsys.data.landing import LandingZone
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayConfig:
    speedup: float = 1440.0  # event-time seconds per wall-clock second
    tick_seconds: float = 5.0  # wall-clock seconds between ingests
    start: pd.Timestamp | None = None  # event time to start from (default: first event)
    max_ticks: int | None = None  # stop after this many ticks
    realtime: bool = True  # False: no sleeping (tests, back-fills)
    loop: bool = False  # True: lap after lap, timestamps shifted forward, until stopped

    @property
    def step(self) -> pd.Timedelta:
        """Event time covered by one tick, in whole microseconds."""
        # A fractional speed-up gives nanoseconds, which a microsecond timestamp column
        # refuses to search for ("cannot losslessly convert units").
        return pd.to_timedelta(self.tick_seconds * self.speedup, unit="s").round("us")


@dataclass(frozen=True)
class Tick:
    """One ingested window: its number, its lap, what ingestion said, its newest event time."""

    index: int
    lap: int
    report: IngestReport
    newest_ts: pd.Timestamp


def _ordered(events: pd.DataFrame) -> pd.DataFrame:
    out = events.sort_values(C.TS, kind="stable", ignore_index=True)
    out[C.TS] = pd.to_datetime(out[C.TS])
    return out


def windows(events: pd.DataFrame, cfg: ReplayConfig) -> Iterator[pd.DataFrame]:
    """Yield consecutive event-time windows of ``tick_seconds * speedup`` seconds.

    Events are sorted by time (stable, so file order breaks ties: the order
    of SASRec-style files without timestamps survives).
    """
    for i, (_, window) in enumerate(_windows(_ordered(events), cfg.start, cfg.step)):
        if cfg.max_ticks is not None and i >= cfg.max_ticks:
            return
        yield window


def _windows(ordered: pd.DataFrame, start: pd.Timestamp | None, step: pd.Timedelta,
             ) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
    """(window start, window) over one time-ordered frame, from ``start`` to its end."""
    if ordered.empty:
        return
    ts = ordered[C.TS]
    t = pd.Timestamp(start) if start is not None else ts.iloc[0]
    end = ts.iloc[-1]
    pos = int(ts.searchsorted(t, side="left"))
    while t <= end:
        nxt = int(ts.searchsorted(t + step, side="left"))
        yield t, ordered.iloc[pos:nxt]
        pos, t = nxt, t + step


def lap_period(events: pd.DataFrame, step: pd.Timedelta) -> pd.Timedelta:
    """How far each lap moves the timestamps: the data's time span plus one tick."""
    ts = pd.to_datetime(events[C.TS])
    return (ts.max() - ts.min()) + step


def shift_lap(ordered: pd.DataFrame, lap: int, period: pd.Timedelta) -> pd.DataFrame:
    """Lap ``lap`` of the data: timestamps moved ``lap`` periods on, explicit ids suffixed.

    >>> ev = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01", "2026-01-03"]),
    ...                    "event_id": ["e1", None]})
    >>> lap = shift_lap(ev, 2, pd.Timedelta(days=3))
    >>> [str(t.date()) for t in lap.ts], lap.event_id.iloc[0], bool(lap.event_id.isna().iloc[1])
    (['2026-01-07', '2026-01-09'], 'e1~lap2', True)
    """
    if lap == 0:
        return ordered
    out = ordered.copy()
    out[C.TS] = out[C.TS] + lap * period
    if C.EVENT_ID in out.columns:
        ids = out[C.EVENT_ID]
        out[C.EVENT_ID] = ids.mask(ids.notna(), ids.astype(str) + f"~lap{lap}")
    return out


def looped_windows(events: pd.DataFrame, cfg: ReplayConfig,
                   ) -> Iterator[tuple[int, pd.DataFrame]]:
    """(lap, window) for ever: windows of lap 0, then of lap 1, ... from ``cfg.start``.

    A start inside lap ``k`` (or between laps) begins there: a stack restarted after a
    previous one continues after the newest event it landed.
    """
    ordered = _ordered(events)
    if ordered.empty:
        return
    step = cfg.step
    period = lap_period(ordered, step)
    first, last = ordered[C.TS].iloc[0], ordered[C.TS].iloc[-1]
    start = pd.Timestamp(cfg.start) if cfg.start is not None else first
    lap = 0 if start <= last else int((start - last) // period) + 1
    t = max(start, first + lap * period)
    while True:
        for t_window, window in _windows(shift_lap(ordered, lap, period), t, step):
            yield lap, window
            t = t_window + step
        lap += 1


def not_after(window: pd.DataFrame, now: dt.datetime, floor: pd.Timestamp | None,
              ) -> pd.DataFrame:
    """The window unchanged if no event is after ``now``; else squeezed into ``(floor, now]``.

    Order is kept (a linear map of the window's times); ``floor`` is the newest time already
    landed by this replay.

    >>> w = pd.DataFrame({"ts": pd.to_datetime(["2027-01-01", "2027-01-02", "2027-01-03"])})
    >>> got = not_after(w, dt.datetime(2026, 6, 1), pd.Timestamp("2026-05-31"))
    >>> [str(t) for t in got.ts]
    ['2026-05-31 00:00:00.000001', '2026-05-31 12:00:00', '2026-06-01 00:00:00']
    """
    now_ts = pd.Timestamp(now)
    if window.empty or window[C.TS].iloc[-1] <= now_ts:
        return window
    lo = now_ts - pd.Timedelta(days=1) if floor is None else floor + pd.Timedelta(microseconds=1)
    lo = min(lo, now_ts)
    t0, t1 = window[C.TS].iloc[0], window[C.TS].iloc[-1]
    frac = ((window[C.TS] - t0) / (t1 - t0) if t1 > t0
            else pd.Series(1.0, index=window.index))
    out = window.copy()
    out[C.TS] = (lo + frac * (now_ts - lo)).dt.floor("us")
    return out


def newest_landed_ts(paths: Paths) -> pd.Timestamp | None:
    """The newest event time in the landing zone (Parquet statistics only; None if empty)."""
    newest = None
    for part in LandingZone(paths).event_parts():
        meta = pq.ParquetFile(part).metadata
        col = meta.schema.names.index(C.TS)
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(col).statistics
            if stats is not None and stats.has_min_max:
                top = pd.Timestamp(stats.max)
                newest = top if newest is None or top > newest else newest
    return newest


def replay(
    events: pd.DataFrame,
    cfg: ReplayConfig = ReplayConfig(),
    paths: Paths | None = None,
    ingest_config: IngestConfig | None = None,
    source: str = "replay",
    on_tick: Callable[[Tick], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = utc_now,
) -> list[IngestReport]:
    """Ingest ``events`` window by window; returns one report per non-empty tick.

    With ``cfg.loop`` it runs until ``max_ticks``, or until the process is stopped.
    """
    reports = []
    next_at = time.monotonic()
    laps = (looped_windows(events, cfg) if cfg.loop
            else ((0, w) for w in windows(events, cfg)))
    newest: pd.Timestamp | None = None
    for i, (lap, window) in enumerate(laps):
        if cfg.max_ticks is not None and i >= cfg.max_ticks:
            break
        if cfg.loop:
            window = not_after(window, now(), newest)
        if not window.empty:
            name = f"{source}#{i}" if lap == 0 else f"{source}#lap{lap}.{i}"
            report = ingest_frame(window, name, data_paths=paths, config=ingest_config)
            newest = window[C.TS].iloc[-1]
            reports.append(report)
            log.info("tick %d (lap %d): %s", i, lap, report.summary())
            if on_tick:
                on_tick(Tick(i, lap, report, newest))
        if cfg.realtime:
            next_at += cfg.tick_seconds
            sleep(max(0.0, next_at - time.monotonic()))
    return reports
