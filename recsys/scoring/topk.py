"""Exact top-K over a large catalogue, in two stages.

Ranking 100k items per user is one ``(B, d) @ (d, N)`` product and a top-K over ``(B, N)``
scores; both are bound by memory traffic, not arithmetic. So the first stage ranks in bf16
(half the bytes, and the CPU's bf16 matrix units), keeps a few times K candidates, and the
second stage rescores only those candidates in fp32. The returned scores are the exact fp32
ones, and the order among candidates is exact; an item would be lost only if bf16 rounding
moved it from the true top K to below rank ``candidates``, which rounding of a few parts in a
thousand does not do (tests/unit/scoring/test_topk.py checks recall against the exact path).

bf16 pays only where the CPU multiplies bf16 natively: with AVX2 alone it is emulated and the
first stage ran 1.4-4.5x slower than fp32. So by default the first stage's precision is
measured once per machine (``first_stage_dtype``, cached by ``recsys.precision``), and where
bf16 is not clearly faster the first stage runs in fp32 and keeps just K candidates.
"""

from __future__ import annotations

import math

import torch

from recsys import precision

# Candidates kept by the bf16 stage per requested item (and at least K + MIN_SLACK).
OVERSAMPLE = 4
MIN_SLACK = 32
# The probe ranks this many users against the catalogue, rounded up to a power of two and
# capped, so that it takes about a second and a few more items find the cached verdict.
PROBE_USERS = 64
MAX_PROBE_ITEMS = 2**16


def first_stage_dtype(n_items: int, d: int) -> torch.dtype:
    """The first stage's dtype on this machine: bf16 only where it measured clearly faster.

    "Clearly": the whole top-K of ``PROBE_USERS`` users ran at least
    ``recsys.precision.MIN_SPEEDUP`` times as fast with a bf16 first stage as with fp32.
    """
    n = min(MAX_PROBE_ITEMS, 2 ** math.ceil(math.log2(max(n_items, 2))))

    def steps():
        gen = torch.Generator().manual_seed(0)
        vectors, users = torch.randn(n + 1, d, generator=gen), torch.randn(PROBE_USERS, d,
                                                                             generator=gen)
        fp32, bf16 = (ItemIndex(vectors, first_stage=t) for t in (torch.float32, torch.bfloat16))
        return lambda: fp32.top_k(users, 10), lambda: bf16.top_k(users, 10)

    probe = precision.measure(f"top-k d={d} items={n} users={PROBE_USERS}", steps)
    return torch.bfloat16 if probe.bf16 else torch.float32


class ItemIndex:
    """The items a list may hold, with their vectors cached for both stages.

    ``item_vectors`` is the item tower's output ``(n_items + 1, d)`` (row 0 is padding);
    ``banned`` marks items no list may hold (filters); ``first_stage``: the first stage's
    dtype (default: ``first_stage_dtype``, measured). Column ``c`` of the score matrix is item
    ``self.items[c]``; one extra zero "sink" column absorbs masks of items that have no column
    (padding, banned), so masking needs no branches.
    """

    def __init__(self, item_vectors: torch.Tensor, banned: torch.Tensor | None = None,
                 first_stage: torch.dtype | None = None):
        n = item_vectors.shape[0]
        allowed = torch.ones(n, dtype=torch.bool) if banned is None else ~banned.clone()
        allowed[0] = False
        self.items = allowed.nonzero().squeeze(1)
        self.sink = len(self.items)
        self.column = torch.full((n,), self.sink, dtype=torch.long)
        self.column[self.items] = torch.arange(self.sink)
        # With no filter the rows are items 1..n in order: a view, not a second fp32 copy of
        # the catalogue beside the scorer's own.
        rows = item_vectors[1:] if self.sink == n - 1 else item_vectors[self.items]
        self.exact = rows.float().contiguous()
        if first_stage is None:
            first_stage = first_stage_dtype(self.sink, item_vectors.shape[1])
        sink = torch.zeros(1, item_vectors.shape[1], dtype=first_stage)
        # Kept (items, d): ``users @ coarse.T`` on this layout is 2.5x faster for one user
        # than on a (d, items) copy, and as fast for many.
        self.coarse = torch.cat([self.exact.to(first_stage), sink])

    def __len__(self) -> int:
        return self.sink

    @torch.no_grad()
    def top_k(self, users: torch.Tensor, k: int,
              exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item indices ``(B, k)`` and fp32 scores, best first.

        ``exclude``: item indices ``(B, M)`` to leave out per user (0 = none). A list holds
        fewer than ``k`` real items only if the catalogue does; the rest score -inf.
        """
        k = min(k, len(self))
        coarse = users.to(self.coarse.dtype) @ self.coarse.T
        coarse[:, self.sink] = float("-inf")
        if exclude is not None:
            # Indexed assignment, not scatter_: bf16 scatter_ is ~15x slower on CPU.
            rows = torch.arange(len(users))[:, None].expand_as(exclude)
            coarse[rows, self.column[exclude]] = float("-inf")
        # An fp32 first stage is already exact: its top K are the answer.
        exact_first = self.coarse.dtype == torch.float32
        n_cand = k if exact_first else min(len(self), max(OVERSAMPLE * k, k + MIN_SLACK))
        cand = coarse.topk(n_cand, dim=1)
        exact = torch.einsum("bd,bcd->bc", users.float(), self.exact[cand.indices])
        exact.masked_fill_(cand.values == float("-inf"), float("-inf"))
        best = exact.topk(k, dim=1)
        return self.items[cand.indices.gather(1, best.indices)], best.values
