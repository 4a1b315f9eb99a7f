"""Stream a dataset into the landing zone in event-time order (demos, back-fills, live traffic)."""

from __future__ import annotations

from prefect import flow, task

from recsys.config import DatasetFormat, Paths
from recsys.data.loaders import load
from recsys.data.replay import ReplayConfig, newest_landed_ts
from recsys.data.replay import replay as run_replay


@task(name="stream events", timeout_seconds=24 * 3600)
def stream_events(dataset: str, fmt: DatasetFormat, cfg: ReplayConfig) -> int:
    reports = run_replay(load(dataset, fmt.value).events, cfg, paths=Paths(), source=dataset)
    return sum(r.accepted for r in reports)


@flow(name="replay", log_prints=True)
def replay(dataset: str, fmt: DatasetFormat = DatasetFormat.contract,
           speedup: float = ReplayConfig.speedup, tick_seconds: float = ReplayConfig.tick_seconds,
           max_ticks: int | None = None, loop: bool = False) -> int:
    """Land a dataset tick by tick at ``speedup`` event-seconds per wall-second.

    ``loop``: lap after lap with timestamps moved forward, continuing after the newest event
    already landed, until ``max_ticks`` or until the run is cancelled.
    """
    start = newest_landed_ts(Paths()) if loop else None
    accepted = stream_events(dataset, fmt, ReplayConfig(
        speedup=speedup, tick_seconds=tick_seconds, max_ticks=max_ticks, loop=loop,
        start=start))
    print(f"replayed {accepted:,} events")
    return accepted
