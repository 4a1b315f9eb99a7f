"""The local stack's live traffic: what keeps landing events while the stack is up.

One source today, ``replay-loop``: the world's events replayed lap after lap, each lap dated
after the previous one (``recsys.data.replay``), from just after the newest event already
landed. The stack records the source in its state file and runs it as its ``traffic``
process (``recsys stack traffic``); each tick writes a small progress file that
``recsys stack status`` reads. Another source (a simulated user population) is another value
of ``TrafficSpec.source``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.config import Paths
from recsys.data.landing import LandingZone
from recsys.data.replay import ReplayConfig, Tick, replay
from recsys.timeutil import utc_now

REPLAY_LOOP = "replay-loop"
LANDED = "landed"  # TrafficSpec.events when no world file exists: loop the landed events


@dataclass(frozen=True)
class TrafficSpec:
    """A named traffic source and its settings, as recorded in the stack's state."""

    source: str
    events: str  # the world's events file, or LANDED
    start: str | None  # ISO event time to continue from (the newest landed when it started)
    speedup: float
    tick_seconds: float

    def describe(self) -> str:
        what = "the landed events" if self.events == LANDED else self.events
        return (f"{self.source}: {what}, {self.speedup:g} event s per wall s, a tick every "
                f"{self.tick_seconds:g} s, continuing after {self.start or 'the first event'}")

    def as_dict(self) -> dict:
        return asdict(self)


def world_events(paths: Paths) -> Path | None:
    """The synthetic world's events file written by ``recsys generate`` (demo, stack)."""
    path = paths.raw / "events.parquet"
    return path if path.exists() else None


def load_events(spec: TrafficSpec, paths: Paths) -> pd.DataFrame:
    """The events a replay-loop goes round: the world's file, or what has landed."""
    if spec.events != LANDED:
        return pd.read_parquet(spec.events)
    parts = [str(p) for p in LandingZone(paths).event_parts()]
    columns = [C.EVENT_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TS, C.VALUE]
    return pq.read_table(parts, columns=columns).to_pandas() if parts else pd.DataFrame()


def run(spec: TrafficSpec, paths: Paths, progress_file: Path) -> None:
    """Land traffic until the process is stopped; each tick rewrites ``progress_file``."""
    if spec.source != REPLAY_LOOP:
        raise ValueError(f"unknown traffic source {spec.source!r}")
    landed = {"events": 0}

    def on_tick(tick: Tick) -> None:
        landed["events"] += tick.report.accepted
        write_progress(progress_file, {
            "source": spec.source, "lap": tick.lap, "tick": tick.index,
            "events_landed": landed["events"], "newest_ts": tick.newest_ts.isoformat(),
            "at": utc_now().isoformat(timespec="seconds")})

    cfg = ReplayConfig(speedup=spec.speedup, tick_seconds=spec.tick_seconds, loop=True,
                       start=pd.Timestamp(spec.start) if spec.start else None)
    replay(load_events(spec, paths), cfg, paths=paths, source=spec.source, on_tick=on_tick)


def write_progress(path: Path, progress: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress))
    os.replace(tmp, path)


def read_progress(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
