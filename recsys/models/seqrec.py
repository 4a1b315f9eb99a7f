"""The sequential recommender: a SASRec user tower scored against an id+text item tower."""

from __future__ import annotations

import torch
from torch import nn

from recsys.config import ModelConfig
from recsys.models.towers import ItemTower, UserTower


@torch.no_grad()
def _init_weights(module: nn.Module, std: float) -> None:
    """Small, uniform initial weights, as in SASRec's reference code.

    Each block starts close to the identity, so the item embeddings, not random projections,
    carry the first epochs' signal.
    """
    if isinstance(module, nn.Linear):
        module.weight.normal_(0.0, std)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.normal_(0.0, std)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()


class SeqRec(nn.Module):
    """Score(user, item) = <user tower(last items), item tower(item)> over the whole catalogue.

    The same item vectors embed the input sequence and rank the output, as in SASRec, so an
    item's text helps both to read a history and to be recommended.
    """

    def __init__(self, cfg: ModelConfig, n_items: int, text: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.items = ItemTower(n_items, cfg.d_model, text if cfg.use_text else None,
                               cfg.id_dropout)
        self.user = UserTower(cfg.d_model, cfg.n_blocks, cfg.n_heads, cfg.max_len, cfg.dropout,
                              cfg.use_event_types, cfg.attention_dropout,
                              cfg.block_layout.value)
        if cfg.init_std is not None:
            self.apply(lambda m: _init_weights(m, cfg.init_std))

    @property
    def n_items(self) -> int:
        return self.items.n_items

    def encode(self, items: torch.Tensor, types: torch.Tensor | None = None,
               item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states at every position ``(B, L, d)``: what training scores."""
        if item_vectors is None:
            item_vectors = self.items()
        return self.user(items, types, item_vectors)

    def user_vectors(self, items: torch.Tensor, types: torch.Tensor | None = None,
                     item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The user vector ``(B, d)``: the hidden state after the newest item."""
        return self.encode(items, types, item_vectors)[:, -1]

    @torch.no_grad()
    def score(self, items: torch.Tensor, types: torch.Tensor | None = None,
              item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item for each history, ``(B, n_items + 1)``; padding scores -inf.

        Pass ``item_vectors`` (from ``self.items()``) when scoring many batches with the same
        weights: the item tower is then computed once, not once per batch.
        """
        if item_vectors is None:
            item_vectors = self.items()
        users = self.user_vectors(items, types, item_vectors)
        # The final product runs in fp32 even under bf16 autocast: bf16's 8-bit mantissa would
        # create ties among close scores and blur the ranking.
        with torch.autocast(device_type=users.device.type, enabled=False):
            scores = users.float() @ item_vectors.float().T
        scores[:, 0] = float("-inf")
        return scores
