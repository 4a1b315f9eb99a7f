import pytest
import torch

from recsys.training.trainer import resolve_precision


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("amx, avx512_bf16, expected", [
    (True, True, "bf16-mixed"),
    (False, True, "32-true"),   # AVX-512 BF16 without AMX: bf16 measured slower than fp32
    (False, False, "32-true"),  # AVX2 only: emulated bf16 is several times slower
])
def test_auto_precision_on_cpu_needs_amx(monkeypatch, no_cuda, amx, avx512_bf16, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert resolve_precision("auto", "auto") == expected
    assert resolve_precision("auto", "cpu") == expected


def test_auto_precision_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "auto") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"


def test_auto_precision_asked_for_cpu_ignores_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"


def test_explicit_precision_is_kept():
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("32", "auto") == "32"
