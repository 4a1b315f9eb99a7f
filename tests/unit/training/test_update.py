"""Micro-batch updates against a real feature store and a real MLflow registry (SQLite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from recsys.config import (
    GateConfig,
    UpdateConfig,
)
from recsys.data.ingest import ingest_frame
from recsys.models import io
from recsys.registry.registry import CANDIDATE, CHALLENGER, PREVIOUS
from recsys.scoring.scorer import Scorer
from recsys.training import update as update_module
from recsys.training.update import update

FAST = UpdateConfig(max_steps=10, batch_size=64)


def test_update_tests_then_trains_and_promotes_with_lineage(world):
    champion0 = world.champion()
    assert champion0.version == world.full_version and champion0.kind == "full"

    nothing = update(world.paths, FAST)
    assert nothing.status == "no_events" and nothing.version is None

    world.land(1)
    waiting = update(world.paths, FAST)
    assert waiting.status == "waiting" and world.champion().version == champion0.version
    assert waiting.figures["holdout.champion.n"] > 0  # the single part was tested on

    world.land(1)
    first = update(world.paths, FAST)
    assert first.status == "promoted", first.reason
    champion = world.champion()
    assert champion.version == first.version and champion.kind == "incremental"
    assert champion.parent == champion0.version
    assert champion.watermark == first.plan.cut > champion0.watermark
    assert first.plan.high > first.plan.cut  # the newest part is held out, not trained yet
    assert world.registry.alias(PREVIOUS).version == champion0.version
    assert world.registry.alias(CANDIDATE).version == first.version
    assert world.registry.alias(CHALLENGER) is None  # a waiting full retrain's alone
    assert champion.tags["decision"] == "promoted"
    assert {"gate.holdout.challenger.ndcg_at_10", "gate.guard.champion.ndcg_at_10"} <= set(
        champion.tags)
    assert first.model_age_s is not None and first.model_age_s > 0

    world.land(2)
    second = update(world.paths, FAST)
    assert second.status == "promoted", second.reason
    assert second.plan.low == first.plan.cut  # the held-out part is trained on now
    world.assert_lineage_consistent()

    log = [json.loads(line) for line in (world.paths.root / "updates.jsonl").read_text()
           .splitlines()]
    assert [r["status"] for r in log] == ["no_events", "waiting", "promoted", "promoted"]

    run = world.registry.client.get_run(second.run_id)
    assert run.data.tags["kind"] == "incremental" and run.data.tags["decision"] == "promoted"
    assert "model_age_s" in run.data.metrics and "seconds_train" in run.data.metrics
    assert "decision.md" in {a.path for a in world.registry.client.list_artifacts(second.run_id)}
    table = second.markdown()
    assert "**promoted**" in table and "| holdout |" in table and "| guard |" in table


def _sabotage(monkeypatch, how):
    real = update_module.fine_tune

    def broken(net, data, cfg, counts=None, **kwargs):
        report = real(net, data, cfg, counts, **kwargs)
        how(net, report)
        return report

    monkeypatch.setattr(update_module, "fine_tune", broken)


def _shuffle_items(net, report):
    """Every item gets another item's vectors: as diverse as before, but wrong."""
    with torch.no_grad():
        perm = torch.randperm(net.n_items, generator=torch.Generator().manual_seed(1)) + 1
        net.items.id_emb.weight[1:] = net.items.id_emb.weight[perm].clone()
        net.items.text[1:] = net.items.text[perm].clone()


def _nan(net, report):
    with torch.no_grad():
        net.items.id_emb.weight[3, 0] = float("nan")


def _nan_loss(net, report):
    report.finite = False


def _constant_scores(net, report):
    net.score = lambda items, types=None: torch.zeros(items.shape[0], 3)


@pytest.mark.parametrize("how, reason", [
    (_shuffle_items, "worse than the champion"),
    (_nan, "NaN"),
    (_nan_loss, "loss was NaN"),
    (_constant_scores, "smoke scoring failed"),
])
def test_gate_rejects_bad_candidates_and_keeps_the_watermark(world, monkeypatch, how, reason):
    champion0 = world.champion()
    world.land(2)
    _sabotage(monkeypatch, how)
    result = update(world.paths, FAST)
    assert result.status == "rejected" and reason in result.reason, result.reason
    assert world.champion().version == champion0.version
    assert world.champion().watermark == champion0.watermark
    rejected = world.registry.get(result.version)
    assert rejected.tags["decision"] == "rejected" and reason in rejected.tags["decision_reason"]
    assert world.registry.alias(CANDIDATE).version == result.version

    monkeypatch.undo()
    retry = update(world.paths, FAST)  # the same events, from the same champion
    assert retry.status == "promoted" and retry.plan.low == champion0.watermark
    world.assert_lineage_consistent()


def test_new_items_enter_the_catalogue_and_are_scored(world):
    new_items = pd.DataFrame({
        "item_id": ["fresh-espresso-1", "fresh-espresso-2"],
        "title": ["Kumo espresso arabica roast beans", "Vela espresso grinder brew"],
        "category": ["coffee", "coffee"], "description": ["espresso beans", "espresso grinder"]})
    ingest_frame(new_items, "new-items", kind="items", data_paths=world.paths)
    world.land(1)
    users = world.chunks[1]["user_id"].unique()[:5]
    clicks = pd.DataFrame({"user_id": users, "item_id": "fresh-espresso-1", "event_type": "click",
                           "ts": world.chunks[1]["ts"].max()})
    ingest_frame(clicks, "fresh-clicks", data_paths=world.paths)
    world.land(1)
    result = update(world.paths, FAST)
    assert result.status == "promoted", result.reason
    assert result.figures["new_items"] >= 2
    with world.registry.model_folder(result.version) as folder:
        scorer = Scorer.from_folder(folder)
    assert {"fresh-espresso-1", "fresh-espresso-2"} <= set(scorer.item_ids)
    assert scorer.model_age_s() == pytest.approx(world.champion().age_seconds(), abs=60)
    coffee = world.items[world.items["category"] == "coffee"]["item_id"].tolist()[:5]
    ids, scores = scorer.recommend([coffee], k=scorer.net.n_items)
    ranked = list(ids[0])
    assert torch.isfinite(torch.as_tensor(scores)).all()
    # Never clicked: ranked by its text alone, it still sits in the upper half for a coffee fan.
    assert ranked.index("fresh-espresso-2") < len(ranked) / 2


def test_rollback_restores_the_previous_champion_and_its_watermark(world):
    world.land(2)
    first = update(world.paths, FAST)
    world.land(2)
    second = update(world.paths, FAST)
    assert first.promoted and second.promoted
    frm, to = world.registry.rollback("test")
    assert (frm, to) == (second.version, first.version)
    champion = world.champion()
    assert champion.version == first.version and champion.watermark == first.plan.cut
    assert world.registry.alias(PREVIOUS).version == world.full_version
    assert world.registry.get(second.version).tags["decision"] == "rolled_back"
    again = update(world.paths, FAST)  # retrains what the rolled-back version had learnt
    assert again.promoted and again.plan.low == first.plan.cut
    world.assert_lineage_consistent()


def test_retention_keeps_aliases_and_recent_versions_and_deletes_artifacts(world):
    from recsys.config import RetentionConfig

    versions = []
    for _ in range(3):
        world.land(2)
        versions.append(update(world.paths, FAST, retention=RetentionConfig(
            keep_incremental=1, keep_full=1)).version)
    kept = {v.version for v in world.registry.versions()}
    # champion (newest), previous-champion (the one before); the oldest incremental is gone,
    # the full retrain stays as the newest full version.
    assert kept == {versions[-1], versions[-2], world.full_version}
    models = world.paths.mlruns / "models"
    assert len([p for p in models.iterdir() if any(p.rglob("model.safetensors"))]) == 3


def test_an_incompatible_store_is_refused_with_a_clear_error(world):
    world.land(2)
    with world.registry.model_folder(world.champion().version) as folder:
        meta = json.loads((folder / io.CONFIG).read_text())
        meta["text_encoder"] = "some-other-encoder"
        (folder / io.CONFIG).write_text(json.dumps(meta))
    with pytest.raises(update_module.IncompatibleStore, match="text encoder"):
        update(world.paths, FAST)


KILL_POINTS = ["update.after_extract", "finetune.after_step", "update.after_register"]


def test_killed_updates_lose_no_event_and_train_none_twice(world):
    """SIGKILL the real CLI at each critical point; the next run recovers the same batch."""
    env = {**os.environ, "RECSYS_TRACKING_HOME": str(world.paths.tracking_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "recsys.cli", "update", "--home", str(world.paths.root),
           "--max-steps", "10", "--batch-size", "64"]
    for point in KILL_POINTS:
        world.land(2)
        before = world.champion()
        proc = subprocess.run(cmd, env={**env, "RECSYS_KILL_AT": point}, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
        assert world.champion().version == before.version  # nothing moved
        with world.registry.model_folder(world.champion().version) as folder:
            assert Scorer.from_folder(folder).recommend([[]], k=3)[0].shape == (1, 3)
        recovered = update(world.paths, FAST)
        assert recovered.status == "promoted", (point, recovered.reason)
        assert recovered.plan.low == before.watermark  # the unfinished batch, repeated
        world.assert_lineage_consistent()


def test_gate_rules_on_figures():
    from recsys.training.gate import SetScore, compare
    champion = {"holdout": SetScore(100, 0.20, 0.4, 40), "guard": SetScore(100, 0.30, 0.5, 40)}
    cfg = GateConfig(tolerance=0.05)
    ok = {"holdout": SetScore(100, 0.195, 0.4, 38), "guard": SetScore(100, 0.29, 0.5, 39)}
    assert compare(champion, ok, cfg).promote
    forgot = {"holdout": SetScore(100, 0.25, 0.5, 40), "guard": SetScore(100, 0.25, 0.4, 40)}
    verdict = compare(champion, forgot, cfg)
    assert not verdict.promote and "guard" in verdict.reason
    collapsed = {"holdout": SetScore(100, 0.21, 0.4, 5), "guard": SetScore(100, 0.3, 0.5, 40)}
    verdict = compare(champion, collapsed, cfg)
    assert not verdict.promote and "collapsed" in verdict.reason
    assert verdict.figures["holdout.challenger.distinct@10"] == 5


def test_a_candidate_loses_when_the_champion_moves_while_it_trains(world, monkeypatch):
    world.land(2)
    first = update(world.paths, FAST)
    assert first.promoted
    real = update_module.fine_tune

    def full_retrain_promotes_meanwhile(net, data, cfg, counts=None, **kwargs):
        world.registry.promote(world.full_version, "a full retrain finished")
        return real(net, data, cfg, counts, **kwargs)

    monkeypatch.setattr(update_module, "fine_tune", full_retrain_promotes_meanwhile)
    world.land(2)
    raced = update(world.paths, FAST)
    assert raced.status == "stale"
    assert world.champion().version == world.full_version  # the full retrain's promotion stands
    assert world.registry.get(raced.version).tags["decision"] == "stale"


def test_operators_promote_and_roll_back_from_the_cli(world, monkeypatch):
    from typer.testing import CliRunner

    from recsys.cli import app

    world.land(2)
    first = update(world.paths, FAST)
    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(world.paths.tracking_home))
    runner = CliRunner()
    home = ["--home", str(world.paths.root)]
    out = runner.invoke(app, ["promote", world.full_version, "--reason", "hand-picked", *home])
    assert out.exit_code == 0, out.output
    assert world.champion().version == world.full_version
    assert "operator: hand-picked" in world.champion().tags["decision_reason"]
    out = runner.invoke(app, ["rollback", "--reason", "changed my mind", *home])
    assert out.exit_code == 0, out.output
    assert world.champion().version == first.version
    assert world.registry.get(world.full_version).tags["decision"] == "rolled_back"
    assert world.registry.alias(PREVIOUS) is None  # never the version just rolled back from
    out = runner.invoke(app, ["models", *home])
    row = next(line for line in out.output.splitlines() if line.startswith(f"| {first.version} |"))
    assert "champion" in row
    out = runner.invoke(app, ["promote", "999", *home])
    assert out.exit_code != 0 and "no version 999" in str(out.exception)


def test_the_fine_tune_keeps_the_lineages_weight_decay(world, monkeypatch):
    """The full retrain's weight decay travels in the model folder to every fine-tune."""
    with world.registry.model_folder(world.full_version) as folder:
        meta = json.loads((folder / io.CONFIG).read_text())
        assert meta["weight_decay"] == 0.0  # TrainConfig's default, recorded
        meta["weight_decay"] = 0.25  # as if the full retrain had used it
        (folder / io.CONFIG).write_text(json.dumps(meta))
    seen = []
    real = update_module.fine_tune

    def spy(net, data, cfg, counts=None, **kwargs):
        seen.append(kwargs["weight_decay"])
        return real(net, data, cfg, counts, **kwargs)

    monkeypatch.setattr(update_module, "fine_tune", spy)
    world.land(2)
    first = update(world.paths, FAST)
    world.land(2)
    second = update(world.paths, FAST)  # fine-tunes the first candidate, not the full model
    assert first.promoted and second.promoted and seen == [0.25, 0.25]
    with world.registry.model_folder(second.version) as folder:
        assert json.loads((folder / io.CONFIG).read_text())["weight_decay"] == 0.25
