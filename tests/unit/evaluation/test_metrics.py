import doctest

import numpy as np
import pytest
import torch

from recsys.config import EvalConfig
from recsys.evaluation import metrics
from recsys.evaluation.evaluator import Catalogue, EvalSet, evaluate, target_ranks


def test_metric_doctests():
    assert doctest.testmod(metrics).failed == 0


def test_hand_computed_accuracy():
    ranks = np.array([1, 2, 5, 30])
    assert metrics.hit_rate(ranks, 10) == pytest.approx(0.75)
    assert metrics.ndcg(ranks, 10) == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(6)) / 4)
    assert metrics.mrr(ranks, 10) == pytest.approx((1 + 0.5 + 0.2) / 4)
    assert metrics.precision(ranks, 10) == pytest.approx(0.075)
    assert metrics.ndcg(ranks, 1) == pytest.approx(0.25)


def test_ties_count_against_the_target():
    scores = torch.tensor([[float("-inf"), 1.0, 1.0, 1.0], [float("-inf"), 3.0, 2.0, 1.0]])
    ranks = target_ranks(scores, torch.tensor([2, 3]))
    assert ranks.tolist() == [3, 3]  # a constant scorer gets no credit for ties


class Fixed:
    """Scores items by a fixed vector: 4 > 3 > 2 > 1."""

    def score(self, items, types=None):
        s = torch.tensor([float("-inf"), 1.0, 2.0, 3.0, 4.0])
        return s.expand(len(items), -1).clone()


def _eval_set(histories, targets):
    items = torch.tensor(histories)
    return EvalSet(items, torch.ones_like(items), torch.tensor(targets), np.arange(len(targets)))


def test_evaluator_full_ranking_and_exclude_seen():
    data = _eval_set([[0, 4], [3, 4]], [4, 2])
    cat = Catalogue(n_items=4, counts=np.array([0, 1, 1, 2, 4.0]),
                    category=np.array([-1, 0, 0, 1, 1]))
    kept = evaluate(Fixed(), data, cat, EvalConfig(ks=(1, 2)))
    # Seen items kept: user 0 ranks 4 first (hit at 1); user 1's target 2 is third.
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
