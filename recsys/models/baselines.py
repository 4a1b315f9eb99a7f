"""Baselines behind the evaluator's interface: most-popular and item-to-item co-occurrence CF."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from recsys import sql


class Popularity:
    """Most interactions in the recent window before the training cut-off, same list for all."""

    name = "popularity"

    def __init__(self, counts: np.ndarray):
        scores = torch.as_tensor(counts, dtype=torch.float32).clone()
        scores[0] = float("-inf")
        self.scores = scores

    def score(self, items: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        return self.scores.to(items.device).expand(len(items), -1).clone()


class ItemCF:
    """Item-to-item CF: items that followed the user's recent items in other users' sequences.

    score(j) = sum over the last ``recent`` history items i of decay^age(i) * cos(i, j), with
    popularity as a tie-breaker so that users with no co-occurring items still get a list.
    """

    name = "item_cf"

    def __init__(self, neighbours: torch.Tensor, weights: torch.Tensor, popularity: np.ndarray,
                 recent: int = 5, decay: float = 0.8):
        self.neighbours, self.weights = neighbours, weights  # (n_items + 1, N)
        pop = torch.as_tensor(popularity, dtype=torch.float32)
        self.prior = 1e-6 * pop / max(float(pop.max()), 1.0)
        self.prior[0] = float("-inf")
        self.recent, self.decay = recent, decay

    @classmethod
    def fit(cls, train_sequences: pa.Table, n_items: int, popularity: np.ndarray, window: int = 3,
            top_n: int = 100) -> ItemCF:
        """Count co-occurrences in DuckDB (``sql/item_cooccurrence.sql``) over training data."""
        with sql.connect() as con:
            con.register("train_sequences", train_sequences)
            pairs = sql.query(con, "item_cooccurrence", window=window, top_n=top_n).to_arrow_table()
        src = np.array(pairs["src"].to_numpy(), dtype=np.int64)  # copies: torch wants writable
        dst = np.array(pairs["dst"].to_numpy(), dtype=np.int64)
        w = np.array(pairs["weight"].to_numpy(), dtype=np.float32)
        # Slot of each pair within its source's neighbour list (pairs are sorted by src).
        starts = np.searchsorted(src, src, side="left")
        slot = np.arange(len(src)) - starts
        neighbours = torch.zeros(n_items + 1, top_n, dtype=torch.int64)
        weights = torch.zeros(n_items + 1, top_n, dtype=torch.float32)
        neighbours[src, slot] = torch.from_numpy(dst)
        weights[src, slot] = torch.from_numpy(w)
        return cls(neighbours, weights, popularity)

    def score(self, items: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        recent = items[:, -self.recent:]  # (B, R), newest last
        age = torch.arange(recent.shape[1] - 1, -1, -1, device=items.device)
        w_item = (self.decay ** age).float() * (recent > 0)  # (B, R)
        nb = self.neighbours[recent]  # (B, R, N)
        w = self.weights[recent] * w_item[..., None]
        scores = self.prior.expand(len(items), -1).clone()
        scores.scatter_add_(1, nb.flatten(1), w.flatten(1))
        scores[:, 0] = float("-inf")
        return scores
