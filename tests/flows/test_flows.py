"""Every flow runs under Prefect's test harness against a real store and MLflow registry."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from flows.backtest import backtest
from flows.build_features import build_features
from flows.full_retrain import full_retrain
from flows.ingest import ingest
from flows.micro_batch import micro_batch_update
from flows.replay import replay
from flows.score import score
from recsys.scoring.batch import read_recommendations


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


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
    out = micro_batch_update(max_steps=10)
    assert out["status"] == "promoted" and out["version"] == project.champion().version
    summary = _artifact("micro-batch-update")
    assert "**promoted**" in summary and "| holdout |" in summary and "MLflow run" in summary


def test_a_late_scheduled_run_is_skipped(project):
    project.land(2)
    assert micro_batch_update(max_delay_s=-1.0) == {"status": "skipped_late"}
    assert project.champion().version == project.full_version


def test_full_retrain_flow_then_scores_with_the_new_champion(project):
    project.land(2)
    out = full_retrain(epochs=4, patience=4, d_model=32, max_len=20, batch_size=32)
    assert out["decision"] == "promoted" and project.champion().version == out["version"]
    lists = read_recommendations(project.paths).to_pandas()
    assert set(lists["model_version"]) == {out["version"]}
    assert "| seqrec |" in _artifact("full-retrain")


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
    assert score(k=5)["rows"] > 0
    live = tmp_path / "live.parquet"
    pd.concat(project.chunks[1:3]).to_parquet(live)
    assert replay(str(live), speedup=1e7, tick_seconds=1.0) == sum(
        len(c) for c in project.chunks[1:3])


def test_backtest_flow(project):
    means = backtest(synthetic="tiny", windows=3, full_every=0, epochs=10)
    assert set(means) == {"static", "micro", "full"}
    assert "later-half NDCG@10" in _artifact("backtest")
