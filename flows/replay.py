"""Stream a dataset into the landing zone in event-time order (demos, back-fills)."""

from __future__ import annotations

from prefect import flow, task

from recsys.config import Paths
from recsys.data.loaders import load
from recsys.data.replay import ReplayConfig
from recsys.data.replay import replay as run_replay


@task(name="stream events", timeout_seconds=24 * 3600)
def stream_events(dataset: str, fmt: str, cfg: ReplayConfig) -> int:
    reports = run_replay(load(dataset, fmt).events, cfg, paths=Paths(), source=dataset)
    return sum(r.accepted for r in reports)


@flow(name="replay", log_prints=True)
def replay(dataset: str, fmt: str = "contract", speedup: float = 1440.0,
           tick_seconds: float = 5.0, max_ticks: int | None = None) -> int:
    """Land a dataset tick by tick at ``speedup`` event-seconds per wall-second."""
    accepted = stream_events(dataset, fmt, ReplayConfig(
        speedup=speedup, tick_seconds=tick_seconds, max_ticks=max_ticks))
    print(f"replayed {accepted:,} events")
    return accepted
