"""One evaluator for every model and baseline: full ranking over the whole catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from recsys import console
from recsys import metrics as M
from recsys.config import EvalConfig
from recsys.data.containers import Catalogue, EvalSet, trim
from recsys.models.seqrec import SeqRec


class Recommender(Protocol):
    """Anything that scores the catalogue for a batch of left-padded histories."""

    def score(self, items: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n_items + 1)`` scores; column 0 (padding) must be -inf."""
        ...


@dataclass
class Ranked:
    """Where one model put each case's target, and what it put first."""

    ranks: np.ndarray  # (N,) 1-based rank of each target in the full catalogue
    top: np.ndarray  # (N, k) item indices of each case's top-k list, best first

    def ndcg_gains(self, k: int) -> np.ndarray:
        """Per-case NDCG@K, ``(N,)``, for paired comparisons."""
        return M.ndcg_gains(self.ranks, k)

    def hits(self, k: int) -> np.ndarray:
        """Per-case hit at K, ``(N,)`` booleans."""
        return self.ranks <= k


def _batch_scorer(model: Recommender):
    """``score(items, types)`` that computes a network's item tower once, not per batch."""
    if isinstance(model, SeqRec):
        vectors = model.items()
        return lambda items, types: model.score(items, types, vectors)
    return model.score


@torch.no_grad()
def rank_cases(model: Recommender, data: EvalSet, k: int, batch_size: int = 512,
               device: torch.device | str = "cpu", exclude_seen: bool = False) -> Ranked:
    """Rank every case's target over the whole catalogue, batch by batch, and keep the top-k.

    Robust to a model older than the data: history items it has no row for
    (index > ``model.n_items``) are dropped, a target it has no row for ranks last (a miss),
    and NaN scores rank last. With ``exclude_seen`` the history's items cannot be recommended.
    """
    n_known = getattr(model, "n_items", None)
    score = _batch_scorer(model)
    ranks, tops = [], []
    # A bar on a terminal only (disable=None): evaluation after a fit takes tens of seconds.
    starts = tqdm(range(0, len(data), batch_size), desc="evaluating", unit="chunk",
                  bar_format=console.STEP_FORMAT, disable=None, leave=False)
    for start in starts:
        batch = data.subset(slice(start, start + batch_size))
        items, types = trim(batch.items.to(device), batch.types.to(device))
        if n_known is not None:
            items = items.masked_fill(items > n_known, 0)  # items newer than the model
        scores = torch.nan_to_num(score(items, types).float(), nan=float("-inf"))
        if exclude_seen:
            M.mask_seen(scores, items)
        n_items = scores.shape[1] - 1
        target = batch.target.to(device)
        known = target <= n_items
        rank = M.target_ranks(scores, target.clamp(max=n_items))
        ranks.append(torch.where(known, rank, torch.full_like(rank, n_items + 1)).cpu())
        tops.append(scores.topk(min(k, n_items), dim=1).indices.cpu())
    if not ranks:
        return Ranked(np.zeros(0, dtype=np.int64), np.zeros((0, k), dtype=np.int64))
    return Ranked(torch.cat(ranks).numpy(), torch.cat(tops).numpy())


def evaluate(model: Recommender, data: EvalSet, catalogue: Catalogue, cfg: EvalConfig,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Accuracy at every K (HR = Recall, NDCG, MRR, Precision) and beyond-accuracy figures.

    Beyond accuracy: coverage, novelty, intra-list diversity by category and average
    popularity of the top-K lists.
    """
    ranked = rank_cases(model, data, max(cfg.ks), cfg.batch_size, device, cfg.exclude_seen)
    r, top = ranked.ranks, ranked.top
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
