"""Freshness, measured: static vs micro-batch-updated vs periodically retrained model."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from recsys.backtest_run import BacktestRun, run_backtest
from recsys.config import BacktestConfig, BacktestData, ModelConfig, Paths, TrainConfig
from recsys.registry.tracking import run_link


@task(name="replay and score every window", timeout_seconds=6 * 3600)
def replay_and_score(data: BacktestData, replay: BacktestConfig, model: ModelConfig,
                     training: TrainConfig) -> BacktestRun:
    return run_backtest(data, replay, model, training, Paths())


@flow(name="backtest", log_prints=True)
def backtest(data: BacktestData = BacktestData(), replay: BacktestConfig = BacktestConfig(),
             model: ModelConfig = ModelConfig(), training: TrainConfig = TrainConfig()) -> dict:
    """Prequential replay of a dataset (or synthetic data) in time windows."""
    run = replay_and_score(data, replay, model, training)
    result = run.result
    create_markdown_artifact(key="backtest", markdown=(
        result.table() + "\n\n" + run_link(Paths(), result.run_id)),
        description="HR@10/NDCG@10 per window and freshness lag")
    print(result.table())
    return {"run_id": result.run_id, "windows": len(result.windows), "workdir": str(run.workdir),
            "mean_ndcg@10": {m: result.mean(m, "ndcg@10") for m in ("static", "micro", "full")}}
