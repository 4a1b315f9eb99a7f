"""One evaluator for every model and baseline: full ranking over the whole catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from recsys.config import EvalConfig
from recsys.evaluation import metrics as M


class Recommender(Protocol):
    """Anything that scores the catalogue for a batch of left-padded histories."""

    def score(self, items: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n_items + 1)`` scores; column 0 (padding) must be -inf."""
        ...


@dataclass
class EvalSet:
    """Held-out next items: one row per user, history left-padded to a common width."""

    items: torch.Tensor  # (N, L) int64, 0 = padding
    types: torch.Tensor  # (N, L) int64
    target: torch.Tensor  # (N,) int64
    user_idx: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index: np.ndarray | slice) -> EvalSet:
        return EvalSet(self.items[index], self.types[index], self.target[index],
                       self.user_idx[index])


@dataclass
class Catalogue:
    """What beyond-accuracy metrics need to know about items, from training data only."""

    n_items: int
    counts: np.ndarray  # (n_items + 1,) training interactions per item
    category: np.ndarray  # (n_items + 1,) category code, -1 unknown

    @property
    def p_item(self) -> np.ndarray:
        # Laplace-smoothed so never-seen items have finite self-information.
        return (self.counts + 1.0) / (self.counts.sum() + self.n_items + 1.0)


def trim(items: torch.Tensor, types: torch.Tensor | None = None):
    """Drop padding columns every row shares, so no work is spent on them."""
    nonpad = (items > 0).any(0).nonzero()
    start = int(nonpad[0]) if len(nonpad) else items.shape[1] - 1
    return items[:, start:], (types[:, start:] if types is not None else None)


def mask_seen(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Scores with every item of the history set to -inf (in place; padding stays -inf)."""
    scores.scatter_(1, items, float("-inf"))
    return scores


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target; ties count against it, so a constant scorer ranks last.

    A target that was masked as already seen scores -inf and so ranks last: excluding seen
    items costs a model every re-consumption it would have predicted.
    """
    t = scores.gather(1, target[:, None])
    return (scores >= t).sum(1).clamp(min=1)


@torch.no_grad()
def evaluate(model: Recommender, data: EvalSet, catalogue: Catalogue, cfg: EvalConfig,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Accuracy at every K (HR = Recall, NDCG, MRR, Precision) and beyond-accuracy figures.

    Beyond accuracy: coverage, novelty, intra-list diversity by category and average
    popularity of the top-K lists.
    """
    kmax = max(cfg.ks)
    ranks, tops = [], []
    for start in range(0, len(data), cfg.batch_size):
        batch = data.subset(slice(start, start + cfg.batch_size))
        items, types = trim(batch.items.to(device), batch.types.to(device))
        scores = model.score(items, types).float()
        if cfg.exclude_seen:
            mask_seen(scores, items)
        ranks.append(target_ranks(scores, batch.target.to(device)).cpu())
        tops.append(scores.topk(kmax, dim=1).indices.cpu())
    r = torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)
    top = torch.cat(tops).numpy() if tops else np.zeros((0, kmax), dtype=np.int64)
    out: dict[str, float] = {"n_users": float(len(r))}
    for k in cfg.ks:
        out[f"hr@{k}"] = M.hit_rate(r, k)
        out[f"ndcg@{k}"] = M.ndcg(r, k)
        out[f"mrr@{k}"] = M.mrr(r, k)
        out[f"precision@{k}"] = M.precision(r, k)
        tk = top[:, :k]
        out[f"coverage@{k}"] = M.coverage(tk, catalogue.n_items)
        out[f"novelty@{k}"] = M.novelty(tk, catalogue.p_item)
        if (catalogue.category >= 0).any():
            out[f"ild@{k}"] = M.intra_list_diversity(tk, catalogue.category)
        out[f"arp@{k}"] = M.average_popularity(tk, catalogue.counts)
    return out
