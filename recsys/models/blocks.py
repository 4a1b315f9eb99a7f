"""Transformer building blocks: causal self-attention, a feed-forward, two block layouts.

Pre-norm is ours by default; SASRec's reference layout is kept to compare with it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.dropout import Dropout, fast_dropout


def attention_mask(valid: torch.Tensor) -> torch.Tensor | None:
    """Boolean ``(B, 1, L, L)`` mask, True where a query may attend; None when nothing is padding.

    Sequences are left-padded. A query attends to itself and to earlier real items, never to
    padding, so a user's vector does not depend on how much padding its batch happened to have.
    Padding queries attend to themselves only (their output is never used), which keeps every
    softmax row finite.
    """
    if bool(valid.all()):
        return None  # plain causal attention: the fused kernels' fastest path
    L = valid.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
    mask = causal & valid[:, None, None, :]
    return mask | torch.eye(L, dtype=torch.bool, device=valid.device)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                keys: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of ``x``'s positions over ``keys`` (default: ``x`` itself).

        One fused projection by default; SASRec's layout reads its queries normalised and its
        keys and values not.
        """
        B, L, d = x.shape
        if keys is None:
            qkv = self.qkv(x)
        else:
            w_q, w_kv = self.qkv.weight.split([d, 2 * d])
            b_q, b_kv = self.qkv.bias.split([d, 2 * d])
            qkv = torch.cat([F.linear(x, w_q, b_q), F.linear(keys, w_kv, b_kv)], dim=-1)
        # (B, L, 3d) -> three (B, heads, L, d / heads)
        q, k, v = qkv.view(B, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if p > 0 and x.device.type == "cpu":
            y = attention_with_dropout(q, k, v, mask, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                               dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, L, d))


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """Scaled dot-product attention with dropout on the weights, written out for the CPU.

    With dropout, SDPA's CPU dispatch falls back to its unfused math path anyway, and there
    the per-element ``bernoulli_`` mask costs more than the attention itself; this is the same
    math with the cheap mask of ``recsys.models.dropout``.
    """
    L = q.shape[-2]
    if mask is None:
        mask = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    weights = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1)
    return fast_dropout(weights, p).to(v.dtype) @ v


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float, activation: type = nn.GELU):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, hidden), activation(), Dropout(dropout), nn.Linear(hidden, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-norm Transformer block: more stable than SASRec's post-norm at the same size."""

    activation: type = nn.GELU  # of the feed-forward

    def __init__(self, d_model: int, n_heads: int, dropout: float, ffn_factor: int = 1,
                 attention_dropout: float | None = None):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(
            d_model, n_heads, dropout if attention_dropout is None else attention_dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_factor * d_model, dropout, self.activation)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRecBlock(Block):
    """SASRec's reference layout (Kang & McAuley 2018, and the SASRec+ code that followed it).

    The query is normalised and carries the residual, keys and values are not; the
    feed-forward (ReLU) reads a normalised input and adds its own residual. Kept to compare
    with the published recipe setting by setting (docs/benchmarks.md), not as the default.
    """

    activation = nn.ReLU

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = self.ln1(x)
        x = self.ln2(q + self.attn(q, mask, keys=x))
        return x + self.drop(self.ffn(x))


BLOCKS = {"pre_norm": Block, "sasrec": SASRecBlock}
