"""The top-K's first stage runs in the precision measured faster on this machine."""

from __future__ import annotations

import pytest
import torch

from recsys import precision
from recsys.scoring import topk
from recsys.scoring.topk import ItemIndex


def _fixed(monkeypatch, fp32_ms: float, bf16_ms: float) -> list[str]:
    names: list[str] = []

    def fake(name, make_steps, folder=None, seconds=precision.PROBE_SECONDS):
        names.append(name)
        return precision.Probe(name, fp32_ms, bf16_ms, 2, 0.0, "now")

    monkeypatch.setattr(precision, "measure", fake)
    return names


@pytest.mark.parametrize("fp32_ms, bf16_ms, dtype", [
    (170.0, 100.0, torch.bfloat16),  # native bf16: half the bytes to read
    (100.0, 390.0, torch.float32),   # AVX2 only: bf16 emulated
])
def test_the_default_first_stage_follows_the_measurement(monkeypatch, fp32_ms, bf16_ms, dtype):
    names = _fixed(monkeypatch, fp32_ms, bf16_ms)
    index = ItemIndex(torch.randn(3001, 16))
    assert index.coarse.dtype == dtype
    assert names == ["top-k d=16 items=4096 users=64"]  # catalogue rounded up to a power of 2


def test_an_fp32_first_stage_is_exact(monkeypatch):
    names = _fixed(monkeypatch, 100.0, 100.0)
    torch.manual_seed(0)
    vectors, users = torch.randn(5001, 32), torch.randn(16, 32)
    banned = torch.zeros(5001, dtype=torch.bool)
    banned[1:100] = True
    exclude = torch.randint(0, 5001, (16, 20))
    items, scores = ItemIndex(vectors, banned, first_stage=torch.float32).top_k(users, 10, exclude)
    truth = users @ vectors.T
    truth[:, 0] = float("-inf")
    truth[:, banned] = float("-inf")
    truth.scatter_(1, exclude, float("-inf"))
    best = truth.topk(10, dim=1)
    assert torch.equal(items, best.indices)
    assert torch.allclose(scores, best.values, atol=1e-5)
    two_stage, _ = ItemIndex(vectors, banned, first_stage=torch.bfloat16).top_k(users, 10, exclude)
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
        def __init__(self, vectors, banned=None, first_stage=None):
            built.append(first_stage)
            super().__init__(vectors, banned, first_stage)

    monkeypatch.setattr(topk, "ItemIndex", Spy)
    first = topk.first_stage_dtype(100, 8)
    assert built == [torch.float32, torch.bfloat16]  # the probe's two indexes
    (probe,) = precision.cached(tmp_path).values()
    assert probe.name.startswith("top-k d=8 items=128 users=64 threads=")
    assert first == (torch.bfloat16 if probe.bf16 else torch.float32)
    assert topk.first_stage_dtype(120, 8) == first and len(built) == 2
