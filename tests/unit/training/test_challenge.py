"""The offline challenge of a champion: which cases count, and the three outcomes."""

from __future__ import annotations

import numpy as np
import torch

from recsys.config import GateConfig, ModelConfig
from recsys.data.containers import EvalSet
from recsys.models.seqrec import SeqRec
from recsys.registry.registry import Version
from recsys.training.challenge import Unseen, decide, held_out_keys

N_ITEMS = 300


def _net(seed: int) -> SeqRec:
    torch.manual_seed(seed)
    return SeqRec(ModelConfig(d_model=16, n_blocks=1, n_heads=1, max_len=8, use_text=False),
                  N_ITEMS).eval()


def _cases(n: int, seed: int = 0) -> EvalSet:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (n, 8), generator=g)
    items[:, :3] = 0  # left padding
    return EvalSet(items, (items > 0).long(), torch.randint(1, N_ITEMS + 1, (n,), generator=g),
                   np.arange(n))


def _unseen(cases: EvalSet, held_out: int) -> Unseen:
    return Unseen(cases, held_out, len(cases) - held_out, [f"i{i}" for i in range(N_ITEMS)],
                  np.zeros((N_ITEMS + 1, 0), dtype=np.float32), "none")


CHAMPION = Version("4", {"watermark": "7"}, None, None)


def test_keys_name_user_target_and_the_last_items_before_it():
    cases = EvalSet(torch.tensor([[0, 0, 5, 6], [0, 0, 0, 9]]), torch.ones(2, 4, dtype=torch.long),
                    torch.tensor([7, 3]), np.array([11, 12]))
    assert held_out_keys(cases).tolist() == [[11, 7, 0, 5, 6], [12, 3, 0, 0, 9]]
    narrow = EvalSet(cases.items[:, -1:], cases.types[:, -1:], cases.target, cases.user_idx)
    assert held_out_keys(narrow).tolist() == [[11, 7, 0, 0, 6], [12, 3, 0, 0, 9]]


def test_too_few_unseen_events_and_the_candidate_waits_as_challenger():
    out = decide(CHAMPION, _net(0), _net(1), _unseen(_cases(5), 2), 9,
                 GateConfig(unseen_min_events=50))
    assert out.decision == "challenger" and "waits as challenger" in out.reason
    assert "5 events neither it nor champion version 4 has trained on" in out.reason
    assert "2 of its held-out test events after the champion's watermark 7" in out.reason
    assert "3 landed after both watermarks 7 and 9" in out.reason
    assert out.figures == {"unseen.held_out_events": 2.0, "unseen.after_both_events": 3.0}


def test_a_copy_of_the_champion_is_not_worse_and_a_worse_model_is_kept_out():
    champion = _net(0)
    cases = _cases(400)
    # Targets the champion ranks first: it scores NDCG@10 = 1 on every case.
    with torch.no_grad():
        cases.target = champion.score(cases.items, cases.types)[:, 1:].argmax(1) + 1
    same = decide(CHAMPION, champion, _net(0), _unseen(cases, 400), 9, GateConfig())
    assert same.decision == "promoted" and "not worse within 5%" in same.reason
    assert same.figures["unseen.drop"] == 0.0 and same.figures["unseen.champion.n"] == 400
    other = decide(CHAMPION, champion, _net(1), _unseen(cases, 400), 9, GateConfig())
    assert other.decision == "rejected" and "kept out" in other.reason
    assert other.figures["unseen.champion.ndcg@10"] == 1.0
    assert other.figures["unseen.challenger.ndcg@10"] < 0.9


def test_a_worse_point_estimate_within_noise_waits_instead_of_replacing_the_champion():
    """The micro-batch gate's rule alone ("not shown worse") let a retrain at 0.23 replace a
    champion at 0.29 on ~60 events; a candidate from another lineage must not be worse beyond
    the tolerance even in its point estimate."""
    champion = _net(0)
    cases = _cases(60)
    with torch.no_grad():
        cases.target = champion.score(cases.items, cases.types)[:, 1:].argmax(1) + 1
    noisy = GateConfig(unseen_min_events=50, z=1000.0)  # no drop is ever significant
    out = decide(CHAMPION, champion, _net(1), _unseen(cases, 60), 9, noisy)
    assert out.decision == "challenger" and "waits as challenger" in out.reason
    assert "within noise" in out.reason and "too few events to tell" in out.reason
    assert out.figures["unseen.drop"] > 0.05 * out.figures["unseen.champion.ndcg@10"]
    same = decide(CHAMPION, champion, _net(0), _unseen(cases, 60), 9, noisy)
    assert same.decision == "promoted"
