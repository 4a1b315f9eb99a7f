"""The full retrain's gate decides on validation figures, and reads nothing else."""

from __future__ import annotations

import torch

from recsys.config import GateConfig, ModelConfig
from recsys.models.seqrec import SeqRec
from recsys.training.gate import decide_full


def _net() -> SeqRec:
    torch.manual_seed(0)
    return SeqRec(ModelConfig(d_model=16, n_blocks=1, n_heads=1, max_len=8, use_text=False), 20)


def test_a_full_retrain_must_beat_popularity_on_validation():
    cfg = GateConfig()
    ok = decide_full(0.20, 0.10, _net(), cfg)
    assert ok.promote and "validation NDCG@10 0.2000" in ok.reason
    assert ok.figures == {"valid.ndcg@10": 0.20, "valid.popularity.ndcg@10": 0.10}
    worse = decide_full(0.09, 0.10, _net(), cfg)
    assert not worse.promote and "does not beat" in worse.reason
    lift = decide_full(0.20, 0.10, _net(), GateConfig(full_min_lift_over_popularity=2.5))
    assert not lift.promote
    assert not decide_full(float("nan"), 0.10, _net(), cfg).promote


def test_a_broken_full_retrain_is_rejected_whatever_its_figures():
    net = _net()
    with torch.no_grad():
        net.items.id_emb.weight[2, 0] = float("nan")
    verdict = decide_full(0.5, 0.1, net, GateConfig())
    assert not verdict.promote and "NaN" in verdict.reason
