import doctest

import numpy as np
import pytest
import torch

from recsys import metrics
from recsys.metrics import mask_seen, target_ranks


def test_metric_doctests():
    result = doctest.testmod(metrics)
    assert result.attempted >= 8 and result.failed == 0


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


def test_mask_seen_ranks_a_seen_target_last():
    scores = torch.tensor([[float("-inf"), 3.0, 2.0, 1.0]])
    mask_seen(scores, torch.tensor([[0, 1]]))
    assert scores[0, 1] == float("-inf") and scores[0, 2] == 2.0
    assert target_ranks(scores, torch.tensor([1])).tolist() == [4]
    assert target_ranks(scores, torch.tensor([2])).tolist() == [1]
