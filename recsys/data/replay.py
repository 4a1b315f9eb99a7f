"""Stream a dataset into the landing zone in event-time order at a chosen speed-up.

A replay turns a static dump into a live feed so the micro-batch pipeline can
be demonstrated and tested on real data: with ``speedup=1440`` one day of
events lands per wall-clock minute. Each tick ingests the events whose time
falls in the next window, through the normal ingestion path (validation,
quarantine, idempotent ids), so a replay restarted from the start only drops
duplicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd

from recsys import columns as C
from recsys.config import IngestConfig, Paths
from recsys.data.ingest import IngestReport, ingest_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayConfig:
    speedup: float = 1440.0  # event-time seconds per wall-clock second
    tick_seconds: float = 5.0  # wall-clock seconds between ingests
    start: pd.Timestamp | None = None  # event time to start from (default: first event)
    max_ticks: int | None = None  # stop after this many ticks
    realtime: bool = True  # False: no sleeping (tests, back-fills)


def windows(events: pd.DataFrame, cfg: ReplayConfig) -> Iterator[pd.DataFrame]:
    """Yield consecutive event-time windows of ``tick_seconds * speedup`` seconds.

    Events are sorted by time (stable, so file order breaks ties: the order
    of SASRec-style files without timestamps survives).
    """
    ordered = events.sort_values(C.TS, kind="stable", ignore_index=True)
    if ordered.empty:
        return
    ts = pd.to_datetime(ordered[C.TS])
    t = pd.Timestamp(cfg.start) if cfg.start is not None else ts.iloc[0]
    # Whole microseconds: a fractional speed-up gives nanoseconds, which a microsecond
    # timestamp column refuses to search for ("cannot losslessly convert units").
    step = pd.to_timedelta(cfg.tick_seconds * cfg.speedup, unit="s").round("us")
    end = ts.iloc[-1]
    ticks = 0
    pos = int(ts.searchsorted(t, side="left"))
    while t <= end and (cfg.max_ticks is None or ticks < cfg.max_ticks):
        nxt = int(ts.searchsorted(t + step, side="left"))
        yield ordered.iloc[pos:nxt]
        pos, t, ticks = nxt, t + step, ticks + 1


def replay(
    events: pd.DataFrame,
    cfg: ReplayConfig = ReplayConfig(),
    paths: Paths | None = None,
    ingest_config: IngestConfig | None = None,
    source: str = "replay",
    on_tick: Callable[[int, IngestReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[IngestReport]:
    """Ingest ``events`` window by window; returns one report per non-empty tick."""
    reports = []
    next_at = time.monotonic()
    for i, window in enumerate(windows(events, cfg)):
        if not window.empty:
            report = ingest_frame(window, f"{source}#{i}", data_paths=paths, config=ingest_config)
            reports.append(report)
            log.info("tick %d: %s", i, report.summary())
            if on_tick:
                on_tick(i, report)
        if cfg.realtime:
            next_at += cfg.tick_seconds
            sleep(max(0.0, next_at - time.monotonic()))
    return reports
