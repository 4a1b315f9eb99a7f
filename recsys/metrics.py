"""Ranking metrics for next-item prediction with one held-out target per user.

``target_ranks`` turns a score matrix into ranks (``mask_seen`` first, to rank only items not
yet in the history); every metric function takes ``ranks``: the 1-based position of each
user's target in a full ranking of the catalogue (ties counted against the target, so a
constant scorer earns nothing).

>>> import numpy as np
>>> ranks = np.array([1, 3, 11])
>>> float(hit_rate(ranks, 10))
0.6666666666666666
>>> round(float(ndcg(ranks, 10)), 4)  # (1/log2(2) + 1/log2(4) + 0) / 3
0.5
>>> round(float(mrr(ranks, 10)), 4)   # (1 + 1/3 + 0) / 3
0.4444
>>> round(float(precision(ranks, 10)), 4)  # one relevant item: HR / K
0.0667
"""

from __future__ import annotations

import numpy as np
import torch


def mask_seen(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Scores with every item of the history set to -inf (in place; padding stays -inf)."""
    scores.scatter_(1, items, float("-inf"))
    return scores


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target; ties count against it, so a constant scorer ranks last.

    A target that was masked as already seen scores -inf and so ranks last: excluding seen
    items costs a model every re-consumption it would have predicted.

    >>> scores = torch.tensor([[float("-inf"), 1.0, 1.0], [float("-inf"), 3.0, 2.0]])
    >>> target_ranks(scores, torch.tensor([2, 2])).tolist()
    [2, 2]
    """
    t = scores.gather(1, target[:, None])
    return (scores >= t).sum(1).clamp(min=1)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    r"""HR@K = mean(rank <= K). With one target per user it equals Recall@K."""
    return float(np.mean(ranks <= k)) if len(ranks) else float("nan")


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-case NDCG@K (one relevant item, so the ideal DCG is 1), for paired comparisons.

    >>> ndcg_gains(np.array([1, 3, 11]), 10).round(3).tolist()
    [1.0, 0.5, 0.0]
    """
    return np.where(ranks <= k, 1.0 / np.log2(ranks.astype(np.float64) + 1.0), 0.0)


def ndcg(ranks: np.ndarray, k: int) -> float:
    r"""NDCG@K = mean(1 / log2(rank + 1) if rank <= K else 0); the ideal DCG is 1."""
    if not len(ranks):
        return float("nan")
    return float(ndcg_gains(ranks, k).mean())


def mrr(ranks: np.ndarray, k: int) -> float:
    r"""MRR@K = mean(1 / rank if rank <= K else 0)."""
    if not len(ranks):
        return float("nan")
    return float(np.where(ranks <= k, 1.0 / ranks, 0.0).mean())


def precision(ranks: np.ndarray, k: int) -> float:
    r"""Precision@K = hits / K per user, averaged: HR@K / K with one relevant item."""
    return hit_rate(ranks, k) / k


def coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list.

    >>> coverage(np.array([[1, 2], [2, 3]]), 10)
    0.3
    """
    return float(len(np.unique(top)) / n_items) if n_items else float("nan")


def novelty(top: np.ndarray, p_item: np.ndarray) -> float:
    """Mean self-information ``-log2 p(item)`` of recommended items (higher = less obvious).

    >>> novelty(np.array([[1, 2]]), np.array([0.0, 0.5, 0.25]))
    1.5
    """
    return float(np.mean(-np.log2(p_item[top]))) if top.size else float("nan")


def intra_list_diversity(top: np.ndarray, category: np.ndarray) -> float:
    """Mean share of item pairs within a list whose categories differ.

    >>> intra_list_diversity(np.array([[1, 2, 3]]), np.array([-1, 0, 0, 1]))
    0.6666666666666666
    """
    if top.shape[1] < 2:
        return float("nan")
    cats = category[top]  # (U, K)
    differ = cats[:, :, None] != cats[:, None, :]
    k = top.shape[1]
    return float(differ.sum(axis=(1, 2)).mean() / (k * (k - 1)))


def average_popularity(top: np.ndarray, counts: np.ndarray) -> float:
    """ARP@K: mean training count of recommended items, the usual popularity-bias figure.

    >>> average_popularity(np.array([[1, 2]]), np.array([0, 10, 30]))
    20.0
    """
    return float(counts[top].mean()) if top.size else float("nan")
