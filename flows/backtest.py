"""Freshness, measured: static vs micro-batch-updated vs periodically retrained model."""

from __future__ import annotations

import datetime as dt

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from recsys.config import BacktestConfig, ModelConfig, Paths, TrainConfig
from recsys.data.loaders import load
from recsys.data.synthetic import generate, preset
from recsys.registry.tracking import run_link
from recsys.training.backtest import BacktestResult
from recsys.training.backtest import backtest as run_backtest


@task(name="replay and score every window", timeout_seconds=6 * 3600)
def replay_and_score(dataset: str | None, fmt: str, synthetic: str, cfg: BacktestConfig,
                     epochs: int) -> BacktestResult:
    if dataset:
        loaded = load(dataset, fmt)
        events, items = loaded.events, loaded.items
    else:
        data = generate(preset(synthetic))
        events, items = data.events, data.items
    workdir = Paths().root / "backtests" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return run_backtest(events, items, workdir, cfg, ModelConfig(),
                        TrainConfig(max_epochs=epochs, patience=3, progress_bar=False),
                        report_paths=Paths())


@flow(name="backtest", log_prints=True)
def backtest(dataset: str | None = None, fmt: str = "contract", synthetic: str = "small",
             windows: int = 10, initial_fraction: float = 0.5, full_every: int = 5,
             epochs: int = 20) -> dict:
    """Prequential replay of a dataset (or synthetic data) in time windows."""
    result = replay_and_score(dataset, fmt, synthetic, BacktestConfig(
        windows=windows, initial_fraction=initial_fraction, full_every=full_every), epochs)
    create_markdown_artifact(key="backtest", markdown=(
        result.table() + "\n\n" + run_link(Paths(), result.run_id)),
        description="HR@10/NDCG@10 per window and freshness lag")
    print(result.table())
    return {m: result.mean(m, "ndcg@10") for m in ("static", "micro", "full")}
