"""The bounded fine-tune loop, on hand-made sequences (no feature store, no registry)."""

from __future__ import annotations

import json

import pytest
import torch

from recsys.config import ModelConfig, UpdateConfig
from recsys.data.microbatch import FineTuneData
from recsys.models.seqrec import SeqRec
from recsys.training import finetune


def _data(n_short: int = 64, n_long: int = 64, width: int = 12) -> FineTuneData:
    """Left-padded sequences of two lengths (3 and ``width``), every next item to learn."""
    gen = torch.Generator().manual_seed(0)
    items = torch.randint(1, 30, (n_short + n_long, width), generator=gen)
    items[:n_short, :-3] = 0
    return FineTuneData(items, torch.ones_like(items), items > 0)


def _net() -> SeqRec:
    torch.manual_seed(0)
    return SeqRec(ModelConfig(d_model=16, n_blocks=1, n_heads=1, max_len=12, use_text=False), 30)


def test_one_pass_learns_every_new_position_and_lowers_the_loss():
    data = _data()
    cfg = UpdateConfig(max_steps=100, batch_size=16, epochs=8, lr=1e-2, precision="32")
    report = finetune.fine_tune(_net(), data, cfg)
    assert report.finite
    assert report.positions == cfg.epochs * data.positions
    assert report.steps == cfg.epochs * len(data) // cfg.batch_size
    assert report.last_loss < report.first_loss


@pytest.mark.parametrize("window, mixed", [(1, True), (50, False)])
def test_batches_follow_the_bucket_window(monkeypatch, window, mixed):
    """Random batches (the default) mix short and long sequences; bucketed ones do not."""
    seen: list[set[int]] = []

    class Spy(finetune.BucketBatchSampler):
        def __iter__(self):
            for batch in super().__iter__():
                seen.append({int(self.lengths[i]) for i in batch})
                yield batch

    monkeypatch.setattr(finetune, "BucketBatchSampler", Spy)
    cfg = UpdateConfig(max_steps=100, batch_size=16, bucket_window=window, precision="32")
    finetune.fine_tune(_net(), _data(), cfg)
    assert len(seen) == 8
    assert any(len(lengths) > 1 for lengths in seen) is mixed
    assert UpdateConfig().bucket_window == 1


def test_fine_tune_is_repeatable_and_leaves_the_callers_random_state_alone():
    """Same champion, same batch, same seed: the same candidate (dropout included)."""
    data, cfg = _data(), UpdateConfig(max_steps=20, batch_size=16, epochs=2)
    assert cfg.deterministic and _net().cfg.dropout > 0
    flag = torch.are_deterministic_algorithms_enabled()
    a, b = _net(), _net()
    torch.manual_seed(1)
    finetune.fine_tune(a, data, cfg)
    torch.manual_seed(2)  # the caller's state must not leak into the fine-tune either
    finetune.fine_tune(b, data, cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    c = _net()
    finetune.fine_tune(c, data, cfg.model_copy(update={"seed": 7}))
    assert not torch.equal(c.state_dict()["items.id_emb.weight"],
                           a.state_dict()["items.id_emb.weight"])
    d = _net()
    torch.manual_seed(2)
    after = torch.get_rng_state()
    finetune.fine_tune(d, data, cfg)
    assert torch.equal(torch.get_rng_state(), after)
    assert torch.are_deterministic_algorithms_enabled() is flag


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_the_optimiser_gets_the_weight_decay_it_is_given(monkeypatch, weight_decay):
    """Not dropped on the way (it once was: ``TrainConfig(lr=cfg.lr)``)."""
    built = []

    class Spy(finetune.SeqRecModule):
        def make_optimizer(self):
            optimiser = super().make_optimizer()
            built.append(optimiser)
            return optimiser

    monkeypatch.setattr(finetune, "SeqRecModule", Spy)
    cfg = UpdateConfig(max_steps=2, batch_size=16, lr=5e-3, precision="32")
    finetune.fine_tune(_net(), _data(), cfg, weight_decay=weight_decay)
    groups = built[0].param_groups
    assert {g["lr"] for g in groups} == {5e-3}
    assert max(g["weight_decay"] for g in groups) == weight_decay


def test_a_spent_time_budget_stops_the_fine_tune_and_reports_the_share():
    """One step always runs; then no step starts once ``time_budget_s`` has passed."""
    data = _data()
    cfg = UpdateConfig(max_steps=100, batch_size=16, epochs=2, precision="32",
                       time_budget_s=1e-9)
    report = finetune.fine_tune(_net(), data, cfg)
    assert report.steps == 1 and report.out_of_time and report.finite
    assert report.share == 16 / len(data)
    assert report.as_dict()["finetune_share"] == report.share
    assert report.as_dict()["finetune_out_of_time"] == 1.0

    roomy = finetune.fine_tune(_net(), data, cfg.model_copy(update={"time_budget_s": 3600.0}))
    assert roomy.steps == cfg.epochs * len(data) // cfg.batch_size
    assert roomy.share == 1.0 and not roomy.out_of_time
    assert roomy.positions == cfg.epochs * data.positions
    assert 0 < UpdateConfig().time_budget_s <= 30  # well inside the one-minute schedule


def test_an_update_out_of_time_still_gates_and_records_the_share(world):
    """The budget cuts training only: the candidate is scored in full, and the share trained
    on reaches the result, ``updates.jsonl`` and the MLflow run."""
    from recsys.training.update import update

    world.land(2)
    cfg = UpdateConfig(max_steps=20, batch_size=8, time_budget_s=1e-9)
    result = update(world.paths, cfg)
    assert result.version is not None and result.status in ("promoted", "rejected")
    assert 0 < result.trained_share < 1
    assert result.figures["finetune_steps"] == 1 and result.figures["finetune_out_of_time"] == 1
    assert result.figures["holdout.challenger.n"] == result.figures["holdout.champion.n"] > 0
    assert result.figures["guard.challenger.n"] == result.figures["guard.champion.n"] > 0
    records = [json.loads(line) for line in (world.paths.root / "updates.jsonl").open()]
    assert records[-1]["trained_share"] == result.trained_share
    run = world.registry.client.get_run(result.run_id)
    assert run.data.metrics["finetune_share"] == pytest.approx(result.trained_share)

    world.land(2)
    full = update(world.paths, cfg.model_copy(update={"time_budget_s": 3600.0}))
    assert full.trained_share == 1.0 and full.figures["finetune_out_of_time"] == 0
