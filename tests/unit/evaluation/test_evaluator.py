import numpy as np
import pytest
import torch

from recsys.config import EvalConfig, ModelConfig
from recsys.data.containers import Catalogue, EvalSet
from recsys.evaluation.evaluator import evaluate, rank_cases
from recsys.models.seqrec import SeqRec


class Fixed:
    """Scores items by a fixed vector: 4 > 3 > 2 > 1."""

    def score(self, items, types=None):
        s = torch.tensor([float("-inf"), 1.0, 2.0, 3.0, 4.0])
        return s.expand(len(items), -1).clone()


class FixedWithNan(Fixed):
    n_items = 4

    def score(self, items, types=None):
        assert int(items.max()) <= self.n_items  # newer items were dropped before scoring
        s = super().score(items, types)
        s[:, 4] = float("nan")
        return s


def _eval_set(histories, targets):
    items = torch.tensor(histories)
    return EvalSet(items, torch.ones_like(items), torch.tensor(targets), np.arange(len(targets)))


def test_evaluator_full_ranking_and_exclude_seen():
    data = _eval_set([[0, 4], [3, 4]], [4, 2])
    cat = Catalogue(n_items=4, counts=np.array([0, 1, 1, 2, 4.0]),
                    category=np.array([-1, 0, 0, 1, 1]))
    kept = evaluate(Fixed(), data, cat, EvalConfig(ks=(1, 2)))
    # Seen items kept: user 0 ranks 4 first (hit at 1); user 1's target 2 is third.
    assert kept["n_users"] == 2
    assert kept["hr@1"] == 0.5 and kept["hr@2"] == 0.5
    assert kept["ndcg@2"] == pytest.approx(0.5)
    assert kept["coverage@2"] == pytest.approx(0.5)  # items 4 and 3 only
    assert kept["ild@2"] == pytest.approx(0.0)  # 4 and 3 share a category
    assert kept["arp@1"] == pytest.approx(4.0)
    excluded = evaluate(Fixed(), data, cat, EvalConfig(ks=(1, 2), exclude_seen=True))
    # User 0 already saw item 4, the target: it cannot be recommended again -> miss.
    # User 1 saw 3 and 4, so item 2 comes first -> hit.
    assert excluded["hr@1"] == 0.5 and excluded["mrr@2"] == pytest.approx(0.5)
    assert excluded["ild@2"] == pytest.approx(0.5)  # [3, 2] and [2, 1]: one pair differs


def test_rank_cases_per_case_figures():
    data = _eval_set([[0, 1], [0, 2], [0, 1]], [4, 2, 3])
    ranked = rank_cases(Fixed(), data, k=2, batch_size=2)  # two batches
    assert ranked.ranks.tolist() == [1, 3, 2]
    assert ranked.hits(2).tolist() == [True, False, True]
    assert ranked.ndcg_gains(2) == pytest.approx([1.0, 0.0, 1 / np.log2(3)])
    assert ranked.top.tolist() == [[4, 3]] * 3


def test_rank_cases_model_older_than_the_data():
    # Item 5 is newer than the model: dropped from the history, and as a target a miss.
    # NaN scores rank last, so item 4 (NaN) falls behind every finite score.
    data = _eval_set([[5, 1], [0, 2]], [5, 3])
    ranked = rank_cases(FixedWithNan(), data, k=2)
    assert ranked.ranks.tolist() == [5, 1]
    assert ranked.top.tolist() == [[3, 2], [3, 2]]


def test_rank_cases_empty_and_network():
    empty = _eval_set(np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64))
    ranked = rank_cases(Fixed(), empty, k=10)
    assert ranked.ranks.shape == (0,) and ranked.top.shape == (0, 10)
    torch.manual_seed(0)
    net = SeqRec(ModelConfig(d_model=8, n_blocks=1, n_heads=1, max_len=4), n_items=6).eval()
    data = _eval_set([[0, 1, 2, 3], [0, 0, 4, 5]], [4, 6])
    ranked = rank_cases(net, data, k=3)
    scores = net.score(data.items, data.types)
    expected = (scores >= scores.gather(1, data.target[:, None])).sum(1)
    assert ranked.ranks.tolist() == expected.tolist()
    assert ranked.top.tolist() == scores.topk(3, dim=1).indices.tolist()
