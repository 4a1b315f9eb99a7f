"""The top-K's first stage runs in the precision measured faster on this machine.

Two choices: bf16 or fp32 for any batch, and int8 for small batches (a request or a few),
where reading the catalogue is the whole cost.
"""

from __future__ import annotations

import pytest
import torch

from recsys import precision
from recsys.scoring import topk
from recsys.scoring.topk import ItemIndex


def _fixed(monkeypatch, fp32_ms: float, bf16_ms: float) -> list[str]:
    names: list[str] = []

    def fake(name, make_steps, folder=None, seconds=precision.PROBE_SECONDS,
             kinds=("fp32", "bf16")):
        names.append(name)
        return precision.Probe(name, fp32_ms, bf16_ms, 2, 0.0, "now", *kinds)

    monkeypatch.setattr(precision, "measure", fake)
    return names


@pytest.mark.parametrize("fp32_ms, bf16_ms, dtype", [
    (170.0, 100.0, torch.bfloat16),  # native bf16: half the bytes to read
    (100.0, 390.0, torch.float32),   # AVX2 only: bf16 emulated
])
def test_the_default_first_stage_follows_the_measurement(monkeypatch, fp32_ms, bf16_ms, dtype):
    names = _fixed(monkeypatch, fp32_ms, bf16_ms)
    index = ItemIndex(torch.randn(3001, 16), narrow_batch=0)
    assert index.coarse.dtype == dtype
    assert names == ["top-k d=16 items=4096 users=64"]  # catalogue rounded up to a power of 2


def test_an_fp32_first_stage_is_exact(monkeypatch):
    names = _fixed(monkeypatch, 100.0, 100.0)
    torch.manual_seed(0)
    vectors, users = torch.randn(5001, 32), torch.randn(16, 32)
    banned = torch.zeros(5001, dtype=torch.bool)
    banned[1:100] = True
    exclude = torch.randint(0, 5001, (16, 20))
    items, scores = ItemIndex(vectors, banned, first_stage=torch.float32,
                              narrow_batch=0).top_k(users, 10, exclude)
    truth = users @ vectors.T
    truth[:, 0] = float("-inf")
    truth[:, banned] = float("-inf")
    truth.scatter_(1, exclude, float("-inf"))
    best = truth.topk(10, dim=1)
    assert torch.equal(items, best.indices)
    assert torch.allclose(scores, best.values, atol=1e-5)
    two_stage, _ = ItemIndex(vectors, banned, first_stage=torch.bfloat16,
                             narrow_batch=0).top_k(users, 10, exclude)
    recall = sum(len(set(a.tolist()) & set(b.tolist()))
                 for a, b in zip(two_stage, best.indices, strict=True)) / best.indices.numel()
    assert recall >= 0.99
    assert names == []  # a given first stage is not measured


def test_the_probe_is_timed_once_and_then_read(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    # A quiet machine, whatever the real load: figures from a busy one are retaken (test_precision).
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    built: list[torch.dtype | None] = []
    real = topk.ItemIndex

    class Spy(real):
        def __init__(self, vectors, banned=None, first_stage=None, narrow_batch=None):
            built.append(first_stage)
            super().__init__(vectors, banned, first_stage, narrow_batch)

    monkeypatch.setattr(topk, "ItemIndex", Spy)
    first = topk.first_stage_dtype(100, 8)
    assert built == [torch.float32, torch.bfloat16]  # the probe's two indexes
    (probe,) = precision.cached(tmp_path).values()
    assert probe.name.startswith("top-k d=8 items=128 users=64 threads=")
    assert first == (torch.bfloat16 if probe.bf16 else torch.float32)
    assert topk.first_stage_dtype(120, 8) == first and len(built) == 2


def _recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    return sum(len(set(a.tolist()) & set(b.tolist()))
               for a, b in zip(found, truth, strict=True)) / truth.numel()


@pytest.mark.skipif(not topk.int8_works(), reason="no working int8 kernel in this torch")
def test_small_batches_rank_first_in_int8_and_return_exact_scores(monkeypatch):
    torch.manual_seed(2)
    vectors = torch.randn(20_001, 64) * torch.rand(20_001, 1) * 3  # norms differ by item
    banned = torch.zeros(20_001, dtype=torch.bool)
    banned[5:500] = True
    users = torch.randn(24, 64)
    exclude = torch.randint(0, 20_001, (24, 30))
    index = ItemIndex(vectors, banned, first_stage=torch.float32, narrow_batch=4)
    calls = []
    real = topk.Int8Rows.scores
    monkeypatch.setattr(topk.Int8Rows, "scores", lambda self, u: calls.append(len(u)) or
                        real(self, u))
    found = [index.top_k(chunk, 10, ex) for chunk, ex in zip(users.split(3), exclude.split(3),
                                                             strict=True)]
    assert calls == [3] * 8
    items, scores = (torch.cat(parts) for parts in zip(*found, strict=True))
    truth = users @ vectors.T
    truth[:, 0] = float("-inf")
    truth[:, banned] = float("-inf")
    truth.scatter_(1, exclude, float("-inf"))
    best = truth.topk(10, dim=1)
    assert _recall(items, best.indices) >= 0.99
    assert not any(torch.isin(row, ex).any() for row, ex in zip(items, exclude, strict=True))
    assert not banned[items].any()
    # Scores are the exact fp32 ones of the items returned, best first.
    assert torch.allclose(scores, (users[:, None] * vectors[items]).sum(-1), atol=1e-4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    index.top_k(users[:5], 10)  # above narrow_batch: the plain first stage
    assert calls == [3] * 8


@pytest.mark.skipif(not topk.int8_works(), reason="no working int8 kernel in this torch")
@pytest.mark.parametrize("width", [1, 13, 64])
def test_int8_rows_score_any_width(width):
    """The kernel needs a multiple of 8 (13 gave wrong scores): rows are padded with zeros."""
    torch.manual_seed(width)
    rows, users = torch.randn(1001, width), torch.randn(3, width)
    truth = users @ rows.T
    got = topk.Int8Rows(rows).scores(users).float()
    assert got.shape == truth.shape
    assert (got - truth).abs().max() <= 0.03 * truth.abs().max()


def test_int8_serves_batches_up_to_the_largest_measured_clearly_faster(monkeypatch):
    asked = []

    def fake(name, make_steps, folder=None, seconds=precision.PROBE_SECONDS, kinds=None):
        asked.append((name, kinds))
        users = int(name.rsplit("users=", 1)[1])
        int8_ms = {1: 1.0, 2: 2.0, 4: 4.0, 8: 9.5}[users]  # against 10 ms without
        return precision.Probe(name, 10.0, int8_ms, 2, 0.0, "now", *kinds)

    monkeypatch.setattr(precision, "measure", fake)
    monkeypatch.setattr(topk, "int8_works", lambda: True)
    assert topk.int8_batch_limit(3000, 32, torch.bfloat16) == 4
    name = "top-k int8 first stage against bf16 d=32 items=4096 users={}"
    assert [a[0] for a in asked] == [name.format(u) for u in (1, 2, 4, 8)]  # stops at a loss
    assert {a[1] for a in asked} == {("bf16", "int8")}
    monkeypatch.setattr(topk, "int8_works", lambda: False)
    asked.clear()
    assert topk.int8_batch_limit(3000, 32, torch.float32) == 0 and asked == []
