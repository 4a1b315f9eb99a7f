"""The data containers every layer passes around: evaluation cases and the item catalogue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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
