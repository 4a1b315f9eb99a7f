"""The local stack's live traffic: what keeps events coming while the stack is up.

Two sources (``StackConfig.traffic``):

* ``simulate`` (the default): the synthetic world's users ask the stack's real-time service
  for lists and post their reactions as events (``recsys.simulate``), for as long as the stack
  is up. Needs the world's ground truth, ``raw/world.npz``, which ``recsys generate`` writes.
* ``replay-loop``: the world's events replayed lap after lap, each lap dated after the
  previous one (``recsys.data.replay``), from just after the newest event already landed; what
  the stack falls back to without a world file (a dataset loaded with ``recsys load`` has
  events but no ground truth to simulate).

The stack records the source in its state file and runs it as its ``traffic`` process
(``recsys stack traffic``); the source writes a small progress file that ``recsys stack
status`` reads (each replay tick; each simulator report).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.config import Paths, SimulateConfig, TrafficSource
from recsys.data.landing import LandingZone
from recsys.data.replay import ReplayConfig, Tick, replay
from recsys.timeutil import utc_now

REPLAY_LOOP = TrafficSource.replay_loop.value
SIMULATE = TrafficSource.simulate.value
LANDED = "landed"  # TrafficSpec.events when no world file exists: loop the landed events


@dataclass(frozen=True)
class TrafficSpec:
    """A named traffic source and its settings, as recorded in the stack's state."""

    source: str
    events: str  # replay-loop: the world's events file, or LANDED; simulate: its world file
    start: str | None  # ISO event time to continue from (the newest landed when it started)
    speedup: float
    tick_seconds: float
    simulate: dict | None = None  # simulate: the SimulateConfig, as JSON

    def describe(self) -> str:
        if self.source == SIMULATE:
            cfg = SimulateConfig(**self.simulate or {})
            return (f"{self.source}: users of {self.events} asking {cfg.url} for {cfg.k} items, "
                    f"{cfg.rate:g} requests/s, position bias eta {cfg.eta:g}, organic share "
                    f"{cfg.organic_share:g}, seed {cfg.seed}")
        what = "the landed events" if self.events == LANDED else self.events
        return (f"{self.source}: {what}, {self.speedup:g} event s per wall s, a tick every "
                f"{self.tick_seconds:g} s, continuing after {self.start or 'the first event'}")

    def as_dict(self) -> dict:
        return asdict(self)


def world_events(paths: Paths) -> Path | None:
    """The synthetic world's events file written by ``recsys generate`` (demo, stack)."""
    path = paths.raw / "events.parquet"
    return path if path.exists() else None


def world_file(paths: Paths) -> Path | None:
    """The synthetic world's ground truth written by ``recsys generate`` (demo, stack)."""
    from recsys.data.world import world_path

    path = world_path(paths.raw)
    return path if path.exists() else None


def load_events(spec: TrafficSpec, paths: Paths) -> pd.DataFrame:
    """The events a replay-loop goes round: the world's file, or what has landed."""
    if spec.events != LANDED:
        return pd.read_parquet(spec.events)
    parts = [str(p) for p in LandingZone(paths).event_parts()]
    columns = [C.EVENT_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TS, C.VALUE]
    return pq.read_table(parts, columns=columns).to_pandas() if parts else pd.DataFrame()


def run(spec: TrafficSpec, paths: Paths, progress_file: Path) -> None:
    """Land traffic until the process is stopped; each report rewrites ``progress_file``."""
    if spec.source == SIMULATE:
        return simulate(spec, progress_file)
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


def simulate(spec: TrafficSpec, progress_file: Path) -> None:
    """The world's users against the stack's service (``spec.simulate``: until stopped)."""
    from recsys.data.world import World
    from recsys.simulate import Counts
    from recsys.simulate import simulate as run_simulation

    def on_progress(counts: Counts) -> None:
        write_progress(progress_file, {"source": spec.source, **counts.as_dict(),
                                       "at": utc_now().isoformat(timespec="seconds")})

    run_simulation(World.load(Path(spec.events)), SimulateConfig(**spec.simulate or {}),
                   on_progress=on_progress)


def progress_line(progress: dict) -> str:
    """``stack status``'s line for a progress file of either source."""
    if progress.get("source") == SIMULATE:
        return (f"{progress['requests']:,} requests, {progress['impressions']:,} impressions, "
                f"{progress['clicks']:,} clicks (CTR {100 * progress['ctr']:.2f}%), "
                f"{progress['carts']:,} carts, {progress['purchases']:,} purchases, "
                f"{progress['events_posted']:,} events accepted in {progress['elapsed_s']:,.0f} s"
                f", last report at {progress['at']}")
    return (f"lap {progress['lap']}, tick {progress['tick']}, {progress['events_landed']:,} "
            f"events landed, newest event {progress['newest_ts']}, last tick at "
            f"{progress['at']}")


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
