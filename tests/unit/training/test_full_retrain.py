"""A full retrain on tiny synthetic data: it learns, it is tracked, and its model serves."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from recsys.config import (
    EvalConfig,
    GateConfig,
    Loss,
    LrSchedule,
    ModelConfig,
    Paths,
    Protocol,
    TrackingConfig,
    TrainConfig,
)
from recsys.data.features import build_features
from recsys.data.ingest import ingest_frame
from recsys.data.synthetic import generate, preset
from recsys.registry.tracking import tracking_uri
from recsys.training.full_retrain import MODEL_NAME, train

FAST_MODEL = ModelConfig(d_model=32, max_len=20, dropout=0.1)
FAST_TRAIN = TrainConfig(max_epochs=8, patience=8, batch_size=32, lr=3e-3, progress_bar=False)

COLD_ITEM_CATEGORY = "coffee"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Paths, str]:
    """Tiny synthetic world with one item whose every event is removed: it exists only as text."""
    root = tmp_path_factory.mktemp("retrain")
    paths = Paths(root=root / "home", tracking_home=root / "tracking")
    data = generate(preset("tiny"))
    books = data.items[data.items["category"] == COLD_ITEM_CATEGORY]["item_id"]
    seen = data.events["item_id"].value_counts()
    cold = seen[seen.index.isin(books)].index[-1]
    ingest_frame(data.items, "items", kind="items", data_paths=paths)
    ingest_frame(data.events[data.events["item_id"] != cold], "events", data_paths=paths)
    build_features(paths)
    return paths, cold


@pytest.fixture(scope="module")
def result(store):
    paths, _ = store
    return train(paths, FAST_MODEL, FAST_TRAIN, EvalConfig(), TrackingConfig())


def test_model_learns_and_beats_popularity(result):
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.9
    assert result.test[MODEL_NAME]["ndcg@10"] > result.test["popularity"]["ndcg@10"]
    assert result.test[MODEL_NAME]["hr@10"] > result.test["popularity"]["hr@10"]
    assert result.best_epoch >= 1 and result.positions_per_s > 0


def test_run_is_tracked_with_params_metrics_artifacts_and_a_registered_version(store, result):
    paths, _ = store
    client = MlflowClient(tracking_uri(paths))
    run = client.get_run(result.run_id)
    assert run.data.params["model.d_model"] == "32"
    assert run.data.params["train.max_epochs"] == "8"
    assert run.data.params["eval.exclude_seen"] == "False"
    assert run.data.tags["kind"] == "full" and int(run.data.tags["watermark"]) > 0
    assert "test/seqrec/ndcg_at_10" in run.data.metrics
    assert "test/item_cf/ndcg_at_10" in run.data.metrics
    assert len(client.get_metric_history(result.run_id, "val/ndcg_at_10")) >= 1
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"metrics.md", "training_curves.png", "history.json"} <= names
    version = client.get_model_version("recsys-seqrec", result.version)
    assert version.tags["watermark"] == run.data.tags["watermark"]
    assert version.tags["data_fingerprint"] == run.data.tags["data_fingerprint"]
    assert str(paths.mlruns) in run.info.artifact_uri


def test_pyfunc_maps_recent_items_to_top_k(store, result, monkeypatch):
    paths, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(paths))  # restored after the test
    mlflow.set_tracking_uri(tracking_uri(paths))
    model = mlflow.pyfunc.load_model(f"models:/recsys-seqrec/{result.version}")
    out = model.predict(pd.DataFrame({"item_ids": [["i000001", "i000002"], ["nope"], []]}),
                        params={"k": 5})
    assert list(out.columns) == ["item_ids", "scores"]
    assert all(len(ids) == 5 for ids in out["item_ids"])
    assert all(s == sorted(s, reverse=True) for s in out["scores"])
    excl = model.predict(pd.DataFrame({"item_ids": [["i000001"]]}),
                         params={"k": 5, "exclude_seen": True})
    assert "i000001" not in excl["item_ids"][0]


def test_text_only_item_is_recommended_to_readers_of_its_category(store, result):
    """The cold item never appeared in an event; its text alone must place it near its peers."""
    from recsys.scoring.scorer import Scorer

    paths, cold = store
    scorer = Scorer.from_folder(result.model_dir)
    items = generate(preset("tiny")).items
    cats = items.set_index("item_id")["category"]
    peers = [i for i in cats.index[cats == COLD_ITEM_CATEGORY] if i != cold][:5]
    others = cats.index[cats != COLD_ITEM_CATEGORY][:5].tolist()
    col = scorer.index[cold] - 1
    items_t, kinds = scorer.encode([peers, others])
    scores = scorer.net.score(items_t, kinds)[:, 1:].numpy()
    pct = [(row < row[col]).mean() for row in scores]  # share of the catalogue ranked below
    assert pct[0] > 0.5 and pct[0] > pct[1]


def test_training_is_reproducible_with_a_seed(store):
    paths, _ = store
    cfg = FAST_TRAIN.model_copy(update={"max_epochs": 2})
    a = train(paths, FAST_MODEL, cfg, EvalConfig(), TrackingConfig(register_model=False))
    b = train(paths, FAST_MODEL, cfg, EvalConfig(), TrackingConfig(register_model=False))
    assert a.test[MODEL_NAME] == b.test[MODEL_NAME]
    assert a.version is None


def test_training_turns_on_deterministic_kernels(store):
    """bf16 on 2 CPU threads is not repeatable without them (0.26920 vs 0.26926, demo data)."""
    paths, _ = store
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        for wanted in (True, False):
            torch.use_deterministic_algorithms(not wanted)
            cfg = FAST_TRAIN.model_copy(update={"max_epochs": 1, "deterministic": wanted})
            train(paths, FAST_MODEL, cfg, EvalConfig(), TrackingConfig(register_model=False))
            assert torch.are_deterministic_algorithms_enabled() is wanted
    finally:
        # Warn-only too: an earlier Lightning run leaves it on, and strict mode would make later
        # tests fail on ops that have no deterministic kernel.
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_shipped_weights_are_the_validated_ones(store, ema_decay):
    """With weight averaging, validation scores the average: that, not the raw weights, ships."""
    paths, _ = store
    cfg = FAST_TRAIN.model_copy(update={"max_epochs": 3, "patience": 3, "ema_decay": ema_decay,
                                        "precision": "32-true"})
    res = train(paths, FAST_MODEL, cfg, EvalConfig(), TrackingConfig(register_model=False))
    best = max(h["val_ndcg@10"] for h in res.history)
    assert res.valid[MODEL_NAME]["ndcg@10"] == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("schedule", list(LrSchedule))
def test_lr_schedule(store, schedule):
    """Cosine decays every step to 0 at max_epochs; constant keeps the configured rate."""
    paths, _ = store
    cfg = FAST_TRAIN.model_copy(update={"max_epochs": 3, "patience": 3, "lr_schedule": schedule,
                                        "max_steps_per_epoch": 4})
    res = train(paths, FAST_MODEL, cfg, EvalConfig(), TrackingConfig(register_model=False))
    lrs = [h["lr"] for h in res.history]
    assert len(lrs) == 3
    if schedule == "constant":
        assert lrs == [cfg.lr] * 3
    else:
        assert cfg.lr > lrs[0] > lrs[1] > lrs[2] and lrs[2] == pytest.approx(0.0, abs=1e-9)


def test_missing_feature_store_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="recsys features"):
        train(Paths(root=tmp_path / "none", tracking_home=tmp_path), FAST_MODEL, FAST_TRAIN)


def test_ddp_on_two_cpu_processes(store):
    """Lightning DDP (gloo) with 2 CPU processes through the real CLI launcher."""
    paths, _ = store
    cmd = [sys.executable, "-m", "recsys.cli", "train", "--home", str(paths.root),
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--epochs", "2",
           "--max-steps-per-epoch", "3", "--d-model", "32", "--max-len", "20",
           "--precision", "32-true", "--no-register", "--no-progress"]
    env = {**__import__("os").environ, "RECSYS_TRACKING_HOME": str(paths.tracking_home)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MLflow run" in proc.stdout
    client = MlflowClient(tracking_uri(paths))
    runs = client.search_runs(
        [client.get_experiment_by_name("recsys").experiment_id],
        filter_string="params.`train.strategy` = 'ddp'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert np.isfinite(runs[0].data.metrics["test/seqrec/ndcg_at_10"])


@pytest.mark.parametrize("protocol,loss", [(Protocol.temporal, Loss.softmax),
                                           (Protocol.leave_last_out, Loss.sampled)])
def test_other_protocol_and_loss_train(store, protocol, loss):
    paths, _ = store
    res = train(paths, FAST_MODEL.model_copy(update={"loss": loss, "n_negatives": 32}),
                FAST_TRAIN.model_copy(update={"max_epochs": 2, "protocol": protocol}),
                EvalConfig(), TrackingConfig(register_model=False))
    assert res.fingerprint["protocol"] == protocol
    assert np.isfinite(res.test[MODEL_NAME]["ndcg@10"]) and res.test[MODEL_NAME]["n_users"] > 0


def test_environment_tracking_uri_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri(Paths(root=tmp_path, tracking_home=tmp_path)) == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri(Paths(root=tmp_path, tracking_home=tmp_path)).startswith("sqlite:///")


def test_the_gate_reads_validation_and_tags_what_it_used(store, result):
    """Test figures are a report: zeroing them changes nothing about the decision."""
    import dataclasses

    from recsys.registry.registry import Registry
    from recsys.training.full_retrain import promote_full

    paths, _ = store
    assert result.promoted and "validation NDCG@10" in result.decision_reason
    registry = Registry(paths, TrackingConfig())
    tags = registry.get(result.version).tags
    assert float(tags["gate.valid.ndcg_at_10"]) == pytest.approx(
        result.valid[MODEL_NAME]["ndcg@10"], abs=1e-5)
    assert float(tags["gate.valid.popularity.ndcg_at_10"]) == pytest.approx(
        result.valid["popularity"]["ndcg@10"], abs=1e-5)
    assert "test_ndcg_at_10" in tags  # reported on the version, never gated on
    blind = dataclasses.replace(result, test={MODEL_NAME: {"ndcg@10": 0.0},
                                              "popularity": {"ndcg@10": 1.0}})
    promote_full(blind, paths)
    assert blind.decision == "promoted" and blind.decision_reason == result.decision_reason
    run = MlflowClient(tracking_uri(paths)).get_run(result.run_id)
    assert run.data.tags["decision"] == "promoted"


def test_explicit_tracking_uri_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    paths = Paths(root=tmp_path, tracking_home=tmp_path)
    cfg = TrackingConfig(tracking_uri="sqlite:////elsewhere/mlflow.db")
    assert tracking_uri(paths, cfg) == "sqlite:////elsewhere/mlflow.db"
    assert tracking_uri(paths, TrackingConfig()) == "http://127.0.0.1:5999"


# -- against the champion ------------------------------------------------------------------
WELL_TRAINED = FAST_TRAIN  # 8 epochs
HASTY = FAST_TRAIN.model_copy(update={"max_epochs": 1, "lr": 3e-4})  # as if started by hand
FEW = GateConfig(unseen_min_events=20)  # the tiny world has ~150 users


@pytest.fixture(scope="module")
def rivals(tmp_path_factory):
    """A champion well trained on the oldest 60% of events; the store then grows to 85%."""
    root = tmp_path_factory.mktemp("rivals")
    paths = Paths(root=root / "home", tracking_home=root / "tracking")
    data = generate(preset("tiny"))
    events = data.events.sort_values("ts", kind="stable", ignore_index=True)
    n = len(events)
    ingest_frame(data.items, "items", kind="items", data_paths=paths)
    ingest_frame(events.iloc[:int(n * 0.6)], "old", data_paths=paths)
    build_features(paths)
    champion = train(paths, FAST_MODEL, WELL_TRAINED)
    assert champion.decision == "promoted"  # no champion yet: today's rule
    ingest_frame(events.iloc[int(n * 0.6):int(n * 0.85)], "newer", data_paths=paths)
    build_features(paths)
    return paths, champion, events.iloc[int(n * 0.85):]


def test_a_full_retrain_replaces_the_champion_only_if_not_worse_on_unseen_events(
        rivals, monkeypatch):
    """A hasty retrain beats popularity but is kept out; a good one is promoted; promote overrides.

    The hasty one is decided after the newest events land (as they do while a retrain runs), so
    both kinds of unseen events count: its held-out test targets newer than the champion's
    watermark, and the events after both watermarks.
    """
    from typer.testing import CliRunner

    from recsys.cli import app
    from recsys.registry.registry import Registry
    from recsys.training.full_retrain import promote_full

    paths, first, newest = rivals
    registry = Registry(paths, TrackingConfig())
    hasty = train(paths, FAST_MODEL, HASTY, promote=False)
    assert hasty.valid[MODEL_NAME]["ndcg@10"] > hasty.valid["popularity"]["ndcg@10"]
    ingest_frame(newest, "newest", data_paths=paths)
    promote_full(hasty, paths, gate_cfg=FEW)
    assert hasty.decision == "rejected" and registry.champion().version == first.version
    assert registry.alias("challenger") is None  # kept for a retrain that waits as one
    assert "kept out" in hasty.decision_reason
    assert "worse than the champion" in hasty.decision_reason
    tags = registry.get(hasty.version).tags
    assert tags["decision"] == "rejected" and tags["decision_reason"] == hasty.decision_reason
    assert tags["challenge.champion"] == first.version
    assert int(tags["gate.unseen.held_out_events"]) > 0
    assert int(tags["gate.unseen.after_both_events"]) > 0
    assert float(tags["gate.unseen.challenger.ndcg_at_10"]) < \
        float(tags["gate.unseen.champion.ndcg_at_10"])
    run = MlflowClient(tracking_uri(paths)).get_run(hasty.run_id)
    assert run.data.tags["decision"] == "rejected"
    assert "unseen.champion.ndcg_at_10" in run.data.metrics
    note = MlflowClient(tracking_uri(paths)).download_artifacts(hasty.run_id, "decision.md")
    assert f"Against champion version {first.version}" in open(note).read()

    build_features(paths)
    good = train(paths, FAST_MODEL, WELL_TRAINED, gate_cfg=FEW)
    assert good.decision == "promoted" and registry.champion().version == good.version
    assert "not worse within 5%" in good.decision_reason
    assert registry.get(good.version).tags["promoted_over"] == first.version

    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(paths.tracking_home))
    out = CliRunner().invoke(app, ["promote", hasty.version, "--reason", "A/B says so",
                                   "--home", str(paths.root)])
    assert out.exit_code == 0, out.output
    assert registry.champion().version == hasty.version
    assert registry.get(hasty.version).tags["decision"] == "promoted by operator"

    # Where live traffic exists, a candidate that passes validation waits for an experiment.
    from recsys import experiment_run

    online = FEW.model_copy(update={"full_retrain_online": True})
    promote_full(good, paths, gate_cfg=online)
    assert good.decision == "challenger" and "online experiment" in good.decision_reason
    assert registry.champion().version == hasty.version
    assert registry.alias("challenger").version == good.version
    exp = experiment_run.start_for_candidate(paths, good.version)
    assert (exp.treatment_version, exp.control_version) == (good.version, hasty.version)
    assert experiment_run.start_for_candidate(paths, good.version) is None  # one at a time
