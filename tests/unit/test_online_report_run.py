"""The online-report use case: files in a folder, figures on the serving versions' runs."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from recsys.config import AttributionConfig, Paths, TrackingConfig
from recsys.online_report_run import FILES, recent_versions, run_online_report
from recsys.registry import runs, tracking
from recsys.registry.online import step_of
from tests.unit.evaluation.test_online import (
    IMPRESSIONS,
    NOW,
    REACTIONS,
    VIEWS,
    at,
    shown,
    write_catalogue,
    write_events,
    write_impressions,
)


@pytest.fixture
def store(paths: Paths) -> TrackingConfig:
    """Versions 1 and 2 registered from runs of their own, as training registers them."""
    cfg = TrackingConfig(tracking_uri=tracking.local_uri(paths))
    client = MlflowClient(cfg.tracking_uri)
    client.create_registered_model(cfg.registered_model)
    for _ in range(2):
        with runs.start_run(paths, cfg, "train") as run:
            run.log_metrics({"ndcg@10": 0.1})
        client.create_model_version(cfg.registered_model, f"runs:/{run.id}/model", run.id)
    return cfg


@pytest.fixture
def traffic(paths: Paths) -> Paths:
    """The hand-made traffic; in its latest hour (11:00) v2 shows 3 items, v1 and v7 one each."""
    write_catalogue(paths, ["x", "y", "z", "w", "v"])
    write_impressions(paths, IMPRESSIONS + shown("a3", "u3", ["v"], at(11, 30)) +
                      shown("c1", "u3", ["z"], at(11, 40), version="7"))
    write_events(paths, REACTIONS + VIEWS)
    return paths


def test_files_and_the_serving_versions_runs_receive_the_report(traffic, store, tmp_path):
    out = run_online_report(traffic, AttributionConfig(k=2), store, now=NOW,
                            folder=tmp_path / "report")
    assert out.compaction.hours == ["2026030111"]  # the one part, written in a closed hour
    assert recent_versions(out.report) == ["2", "1", "7"]
    assert list(out.logged) == ["2", "1"]
    assert out.not_logged == {"7": "recsys-seqrec has no version 7"}
    assert {p.name for p in out.folder.iterdir()} == set(FILES.values())
    assert out.file("markdown").read_text() == out.markdown
    assert out.file("figure").read_bytes()[:4] == b"\x89PNG"
    hourly = pd.read_csv(out.file("hourly"))
    assert set(hourly.model_version.astype(str)) == {"all", "1", "2", "7"}
    client = MlflowClient(store.tracking_uri)
    run = client.get_run(out.logged["2"])
    assert run.data.metrics["online/ctr_at_2"] == 0.0  # b1's click is at position 3
    assert run.data.metrics["online/impressions"] == 3.0
    assert run.data.metrics["ndcg_at_10"] == 0.1  # what training logged stays
    v1 = client.get_metric_history(out.logged["1"], "online/ctr_at_2")
    assert [(m.value, m.step) for m in v1] == [(pytest.approx(1 / 5), step_of(NOW))]
    assert {a.path for a in client.list_artifacts(out.logged["1"], "online")} == {
        f"online/{name}" for name in FILES.values()}
    assert "logged to the runs of v2, v1" in out.summary()


def test_each_refresh_adds_a_point_to_the_curves(traffic, store, tmp_path):
    for minutes in (0, 5):
        out = run_online_report(traffic, AttributionConfig(k=2), store,
                                now=NOW + dt.timedelta(minutes=minutes), folder=tmp_path)
    history = MlflowClient(store.tracking_uri).get_metric_history(out.logged["2"],
                                                                  "online/impressions")
    assert [m.step for m in history] == [step_of(NOW), step_of(NOW) + 5]


def test_an_empty_period_writes_its_files_and_logs_nothing(paths, store, tmp_path):
    out = run_online_report(paths, now=NOW, tracking=store, folder=tmp_path)
    assert out.report.empty and out.logged == {} and "no impressions" in out.summary()
    assert (tmp_path / FILES["markdown"]).read_text().endswith("No impressions in the period.\n")
