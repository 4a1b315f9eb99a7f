"""Stream a dataset into the landing zone in event-time order (demos, back-fills)."""

from __future__ import annotations

from prefect import flow, task

from recsys.config import DatasetFormat, Paths
from recsys.data.loaders import load
from recsys.data.replay import ReplayConfig
from recsys.data.replay import replay as run_replay


@task(name="stream events", timeout_seconds=24 * 3600)
def stream_events(dataset: str, fmt: DatasetFormat, cfg: ReplayConfig) -> int:
    reports = run_replay(load(dataset, fmt.value).events, cfg, paths=Paths(), source=dataset)
    return sum(r.accepted for r in reports)


@flow(name="replay", log_prints=True)
def replay(dataset: str, fmt: DatasetFormat = DatasetFormat.contract,
           speedup: float = ReplayConfig.speedup, tick_seconds: float = ReplayConfig.tick_seconds,
           max_ticks: int | None = None) -> int:
    """Land a dataset tick by tick at ``speedup`` event-seconds per wall-second."""
    accepted = stream_events(dataset, fmt, ReplayConfig(
        speedup=speedup, tick_seconds=tick_seconds, max_ticks=max_ticks))
    print(f"replayed {accepted:,} events")
    return accepted
