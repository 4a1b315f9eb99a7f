"""The online-report flow under Prefect's test harness: the artifact, the files, the runs."""

from __future__ import annotations

import asyncio
import datetime as dt

from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client

from flows.online_report import online_report
from recsys.config import Paths, TrackingConfig
from recsys.online_report_run import default_folder
from recsys.registry import runs, tracking
from recsys.timeutil import utc_now
from tests.unit.evaluation.test_online import event, shown, write_events, write_impressions


def _artifact(key: str) -> str:
    async def read():
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[-1].data if found else ""
    return asyncio.run(read())


def test_the_flow_reports_the_last_hours_and_logs_to_the_serving_version(tmp_path, monkeypatch):
    """Version 1 served u1 ten minutes ago; u1 clicked the top item, by request id."""
    paths = Paths(root=tmp_path / "home", tracking_home=tmp_path / "tracking")
    monkeypatch.setenv("RECSYS_HOME", str(paths.root))
    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(paths.tracking_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrackingConfig()
    with runs.start_run(paths, cfg, "train") as trained:
        pass
    client = MlflowClient(tracking.local_uri(paths))
    client.create_registered_model(cfg.registered_model)
    client.create_model_version(cfg.registered_model, f"runs:/{trained.id}/model", trained.id)
    shown_at = utc_now().replace(microsecond=0) - dt.timedelta(minutes=10)
    write_impressions(paths, shown("r1", "u1", ["x", "y"], shown_at))
    write_events(paths, [event("e1", "u1", "x", "click", shown_at, "r1")])

    out = online_report(attribution={"k": 1})  # partial, as a deployment's parameters
    assert out["impressions"] == 2 and out["ctr@1"] == 1.0
    assert out["versions"] == ["1"] and out["logged"] == {"1": trained.id}
    artifact = _artifact("online-report")
    assert "| CTR@1 | 100.00% | 100.00% |" in artifact and f"MLflow run `{trained.id}`" in artifact
    assert (default_folder(paths) / "online_report.png").is_file()
    assert client.get_run(trained.id).data.metrics["online/ctr_at_1"] == 1.0
