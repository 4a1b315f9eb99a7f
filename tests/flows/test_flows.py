"""Every flow runs under Prefect's test harness against a real store and MLflow registry."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from prefect.client.orchestration import get_client

from flows.backtest import backtest
from flows.build_features import build_features
from flows.full_retrain import full_retrain
from flows.ingest import ingest
from flows.micro_batch import micro_batch_update
from flows.replay import replay
from flows.score import score
from recsys.config import BacktestConfig, BacktestData, ScoreConfig, TrainConfig, UpdateConfig
from recsys.scoring.batch import read_recommendations


@pytest.fixture
def project(world, monkeypatch):
    """The world's folders as the process default, as a deployment's environment sets them."""
    monkeypatch.setenv("RECSYS_HOME", str(world.paths.root))
    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(world.paths.tracking_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return world


def _artifact(key: str) -> str:
    async def read():
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[-1].data if found else ""
    return asyncio.run(read())


def test_micro_batch_update_flow_promotes_and_summarises(project):
    project.land(2)
    out = micro_batch_update(update=UpdateConfig(max_steps=10))
    assert out["status"] == "promoted" and out["version"] == project.champion().version
    version = project.registry.get(out["version"])
    assert version.kind == "incremental" and version.parent == project.full_version
    assert version.tags["decision"] == "promoted"
    summary = _artifact("micro-batch-update")
    assert "**promoted**" in summary and "| holdout |" in summary and "MLflow run" in summary
    assert f"candidate version {out['version']}, parent (champion) {project.full_version}" \
        in summary


def test_a_late_scheduled_run_is_skipped(project):
    project.land(2)
    assert micro_batch_update(max_delay_s=-1.0) == {"status": "skipped_late"}
    assert project.champion().version == project.full_version


def test_full_retrain_flow_then_scores_with_the_new_champion(project):
    """Compared with the champion on events it has not trained on; the artifact's tables narrow."""
    project.land(4)
    out = full_retrain(model={"d_model": 32, "max_len": 20},  # partial, as a deployment's
                       training=TrainConfig(max_epochs=4, patience=4, batch_size=32),
                       gate={"unseen_min_events": 20})
    assert out["decision"] == "promoted" and project.champion().version == out["version"]
    assert out["champion_compared"] == project.full_version
    version = project.registry.get(out["version"])
    assert version.kind == "full" and version.tags["decision"] == "promoted"
    assert version.tags["promoted_over"] == project.full_version
    assert "not worse within 5%" in version.tags["decision_reason"]
    assert int(version.tags["gate.unseen.held_out_events"]) >= 20
    lists = read_recommendations(project.paths).to_pandas()
    assert set(lists["model_version"]) == {out["version"]}
    summary = _artifact("full-retrain")
    assert f"version {out['version']} promoted" in summary and "| validation ndcg@10 |" in summary
    assert f"| champion (v{project.full_version}) |" in summary
    rows = [line for line in summary.splitlines() if line.startswith("|")]
    assert rows and max(line.count("|") - 1 for line in rows) <= 5


def test_ingest_build_features_score_and_replay_flows(project, tmp_path):
    good = tmp_path / "more.csv"
    project.chunks[0].to_csv(good, index=False)
    assert ingest([str(good)])["accepted"] == len(project.chunks[0])
    assert "| source |" in _artifact("ingest") and str(good) in _artifact("ingest")
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="rejected"):
        ingest([str(bad)])
    assert build_features()["events"] > 0
    scored = score(ScoreConfig(k=5))
    lists = read_recommendations(project.paths).to_pandas()
    assert scored["rows"] == len(lists) > 0 and lists.groupby("user_id").size().max() == 5
    assert set(lists["model_version"]) == {project.full_version}
    live = tmp_path / "live.parquet"
    pd.concat(project.chunks[1:3]).to_parquet(live)
    assert replay(str(live), speedup=1e7, tick_seconds=1.0) == sum(
        len(c) for c in project.chunks[1:3])


def test_backtest_flow(project):
    from mlflow import MlflowClient

    out = backtest(data=BacktestData(synthetic="tiny"),
                   replay=BacktestConfig(windows=3, full_every=0),
                   training=TrainConfig(max_epochs=10, patience=3))
    assert out["windows"] == 3
    means = out["mean_ndcg@10"]
    assert all(0.0 <= v <= 1.0 for v in means.values()) and max(means.values()) > 0, out
    table = _artifact("backtest")
    assert "later-half NDCG@10" in table and out["run_id"] in table
    assert sum(line.startswith(("| 0 |", "| 1 |", "| 2 |")) for line in table.splitlines()) == 3
    # the summary run landed in the project's store, with one figure per window
    client = MlflowClient(f"sqlite:///{project.paths.mlflow_db}")
    run = client.get_run(out["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "recsys-backtest"
    key = next(k for k in run.data.metrics if k.startswith("micro/ndcg"))  # @ made MLflow-safe
    assert len(client.get_metric_history(out["run_id"], key)) == 3
