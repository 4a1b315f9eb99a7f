"""The MLflow door: runs through the registry's helpers, the URI never leaked to the process."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from recsys.config import Paths, TrackingConfig
from recsys.registry import runs, tracking
from recsys.registry.pyfunc import load_predictor_class
from recsys.training import PREDICTOR


@pytest.mark.parametrize("before", [None, "http://127.0.0.1:5999"])
def test_a_run_logs_to_the_configured_store_and_leaves_the_environment_as_it_was(
        tmp_path, monkeypatch, before):
    if before is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", before)
    paths = Paths(root=tmp_path / "home", tracking_home=tmp_path / "tracking")
    cfg = TrackingConfig(tracking_uri=tracking.local_uri(paths), experiment="door")
    with runs.start_run(paths, cfg, "a run") as run:
        run.log_params({"a.b": 1})
        run.set_tags({"kind": "full"})
        run.log_metrics({"ndcg@10": 0.5}, prefix="valid/")
        run.log_text("hello", "note.md")
    runs.attach(paths, cfg, run.id).record_decision("promoted", "better", {"model_age_s": 3.0},
                                                    note="**promoted**")
    assert os.environ.get("MLFLOW_TRACKING_URI") == before
    got = MlflowClient(tracking.local_uri(paths)).get_run(run.id)
    assert got.info.status == "FINISHED" and got.data.params == {"a.b": "1"}
    assert got.data.tags["kind"] == "full" and got.data.tags["decision"] == "promoted"
    assert got.data.tags["decision_reason"] == "better"
    assert got.data.metrics == {"valid/ndcg_at_10": 0.5, "model_age_s": 3.0}
    assert {a.path for a in MlflowClient(run.uri).list_artifacts(run.id)} == {
        "note.md", "decision.md"}


def test_the_logged_predictor_is_named_by_path_and_exists():
    from recsys.scoring.pyfunc import SeqRecPredictor

    assert load_predictor_class(PREDICTOR) is SeqRecPredictor
    example, output, params = SeqRecPredictor.examples(["a", "b"])
    assert list(example.columns) == ["item_ids"] and list(output.columns) == ["item_ids", "scores"]
    assert params == {"k": 10, "exclude_seen": False}
    with pytest.raises(ValueError, match="dotted path"):
        load_predictor_class("SeqRecPredictor")


def test_predictions_keep_their_shape():
    """The predictor's own logic, on a fake scorer (the logged model is tested end to end in
    tests/unit/training/test_full_retrain.py)."""
    import numpy as np

    from recsys.scoring.pyfunc import SeqRecPredictor

    class Fake:
        item_ids = [f"x{i}" for i in range(10)]  # the catalogue, whose size bounds k

        def recommend(self, histories, k, exclude_seen, types):
            self.args = (histories, k, exclude_seen, types)
            ids = np.array([[f"x{i}" for i in range(k)]] * len(histories), dtype=object)
            return ids, np.tile(np.arange(k, 0, -1, dtype=float), (len(histories), 1))

    fake = Fake()
    out = SeqRecPredictor(fake).predict(
        pd.DataFrame({"item_ids": [["a"], None], "event_types": [["click"], None]}),
        {"k": 3, "exclude_seen": True})
    assert fake.args == ([["a"], []], 3, True, [["click"], []])
    assert out["item_ids"].tolist() == [["x0", "x1", "x2"]] * 2
    assert out["scores"].tolist() == [[3.0, 2.0, 1.0]] * 2

