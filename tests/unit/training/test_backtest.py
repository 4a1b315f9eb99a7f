"""The prequential backtest on drifting synthetic data: updates must pay off."""

from __future__ import annotations

import math

from mlflow.tracking import MlflowClient

from recsys.config import BacktestConfig, ModelConfig, TrainConfig, UpdateConfig
from recsys.data.synthetic import SyntheticConfig, generate
from recsys.registry.tracking import tracking_uri
from recsys.training.backtest import MODELS, backtest


def test_micro_batch_updates_beat_the_static_model_on_later_windows(tmp_path, paths):
    # Interests drift and new items arrive throughout the 30 days.
    data = generate(SyntheticConfig(n_users=600, n_items=300, days=30, mean_events_per_user=30,
                                    seed=3))
    result = backtest(
        data.events, data.items, tmp_path / "replay", BacktestConfig(windows=8, full_every=4),
        ModelConfig(d_model=32, max_len=20, dropout=0.1),
        TrainConfig(max_epochs=6, patience=6, batch_size=64, progress_bar=False),
        UpdateConfig(max_steps=20, batch_size=64), report_paths=paths)

    assert len(result.windows) == 8
    first = result.windows[0]
    assert first.metrics["static"] == first.metrics["micro"]  # nothing learnt yet
    assert result.mean("micro", "ndcg@10", later_half=True) > \
        result.mean("static", "ndcg@10", later_half=True)
    # The static model only ages; the updated one stays within about a window.
    assert result.mean_lag("micro") < result.mean_lag("full") < result.mean_lag("static")
    assert all(math.isfinite(w.metrics[m]["ndcg@10"]) for w in result.windows for m in MODELS)

    client = MlflowClient(tracking_uri(paths))
    run = client.get_run(result.run_id)
    assert "later_half/micro/ndcg_at_10" in run.data.metrics
    assert len(client.get_metric_history(result.run_id, "static/ndcg_at_10")) == 8
    assert {"backtest.md", "backtest.png", "backtest.json"} <= {
        a.path for a in client.list_artifacts(result.run_id)}
    assert "later-half NDCG@10" in result.table()
