"""The two towers: items from id + text, users from their behaviour sequence."""

from __future__ import annotations

import math

import torch
from torch import nn

from recsys.columns import EVENT_TYPES
from recsys.models.blocks import BLOCKS, attention_mask
from recsys.models.dropout import Dropout

N_EVENT_TYPES = len(EVENT_TYPES) + 1  # 0 padding, then the types in columns.EVENT_TYPES order


class ItemTower(nn.Module):
    """Item vector = id embedding + projection of the item's (frozen) text embedding.

    An item nobody has interacted with has an untrained id row but a text vector placed by
    the same projection as every trained item, so it lands near items that read alike.
    """

    def __init__(self, n_items: int, d_model: int, text: torch.Tensor | None, id_dropout: float):
        super().__init__()
        self.id_emb = nn.Embedding(n_items + 1, d_model, padding_idx=0)
        nn.init.normal_(self.id_emb.weight, std=d_model ** -0.5)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()
        self.id_dropout = id_dropout
        if text is not None and text.shape[1] > 0:
            # Held at half precision (in fp32 storage): models are saved with fp16 text, and
            # a saved model must score exactly as the one that was evaluated.
            self.register_buffer("text", text.half().float())  # (n_items + 1, text_dim)
            self.text_proj = nn.Linear(text.shape[1], d_model, bias=False)
        else:
            self.register_buffer("text", torch.zeros(n_items + 1, 0))
            self.text_proj = None

    @property
    def n_items(self) -> int:
        return self.id_emb.num_embeddings - 1

    @torch.no_grad()
    def grow(self, n_items: int, text: torch.Tensor | None = None) -> None:
        """Make room for items indexed up to ``n_items`` (id maps only ever append).

        A new item's id row starts at zero, so its vector is its text projection: it is
        recommendable at once and the fine-tune moves it from there. ``text`` (all items, new
        and old, since a title may have changed) replaces the text buffer when given.
        """
        old = self.id_emb.weight
        if n_items < self.n_items:
            raise ValueError(f"cannot shrink the item tower from {self.n_items} to {n_items} items")
        if n_items > self.n_items:
            emb = nn.Embedding(n_items + 1, old.shape[1], padding_idx=0).to(old.device, old.dtype)
            emb.weight.zero_()
            emb.weight[: old.shape[0]] = old
            self.id_emb = emb
        if self.text_proj is None:
            self.text = torch.zeros(n_items + 1, 0, device=old.device)
            return
        if text is None:
            text = torch.cat([self.text, self.text.new_zeros(n_items + 1 - len(self.text),
                                                             self.text.shape[1])])
        if tuple(text.shape) != (n_items + 1, self.text.shape[1]):
            raise ValueError(f"text matrix of shape {tuple(text.shape)} does not fit "
                             f"{n_items} items of text dimension {self.text.shape[1]}")
        self.text = text.to(self.text.device).half().float()

    def forward(self) -> torch.Tensor:
        """All item vectors, ``(n_items + 1, d)``; row 0 is padding."""
        ids = self.id_emb.weight
        # Without text there is nothing to fall back on, so id dropout would only add noise.
        if self.training and self.id_dropout > 0 and self.text_proj is not None:
            keep = torch.rand(ids.shape[0], 1, device=ids.device) >= self.id_dropout
            ids = ids * keep
        if self.text_proj is None:
            return ids
        return ids + self.text_proj(self.text)


class UserTower(nn.Module):
    """SASRec: causal Transformer over the item sequence; position t summarises items <= t."""

    def __init__(self, d_model: int, n_blocks: int, n_heads: int, max_len: int, dropout: float,
                 use_event_types: bool, attention_dropout: float | None = None,
                 block_layout: str = "pre_norm"):
        super().__init__()
        self.max_len = max_len
        self.scale = math.sqrt(d_model)
        # Positions count back from the newest item, so left-trimming a batch's padding never
        # shifts them: the newest item is always position 0.
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.type_emb = nn.Embedding(N_EVENT_TYPES, d_model) if use_event_types else None
        self.drop = Dropout(dropout)
        block = BLOCKS[block_layout]
        self.blocks = nn.ModuleList(block(d_model, n_heads, dropout,
                                          attention_dropout=attention_dropout)
                                    for _ in range(n_blocks))
        self.ln = nn.LayerNorm(d_model)

    def forward(self, items: torch.Tensor, types: torch.Tensor | None,
                item_vectors: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position, ``(B, L, d)``, for left-padded ``items`` ``(B, L)``."""
        items = items[:, -self.max_len:]
        L = items.shape[1]
        valid = items > 0
        x = item_vectors[items] * self.scale
        pos = torch.arange(L - 1, -1, -1, device=items.device)
        x = x + self.pos_emb(pos)
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types[:, -self.max_len:])
        x = self.drop(x) * valid.unsqueeze(-1)
        mask = attention_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x)
