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

A request of one or a few users reads the whole catalogue to multiply it by a vector or two:
there the bytes are all the cost, and an int8 copy of the catalogue (a quarter of fp32's
bytes, one scale per item) ranked the first stage 4x faster than fp32 for one user on an
AVX2-only CPU, 1.7x for eight, and slower from 32 users on (bench/serving.py). So batches up
to ``narrow_batch`` users rank first in int8, where that was measured clearly faster on this
machine, and the candidates are rescored in fp32 as after bf16. This is what keeps the
real-time path fast with two models to run per request (an interleaving experiment).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from recsys import precision

# Candidates kept by the bf16 stage per requested item (and at least K + MIN_SLACK).
OVERSAMPLE = 4
MIN_SLACK = 32
# The probe ranks this many users against the catalogue, rounded up to a power of two and
# capped, so that it takes about a second and a few more items find the cached verdict.
PROBE_USERS = 64
MAX_PROBE_ITEMS = 2**16
# Batch sizes at which the int8 first stage is timed, smallest first; the largest that runs
# clearly faster than without is the index's ``narrow_batch``.
NARROW_BATCHES = (1, 2, 4, 8, 16)
# int8 rows are padded with zeros to a multiple of this width: the int8 kernel gave wrong
# scores (and crashed) for a width of 13, and was right for every multiple of 8 tried.
NARROW_WIDTH = 16


def _probe_size(n_items: int) -> int:
    return min(MAX_PROBE_ITEMS, 2 ** math.ceil(math.log2(max(n_items, 2))))


def first_stage_dtype(n_items: int, d: int) -> torch.dtype:
    """The first stage's dtype on this machine: bf16 only where it measured clearly faster.

    "Clearly": the whole top-K of ``PROBE_USERS`` users ran at least
    ``recsys.precision.MIN_SPEEDUP`` times as fast with a bf16 first stage as with fp32.
    """
    n = _probe_size(n_items)

    def steps():
        gen = torch.Generator().manual_seed(0)
        vectors, users = torch.randn(n + 1, d, generator=gen), torch.randn(PROBE_USERS, d,
                                                                             generator=gen)
        fp32, bf16 = (ItemIndex(vectors, first_stage=t, narrow_batch=0)
                      for t in (torch.float32, torch.bfloat16))
        return lambda: fp32.top_k(users, 10), lambda: bf16.top_k(users, 10)

    probe = precision.measure(f"top-k d={d} items={n} users={PROBE_USERS}", steps)
    return torch.bfloat16 if probe.bf16 else torch.float32


@functools.cache
def int8_works() -> bool:
    """The int8 product exists in this torch and gives the right scores on this CPU.

    ``aten._weight_int8pack_mm`` is torch's weight-only int8 kernel (the one torchao's int8
    quantization calls); it is not public API, so it is checked once before any use.
    """
    try:
        gen = torch.Generator().manual_seed(0)
        vectors, users = torch.randn(257, 64, generator=gen), torch.randn(3, 64, generator=gen)
        scores = Int8Rows(vectors).scores(users).float()
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    truth = users @ vectors.T
    return bool(((scores - truth).abs().max() / truth.abs().max()) < 0.05)


def int8_batch_limit(n_items: int, d: int, first_stage: torch.dtype) -> int:
    """The most users a batch may have for its first stage to run in int8 (0: never).

    Timed at ``NARROW_BATCHES`` against the ``first_stage`` alone, until int8 is no longer
    clearly faster (``recsys.precision``: the same rule and cache as bf16).
    """
    if not int8_works():
        return 0
    n, best = _probe_size(n_items), 0
    base = str(first_stage).removeprefix("torch.").replace("float32", "fp32").replace(
        "bfloat16", "bf16")
    for users in NARROW_BATCHES:
        def steps(users=users):
            gen = torch.Generator().manual_seed(0)
            vectors = torch.randn(n + 1, d, generator=gen)
            batch = torch.randn(users, d, generator=gen)
            plain = ItemIndex(vectors, first_stage=first_stage, narrow_batch=0)
            narrow = ItemIndex(vectors, first_stage=first_stage, narrow_batch=users)
            return lambda: plain.top_k(batch, 10), lambda: narrow.top_k(batch, 10)

        probe = precision.measure(
            f"top-k int8 first stage against {base} d={d} items={n} users={users}", steps,
            kinds=(base, "int8"))
        if not probe.bf16:
            break
        best = users
    return best


class Int8Rows:
    """Rows in int8 with one bf16 scale each: the catalogue in a quarter of fp32's bytes.

    Symmetric per-row scaling keeps each component's rounding error under 1/254 of the row's
    largest component, whatever the spread of vector norms across items; the bf16 scale adds
    at most 0.4% to a row's scores. Candidates are rescored in fp32, so this only has to keep
    the true top K among them.
    """

    def __init__(self, rows: torch.Tensor):
        self.pad = -rows.shape[1] % NARROW_WIDTH
        rows = F.pad(rows.float(), (0, self.pad))
        scale = rows.abs().amax(1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        self.values = (rows / scale[:, None]).round().to(torch.int8).contiguous()
        self.scale = scale.to(torch.bfloat16)

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """``users @ rows.T`` ``(B, n)`` in bf16, approximately."""
        users = F.pad(users.float(), (0, self.pad)).to(torch.bfloat16).contiguous()
        return torch.ops.aten._weight_int8pack_mm(users, self.values, self.scale)


class ItemIndex:
    """The items a list may hold, with their vectors cached for both stages.

    ``item_vectors`` is the item tower's output ``(n_items + 1, d)`` (row 0 is padding);
    ``banned`` marks items no list may hold (filters); ``first_stage``: the first stage's
    dtype (default: ``first_stage_dtype``, measured); ``narrow_batch``: batches of at most
    this many users rank first in int8 (default: ``int8_batch_limit``, measured; 0: never).
    Column ``c`` of the score matrix is item ``self.items[c]``; one extra zero "sink" column
    absorbs masks of items that have no column (padding, banned), so masking needs no branches.
    """

    def __init__(self, item_vectors: torch.Tensor, banned: torch.Tensor | None = None,
                 first_stage: torch.dtype | None = None, narrow_batch: int | None = None):
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
        if narrow_batch is None:
            narrow_batch = int8_batch_limit(self.sink, item_vectors.shape[1], first_stage)
        self.narrow_batch = narrow_batch
        # Quantized from the exact rows (not a bf16 first stage's rounded ones), sink included.
        self.narrow = (Int8Rows(torch.cat([self.exact, sink.float()])) if narrow_batch
                       else None)

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
        if self.narrow is not None and len(users) <= self.narrow_batch:
            coarse, exact_first = self.narrow.scores(users), False
        else:
            coarse = users.to(self.coarse.dtype) @ self.coarse.T
            # An fp32 first stage is already exact: its top K are the answer.
            exact_first = self.coarse.dtype == torch.float32
        coarse[:, self.sink] = float("-inf")
        if exclude is not None:
            # Indexed assignment, not scatter_: bf16 scatter_ is ~15x slower on CPU.
            rows = torch.arange(len(users))[:, None].expand_as(exclude)
            coarse[rows, self.column[exclude]] = float("-inf")
        n_cand = k if exact_first else min(len(self), max(OVERSAMPLE * k, k + MIN_SLACK))
        cand = coarse.topk(n_cand, dim=1)
        exact = torch.einsum("bd,bcd->bc", users.float(), self.exact[cand.indices])
        exact.masked_fill_(cand.values == float("-inf"), float("-inf"))
        best = exact.topk(k, dim=1)
        return self.items[cand.indices.gather(1, best.indices)], best.values
